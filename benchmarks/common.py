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
# Every shape of spec the repository holds: services, a gateway (whose comment holds "<"),
# a flow-list GPU fallback, warnings at list positions (secrets[0], models[0]).
SHAPES = sorted([*REPO.glob("examples/*.yaml"), *REPO.glob("examples/*/*.yaml"), SEED_SPEC])
# A flow list of GPUs with counts, which libyaml refuses ("[H100:2, A100]" is not a spec).
FLOW_GPUS = "gpu: [H100:2, A100:2]"


class TableRow(Protocol):
    def cells(self) -> list[str]: ...


def set_line(text: str, pattern: str, replacement: str) -> str:
    """Replace the one line of a spec's ``text`` that matches ``pattern``."""
    new, count = re.subn(f"^{pattern}$", replacement, text, count=1, flags=re.MULTILINE)
    if count != 1:
        raise SystemExit(f"bench: no line of the spec matches {pattern!r}; update the bench")
    return new


def mixed_specs(directory: Path, count: int) -> list[Path]:
    """Write ``count`` valid specs cycling through ``SHAPES``, each app named uniquely.

    Every fourth service with one GPU asks for the flow list ``FLOW_GPUS`` instead, so the
    mix holds more of that shape than the examples alone. Returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    texts = [(path.stem, path.read_text(encoding="utf-8")) for path in SHAPES]
    written = []
    for index in range(count):
        stem, text = texts[index % len(texts)]
        suffix = f"-{index:04d}"
        if re.search(r"^kind: gateway$", text, flags=re.MULTILINE):
            text = set_line(text, r"name: (\S+)", rf"name: \g<1>{suffix}")
        else:
            text = set_line(text, r"app: (\S+)", rf"app: \g<1>{suffix}")
            if index // len(texts) % 4 == 1 and _takes_two_gpus(text):
                text = set_line(text, r"gpu: [\w-]+", FLOW_GPUS)
                if re.search(r"^snapshot: \w+$", text, flags=re.MULTILINE):
                    text = set_line(text, r"snapshot: \w+", "snapshot: none")
        path = directory / f"{index:04d}-{stem}.yaml"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _takes_two_gpus(text: str) -> bool:
    """A service on one GPU whose engine can spread over two (transformers cannot; snapshots
    of two GPUs are not supported, so the caller turns them off)."""
    one_gpu = re.search(r"^gpu: [\w-]+$", text, flags=re.MULTILINE)
    return bool(one_gpu) and not re.search(r"^  name: transformers$", text, flags=re.MULTILINE)


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
