"""Golden files: the generated app file of every checked-in spec, byte for byte.

``tests/golden/<dir>__<stem>.py`` holds what ``modaliac render <dir>/<stem>.yaml`` prints when
run from the repository root. Any change to a spec, the renderer or the template shows up here
as a readable diff; when the change is intended, regenerate with
``python scripts/refresh_golden.py`` and review ``git diff tests/golden``.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from helpers import import_file

ROOT = Path(__file__).resolve().parent.parent


# scripts/refresh_golden.py, whose naming rule the test shares (scripts/ is no package).
refresh = import_file(ROOT / "scripts" / "refresh_golden.py", "modaliac_refresh_golden")
SPEC_PATHS: list[str] = refresh.spec_paths()
HOW_TO_REFRESH = f"If the change is intended, run `{refresh.REFRESH_COMMAND}` and review the diff."


def test_specs_are_found() -> None:
    assert {path.split("/")[0] for path in SPEC_PATHS} == set(refresh.SPEC_DIRS)


def test_golden_names_are_unique() -> None:
    names = [name for path in SPEC_PATHS for name in refresh.golden_files(path)]
    assert len(set(names)) == len(names), "two specs map to the same golden file"


@pytest.mark.parametrize("spec_path", SPEC_PATHS)
def test_rendered_file_matches_golden(spec_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the header names the spec by the path it was rendered from
    for golden, rendered in refresh.golden_files(spec_path).items():
        _compare_golden(spec_path, golden, rendered)


def _compare_golden(spec_path: str, golden: Path, rendered: str) -> None:
    shown = golden.relative_to(ROOT).as_posix()
    if not golden.exists():
        pytest.fail(f"no golden file {shown} for {spec_path}. {HOW_TO_REFRESH}", pytrace=False)
    expected = golden.read_bytes().decode("utf-8")
    if rendered != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                rendered.splitlines(keepends=True),
                fromfile=f"{shown} (golden)",
                tofile=f"modaliac render {spec_path} (now)",
            )
        )
        if not diff:  # same lines, different line endings or a missing final newline
            diff = f"golden bytes {expected.encode()[-40:]!r} vs now {rendered.encode()[-40:]!r}"
        pytest.fail(
            f"{spec_path} renders differently from {shown}:\n{diff}\n{HOW_TO_REFRESH}",
            pytrace=False,
        )


def test_every_golden_file_has_a_spec() -> None:
    expected = {name for path in SPEC_PATHS for name in refresh.golden_files(path)}
    present = set(refresh.GOLDEN_DIR.glob("*.py"))
    stale = sorted(p.relative_to(ROOT).as_posix() for p in present - expected)
    assert not stale, (
        f"golden files without a spec: {', '.join(stale)}. "
        f"Run `{refresh.REFRESH_COMMAND}` to delete them (or restore their specs)."
    )
