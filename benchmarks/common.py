"""What both benchmark scripts share: the seed spec, editing it, finding the commands, and the
table and machine line they print. Imported as ``common`` (the scripts' own folder is first
on ``sys.path`` when they run as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

REPO = Path(__file__).resolve().parent.parent
SEED_SPEC = REPO / "specs" / "kalm.yaml"


class TableRow(Protocol):
    def cells(self) -> list[str]: ...


def set_line(text: str, pattern: str, replacement: str) -> str:
    """Replace the one line of the seed spec's ``text`` that matches ``pattern``."""
    new, count = re.subn(f"^{pattern}$", replacement, text, count=1, flags=re.MULTILINE)
    if count != 1:
        raise SystemExit(f"bench: {SEED_SPEC} has no line matching {pattern!r}; update the bench")
    return new


def script(name: str) -> Path | None:
    """A console script of this interpreter's environment, not a pyenv shim (a shell script)."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return here
    found = shutil.which(name)
    return Path(found) if found else None


def table(header: list[str], sections: Sequence[tuple[str, Sequence[TableRow]]]) -> str:
    """Columns padded to their widest cell, a ``[title]`` line before each section's rows."""
    lines = [row.cells() for _, rows in sections for row in rows]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()

    out = [fmt(header), fmt(["-" * w for w in widths])]
    for title, rows in sections:
        out.append(f"[{title}]")
        out.extend(fmt(row.cells()) for row in rows)
    return "\n".join(out)


def machine_line() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {load:.2f}, "
        f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}"
    )
