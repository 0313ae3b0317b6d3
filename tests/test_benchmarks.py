"""The benchmark scripts run: ``bench_cli.py --quick`` prints every row issue 15 asks for.

No figure is asserted (these machines are noisy): only that each row is there, that its
ratio is a positive number, and that each target has a yes/NO; a per-spec marginal cost that
one noisy run of 20 specs swamps says so ("n/a (noise)") instead of a figure.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers import run_benchmark

ROOT = Path(__file__).resolve().parent.parent
# Each row's label starts so, and whether it is a ratio to a baseline.
MARGINAL = ("plan --offline, per spec", "render -o DIR, per spec", "fmt --check, per spec")
ROWS = {
    "python -c pass": False,
    "modaliac --version vs modal --help": True,
    "modaliac --help vs modal --help": True,
    "modal --help": False,
    "floor: ruamel C safe load, per spec": False,
    "plan --offline, per spec": True,
    "render -o DIR, per spec": True,
    "fmt --check, per spec": True,
    "diff --base HEAD~1 vs plan --offline": True,
    "plan --offline over 50 mixed specs": False,
}
SHAPES = sorted(
    str(p.relative_to(ROOT))
    for p in [
        *ROOT.glob("examples/*.yaml"),
        *ROOT.glob("examples/*/*.yaml"),
        ROOT / "specs/kalm.yaml",
    ]
)


def test_bench_cli_quick_prints_every_row_with_its_ratio() -> None:
    out = run_benchmark("bench_cli.py", "--quick")
    lines = out.splitlines()
    assert re.match(
        r"# modaliac CLI benchmark: \d{4}-\d\d-\d\d \d\d:\d\d UTC, Python 3\.\d+\.\d+, \d+ CPUs, "
        r"load average \d+\.\d\d",
        lines[0],
    ), lines[0]
    expected = {**ROWS, **{f"load_spec {shape}": True for shape in SHAPES}}
    for label, is_ratio in expected.items():
        row = next((line for line in lines if line.startswith(label)), None)
        assert row is not None, f"no row {label!r} in:\n{out}"
        assert not re.search(r"\s-\d", row), row  # no figure below zero
        if label.startswith(MARGINAL) and "n/a (noise)" in row:
            assert re.search(r"\sn/a \(noise\)\s+\d+\.\d\d ms$", row), row  # and the floor
            continue
        ratio = re.search(r"\s(\d+\.\d\d)x\s", row)
        assert bool(ratio) == is_ratio, row
        if is_ratio:
            assert re.search(r"<= [\d.]+x\s+(yes|NO)$", row), row
    memory = next(line for line in lines if line.startswith("plan --offline over 50"))
    assert re.search(r"\s\d+\.\d\d MiB\s+<= 150\.00 MiB\s+(yes|NO)$", memory), memory
