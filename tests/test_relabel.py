"""Prometheus relabelling as obsgap restates it (obsgap.relabel): Prometheus's own cases, the rules real
configurations ship, and the reading of a rule over labels whose values are not known (obsgap.regex_fit), held to
Python's `re` on sampled values."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import yaml

from obsgap.regex_fit import fits
from obsgap.relabel import apply, metric_relabels, parse_rules
from obsgap.text import full_match

DATA = Path(__file__).resolve().parent / "data" / "prometheus"


def operator_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rules in the Prometheus Operator's spelling as the Operator writes them into Prometheus's configuration."""
    spelled = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return [{spelled.get(k, k): v for k, v in r.items()} for r in rules]


def rules_in_use() -> dict[str, list[dict[str, Any]]]:
    raw = yaml.safe_load((DATA / "metric-relabelings-in-use.yaml").read_text())
    return {f"{origin}/{where}": operator_rules(rules)
            for origin, lists in raw.items() for where, rules in lists.items()}


SERVER_SERIES = {"__name__": "istio_requests_total", "job": "kubernetes-pods", "instance": "10.0.0.7:15020",
                 "namespace": "shop", "pod": "api-7d4b9c-x2x9z", "reporter": "destination",
                 "destination_service_name": "api", "destination_service_namespace": "shop"}
"""What obsgap knows of a server-side request-count series: the rest of its labels vary from series to series."""
STAND_INS = {"response_code": "200", "source_workload": "unknown", "destination_principal": "unknown"}


def test_prometheus_relabel_cases() -> None:
    """Every case of Prometheus's TestRelabel gives Prometheus's answer; rules as /api/v1/status/config prints them
    read with their printed defaults."""
    for case in yaml.safe_load((DATA / "relabel-cases.yaml").read_text()):
        out = apply(parse_rules(case["rules"]), case["input"], frozenset(case["input"]))
        assert (out.verdict == "dropped") if case.get("drop") else (out.verdict, out.labels) == ("kept",
                                                                                                case["output"]), case
    # as Prometheus 2.42's /api/v1/status/config prints rules: defaults spelled out, an empty separator or
    # replacement left out, an empty regex as null, a bare `=` separator unquoted
    printed = metric_relabels("scrape_configs:\n- job_name: a\n  metric_relabel_configs:\n"
                              "  - source_labels: [namespace, destination_service_name]\n    regex: shopapi\n"
                              "    replacement: $1\n    action: keep\n"
                              "  - source_labels: [x]\n    separator: ;\n    regex: null\n    action: drop\n"
                              "  - source_labels: [x, y]\n    separator: =\n    regex: (.+)\n    target_label: z\n"
                              "    action: replace\n")
    assert printed is not None and [(r.separator, r.regex, r.replacement) for r in printed["a"] or ()] == [
        ("", "shopapi", "$1"), (";", "", ""), ("=", "(.+)", "")]


def test_rules_real_configurations_ship_keep_the_request_count_for_certain() -> None:
    """kube-prometheus-stack's default metric relabellings and the bucket cut Istio cardinality guides give read
    labels whose values obsgap does not know (`le`, `scope`, `interface`, `id`); their known parts (the metric's name,
    the pod) already rule a match out, so the request count is kept for certain and a later rule is still judged.
    The guide's rule on the duration histogram's buckets stays undecided (it drops some buckets), and is decided
    once `le` is known."""
    known = frozenset(SERVER_SERIES)
    every_rule: list[dict[str, Any]] = []
    for where, rules in rules_in_use().items():
        every_rule += rules
        out = apply(parse_rules(rules), SERVER_SERIES | STAND_INS, known)
        assert out.verdict == "kept", (where, out)
        assert out.labels is not None and {n: out.labels[n] for n in known} == SERVER_SERIES
        assert known <= out.certain
    drop_shop = {"source_labels": ["__name__", "namespace"], "regex": "istio_requests_total;shop", "action": "drop"}
    out = apply(parse_rules([*every_rule, drop_shop]), SERVER_SERIES | STAND_INS, known)
    assert (out.verdict, out.rule) == ("dropped", len(every_rule))
    # a keep that names another metric, reading a label obsgap does not know, keeps nothing of the mesh's
    keep_other = {"source_labels": ["__name__", "le"], "regex": "http_request_duration_seconds_bucket;.*",
                  "action": "keep"}
    assert apply(parse_rules([keep_other]), SERVER_SERIES | STAND_INS, known).verdict == "dropped"

    (guide,) = rules_in_use()["istio-cardinality-guide/metricRelabelings"]
    bucket = SERVER_SERIES | {"__name__": "istio_request_duration_milliseconds_bucket"}
    undecided = apply(parse_rules([guide]), bucket | {"le": "10"}, frozenset(SERVER_SERIES))
    assert (undecided.verdict, undecided.rule, undecided.why) == ("unknown", 0, "it reads le, whose values vary")
    assert apply(parse_rules([guide]), bucket | {"le": "5"}, frozenset(bucket) | {"le"}).verdict == "dropped"
    assert apply(parse_rules([guide]), bucket | {"le": "10"}, frozenset(bucket) | {"le"}).verdict == "kept"
    # a replace whose regex no value of the unknown part can match writes nothing: its target stays known
    rename = {"source_labels": ["__name__", "le"], "regex": "apiserver_(.*);(.*)", "target_label": "namespace",
              "replacement": "$2"}
    kept = apply(parse_rules([rename]), SERVER_SERIES, known)
    assert kept.labels is not None and kept.labels["namespace"] == "shop" and "namespace" in kept.certain
    written = apply(parse_rules([rename | {"regex": "istio_(.*);(.*)"}]), SERVER_SERIES, known)
    assert "namespace" not in written.certain


def test_regexes_go_and_python_read_differently_are_not_judged() -> None:
    """RE2 reads a POSIX class anywhere in a bracket (`[_[:alpha:]]+`: letters and `_`); Python reads `[_[:alph]`
    then a literal `]`, and would call this keep rule (it keeps istio_requests_total in Prometheus) one that drops
    it. Such a rule, and a dashboard's or an SLO's matcher with one, is left unjudged."""
    keep = {"source_labels": ["__name__"], "regex": "istio_[_[:alpha:]]+|envoy_.*|up", "action": "keep"}
    out = apply(parse_rules([keep]), SERVER_SERIES | STAND_INS, frozenset(SERVER_SERIES))
    assert (out.verdict, out.rule) == ("unknown", 0)
    assert "Go and Python" in (out.why or "")
    for regex in ("[^[:space:]]+", "[[:alpha:]_]+", "a{,3}", "(a)\\1"):
        assert full_match(regex, "istio_requests_total") is None, regex
    assert full_match("[:a]+", "a:") is True  # a bracket that only begins with a colon is a plain set in both


def _samples(regex: str, separator: str) -> list[str]:
    """Texts an unknown part may hold: the regex's own words and numbers, alone, in pairs and around the separator,
    so that a text that matches is among them wherever one is likely to."""
    words = sorted(set(re.findall(r"[A-Za-z0-9_.]+", regex.replace("\\.", "."))))[:40]
    base = ["", "x", separator, "0.5", "200", "a;b", "\n", *words]
    return base + [a + b for a, b in itertools.product(words[:12], repeat=2)] + [w + separator for w in words[:12]]


def test_fits_agrees_with_python_re_on_sampled_values() -> None:
    """`fits` says `never` only where no sampled text in the unknown parts makes Python's `re` match, and `always`
    only where every one does; over Prometheus's TestRelabel rules and the rules in use, with each source label in
    turn unknown. Each verdict is met, so the test cannot pass on a `fits` that always answers `maybe`."""
    cases: list[tuple[dict[str, Any], dict[str, str]]] = [
        (rule, case["input"]) for case in yaml.safe_load((DATA / "relabel-cases.yaml").read_text())
        for rule in case["rules"] if rule.get("source_labels")]
    shapes = [r"[^;]+;\d+", r"\w+;\s*x", r"(?:x|y){2,3};.*", r"a.b;[a-c]|z", r".*_bucket;(0\.1|1)", r"[^a-z]*",
              r"(?:istio|envoy)_.+;(?:shop|bank)", r"\W;\D*", r".+;", r"istio_requests_total;(.*)"]
    cases += [({"source_labels": ["x", "y"], "regex": r}, {"x": x, "y": "x"}) for r in shapes
              for x in ("istio_requests_total", "xy", "a_bucket", "")]
    for rule in itertools.chain.from_iterable(rules_in_use().values()):
        name = str(rule["regex"]).split(";")[0].split("|")[0].strip("(")
        cases.append((rule, {"__name__": name, "le": "0.25", "pod": "p", "id": "/kubepods/x"}))
        cases.append((rule, dict(SERVER_SERIES)))
    seen: dict[str, int] = {"never": 0, "always": 0, "maybe": 0}
    for rule, labels in cases:
        (parsed,) = parse_rules([rule])
        anchored = re.compile(f"^(?:{parsed.regex})$", re.DOTALL | re.ASCII)
        values = [str(labels.get(n, "")) for n in parsed.source_labels]
        for unknown in range(len(values)):
            parts = tuple(None if i == unknown else v for i, v in enumerate(values))
            verdict = fits(parsed.regex, parsed.separator, parts)
            seen[verdict] += 1
            for text in _samples(parsed.regex, parsed.separator):
                joined = parsed.separator.join(text if p is None else p for p in parts)
                matched = anchored.fullmatch(joined) is not None
                assert not (verdict == "never" and matched), (rule, parts, text)
                assert not (verdict == "always" and not matched), (rule, parts, text)
    assert all(n >= 3 for n in seen.values()), seen


def test_fits_is_bounded_where_the_automaton_would_explode() -> None:
    """Made deterministic, `(a|b)*a(a|b){20}` needs about 2**20 states (a regex-intersection library took seconds at
    {12}, minutes beyond): `never` is still decided exactly without it, and the search for `always` stops and answers
    `maybe`. Syntax outside a regular language is `maybe`."""
    explodes = r"(a|b)*a(a|b){20}"
    assert fits(explodes, ";", ("istio_requests_total", None)) == "never"
    assert fits(f".*|{explodes}", ";", (None,)) == "maybe"  # in truth `always`: past the bound, not claimed
    assert fits(f"(?:.*|{explodes});x", ";", (None, "x")) == "maybe"
    assert fits(r"(.{100}){100}", ";", (None,)) == "maybe"
    # a long known text against a large automaton: the searches' moves are bounded too (in truth: always)
    assert fits(r"(?:a?){5000}", ";", ("a" * 5000,)) == "maybe"
    for outside in (r"^(.*)$", r"(?=a).*", r"(a)\1", r"a*+", r"(?i:a).*", r"\bx", r"(?i)a.*", r"(?x)a .*"):
        assert fits(outside, ";", (None,)) == "maybe", outside
    assert fits(r"istio_requests_total;.*", ";", ("istio_requests_total", None)) == "always"
    assert fits(r"[^;]*;.*", ";", (None, None)) == "always"
    # a leading (?i) is the whole pattern's flag (a fuzzing helper found it read as none): `A` is matched
    assert fits(r"(?i)a", "", ("A",)) == "maybe" and fits(r"(?i)[^a]", "", ("A",)) == "maybe"


def test_fits_reads_classes_as_re2_does() -> None:
    """Found by a review of an earlier reading (interegular): `]` first in a class is a member, negated shorthands
    in one class are a union, and RE2's `\\s` takes no vertical tab (Python's does)."""
    assert fits(r"[]]?.*;istio_requests_total", ";", (None, "istio_requests_total")) == "always"
    assert fits(r"istio_requests_total;[]x]", ";", ("istio_requests_total", None)) == "maybe"
    assert fits(r"[\D\W]+;.*", ";", ("istio_requests_total", None)) == "always"
    assert fits(r"[\S\W];.*", ";", ("a", None)) == "always"
    assert fits(r"\S*;.*", ";", ("a\vb", None)) == "always"
    assert fits(r"[^;]*\s[^;]*;.*", ";", ("a\vb", None)) == "never"
