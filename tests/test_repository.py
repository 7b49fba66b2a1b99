"""The repository stands alone: a clone with nothing beside it passes its tests."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_code_or_test_reads_outside_the_repository() -> None:
    outside = re.compile(r"\.\./shared|shared/realworld|parents\[[2-9]\]|OBSGAP_REALWORLD")
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in [*ROOT.glob("obsgap/**/*.py"), *ROOT.glob("tests/*.py"),
                                                         ROOT / "Makefile", ROOT / ".ci" / "run"]
                 if p != Path(__file__).resolve()
                 for n, line in enumerate(p.read_text().splitlines(), 1) if outside.search(line)]
    assert offenders == []


def test_upstream_inputs_are_in_the_repository_with_their_provenance() -> None:
    data = ROOT / "tests" / "data" / "istio"
    provenance = (data / "PROVENANCE.md").read_text()
    assert "86c9f01fd735fb01d8192f5bcaf0d424afb7f14c" in provenance and "Apache License 2.0" in provenance
    for path in sorted(data.rglob("*.yaml")) + sorted(data.rglob("*.json")):
        names = (path.name, f"{path.parent.name}/{path.name}")
        assert any(f"`{n}`" in provenance for n in names), f"{path.relative_to(ROOT)} has no provenance line"
