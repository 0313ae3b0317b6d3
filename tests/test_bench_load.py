"""benchmarks/bench_load.py runs on a tiny input and prints a row for every spec shape.

Its figures are not checked (the machine is noisy): only that the script runs, says which
machine it ran on, and measures every example file, the mixed plan and a refused huge list.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers import run_benchmark

from modal_iac.loading.load import load_spec

ROOT = Path(__file__).resolve().parent.parent


def test_bench_load_quick_prints_a_row_per_example_and_the_plan() -> None:
    lines = run_benchmark("bench_load.py", "--quick").splitlines()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC, Python \S+, \d+ CPUs", lines[0])
    examples = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "specs").glob("*.yaml"))
    row = r"{} \*?\s+[\d.]+ ms\s+[\d.]+ ms\s+[\d.]+x\s+<= 2x\s+(yes|NO)$"
    for path in examples:
        name = re.escape(str(path.relative_to(ROOT)))
        assert any(re.match(row.format(name), line) for line in lines), path
    # every shape is there: a gateway, a flow list of GPU:count, warnings at list positions
    shapes = [p.read_text(encoding="utf-8") for p in examples]
    assert any("kind: gateway" in text for text in shapes)
    assert any(re.search(r"gpu: \[\w[\w-]*:\d", text) for text in shapes)
    warned = [w.key_path for p in examples for w in load_spec(p, default_environment=None).warnings]
    assert any("[" in key for key in warned)  # a warning at a list position
    plan = r"plan --offline of 20 mixed specs, per spec\s+[\d.]+ ms\s+[\d.]+ ms\s+[\d.]+x\s+<= 3x"
    assert any(re.match(plan, line) for line in lines)
    refused = r"gpu: \[25000 values\], refused\s+[\d.]+ ms\s+[\d.]+ ms\s+[\d.]+x\s+<= 1x\s+"
    assert any(re.match(refused, line) for line in lines)
