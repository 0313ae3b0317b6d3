"""benchmarks/bench_modal.py runs end to end on a tiny input (``--quick``): every row and every
ratio line is printed, at both delays. No figure is checked (this machine is noisy)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from helpers import run_benchmark

ROW = r"\d+\.\d{3} s +\d+\.\d{3} s \.\. \d+\.\d{3} s"  # median, then min .. max


def test_bench_modal_quick_prints_every_row_and_ratio(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODAL_")}
    env.update(HOME=str(tmp_path))
    out = run_benchmark("bench_modal.py", "--quick", cwd=tmp_path, env=env)
    for delay in ("0 ms", "10 ms"):
        for section in ("apply --yes DIR, 1 new apps", "plan DIR over deployed, unchanged apps"):
            assert f"[{delay} a round trip: {section}]" in out
    for label in (
        "modaliac apply --yes, 1 new app",
        "modaliac apply --yes, 2 new apps",
        r"loop of 2 x `modal deploy FILE`",
        "python -c 'import modal'",
        r"modaliac plan \(online\), 2 deployed apps",
        r"modaliac plan \(offline\), 1 deployed app",
    ):
        assert len(re.findall(rf"^{label} +{ROW}", out, re.MULTILINE)) == 2, label
    for ratio in (
        r"loop\(2\) / apply\(2\) = \d+\.\d\d \(the target >= 15 is for 20 apps at 50 ms\)",
        r"loop\(2\) / apply\(1\) = \d+\.\d\d: the most an apply of 2 could reach "
        r"\(apply of one app takes \d+\.\d{3} s\)",
        r"apply\(2\) / apply\(1\) = \d+\.\d\d \(the target <= 3\.5 is for 20 and 100 apps",
        r"plan\(2\) / plan\(1\), online = \d+\.\d\d \(the target <= 2 is for 1 and 200 apps",
        r"the loop of 2: \d+\.\d{3} s per `modal deploy`",
    ):
        assert len(re.findall(ratio, out)) == 2, ratio
    assert "local-api" not in out  # the servers' own output stays in their logs
