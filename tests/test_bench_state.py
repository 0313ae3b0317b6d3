"""benchmarks/bench_state.py runs on a tiny input and prints every figure it promises."""

from __future__ import annotations

from pathlib import Path

from helpers import run_benchmark


def test_the_state_benchmark_runs_quick(tmp_path: Path) -> None:
    out = run_benchmark("bench_state.py", "--quick", "--dir", str(tmp_path), timeout=120)
    lines = out.splitlines()
    assert "CPUs, load average" in lines[0]  # the machine line
    for section in ("[full rewrite (baseline)]", "[journal]", "[ratios]"):
        assert section in lines
    assert sum(line.startswith(("3 apps", "10 apps")) for line in lines) == 4
    assert any(line.startswith("journal: per app, 10 / 3") for line in lines)
    assert any(line.startswith("full rewrite / journal at 10 apps") for line in lines)
    assert list(tmp_path.iterdir()) == []  # every state it wrote is cleaned up
