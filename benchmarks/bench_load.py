"""Per-spec cost of ``load_spec`` next to ruamel's C safe loader on the same file.

    python benchmarks/bench_load.py [--runs N] [--mixed N] [--quick]

Figures are CPU time, this process's and its children's, so that other work on a shared
machine does not count. One row per example file (``examples/*.yaml``, ``specs/*.yaml``): the
median ``load_spec`` time (read, parse once, validate, locate warnings), the median C safe
load of the same text (the floor: ``YAML(typ="safe", pure=False).load``), and their ratio
against the 2x target. libyaml refuses ``gpu: [H100:2]``, so the floor of such a file is
measured on the text with those colons swapped for a same-width character (a ``*`` marks the
row). A last row runs ``modaliac plan --offline`` over ``--mixed`` specs (the example files
cycled, each with its own app name) and sets its time per spec, start-up included, beside the
floor of the same files (3x target). Another loads a spec whose ``gpu:`` flow list holds 120000
values (about 240 KB, under the size limit): ``load_spec`` refuses it (more than 20000 values)
in no more time than the floor takes to read it (1x target).
Measurements alternate round by round, so noise on the machine hits both sides alike. A
missed target is reported, never an exit status (these machines are noisy). It measures the
``modal_iac`` that Python imports: run it with ``PYTHONPATH=$PWD`` from a worktree, or with
another checkout's path to measure that one on the same files.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import REPO, machine_line, table

HEADER = ["measurement", "modaliac", "floor", "ratio", "target", "met"]
LOAD_TARGET = 2.0
PLAN_TARGET = 3.0
REFUSE_TARGET = 1.0
BATCH = 10  # calls per timed sample of one file: a sample of a few ms, not a fraction of one
_TIGHT_COLON = re.compile(r"(?<=\w):(?=\w)")


@dataclass(frozen=True)
class Row:
    """One measured line: modaliac's and the floor's median seconds per spec."""

    label: str
    ours: float
    floor: float
    target: float

    def cells(self) -> list[str]:
        ratio = self.ours / self.floor
        met = "yes" if ratio <= self.target else "NO"
        ms = "{:.2f} ms"
        cells = [ms.format(self.ours * 1000), ms.format(self.floor * 1000)]
        return [self.label, *cells, f"{ratio:.2f}x", f"<= {self.target:g}x", met]


def example_files() -> list[Path]:
    return sorted((REPO / "examples").glob("*.yaml")) + sorted((REPO / "specs").glob("*.yaml"))


def floor_text(text: str) -> tuple[str, bool]:
    """The text the C safe loader can read (and whether its flow colons were swapped)."""
    from ruamel.yaml import YAML

    try:
        YAML(typ="safe", pure=False).load(text)
    except Exception:
        return _TIGHT_COLON.sub("\ue000", text), True
    return text, False


def safe_load(text: str) -> object:
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=False).load(text)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children: the other work on a shared
    machine does not count, as it does in wall time."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def paired(
    ours: Callable[[], object], floor: Callable[[], object], runs: int, batch: int = 1
) -> tuple[float, float]:
    """Median CPU seconds of one call of ``ours`` and of ``floor``, measured ``runs`` times
    alternately, each time over ``batch`` calls (after a warm-up call of each)."""
    ours(), floor()
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(runs):
        for work, times in ((ours, mine), (floor, theirs)):
            start = cpu_seconds()
            for _ in range(batch):
                work()
            times.append((cpu_seconds() - start) / batch)
    return statistics.median(mine), statistics.median(theirs)


def load_rows(runs: int) -> list[Row]:
    from modal_iac.loading.load import load_spec

    rows = []
    for path in example_files():
        text, swapped = floor_text(path.read_text(encoding="utf-8"))
        ours, floor = paired(
            lambda path=path: load_spec(path, default_environment=None),
            lambda text=text: safe_load(text),
            runs,
            batch=BATCH,
        )
        label = str(path.relative_to(REPO)) + (" *" if swapped else "")
        rows.append(Row(label, ours, floor, LOAD_TARGET))
    return rows


def write_mixed(directory: Path, count: int) -> list[Path]:
    """``count`` valid specs: the example files in turn, each with a unique app (or gateway)
    name."""
    sources = [path.read_text(encoding="utf-8") for path in example_files()]
    written = []
    for index in range(count):
        text = sources[index % len(sources)]
        text, renamed = re.subn(
            r"^(app|name): (.*)$", rf"\1: \2-{index:04d}", text, count=1, flags=re.M
        )
        if not renamed:
            raise SystemExit("bench: an example has no top-level app: or name: line")
        path = directory / f"spec-{index:04d}.yaml"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def plan_row(count: int, runs: int) -> Row:
    with tempfile.TemporaryDirectory() as tmp:
        specs = Path(tmp) / "specs"
        specs.mkdir()
        files = write_mixed(specs, count)
        texts = [floor_text(path.read_text(encoding="utf-8"))[0] for path in files]
        argv = [sys.executable, "-m", "modal_iac.cli", "plan", "--offline", "-q", str(specs)]
        argv += ["--state", str(Path(tmp) / "state.json")]

        def plan() -> None:
            # cwd: the temporary folder, so ``-m`` imports the modal_iac that PYTHONPATH (or
            # the install) names, not a checkout that happens to be the current directory
            done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=tmp)
            if done.returncode != 0:
                failed = f"bench: {' '.join(argv)} exited {done.returncode}"
                raise SystemExit(f"{failed}:\n{done.stderr}")

        def floor() -> None:
            for text in texts:
                safe_load(text)

        ours, theirs = paired(plan, floor, runs)
    label = f"plan --offline of {count} mixed specs, per spec"
    return Row(label, ours / count, theirs / count, PLAN_TARGET)


def refused_row(items: int, runs: int) -> Row:
    """``load_spec`` of a spec whose gpu list holds ``items`` values, refused, beside the
    floor's load of the same text."""
    from modal_iac.errors import SpecError
    from modal_iac.loading.load import load_spec

    text = "app: demo\nmodel:\n  id: BAAI/bge-small-en-v1.5\n  task: embed\n"
    text += "gpu: [" + ",".join(["1"] * items) + "]\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "huge.yaml"
        path.write_text(text, encoding="utf-8")

        def refuse() -> None:
            try:
                load_spec(path, default_environment=None)
            except SpecError:
                return
            raise SystemExit("bench: a spec of too many values was not refused")

        ours, floor = paired(refuse, lambda: safe_load(text), runs)
    return Row(f"gpu: [{items} values], refused", ours, floor, REFUSE_TARGET)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=41, help="paired runs per file (default 41)")
    parser.add_argument("--mixed", type=int, default=1000, help="specs for the plan row")
    parser.add_argument("--quick", action="store_true", help="3 runs, 20 mixed specs: a smoke test")
    args = parser.parse_args(argv)
    runs, mixed = (3, 20) if args.quick else (args.runs, args.mixed)
    load = load_rows(runs)
    plan = plan_row(mixed, max(3, runs // 10))
    refused = refused_row(25_000 if args.quick else 120_000, max(3, runs // 10))
    print(machine_line())
    groups = [("load_spec per file", load), ("plan", [plan]), ("a huge flow list", [refused])]
    print(table(HEADER, groups))
    print("* libyaml refuses this file's flow colons (H100:2): its floor reads them swapped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
