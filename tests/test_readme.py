"""The README's shell blocks run as pasted: bash parses each, and no line continues with a backslash that a comment
or trailing space would break (pasted, `cmd \\  # note` runs `cmd ' '` and then the next line as a command)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"^```(?:sh|bash|shell)\n(.*?)^```", README.read_text(), flags=re.M | re.S)


def test_readme_shell_blocks_parse_and_continue_cleanly() -> None:
    blocks = _blocks()
    assert len(blocks) >= 2
    for block in blocks:
        parsed = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert parsed.returncode == 0, (block, parsed.stderr)
        for line in block.splitlines():
            assert not re.search(r"\\[ \t]+(#.*)?$", line), f"a continuation broken by what follows it: {line}"
