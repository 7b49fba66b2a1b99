"""Prometheus relabelling (a scrape job's `metric_relabel_configs`), applied to label sets obsgap knows only in part.

The rules follow Prometheus's own (model/relabel/relabel.go): each rule joins its source labels' values with its
separator, matches the result against its anchored regex, and replaces, keeps, drops, maps, hashes or changes case.
Written by hand: no maintained Python library does Prometheus relabelling. A regex Go's RE2 and Python's `re` may
read differently (POSIX classes, `{,n}`, backreferences and octal escapes, flags), or one Python cannot compile,
leaves the verdict unknown rather than guessed.

A rule that reads a label whose value is not known is decided where the known values decide it (obsgap.regex_fit:
the rule's regex against the joined value with each unknown part free): where no text in the unknown parts could
match (`istio_request_duration_milliseconds_bucket;(0\\.5|1|5)` against `istio_requests_total;<le>`), or every text
would, the rule's outcome is certain. Otherwise the verdict is unknown.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from obsgap.regex_fit import Fit, fits
from obsgap.text import RE2_DIFFERS, UNREADABLE_REGEX

ACTIONS = ("replace", "keep", "drop", "keepequal", "dropequal", "hashmod", "labelmap", "labeldrop", "labelkeep",
           "lowercase", "uppercase")
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_UNPORTABLE = re.compile(RE2_DIFFERS.pattern + r"|\\z|\(\?[a-zA-Z]|\\[pP]|\\[QE]")
"""Syntax Go's RE2 and Python's `re` read differently (or one of them not at all): text.RE2_DIFFERS, and what
Python refuses or reads as another flag."""


@dataclass(frozen=True)
class RelabelRule:
    """One relabel rule, with Prometheus's defaults applied."""

    action: str
    source_labels: tuple[str, ...]
    separator: str
    regex: str
    target_label: str
    replacement: str
    modulus: int
    raw: Mapping[str, Any]
    """The rule as the configuration gives it (to show the user)."""


def parse_rules(raw: Any, printed: bool = False) -> tuple[RelabelRule, ...]:
    """A `metric_relabel_configs` list; a rule that is no mapping or names an unknown action raises ValueError.
    `printed`: the rules as /api/v1/status/config prints them, every default spelled out, so a field it leaves out
    (or prints as null) is empty; as written by hand, a missing field takes Prometheus's default."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("metric_relabel_configs is not a list")
    out = []
    for r in raw:
        if not isinstance(r, Mapping):
            raise ValueError("a relabel rule is not a mapping")
        action = str(r.get("action") or "replace").lower()
        if action not in ACTIONS:
            raise ValueError(f"unknown relabel action {action!r}")
        out.append(RelabelRule(action, tuple(str(x) for x in r.get("source_labels") or ()),
                               _field(r, "separator", ";", printed), _field(r, "regex", "(.*)", printed),
                               str(r.get("target_label") or ""), _field(r, "replacement", "$1", printed),
                               int(r.get("modulus") or 0), dict(r)))
    return tuple(out)


def _field(rule: Mapping[str, Any], name: str, default: str, printed: bool) -> str:
    value = rule.get(name)
    return ("" if printed else default) if value is None else str(value)


Verdict = Literal["kept", "dropped", "unknown"]


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    labels: Mapping[str, str] | None
    """The labels after the rules (kept), else None."""
    rule: int | None
    """The index of the rule that dropped the series, or that made the verdict unknown."""
    why: str = ""
    certain: frozenset[str] = frozenset()
    """The names whose values (or absence) in `labels` are the series' real ones."""


def apply(rules: Sequence[RelabelRule], labels: Mapping[str, str], known: frozenset[str]) -> Outcome:
    """The rules applied in order to one label set. `known`: the names whose values in `labels` are the series'
    real ones (the others are stand-ins, and the series may carry labels `labels` lacks): a rule whose outcome rests
    on any other label's value makes the verdict unknown, and a label it writes from one is no longer known."""
    current = dict(labels)
    certain = set(known)
    for i, rule in enumerate(rules):
        if _UNPORTABLE.search(rule.regex):
            return Outcome("unknown", None, i, f"its regex {rule.regex!r} may match differently in Go and Python")
        regex = _compiled(rule.regex)
        if regex is None:
            return Outcome("unknown", None, i, f"its regex {rule.regex!r} is not one Python can read")
        if rule.action in ("labelmap", "labeldrop", "labelkeep"):
            _by_name(rule, regex, current, certain)
            continue
        reads = [n for n in rule.source_labels if n not in certain]  # a label not known may still be there
        value = rule.separator.join(current.get(n, "") for n in rule.source_labels)
        fit: Fit = "maybe"
        if reads and rule.action in ("keep", "drop", "replace"):
            fit = fits(rule.regex, rule.separator,
                       tuple(current.get(n, "") if n in certain else None for n in rule.source_labels))
        if rule.action in ("keep", "drop"):
            if reads and fit == "maybe":
                return Outcome("unknown", None, i, f"it reads {', '.join(reads)}, whose values vary")
            matched = fit == "always" if reads else regex.fullmatch(value) is not None
            if matched == (rule.action == "drop"):
                return Outcome("dropped", None, i)
        elif rule.action == "replace" and reads and fit == "never":
            continue  # its regex matches no value the series may have: it writes nothing
        elif rule.action in ("keepequal", "dropequal"):
            if reads or rule.target_label not in certain:
                return Outcome("unknown", None, i, "it compares labels whose values vary")
            if (current.get(rule.target_label, "") == value) == (rule.action == "dropequal"):
                return Outcome("dropped", None, i)
        elif not _rewrite(rule, regex, value, current, certain, not reads):
            return Outcome("unknown", None, i, f"it writes a label named from {', '.join(reads)}, whose values vary")
    return Outcome("kept", current, None, certain=frozenset(certain))


@functools.lru_cache(maxsize=1024)
def _compiled(regex: str) -> re.Pattern[str] | None:
    """The rule's regex as Prometheus anchors it (`^(?s:...)$`), with RE2's ASCII classes; None where Python cannot
    compile it."""
    try:
        return re.compile(f"^(?:{regex})$", re.DOTALL | re.ASCII)
    except UNREADABLE_REGEX:
        return None


def _by_name(rule: RelabelRule, regex: re.Pattern[str], current: dict[str, str], certain: set[str]) -> None:
    """labelmap, labeldrop, labelkeep: over the names as they stand before the rule (Go's order, sorted)."""
    snapshot = dict(sorted(current.items()))
    for name, value in snapshot.items():
        match = regex.fullmatch(name)
        if rule.action == "labelmap" and match is not None:
            target = _expand(match, rule.replacement)
            current[target] = value
            (certain.add if name in certain else certain.discard)(target)
        elif (rule.action == "labeldrop" and match is not None) or (rule.action == "labelkeep" and match is None):
            del current[name]


def _rewrite(rule: RelabelRule, regex: re.Pattern[str], value: str, current: dict[str, str], certain: set[str],
             known_value: bool) -> bool:
    """replace, hashmod, lowercase, uppercase; False where the label it writes cannot be told (named from a value
    that varies). A label written from a value that varies is no longer known; nor is one a replace may have
    written (its regex did not match the stand-in, but might the real value)."""
    def write(target: str, result: str) -> None:
        if result:
            current[target] = result
        else:
            current.pop(target, None)  # Prometheus deletes a label set to ""
        (certain.add if known_value else certain.discard)(target)

    if rule.action in ("lowercase", "uppercase"):
        write(rule.target_label, value.lower() if rule.action == "lowercase" else value.upper())
        return True
    if rule.action == "hashmod":
        if rule.modulus:
            digest = hashlib.md5(value.encode(), usedforsecurity=False).digest()
            write(rule.target_label, str(int.from_bytes(digest[8:], "big") % rule.modulus))
        return True
    if "$" in rule.target_label and not known_value:
        return False
    match = regex.fullmatch(value)
    if match is None:
        if not known_value:
            certain.discard(rule.target_label)
        return True
    target = _expand(match, rule.target_label)
    if _NAME.fullmatch(target):
        write(target, _expand(match, rule.replacement))
    return True


def _expand(match: re.Match[str], template: str) -> str:
    """Go's regexp Expand: `$1`, `${1}`, `$name`, `${name}` (the longest name: `$1x` is the group `1x`; a number
    with a leading zero is a name), `$$` a dollar; a group that does not exist, or did not take part, is empty."""
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(2) or ""
        numeric = name.isdigit() and (name == "0" or not name.startswith("0"))
        try:
            return match.group(int(name) if numeric else name) or ""
        except IndexError:
            return ""
    return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", one, template)


class _ConfigLoader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """YAML as Prometheus prints it: a bare `=` (an unquoted separator) is a string, not YAML's `value` type."""


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:value"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


@functools.lru_cache(maxsize=2)
def metric_relabels(config_text: str) -> dict[str, tuple[RelabelRule, ...] | None] | None:
    """A configuration as /api/v1/status/config prints it: scrape job name -> its metric_relabel_configs (None for a
    job whose rules cannot be read); None for a text that does not parse. Read once per text: only where a gap
    needs explaining (a large configuration takes a while)."""
    try:
        config = yaml.load(config_text, Loader=_ConfigLoader)  # a safe loader
    except yaml.YAMLError:
        return None
    jobs = config.get("scrape_configs") if isinstance(config, Mapping) else None
    out: dict[str, tuple[RelabelRule, ...] | None] = {}
    for job in jobs if isinstance(jobs, list) else []:
        if not isinstance(job, Mapping) or not job.get("job_name"):
            continue
        try:
            out[str(job["job_name"])] = parse_rules(job.get("metric_relabel_configs"), printed=True)
        except (ValueError, TypeError):
            out[str(job["job_name"])] = None
    return out
