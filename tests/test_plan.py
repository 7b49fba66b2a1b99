"""Large plain files are read in byte ranges, in parallel, with exactly the rows and accounting of a whole read."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import duckdb
import pytest

from obsgap.sources.logs import intake, plan
from obsgap.sources.logs.discover import discover
from obsgap.sources.logs.table import read_logs
from tests.test_columnar import ENVOY, POD, _differing

TS = "2026-11-25T04:01:26.687000000Z"


def _app(i: int) -> str:
    return json.dumps({"ts": f"2026-11-25T04:{i // 60 % 60:02d}:{i % 60:02d}.000Z", "method": "GET",
                       "path": f"/items/{i}", "status": 200 + i % 3, "duration_ms": i % 50})


def _cri_file(n: int) -> str:
    """CRI lines where every 7th message is long and split by kubelet into `P` lines ending in an `F` line."""
    out = []
    for i in range(n):
        msg = _app(i) if i % 2 else ENVOY.replace("/items/7", f"/items/{i}")
        if i % 7 == 0:
            pieces = [msg[k:k + 40] for k in range(0, len(msg), 40)]
            out += [f"{TS} stdout P {p}" for p in pieces[:-1]] + [f"{TS} stdout F {pieces[-1]}"]
        else:
            out.append(f"{TS} stdout F {msg}")
    return "\n".join(out) + "\n"


def _layouts(root: Path, n: int = 1500) -> list[Path]:
    kubelet = root / "pods" / POD / "catalog"
    kubelet.mkdir(parents=True)
    (kubelet / "0.log").write_text(_cri_file(n))
    plain = root / "plain"
    plain.mkdir()
    (plain / "catalog-7d9f8b6c5-x2x9z.log").write_text("\n".join(_app(i) for i in range(n)) + "\n")
    (plain / "catalog-7d9f8b6c5-x2x9z-json.log").write_text("".join(
        json.dumps({"log": (ENVOY if i % 2 else _app(i)) + "\n", "stream": "stdout", "time": TS}) + "\n"
        for i in range(n)))
    gz = root / "pods" / POD / "istio-proxy"
    gz.mkdir(parents=True)
    (gz / "0.log.20261125-040000.gz").write_bytes(gzip.compress(_cri_file(n // 3).encode()))
    return [kubelet / "0.log", *sorted(plain.iterdir()), gz / "0.log.20261125-040000.gz"]


def test_cuts_fall_at_the_end_of_a_message_and_cover_the_file(tmp_path: Path) -> None:
    path = _layouts(tmp_path)[0]
    data = path.read_bytes()
    pieces = plan.split(str(path), len(data), target=4096)
    assert len(pieces) > 20
    assert pieces[0].span[0] == 0 and pieces[-1].span[1] == len(data)
    for a, b in itertools.pairwise(pieces):
        assert a.span[1] == b.span[0]
        last_line = data[:a.span[1]].rstrip(b"\n").rsplit(b"\n", 1)[-1]
        assert b" stdout F " in last_line and not plan.continues(last_line)  # a message ends at every cut
    assert all(p.size <= 4096 + 2 * len(ENVOY) + 400 for p in pieces)  # a range holds about `target` bytes


def test_gzip_files_and_small_files_stay_whole(tmp_path: Path) -> None:
    paths = _layouts(tmp_path)
    gz = paths[-1]
    assert plan.split(str(gz), gz.stat().st_size, target=64) == [plan.Piece(str(gz), None, gz.stat().st_size)]
    small = paths[0]
    assert plan.split(str(small), small.stat().st_size, target=1 << 30)[0].span is None


def test_tasks_keep_a_containers_files_together_and_one_range_of_a_file_each(tmp_path: Path) -> None:
    folder = tmp_path / "pods" / POD / "app"
    folder.mkdir(parents=True)
    rotated = [folder / "0.log.20261125-030000", folder / "0.log"]
    for p in rotated:
        p.write_text(_cri_file(400))
    tasks = plan.plan([str(p) for p in rotated], workers=2, task_bytes=8192)
    for task in tasks:
        assert len(set(task.files)) == len(task.files)
    first = tasks[0]
    assert first.files[0] == str(rotated[0])
    # the live file's first range follows its rotation in the same task: a message may go on across them
    holder = next(t for t in tasks if str(rotated[1]) in t.files and t.spans.get(str(rotated[1]), (0,))[0] == 0)
    assert holder.files.index(str(rotated[1])) > 0 and str(rotated[0]) in holder.files


@pytest.mark.parametrize("columnar", [True, False])
def test_ranges_give_the_rows_and_accounting_of_whole_files(tmp_path: Path, monkeypatch, columnar: bool) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "logs"
    _layouts(root)
    found = discover([str(root)])
    whole = read_logs(found, None, None, workers=1, columnar=columnar)
    monkeypatch.setattr(plan, "TASK_BYTES", 8192)
    monkeypatch.setattr(plan, "MIN_TASK_BYTES", 4096)
    assert sum(len(t.spans) for t in plan.plan(tuple(map(str, found.files)), 2)) > 40  # the files were cut
    ranged = read_logs(found, None, None, workers=2, columnar=columnar)
    try:
        assert _differing(duckdb.connect(), whole, ranged) == 0
        a, b = whole.stats.as_dict(), ranged.stats.as_dict()
        a.pop("columnar_lines"), b.pop("columnar_lines")  # which reader took a line may differ; never the rows
        assert a["requests"] == 1500 + 1500 + 1500 + 500 and a["unparsed"] == 0
        assert a == b
    finally:
        whole.close()
        ranged.close()


@pytest.mark.parametrize(("columnar", "gz"), [(True, False), (False, False), (True, True)])
def test_every_range_takes_the_clock_decision_of_its_files_first_requests(tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
                                                                         columnar: bool, gz: bool) -> None:
    """An application logging local time two hours off: every range (or piece of a large gzip file) is retimed,
    as the whole file would be."""
    root = tmp_path / "logs"
    root.mkdir()
    lines = []
    for i in range(1200):
        node = f"2026-11-25T06:{i // 60 % 60:02d}:{i % 60:02d}.000000000Z"
        own = json.dumps({"ts": f"2026-11-25T04:{i // 60 % 60:02d}:{i % 60:02d}.000Z", "method": "GET",
                          "path": f"/{i}", "status": 200})
        lines.append(json.dumps({"log": own + "\n", "stream": "stdout", "time": node}) + "\n")
    name = root / "catalog-7d9f8b6c5-x2x9z.log"
    if gz:
        name.write_bytes(gzip.compress("".join(lines).encode()))
    else:
        name.write_text("".join(lines))
    found = discover([str(root)])
    whole = read_logs(found, None, None, workers=1, columnar=columnar)
    monkeypatch.setattr(plan, "TASK_BYTES", 8192)
    monkeypatch.setattr(plan, "MIN_TASK_BYTES", 4096)
    monkeypatch.setattr(intake, "LARGEST_FILE", 8192)
    monkeypatch.setattr(intake, "PIECE_BYTES", 8192)
    ranged = read_logs(found, None, None, workers=2, columnar=columnar)
    try:
        assert ranged.stats.retimed == whole.stats.retimed == 1200
        assert [(p, ms) for p, ms, _ in ranged.stats.clock_skew] == [(str(root / "catalog-7d9f8b6c5-x2x9z.log"),
                                                                      -7_200_000)]
        assert _differing(duckdb.connect(), whole, ranged) == 0
    finally:
        whole.close()
        ranged.close()


@pytest.mark.parametrize("columnar", [True, False])
def test_a_files_head_is_read_for_the_clock_once_and_only_when_a_range_needs_it(tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
                                                                                 columnar: bool) -> None:
    """A large log with no requests (a debug log, zap's non-request lines) is not read again from its start for
    each range; a file whose ranges do hold requests has its head read once per process, not once per range."""
    from obsgap.sources.logs import reader

    root = tmp_path / "logs"
    root.mkdir()
    debug = json.dumps({"level": "debug", "ts": 1257894000, "msg": "cache refreshed", "entries": 3})
    (root / "catalog-7d9f8b6c5-x2x9z-json.log").write_text("".join(
        json.dumps({"log": debug + "\n", "stream": "stdout", "time": TS}) + "\n" for _ in range(3000)))
    (root / "catalog-7d9f8b6c5-x2x9z.log").write_text("".join(
        json.dumps({"log": _app(i) + "\n", "stream": "stdout", "time": TS}) + "\n" for i in range(3000)))
    monkeypatch.setattr(plan, "TASK_BYTES", 8192)
    monkeypatch.setattr(plan, "MIN_TASK_BYTES", 4096)
    found = discover([str(root)])
    ranges = sum(len(t.spans) for t in plan.plan(tuple(map(str, found.files)), 1))
    heads: list[str] = []
    read_head = reader._read_head_clock
    monkeypatch.setattr(reader, "_read_head_clock", lambda path, task: heads.append(path.name) or read_head(path, task))
    reader._HEAD_CLOCKS.clear()
    table = read_logs(found, None, None, workers=1, columnar=columnar)
    try:
        assert ranges > 40 and table.stats.requests == 3000 and table.stats.parsed == 6000
        assert heads == ["catalog-7d9f8b6c5-x2x9z.log"]  # never the debug log; once for the other
    finally:
        table.close()
