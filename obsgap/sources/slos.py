"""The SLO source: --slo files and folders (Sloth, Pyrra, OpenSLO, PrometheusRule) and, with a live cluster, its
Sloth/Pyrra/PrometheusRule objects (listed read-only). Read first: an --slo file that is not YAML is bad input
(exit 2) before any other work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from obsgap.errors import InputError, SourceError
from obsgap.slo.load import Loaded, load_documents, load_files
from obsgap.slo.spec import SloSpec
from obsgap.sources.base import ReadContext, SourceRead
from obsgap.sources.kube.live import LiveOptions
from obsgap.sources.kube.slos import load_live_slos
from obsgap.sources.reports import SloReport


@dataclass(frozen=True)
class SloSource:
    paths: tuple[Path, ...] = ()
    live: LiveOptions | None = None
    kind: str = "slos"

    def preflight(self) -> None:
        for path in self.paths:
            if not path.exists():
                raise InputError(f"--slo {path}: no such file or directory")

    @property
    def configured(self) -> bool:
        return bool(self.paths) or self.live is not None

    def read(self, ctx: ReadContext) -> SourceRead[tuple[SloSpec, ...], SloReport]:
        """evidence None: no SLO was asked for (no --slo and no live cluster, or a cluster that has none)."""
        if not self.configured:
            return SourceRead(None, SloReport())
        ctx.say("reading SLOs")
        loaded = load_files(self.paths) if self.paths else Loaded()
        cluster = 0
        problems: tuple[str, ...] = ()
        if self.live is not None:
            try:
                objects, gaps = load_live_slos(self.live)
            except SourceError as exc:
                problems = (str(exc),)
                objects, gaps = [], [str(exc)]
            live = load_documents(objects)
            cluster = len(live.slos)
            loaded.slos += live.slos
            loaded.gaps += gaps + live.gaps
        report = SloReport(loaded.files, cluster, len(loaded.slos), tuple(loaded.gaps), loaded.ignored)
        if self.live is not None and not self.paths and not loaded.slos:
            return SourceRead(None, report, problems)
        return SourceRead(tuple(loaded.slos), report, problems)
