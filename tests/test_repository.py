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


# The layers, lowest first: a module may import its own layer and those below, never one above
# (docs/design.md, "Layers"). Longest prefix wins.
LAYERS = {
    "obsgap.model": 0, "obsgap.errors": 0, "obsgap.text": 0, "obsgap.names": 0, "obsgap.topology": 0,
    "obsgap.istio": 0, "obsgap.ambient": 0, "obsgap.bounds": 0,
    "obsgap.intervals": 0, "obsgap.witness": 0, "obsgap.charts": 0, "obsgap.evidence": 0,
    "obsgap.interrupts": 0, "obsgap.slo.spec": 0, "obsgap.slo.promql": 0, "obsgap.relabel": 0, "obsgap.regex_fit": 0,
    "obsgap.upgrades": 0,
    "obsgap.sources": 1, "obsgap.slo.load": 1, "obsgap.slo.measure": 1,
    "obsgap.analysis": 2, "obsgap.slo.assess": 2, "obsgap.slo.grpc": 2, "obsgap.slo.websockets": 2, "obsgap.suggest": 2,
    "obsgap.checks": 3, "obsgap.suppress": 3,
    "obsgap.config": 4, "obsgap.engine": 4, "obsgap.result": 4,
    "obsgap.report": 5, "obsgap.history": 5,
    "obsgap.render": 6, "obsgap.slo.table": 6,
    "obsgap.publish": 7, "obsgap.cli": 7, "obsgap.manifests": 7, "obsgap.outdir": 7, "obsgap.scenario": 7,
    "obsgap.testbed": 7, "obsgap": 7,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "obsgap").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Every obsgap module each module imports, TYPE_CHECKING and function-level imports included."""
    import ast

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def test_no_import_runs_up_a_layer() -> None:
    graph = _imports(_modules())
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if _layer(b) > _layer(a))
    assert upward == []


def test_no_import_circle() -> None:
    graph = _imports(_modules())
    seen: dict[str, int] = {}
    circles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1:
                circles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in seen:
                visit(nxt, [*path, nxt])
        seen[node] = 2

    for module in sorted(graph):
        if module not in seen:
            visit(module, [module])
    assert circles == []


def test_no_function_above_complexity_grade_d() -> None:
    """radon grades D at a cyclomatic complexity of 21-30; above it (E, F) a function needs splitting."""
    from radon.complexity import cc_visit

    blocks = [(f"{p.relative_to(ROOT)}:{b.lineno} {b.name}", b.complexity) for p in _modules().values()
              for b in cc_visit(p.read_text())]
    assert blocks and [(name, cc) for name, cc in blocks if cc > 30] == []
