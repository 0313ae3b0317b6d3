"""Wall times of the modaliac CLI next to baselines measured in the same run.

    python benchmarks/bench_cli.py [--runs N] [--sizes 1,100,1000] [--profile]

Every figure is the median of N runs on this machine, taken now: start-up baselines
(``python -c pass``, ``import modal``, ``modal --help``) stand beside ``modaliac --help``, and
``modaliac plan`` over 1, 100 and 1000 generated specs stands beside the per-spec cost of the
YAML load alone (ruamel's round-trip loader, ruamel's C safe loader) and of modaliac's own
load path. Targets are printed with the figures; a miss is reported, never an exit status
(these machines are noisy). The script exits non-zero only when a command fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common import REPO, SEED_SPEC, machine_line, script, set_line, table

HEADER = ["measurement", "median", "min .. max", "target", "met"]
HELP_TARGET = 0.15
PLAN_TARGETS = {1: 0.4, 1000: 3.0}
DEPS_LABEL = "python -c 'import ruamel.yaml, jinja2, pydantic, jsonschema'"
GPUS = ("A100-40GB", "A100-80GB", "H100", "L40S")


@dataclass(frozen=True)
class Row:
    """One measured line of the table."""

    label: str
    times: list[float]  # seconds
    target: float | None = None
    unit: str = "s"  # "s" for whole commands, "ms" for per-spec figures

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def cells(self) -> list[str]:
        scale = 1000.0 if self.unit == "ms" else 1.0
        fmt = "{:.2f} ms" if self.unit == "ms" else "{:.3f} s"
        median = fmt.format(self.median * scale)
        spread = fmt.format(min(self.times) * scale) + " .. " + fmt.format(max(self.times) * scale)
        if self.target is None:
            return [self.label, median, spread, "", ""]
        target = "< " + fmt.format(self.target * scale)
        met = "yes" if self.median < self.target else "NO"
        return [self.label, median, spread, target, met]


# -- spec generation -------------------------------------------------------------------------


def generate_specs(directory: Path, count: int, seed_text: str) -> None:
    """Write ``count`` valid specs: the seed with a unique app name and a few varied values."""
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        text = seed_text
        text = set_line(text, r"app: .*", f"app: bench-{index:04d}")
        text = set_line(text, r"  team: .*", f"  team: team-{index % 7}")
        text = set_line(text, r"  max_num_seqs: .*", f"  max_num_seqs: {64 + index % 5 * 32}")
        text = set_line(
            text,
            r"  gpu_memory_utilization: .*",
            f"  gpu_memory_utilization: {0.80 + index % 10 / 100:.2f}",
        )
        text = set_line(text, r"gpu: .*", f"gpu: {GPUS[index % len(GPUS)]}")
        text = set_line(text, r"  concurrency: .*", f"  concurrency: {8 + index % 4 * 8}")
        (directory / f"spec-{index:04d}.yaml").write_text(text, encoding="utf-8")


# -- measuring -------------------------------------------------------------------------------


def time_commands(commands: dict[str, list[str]], runs: int, cwd: Path) -> dict[str, list[float]]:
    """Wall times of each command, ``runs`` times, interleaved round by round.

    Each command first runs once untimed (page cache, and to check that it succeeds). Rounds
    then run every command once, so a burst of noise on the machine hits all of them alike
    instead of one measurement. Fails on a non-zero exit status.
    """
    times: dict[str, list[float]] = {label: [] for label in commands}
    for attempt in range(runs + 1):
        for label, argv in commands.items():
            start = time.perf_counter()
            done = subprocess.run(
                argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
            )
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                err = done.stderr.decode(errors="replace").strip()
                raise SystemExit(f"bench: {' '.join(argv)} exited {done.returncode}:\n{err}")
            if attempt:
                times[label].append(elapsed)
    return times


def check_plan(modaliac: Path, directory: Path, state: Path, size: int) -> None:
    """The generated specs are valid and distinct: plan (as JSON) creates exactly ``size`` apps."""
    argv = [str(modaliac), "plan", str(directory), "--state", str(state), "--format", "json"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    summary = json.loads(done.stdout)["summary"]
    if summary.get("create") != size:
        raise SystemExit(f"bench: plan over {size} generated specs gave {summary}")


def time_per_item(work: Callable[[Path], object], files: list[Path], runs: int) -> list[float]:
    """Seconds per file of ``work`` over all ``files``, once per run (after a warm-up pass)."""
    for path in files[:3]:
        work(path)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for path in files:
            work(path)
        times.append((time.perf_counter() - start) / len(files))
    return times


def in_process_rows(files: list[Path], runs: int) -> list[Row]:
    from ruamel.yaml import YAML

    from modal_iac.load import load_spec
    from modal_iac.plan import Desired
    from modal_iac.render import render

    texts = {path: path.read_text(encoding="utf-8") for path in files}

    def rt_load(path: Path) -> object:
        return YAML(typ="rt").load(texts[path])

    def safe_load(path: Path) -> object:
        return YAML(typ="safe", pure=False).load(texts[path])

    def modaliac_load(path: Path) -> object:
        return load_spec(path)

    def load_render_record(path: Path) -> object:
        loaded = load_spec(path)
        return Desired(loaded, render(loaded)).record()

    return [
        Row("YAML floor: ruamel round-trip load", time_per_item(rt_load, files, runs), unit="ms"),
        Row("YAML floor: ruamel C safe load", time_per_item(safe_load, files, runs), unit="ms"),
        Row(
            "modaliac load_spec (parse+validate)",
            time_per_item(modaliac_load, files, runs),
            unit="ms",
        ),
        Row(
            "modaliac load+render+record", time_per_item(load_render_record, files, runs), unit="ms"
        ),
    ]


# -- output ----------------------------------------------------------------------------------


def profile_plan(directory: Path, state: Path, top: int) -> None:
    """cProfile of one ``modaliac plan`` over ``directory`` (in a fresh interpreter)."""
    code = (
        "import cProfile, os, pstats, sys\n"
        "prof = cProfile.Profile()\n"
        "prof.enable()\n"
        "from modal_iac.cli import main\n"
        "real, sys.stdout = sys.stdout, open(os.devnull, 'w')\n"
        f"main(['plan', {str(directory)!r}, '--state', {str(state)!r}])\n"
        "prof.disable()\n"
        "sys.stdout = real\n"
        f"pstats.Stats(prof).sort_stats('cumulative').print_stats({top})\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def plan_label(size: int) -> str:
    return f"modaliac plan, {size} spec{'' if size == 1 else 's'}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument(
        "--sizes", default="1,100,1000", help="spec counts to plan over (comma-separated)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile of plan over the largest size"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not sizes or sizes[0] < 1:
        parser.error("--sizes needs positive counts")

    modaliac = script("modaliac")
    if modaliac is None:
        print("bench: modaliac is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 1
    modal = script("modal")
    python = sys.executable
    seed_text = SEED_SPEC.read_text(encoding="utf-8")

    print(f"# modaliac CLI benchmark: {machine_line()}")
    print(f"# medians of {args.runs} interleaved runs (after one untimed warm-up each)")
    print(f"# python: {python}\n# modaliac: {modaliac}\n# modal: {modal or 'not installed'}")
    print()

    with tempfile.TemporaryDirectory(prefix="modaliac-bench-") as tmp:
        root = Path(tmp)
        state = root / "empty-state.json"  # never created: an empty state, every app a create
        startup: dict[str, list[str]] = {
            "python -c pass": [python, "-c", "pass"],
            DEPS_LABEL: [python, "-c", "import ruamel.yaml, jinja2, pydantic, jsonschema"],
            "modaliac --help": [str(modaliac), "--help"],
        }
        if modal is not None:
            startup["python -c 'import modal'"] = [python, "-c", "import modal"]
            startup["modal --help"] = [str(modal), "--help"]
        plans: dict[str, list[str]] = {}
        dirs: dict[int, Path] = {}
        for size in sizes:
            dirs[size] = root / f"specs-{size}"
            generate_specs(dirs[size], size, seed_text)
            check_plan(modaliac, dirs[size], state, size)
            plans[plan_label(size)] = [
                str(modaliac),
                "plan",
                str(dirs[size]),
                "--state",
                str(state),
            ]
        times = time_commands({**startup, **plans}, args.runs, REPO)
        targets = {"modaliac --help": HELP_TARGET} | {
            plan_label(size): PLAN_TARGETS[size] for size in sizes if size in PLAN_TARGETS
        }

        def rows(labels: list[str]) -> list[Row]:
            return [Row(label, times[label], targets.get(label)) for label in labels]

        small = [s for s in sizes if s <= 100]
        sample = sorted(dirs[small[-1] if small else sizes[0]].glob("*.yaml"))[:100]
        sections = [
            (
                "start-up" + ("" if modal else "; modal not installed, its baselines skipped"),
                rows(list(startup)),
            ),
            (f"plan DIR --state {state.name} (no state: every app is a create)", rows(list(plans))),
            (
                f"in-process, per spec (mean over {len(sample)} specs)",
                in_process_rows(sample, args.runs),
            ),
        ]
        print(table(HEADER, sections))
        print()
        if hasattr(os, "getloadavg"):
            print(f"load average at the end: {os.getloadavg()[0]:.2f} (noise: compare with start)")
        by_label = {row.label: row for _, section in sections for row in section}
        _print_derived(by_label, sizes)
        if args.profile:
            print()
            print(f"# cProfile of modaliac plan over {sizes[-1]} specs (top 40 by cumulative time)")
            sys.stdout.flush()
            profile_plan(dirs[sizes[-1]], state, 40)
    return 0


def _print_derived(rows: dict[str, Row], sizes: list[int]) -> None:
    """Differences that tell where the time of plan goes."""
    if len(sizes) >= 2:
        small, large = rows[plan_label(sizes[0])], rows[plan_label(sizes[-1])]
        slope = (large.median - small.median) / (sizes[-1] - sizes[0])
        print(
            f"plan: fixed cost about {small.median - slope * sizes[0]:.3f} s, "
            f"marginal cost {slope * 1000:.2f} ms per spec ({sizes[0]} -> {sizes[-1]} specs)"
        )
    deps = rows.get(DEPS_LABEL)
    python = rows.get("python -c pass")
    helprow, one = rows.get("modaliac --help"), rows.get(plan_label(1))
    if python and helprow:
        extra = (helprow.median - python.median) * 1000
        print(f"modaliac --help over bare python: {extra:+.0f} ms")
    if deps and one:
        print(
            f"plan of 1 spec over importing its dependencies: "
            f"{(one.median - deps.median) * 1000:+.0f} ms"
        )
    rt = rows.get("YAML floor: ruamel round-trip load")
    safe = rows.get("YAML floor: ruamel C safe load")
    load = rows.get("modaliac load_spec (parse+validate)")
    full = rows.get("modaliac load+render+record")
    if rt and safe and load and full:
        print(
            f"per spec: load_spec = {load.median / rt.median:.2f}x the round-trip floor, "
            f"{load.median / safe.median:.2f}x the C safe floor; "
            f"load+render+record = {full.median / safe.median:.2f}x the C safe floor"
        )


if __name__ == "__main__":
    sys.exit(main())
