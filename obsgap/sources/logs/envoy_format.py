"""Envoy access logs read from their format string: one parser built from a format, not one regex per release.

A TEXT format (`[%START_TIME%] "%REQ(:METHOD)% ..."`) becomes a regex whose groups are its command operators;
each operator obsgap uses maps to a normalized field by what it means (`%DOWNSTREAM_LOCAL_ADDRESS%` is the
address the request arrived on, whatever stands next to it); operators it does not use are opaque fields.
A JSON format (Istio's `accessLogEncoding: JSON`, a Telemetry provider's `labels`) maps keys to operators the
same way.

The builtin candidates are Istio's default formats of every release since 1.0, taken from istio/istio at the
release tags (file and commit in `ISTIO_DEFAULTS`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Operator -> normalized field. REQ() header names are case-insensitive in Envoy.
_FIELDS = {
    "START_TIME": "start", "PROTOCOL": "protocol", "RESPONSE_CODE": "code", "RESPONSE_FLAGS": "flags",
    "DURATION": "duration", "UPSTREAM_HOST": "upstream_host", "UPSTREAM_CLUSTER": "cluster",
    "UPSTREAM_CLUSTER_RAW": "cluster", "DOWNSTREAM_LOCAL_ADDRESS": "downstream_local",
    "DOWNSTREAM_REMOTE_ADDRESS": "downstream_remote", "BYTES_RECEIVED": "bytes_received",
    "BYTES_SENT": "bytes_sent",
}
_REQ_FIELDS = {":method": "method", "x-envoy-original-path?:path": "path", ":path": "path",
               ":authority": "authority", "host": "authority"}
_OPERATOR = re.compile(r"%([A-Z][A-Z0-9_]*)(\((?:[^()]|\([^()]*\))*\))?(?::\d+)?%")


@dataclass(frozen=True)
class Operator:
    name: str
    arg: str | None

    @property
    def field(self) -> str | None:
        """The normalized field this operator fills, or None when obsgap does not read it."""
        if self.name in ("REQ", "REQ_WITHOUT_QUERY") and self.arg:
            return _REQ_FIELDS.get(self.arg.lower().replace(" ", ""))
        return _FIELDS.get(self.name)


@dataclass(frozen=True)
class TextFormat:
    """A compiled Envoy TEXT format: `match(line)` gives the normalized fields obsgap reads, or None."""

    name: str
    source: str
    operators: tuple[Operator, ...]
    pattern: re.Pattern[str] = field(repr=False, compare=False)

    def match(self, line: str) -> dict[str, str | None] | None:
        m = self.pattern.match(line)
        if m is None:
            return None
        out: dict[str, str | None] = {}
        for op, value in zip(self.operators, m.groups(), strict=True):
            key = op.field
            if key is not None and key not in out:
                out[key] = None if value in ("-", "") else value
        return out

    @property
    def reads(self) -> frozenset[str]:
        return frozenset(f for f in (op.field for op in self.operators) if f)


@dataclass(frozen=True)
class JsonFormat:
    """An Envoy JSON format: key -> the normalized field of its operator."""

    name: str
    keys: Mapping[str, str]

    def fields(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        """The normalized fields of a JSON access-log object, or None when the object is not of this format."""
        if not all(k in obj for k in self.keys if self.keys[k] in ("start", "code")):
            return None
        out: dict[str, Any] = {}
        for key, name in self.keys.items():
            value = obj.get(key)
            if name not in out:
                out[name] = None if value in ("-", "", None) else value
        return out


def _tokens(fmt: str) -> list[str | Operator]:
    out: list[str | Operator] = []
    pos = 0
    for m in _OPERATOR.finditer(fmt):
        if m.start() > pos:
            out.append(fmt[pos:m.start()])
        arg = m.group(2)[1:-1] if m.group(2) else None
        out.append(Operator(m.group(1), arg))
        pos = m.end()
    if pos < len(fmt):
        out.append(fmt[pos:])
    return out


QUOTED, BRACKETED, WORD, LAST_WORD = r'([^"]*)', r"([^\]]*)", r"(\S+)", r"(\S*)"
"""The groups of a TEXT format's pattern: what an operator's value may contain."""


def _group(before: str, after: str, last: bool) -> str:
    """What an operator's value may contain, from the characters around it in the format. Envoy writes `-` for
    a value it does not have, so an unquoted field is never empty, but for the last one (users' pasted lines
    lose a trailing `-` with the line's end)."""
    if before.endswith('"') and after.startswith('"'):
        return QUOTED
    if before.endswith("[") and after.startswith("]"):
        return BRACKETED
    return LAST_WORD if last else WORD


def _pattern_parts(tokens: list[str | Operator]) -> list[str]:
    """Each token's part of the pattern: an operator's group, a literal escaped."""
    parts = []
    for i, tok in enumerate(tokens):
        if isinstance(tok, Operator):
            before = tokens[i - 1] if i and isinstance(tokens[i - 1], str) else ""
            after = tokens[i + 1] if i + 1 < len(tokens) and isinstance(tokens[i + 1], str) else ""
            parts.append(_group(str(before), str(after), i == len(tokens) - 1))
        else:
            parts.append(re.escape(tok))
    return parts


def compile_text(fmt: str, name: str) -> TextFormat:
    """A TEXT format string -> a parser. Raises ValueError for a format with no operator at all."""
    tokens = _tokens(fmt.rstrip("\n"))
    operators = tuple(t for t in tokens if isinstance(t, Operator))
    if not operators:
        raise ValueError(f"access-log format {name!r} has no %OPERATOR%")
    return TextFormat(name, fmt, operators, re.compile("".join(_pattern_parts(tokens)) + r"\s*\Z"))


OTHER_SPACES = r"\x1c-\x1f\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
"""The characters str.isspace() accepts beyond ASCII's \\t\\n\\v\\f\\r and space, in RE2's syntax."""
_SPACE_CHARS = r"\t\n\x0b\x0c\r " + OTHER_SPACES
"""What Python's `\\s` matches in a str pattern."""


def for_re2(pattern: str) -> str:
    """A pattern of Python's re written for RE2 (Arrow's and ClickHouse's regex engine): `\\s` and `\\S` spelled out,
    as RE2's match only ASCII whitespace and Python's every Unicode space (a field holding U+3000 is no `\\S+` to
    the per-line parser)."""
    def spell(m: re.Match[str]) -> str:
        return m[1] or (f"[{_SPACE_CHARS}]" if m[2] == "s" else f"[^{_SPACE_CHARS}]")

    return re.sub(r"(\\\\)|\\([sS])", spell, pattern)


@dataclass(frozen=True)
class SplitPlan:
    """Where each group of a TEXT format lies in a line its pattern matches (for_re2) and that holds no `"` but the
    format's own (`quotes` of them) and no whitespace but ASCII's (OTHER_SPACES): the line split at `"` into pieces,
    a piece split at ASCII whitespace into words. Per operator, (piece, word), both from 0; word None for the whole
    piece (a quoted group); (-1, None) for a bracketed group that opens the line (its value runs to the first `]`).
    A word group holds no whitespace, so the words are its values; a missing last word is an empty `\\S*`."""

    quotes: int
    places: tuple[tuple[int, int | None], ...]


_ASCII_SPACE = re.compile(r"[ \t\n\v\f\r]+")
"""What ClickHouse's splitByWhitespace splits at."""


def split_plan(fmt: TextFormat) -> SplitPlan | None:
    """The format's SplitPlan, or None when some group is not a whole piece or word of the line (a value glued to
    a literal, a bracketed group inside the line): read those formats by their pattern's groups."""
    tokens = _tokens(fmt.source.rstrip("\n"))
    if any(isinstance(t, str) and ("\x01" in t or _ASCII_SPACE.sub(" ", t) != t) for t in tokens):
        return None  # literals of other whitespace than single spaces, or holding the marks below
    kinds = [part for part, tok in zip(_pattern_parts(tokens), tokens, strict=True) if isinstance(tok, Operator)]
    marks = [f"\x01{i}\x01" for i in range(len(kinds))]
    marked = iter(marks)
    line = "".join(next(marked) if isinstance(t, Operator) else t for t in tokens)
    pieces = line.split('"')
    opens_bracketed = line.startswith(f"[{marks[0]}]")
    places: list[tuple[int, int | None]] = []
    for i, (kind, mark) in enumerate(zip(kinds, marks, strict=True)):
        if kind == BRACKETED:
            if i or not opens_bracketed:
                return None
            places.append((-1, None))
            continue
        piece = next(p for p, text in enumerate(pieces) if mark in text)
        text = pieces[piece].split("]", 1)[1] if piece == 0 and opens_bracketed else pieces[piece]
        words = [w for w in _ASCII_SPACE.split(text) if w]
        if kind == QUOTED and text == mark:
            places.append((piece, None))
        elif kind in (WORD, LAST_WORD) and mark in words and (kind == WORD or words[-1] == mark):
            places.append((piece, words.index(mark)))
        else:
            return None
    return SplitPlan(line.count('"'), tuple(places))


def render_text(fmt: str, fields: Mapping[str, Any]) -> str:
    """The line Envoy writes in `fmt` for these normalized field values ("-" for every other operator): the
    inverse of TextFormat.match, used by the scenario builder to write logs in any format."""
    def value(m: re.Match[str]) -> str:
        op = Operator(m.group(1), m.group(2)[1:-1] if m.group(2) else None)
        v = fields.get(op.field) if op.field else None
        return "-" if v is None or v == "" else str(v)

    return _OPERATOR.sub(value, fmt.rstrip("\n"))


def compile_json(labels: Mapping[str, str], name: str) -> JsonFormat:
    """`{"key": "%OPERATOR%"}` (Istio's JSON encoding, a Telemetry provider's labels) -> a key map."""
    keys = {}
    for key, value in labels.items():
        ops = [t for t in _tokens(str(value)) if isinstance(t, Operator)]
        if len(ops) == 1 and ops[0].field:
            keys[str(key)] = str(ops[0].field)
    if "code" not in keys.values():
        raise ValueError(f"access-log JSON format {name!r} has no %RESPONSE_CODE% key")
    return JsonFormat(name, keys)


# --- Istio's defaults, per release ----------------------------------------------------------------------
# From istio/istio at the release tags; `git show <tag>:<file>`, the constant named. Istio 1.0 set no format,
# so Envoy's own default applied (source/common/access_log/access_log_formatter.cc, DEFAULT_FORMAT, in the
# Envoy that Istio 1.0 shipped).
_MIXER = '"%DYNAMIC_METADATA(istio.mixer:status)%" '
_HEAD = ('[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
         "%RESPONSE_CODE% %RESPONSE_FLAGS% ")
_MID = ('%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" '
        '"%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" ')
_ADDRS = "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME%"

ISTIO_DEFAULTS: tuple[tuple[str, str, str], ...] = (
    # (name, format, where it comes from)
    # 1.23 renamed %UPSTREAM_CLUSTER% to %UPSTREAM_CLUSTER_RAW%: the same field at the same place, so one parser
    ("istio-1.9+", _HEAD + '%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% '
     '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" ' + _MID + "%UPSTREAM_CLUSTER_RAW% " + _ADDRS + " %ROUTE_NAME%\n",
     "1.23.0 d0ca037e58f9 pilot/pkg/model/telemetry_logging.go EnvoyTextLogFormat (same at 1.30.0 badd809ed7d5); "
     "with %UPSTREAM_CLUSTER%: 1.9.0 b63e1966c245 pilot/pkg/networking/core/v1alpha3/accesslog.go "
     "EnvoyTextLogFormatIstio19, 1.11.0 57d639a4fd19 same file EnvoyTextLogFormat, 1.23.0 LegacyEnvoyTextLogFormat"),
    ("istio-1.8-1.10", _HEAD + '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" ' + _MID + "%UPSTREAM_CLUSTER% " + _ADDRS
     + " %ROUTE_NAME%\n",
     "1.8.0 c87a4c874df2 pilot/pkg/networking/core/v1alpha3/accesslog.go EnvoyTextLogFormat (to 1.10.0)"),
    ("istio-1.3-1.7", _HEAD + _MIXER + '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" ' + _MID + "%UPSTREAM_CLUSTER% "
     + _ADDRS + " %ROUTE_NAME%\n",
     "1.3.0 c2bd59595ce6 pilot/pkg/networking/core/v1alpha3/listener.go EnvoyTextLogFormat13 (to 1.7.0)"),
    ("istio-1.2", _HEAD + _MIXER + '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" ' + _MID + "%UPSTREAM_CLUSTER% " + _ADDRS
     + "\n",
     "1.2.0 f8295503296e pilot/pkg/networking/core/v1alpha3/listener.go EnvoyTextLogFormat (1.3-1.5: "
     "EnvoyTextLogFormat12, for 1.2 proxies)"),
    ("istio-1.1", _HEAD + _MIXER + _MID + "%UPSTREAM_CLUSTER% " + _ADDRS + "\n",
     "1.1.0 82797c0c0649 pilot/pkg/networking/core/v1alpha3/listener.go EnvoyTextLogFormat"),
    ("istio-1.0", _HEAD + _MID.rstrip() + "\n",
     "1.0.0 3a136c90ec5e sets no format (pilot/pkg/networking/core/v1alpha3/listener.go): Envoy's DEFAULT_FORMAT"),
)

# Istio's JSON encoding uses the same keys in every release (1.1's `method` key held %START_TIME% by mistake);
# from 1.25 `upstream_cluster` is %UPSTREAM_CLUSTER_RAW%. Same files as above, EnvoyJSONLogFormat*.
ISTIO_JSON_LABELS: Mapping[str, str] = {
    "start_time": "%START_TIME%", "method": "%REQ(:METHOD)%", "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%", "response_code": "%RESPONSE_CODE%", "response_flags": "%RESPONSE_FLAGS%",
    "bytes_received": "%BYTES_RECEIVED%", "bytes_sent": "%BYTES_SENT%", "duration": "%DURATION%",
    "authority": "%REQ(:AUTHORITY)%", "upstream_host": "%UPSTREAM_HOST%", "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
}


DEFAULT_ACCESS_FORMAT = "istio-1.9+"
"""The builtin format the columnar reader's strict fast path reads (ENVOY_TEXT)."""


def builtin_text_formats() -> tuple[TextFormat, ...]:
    return _BUILTIN


_BUILTIN = tuple(compile_text(fmt, name) for name, fmt, _ in ISTIO_DEFAULTS)
ISTIO_JSON = compile_json(ISTIO_JSON_LABELS, "istio-json")


@dataclass(frozen=True)
class AccessFormat:
    """A mesh's own access-log format as configured: where it came from, its encoding, and the format (a TEXT
    string, or the JSON labels as a JSON object string). Plain strings, so a read task can carry it."""

    name: str
    encoding: str
    """`text` or `json`."""
    value: str


@functools.cache
def candidates(formats: tuple[AccessFormat, ...]) -> tuple[tuple[TextFormat, ...], tuple[JsonFormat, ...]]:
    """The mesh's formats compiled (once per process); a format that does not compile is left out, and
    `validate` has already said so before the run."""
    text: list[TextFormat] = []
    js: list[JsonFormat] = []
    for f in formats:
        with contextlib.suppress(ValueError, TypeError):
            if f.encoding == "json":
                js.append(compile_json(json.loads(f.value), f.name))
            else:
                text.append(compile_text(f.value, f.name))
    return tuple(text), tuple(js)


def validate(fmt: AccessFormat) -> str | None:
    """Why a configured format cannot be used, or None."""
    try:
        if fmt.encoding == "json":
            labels = json.loads(fmt.value)
            if not isinstance(labels, dict):
                return "JSON labels must be an object of key: %OPERATOR%"
            compile_json(labels, fmt.name)
        else:
            compile_text(fmt.value, fmt.name)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None
