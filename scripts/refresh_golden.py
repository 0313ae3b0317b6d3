"""Regenerate the golden files: the rendered app file of every checked-in spec.

Usage (from any directory; paths are resolved from the repository root)::

    python scripts/refresh_golden.py

Every spec in specs/ and examples/ is rendered exactly as ``modaliac render <dir>/<file>`` run
from the repository root renders it (the header names the spec by that relative path), and
written to ``tests/golden/<dir>__<stem>.py``; a spec in a subfolder joins every folder with
``__``. For example ``examples/chat-gpu-fallback.yaml`` becomes
``tests/golden/examples__chat-gpu-fallback.py``. Golden files whose spec no longer exists are
deleted. ``tests/test_golden.py`` fails until the golden files match the renderer, so run this
after an intended change to a spec, the renderer or the template, then review
``git diff tests/golden``: it is the exact change in the generated code.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_DIR = ROOT / "tests" / "golden"
SPEC_DIRS = ("specs", "examples")
REFRESH_COMMAND = "python scripts/refresh_golden.py"

# Render with this checkout's modal_iac, not with whichever copy happens to be installed.
sys.path.insert(0, str(ROOT))

from modal_iac.load import find_spec_files, load_spec  # noqa: E402
from modal_iac.render import render  # noqa: E402


def spec_paths() -> list[str]:
    """Every checked-in spec, relative to the repository root, in POSIX form."""
    found: list[str] = []
    for directory in SPEC_DIRS:
        if (ROOT / directory).is_dir():
            found += [p.relative_to(ROOT).as_posix() for p in find_spec_files(ROOT / directory)]
    return found


def golden_path(spec_path: str) -> Path:
    """``examples/chat.yaml`` -> ``tests/golden/examples__chat.py``."""
    relative = Path(spec_path)
    return GOLDEN_DIR / ("__".join([*relative.parent.parts, relative.stem]) + ".py")


def render_spec(spec_path: str) -> str:
    """The generated file for a spec path relative to the root, rendered from the root."""
    with contextlib.chdir(ROOT):
        return render(load_spec(spec_path)).source


def main() -> int:
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    paths = spec_paths()
    targets = {golden_path(path): path for path in paths}
    if len(targets) != len(paths):
        print("two specs map to the same golden file; rename one of them", file=sys.stderr)
        return 1
    for target, path in targets.items():
        source = render_spec(path).encode("utf-8")
        old = target.read_bytes() if target.exists() else None
        if old != source:
            target.write_bytes(source)
            print(f"{'updated' if old is not None else 'created'} {target.relative_to(ROOT)}")
    for stale in sorted(GOLDEN_DIR.glob("*.py")):
        if stale not in targets:
            stale.unlink()
            print(f"deleted {stale.relative_to(ROOT)} (its spec is gone)")
    print(f"{len(targets)} golden files up to date in {GOLDEN_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
