"""benchmarks/bench_state.py runs on a tiny input and prints every figure it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_state_benchmark_runs_quick(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_state.py"),
            "--quick",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "CPUs, load average" in lines[0]  # the machine line
    for section in ("[full rewrite (baseline)]", "[journal]", "[ratios]"):
        assert section in lines
    assert sum(line.startswith(("3 apps", "10 apps")) for line in lines) == 4
    assert any(line.startswith("journal: per app, 10 / 3") for line in lines)
    assert any(line.startswith("full rewrite / journal at 10 apps") for line in lines)
    assert list(tmp_path.iterdir()) == []  # every state it wrote is cleaned up
