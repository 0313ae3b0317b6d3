"""The state writes of an apply, per app, as the number of apps grows.

    python benchmarks/bench_state.py [--sizes 10,100,1000] [--dir DIR] [--quick]

A simulated run records N apps one after the other, as ``apply`` does when each finishes,
with records the size of a real one (the rendered source of specs/kalm.yaml, about 27 KB).
Two ways of writing them, timed on the same disk in the same run:

- full rewrite (the baseline, as before the journal): after every app, the whole state is
  written to a temporary file, fsynced, renamed over the state, and the folder fsynced;
- journal (now): one fsynced line per app appended to ``state.json.journal``, folded into
  the state file once as the lock is released (``LocalStore.record``; see journal.py).

Printed: the per-app cost at each N and the ratio of the per-app cost at the largest N to
the smallest, for each way (linear: about 1; a rewrite per app: it grows with N; the
baseline is timed up to ``--baseline-max`` apps, 100 by default, being quadratic). Targets
are printed with the figures; a miss is reported, never an exit status (these machines are
noisy). ``--dir`` picks the disk (the default is a folder beside this script, not /tmp,
which may be a tmpfs where fsync costs nothing).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from common import REPO, machine_line, table

sys.path.insert(0, str(REPO))  # modal_iac from this checkout

from modal_iac.state.records import AppRecord, State
from modal_iac.state.store import LocalStore, read_state

SOURCE = REPO / "tests" / "golden" / "specs__kalm.py"  # a realistic rendered app
HEADER = ["measurement", "per app", "run", "target", "met"]
RATIO_TARGET = 2.0  # per-app cost at the largest N over the smallest: linear is about 1


@dataclass(frozen=True)
class Row:
    label: str
    seconds: float  # the whole run of n apps, median of the repeats
    n: int

    def cells(self) -> list[str]:
        return [
            self.label,
            f"{self.seconds / self.n * 1000:.2f} ms",
            f"{self.seconds:.3f} s",
            "",
            "",
        ]


@dataclass(frozen=True)
class Ratio:
    label: str
    value: float
    target: float | None

    def cells(self) -> list[str]:
        if self.target is None:
            return [self.label, f"{self.value:.2f}x", "", "", ""]
        met = "yes" if self.value <= self.target else "NO"
        return [self.label, f"{self.value:.2f}x", "", f"<= {self.target:g}x", met]


def records(n: int) -> list[AppRecord]:
    source = SOURCE.read_text(encoding="utf-8")
    seed = AppRecord(
        app="app",
        environment=None,
        spec_path="specs/app.yaml",
        spec_digest="0" * 64,
        source_hash="1" * 64,
        settings={"gpu": "L4", "labels": {"team": "search"}},
        source=source,
        deployed_version=1,
        deployment_tag="modaliac-" + "1" * 12,
    )
    return [
        replace(seed, app=f"app-{i:04d}", spec_path=f"specs/app-{i:04d}.yaml") for i in range(n)
    ]


def full_rewrite(path: Path, apps: list[AppRecord]) -> None:
    """The baseline: the write path before the journal, re-implemented here."""
    state = State()
    for record in apps:
        state.apps[record.address] = record
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".state-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(state.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def journal(path: Path, apps: list[AppRecord]) -> None:
    """Now: what apply does through ``LocalStore``, the fold on release included."""
    store = LocalStore(path)
    with store.lock("bench_state"):
        state = store.read()
        for record in apps:
            state.apps[record.address] = record
            store.record(state, record.address)


def timed(
    way: Callable[[Path, list[AppRecord]], None], apps: list[AppRecord], folder: Path
) -> float:
    with tempfile.TemporaryDirectory(dir=folder) as work:
        path = Path(work) / "state.json"
        started = time.perf_counter()
        way(path, apps)
        seconds = time.perf_counter() - started
        recorded = read_state(path)
        if sorted(recorded.apps) != sorted(r.address for r in apps):
            raise SystemExit(f"bench_state: {way.__name__} left a state without every app")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="10,100,1000", help="numbers of apps (default: %(default)s)"
    )
    parser.add_argument(
        "--baseline-max",
        type=int,
        default=100,
        help="time the full rewrite only up to this many apps: it is quadratic, about 8 "
        "minutes at 1000 (default: %(default)s)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="where the states are written (default: beside this script)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 and 10 apps, one run each: a smoke test"
    )
    args = parser.parse_args(argv)
    sizes = [3, 10] if args.quick else sorted(int(n) for n in args.sizes.split(","))
    print(machine_line())
    kib = len(SOURCE.read_bytes()) // 1024
    print(f"records of {kib} KiB of source each, written in {args.dir}")
    ways = (("full rewrite (baseline)", full_rewrite, args.baseline_max), ("journal", journal, 0))
    sections: list[tuple[str, list[Row]]] = []
    ratios: list[Ratio] = []
    per_app: dict[str, dict[int, float]] = {}
    for label, way, most in ways:
        costs = per_app.setdefault(label, {})
        for n in (n for n in sizes if not most or n <= most):
            repeats = 1 if args.quick else max(1, min(5, 1000 // n))
            apps = records(n)
            costs[n] = statistics.median(timed(way, apps, args.dir) for _ in range(repeats)) / n
        sections.append((label, [Row(f"{n} apps", cost * n, n) for n, cost in costs.items()]))
        small, large = min(costs), max(costs)
        target = RATIO_TARGET if way is journal else None
        ratios.append(
            Ratio(f"{label}: per app, {large} / {small}", costs[large] / costs[small], target)
        )
    baseline, now = per_app["full rewrite (baseline)"], per_app["journal"]
    common = max(set(baseline) & set(now))
    ratios.append(
        Ratio(f"full rewrite / journal at {common} apps", baseline[common] / now[common], None)
    )
    print(table(HEADER, [*sections, ("ratios", ratios)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
