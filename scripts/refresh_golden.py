"""Regenerate the golden files: the rendered app file of every checked-in spec.

Usage (from any directory; paths are resolved from the repository root)::

    python scripts/refresh_golden.py

Every spec in specs/ and examples/ is rendered exactly as ``modaliac render <dir>/<file>`` run
from the repository root renders it (the header names the spec by that relative path), and
written to ``tests/golden/<dir>__<stem>.py``; a spec in a subfolder joins every folder with
``__``. For example ``examples/chat-gpu-fallback.yaml`` becomes
``tests/golden/examples__chat-gpu-fallback.py``. A spec that yields several apps (a gateway)
has one golden file per app, ``<dir>__<stem>__<app>.py``. Golden files whose spec no longer
exists are deleted. ``tests/test_golden.py`` fails until the golden files match the renderer,
so run this after an intended change to a spec, the renderer or the template, then review
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

from modal_iac.loading.load import find_spec_files, load_spec  # noqa: E402
from modal_iac.render.app import render_all  # noqa: E402


def spec_paths() -> list[str]:
    """Every checked-in spec, relative to the repository root, in POSIX form."""
    found: list[str] = []
    for directory in SPEC_DIRS:
        if (ROOT / directory).is_dir():
            found += [p.relative_to(ROOT).as_posix() for p in find_spec_files(ROOT / directory)]
    return found


def golden_path(spec_path: str, app: str | None = None) -> Path:
    """``examples/chat.yaml`` -> ``tests/golden/examples__chat.py``; with ``app`` (one app of
    a spec that yields several) -> ``tests/golden/examples__chat__<app>.py``."""
    relative = Path(spec_path)
    parts = [*relative.parent.parts, relative.stem, *([app] if app else [])]
    return GOLDEN_DIR / ("__".join(parts) + ".py")


def golden_files(spec_path: str) -> dict[Path, str]:
    """The generated files of a spec path relative to the root, rendered from the root, by
    their golden path."""
    with contextlib.chdir(ROOT):
        rendered = render_all(load_spec(spec_path))
    if len(rendered) == 1:
        return {golden_path(spec_path): rendered[0].source}
    return {golden_path(spec_path, item.app): item.source for item in rendered}


def main() -> int:
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    targets: dict[Path, str] = {}
    for path in spec_paths():
        files = golden_files(path)
        if set(files) & set(targets):
            print("two specs map to the same golden file; rename one of them", file=sys.stderr)
            return 1
        targets.update(files)
    for target, text in targets.items():
        source = text.encode("utf-8")
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
