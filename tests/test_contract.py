"""docs/findings.md is the contract automation reads: it names every check, cause, evidence field and top-level key
the code writes, and the findings of a real run use only the causes their check declares."""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from pathlib import Path

from obsgap.checks import REGISTRY
from obsgap.model import FindingEvidence
from obsgap.publish import write_outputs

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "findings.md").read_text()


def _row(check_id: str) -> str:
    (row,) = [line for line in DOC.splitlines() if line.startswith(f"| `{check_id}` |")]
    return row


def test_every_check_and_cause_is_documented() -> None:
    for check in REGISTRY:
        row = _row(check.id)
        for cause in check.causes:
            assert f"`{cause}`" in row, (check.id, cause)


def test_every_evidence_field_is_documented() -> None:
    classes = [obj for mod in list(sys.modules.values()) if getattr(mod, "__name__", "").startswith("obsgap.checks")
               for obj in vars(mod).values()
               if inspect.isclass(obj) and issubclass(obj, FindingEvidence) and obj.__module__ == mod.__name__]
    assert len(classes) >= 12
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.metadata.get("flatten") or f.name == "assessment":
                continue
            assert f"`{f.name}`" in DOC, (cls.__name__, f.name)


def test_a_real_run_writes_only_documented_keys_and_causes(demo_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    from tests.helpers import unexamined

    run, _ = demo_run
    assert unexamined(run.result) == []  # SLOs included: every finding is examined under its own keys
    write_outputs(run.result, tmp_path)
    doc = json.loads((tmp_path / "findings.json").read_text())
    for key in doc:
        assert f"`{key}`" in DOC, key
    for key in doc["coverage"][0]:
        assert f"`{key}`" in DOC, key
    for key in doc["findings"][0]:
        assert f"`{key}`" in DOC, key
    for name, source in doc["sources"].items():
        assert f"`{name}`" in DOC
        for key in source:
            assert f"`{key}`" in DOC, (name, key)
    for key in _an_slo_row():
        assert f"`{key}`" in DOC, ("slos", key)
    causes = {c.id: set(c.causes) for c in REGISTRY}
    checks = {c.id: c for c in REGISTRY}
    for f in doc["findings"]:
        assert f["cause"] is None or f["cause"] in causes[f["check"]], (f["check"], f["cause"])
        # the keys written are those its check reads back from the stored finding (history matches them)
        assert f["keys"] == list(checks[f["check"]].keys_of(f)), (f["check"], f["cause"], f["keys"])
        for key in f["evidence"]:
            assert re.search(rf"`{re.escape(key)}`", DOC), (f["check"], key)


def _an_slo_row() -> dict[str, object]:
    from datetime import UTC, datetime, timedelta

    from obsgap.analysis.reconcile import reconcile
    from obsgap.evidence import CheckSettings, Evidence
    from obsgap.model import Window
    from obsgap.slo.assess import assess
    from obsgap.slo.spec import Measured, SloSpec

    end = datetime(2026, 11, 24, tzinfo=UTC)
    ev = Evidence(Window(end - timedelta(hours=1), end), CheckSettings())
    spec = SloSpec("sloth", "f", "n", "s", 0.999, "30d", "ratio", "sum(rate(x_total[5m]))", bad="sum(rate(y[5m]))")
    return assess(Measured(spec, None, (("x_total{}", 1),), 10.0, 1.0, 0.1), ev, reconcile(ev)).as_dict()


def test_code_cites_the_repository_contract_not_an_outside_file() -> None:
    cited = [p for p in (ROOT / "obsgap").rglob("*.py") if "DESIGN.md" in p.read_text()]
    assert cited == []
