"""Write every output of one run into its folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from obsgap.errors import InputError
from obsgap.model import ScanResult
from obsgap.render.json_out import render_json
from obsgap.render.markdown import render_markdown


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_outputs(result: ScanResult, out_dir: Path) -> list[Path]:
    """findings.json first (the contract), then the human outputs. Returns the paths written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out_dir}: {exc.strerror}") from exc
    written = []
    for name, text in (("findings.json", render_json(result)), ("summary.md", render_markdown(result))):
        path = out_dir / name
        _atomic_write(path, text)
        written.append(path)
    return written
