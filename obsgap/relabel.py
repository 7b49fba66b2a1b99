"""Prometheus relabelling (a scrape job's `metric_relabel_configs`), applied to label sets obsgap knows only in part.

The rules follow Prometheus's own (model/relabel/relabel.go): each rule joins its source labels' values with its
separator, matches the result against its anchored regex, and replaces, keeps, drops, maps, hashes or changes case.
Written by hand: no maintained Python library does Prometheus relabelling. Go's RE2 and Python's `re` agree on the
patterns relabel rules use; a regex Python cannot compile, or one whose result depends on a label whose value is not
known, leaves the verdict unknown rather than guessed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

ACTIONS = ("replace", "keep", "drop", "keepequal", "dropequal", "hashmod", "labelmap", "labeldrop", "labelkeep",
           "lowercase", "uppercase")
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


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


def parse_rules(raw: Any) -> tuple[RelabelRule, ...]:
    """A `metric_relabel_configs` list; a rule that is no mapping or names an unknown action raises ValueError."""
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
        regex = r.get("regex")
        out.append(RelabelRule(action, tuple(str(x) for x in r.get("source_labels") or ()),
                               str(r.get("separator", ";")), "(.*)" if regex is None else str(regex),
                               str(r.get("target_label") or ""), str(r.get("replacement", "$1")),
                               int(r.get("modulus") or 0), dict(r)))
    return tuple(out)


Verdict = Literal["kept", "dropped", "unknown"]


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    labels: Mapping[str, str] | None
    """The labels after the rules (kept), else None."""
    rule: int | None
    """The index of the rule that dropped the series, or that made the verdict unknown."""
    why: str = ""


def apply(rules: Sequence[RelabelRule], labels: Mapping[str, str], known: frozenset[str]) -> Outcome:
    """The rules applied in order to one label set. `known`: the names whose values in `labels` are the series'
    real ones (the others are stand-ins, and the series may carry labels `labels` lacks): a rule whose outcome rests
    on any other label's value makes the verdict unknown."""
    current = dict(labels)
    certain = set(known)
    for i, rule in enumerate(rules):
        try:
            regex = re.compile(f"^(?:{rule.regex})$")
        except re.error:
            return Outcome("unknown", None, i, f"its regex {rule.regex!r} is not one Python can read")
        if rule.action in ("labelmap", "labeldrop", "labelkeep"):
            _by_name(rule, regex, current, certain)
            continue
        reads = [n for n in rule.source_labels if n not in certain]  # a label not known may still be there
        value = rule.separator.join(current.get(n, "") for n in rule.source_labels)
        if rule.action in ("keep", "drop"):
            if reads:
                return Outcome("unknown", None, i, f"it reads {', '.join(reads)}, whose values vary")
            if (regex.fullmatch(value) is not None) == (rule.action == "drop"):
                return Outcome("dropped", None, i)
        elif rule.action in ("keepequal", "dropequal"):
            if reads or rule.target_label not in certain:
                return Outcome("unknown", None, i, "it compares labels whose values vary")
            if (current.get(rule.target_label, "") == value) == (rule.action == "dropequal"):
                return Outcome("dropped", None, i)
        else:
            _rewrite(rule, regex, value, current, certain, not reads)
    return Outcome("kept", current, None)


def _by_name(rule: RelabelRule, regex: re.Pattern[str], current: dict[str, str], certain: set[str]) -> None:
    for name in list(current):
        match = regex.fullmatch(name)
        hit = match is not None
        if rule.action == "labelmap" and match is not None:
            target = _expand(match, rule.replacement)
            current[target] = current[name]
            if name in certain:
                certain.add(target)
        elif (rule.action == "labeldrop" and hit) or (rule.action == "labelkeep" and not hit):
            del current[name]


def _rewrite(rule: RelabelRule, regex: re.Pattern[str], value: str, current: dict[str, str], certain: set[str],
             known_value: bool) -> None:
    if rule.action == "lowercase":
        result: str | None = value.lower()
    elif rule.action == "uppercase":
        result = value.upper()
    elif rule.action == "hashmod":
        digest = hashlib.md5(value.encode(), usedforsecurity=False).digest()
        result = str(int.from_bytes(digest[8:], "big") % rule.modulus) if rule.modulus else None
    else:
        match = regex.fullmatch(value)
        if match is None:
            return
        target = _expand(match, rule.target_label)
        if not _NAME.fullmatch(target):
            return
        result = _expand(match, rule.replacement)
        if not result:
            current.pop(target, None)
            return
        current[target] = result
        (certain.add if known_value else certain.discard)(target)
        return
    if result is not None:
        current[rule.target_label] = result
        (certain.add if known_value else certain.discard)(rule.target_label)


def _expand(match: re.Match[str], template: str) -> str:
    """Go's regexp Expand: `$1`, `${1}`, `$name`, `${name}` (the longest name: `$1x` is the group `1x`), `$$` a
    dollar; a group that does not exist, or did not take part, is empty."""
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(2) or ""
        try:
            return match.group(int(name) if name.isdigit() else name) or ""
        except IndexError:
            return ""
    return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", one, template)



def metric_relabels(config_text: str) -> dict[str, tuple[RelabelRule, ...] | None]:
    """A Prometheus configuration's scrape jobs -> their metric_relabel_configs (None for a job whose rules cannot
    be read). A text that is no configuration gives no jobs."""
    try:
        config = yaml.safe_load(config_text)
    except yaml.YAMLError:
        return {}
    jobs = config.get("scrape_configs") if isinstance(config, Mapping) else None
    out: dict[str, tuple[RelabelRule, ...] | None] = {}
    for job in jobs if isinstance(jobs, list) else []:
        if not isinstance(job, Mapping) or not job.get("job_name"):
            continue
        try:
            out[str(job["job_name"])] = parse_rules(job.get("metric_relabel_configs"))
        except (ValueError, TypeError):
            out[str(job["job_name"])] = None
    return out
