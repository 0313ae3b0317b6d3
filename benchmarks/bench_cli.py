"""The CLI figures of issue 15, each a ratio to a baseline measured in the same run.

    python benchmarks/bench_cli.py [--runs N] [--specs N] [--memory-specs N] [--profile]
    python benchmarks/bench_cli.py --quick    # tiny sizes, one run: checks the script works

The default run (5 runs, 1000 mixed specs, 5000 for peak memory) took 41 minutes on 2 CPUs
shared with other work (load average 4 to 11); use --runs 3 on a busy machine.
Specs are generated from every shape in examples/ and specs/ (services, the
gateway, flow-list GPUs such as [H100:2, A100:2], warnings at list positions), each app
named uniquely. The floor is ruamel's C safe loader on the same files, in this process.

Per-spec figures of a command are its marginal cost: (time over N specs - time over 1 spec)
/ (N - 1), so the interpreter's start-up, measured in its own rows, is not spread over them.
When the run over N specs took no longer than the run over one (noise swamps a small N, as
in --quick), the row says "n/a (noise)" rather than a cost below zero.
Targets are printed with yes/NO; a miss never changes the exit status (these machines are
noisy), which is non-zero only when a command fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from common import REPO, SHAPES, machine_line, mixed_specs, script, table

T = TypeVar("T")
HEADER = ["measurement", "median", "baseline", "ratio", "target", "met"]
STARTUP_TARGET = 0.25  # of `modal --help`
PER_SPEC_TARGET = 3.0  # plan --offline, render, fmt --check: of the C safe floor per spec
LOAD_TARGET = 2.0  # load_spec of each shape: of the C safe floor on that file
DIFF_TARGET = 1.3  # diff --base: of plan --offline over the same specs
MEMORY_TARGET_MIB = 150.0
NO_STATE = "no-state.json"  # never created: an empty state, every app a create
CHANGED_SPECS = 10  # of the specs diff --base compares, how many the second commit changes
NOISE = "n/a (noise)"


@dataclass(frozen=True)
class Row:
    """One line of the table: a median, and what it is held against."""

    label: str
    value: float | None  # None: lost in noise (a marginal cost that came out <= 0)
    unit: str  # "s", "ms" or "MiB"
    baseline: float | None = None  # same unit as value
    target: float | None = None  # a ratio to the baseline, or a bound in ``unit`` without one

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.value is None:
            return None
        return self.value / self.baseline

    def cells(self) -> list[str]:
        ratio = self.ratio
        baseline = "" if self.baseline is None else _shown(self.baseline, self.unit)
        if self.value is None:  # no figure, so no ratio and no verdict
            return [self.label, NOISE, baseline, "", "", ""]
        if self.target is None:
            target, met = "", ""
        elif ratio is None:
            target, met = f"<= {_shown(self.target, self.unit)}", _met(self.value, self.target)
        else:
            target, met = f"<= {self.target:g}x", _met(ratio, self.target)
        return [
            self.label,
            _shown(self.value, self.unit),
            baseline,
            "" if ratio is None else f"{ratio:.2f}x",
            target,
            met,
        ]


def _shown(value: float, unit: str) -> str:
    return f"{value:.3f} s" if unit == "s" else f"{value:.2f} {unit}"


def _met(value: float, bound: float) -> str:
    return "yes" if value <= bound else "NO"


# -- measuring -------------------------------------------------------------------------------


def time_commands(
    commands: dict[str, list[str]], runs: int, cwd: Path, *, warm_up: bool
) -> dict[str, float]:
    """Median wall time of each command over ``runs``, interleaved round by round.

    With ``warm_up``, each command first runs once untimed (page cache); then every round
    runs each once, so a burst of noise hits all of them alike. Fails on a non-zero exit
    status.
    """
    times: dict[str, list[float]] = {label: [] for label in commands}
    for attempt in range(0 if warm_up else 1, runs + 1):
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
    return {label: statistics.median(values) for label, values in times.items()}


# Linux counts in a child's maximum RSS what its process held before exec: the copy of the
# spawner. This script holds big plans by then, so a small interpreter spawns the command and
# reports that child's own peak (from ``wait4``), which starts from the small one's size.
_PEAK = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def peak_rss_mib(argv: list[str], cwd: Path) -> float:
    """The maximum resident set size of one run of ``argv``, measured by a small spawner."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, *argv], cwd=cwd, capture_output=True, text=True, check=False
    )
    code, _, kib = done.stdout.strip().partition(" ")
    if done.returncode != 0 or code != "0":
        raise SystemExit(
            f"bench: {' '.join(argv)} exited {code or done.returncode}:\n{done.stderr}"
        )
    return int(kib) / 1024  # KiB on Linux


def per_item(work: Callable[[T], object], items: list[T], runs: int) -> float:
    """Median seconds per item of ``work`` over all ``items`` (after a warm-up pass)."""
    for item in items[:3]:
        work(item)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for item in items:
            work(item)
        times.append((time.perf_counter() - start) / len(items))
    return statistics.median(times)


def c_safe_load(text: str) -> object:
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=False).load(text)


def floor_text(text: str) -> str:
    """``text`` as libyaml accepts it: the C loader refuses ``gpu: [H100:2, A100:2]`` (a
    colon in a flow scalar), so the floor parses those items quoted, the same document."""

    def quoted(match: re.Match[str]) -> str:
        items = ", ".join(f'"{item.strip()}"' for item in match[1].split(","))
        return f"gpu: [{items}]"

    return re.sub(r"^gpu: \[(.*)\]$", quoted, text, flags=re.MULTILINE)


def check_mix(modaliac: Path, directory: Path, state: Path) -> int:
    """The generated specs are valid and their apps distinct: plan (as JSON) creates exactly
    the apps validate lists. Returns that count."""
    listed = _run([str(modaliac), "validate", str(directory)], directory)
    apps = [name for line in listed.splitlines() for name in _apps_of(line)]
    argv = [str(modaliac), "plan", "--offline", str(directory), "--state", str(state)]
    summary = json.loads(_run([*argv, "--format", "json"], directory))["summary"]
    if len(set(apps)) != len(apps) or summary.get("create") != len(apps):
        raise SystemExit(f"bench: {len(apps)} apps in {directory}, plan gave {summary}")
    return len(apps)


def _apps_of(line: str) -> list[str]:
    """``PATH: ok (a, b)`` -> ["a", "b"]."""
    _, _, names = line.partition(": ok (")
    return [name.strip() for name in names.rstrip(")").split(",") if name.strip()]


def _run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def git_repo(root: Path, count: int) -> Path:
    """A git repo of ``count`` mixed specs in two commits; the second changes a few specs
    (a scaling value), so ``diff --base HEAD~1`` has something to show."""
    specs = mixed_specs(root / "specs", count)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "-C", str(root)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "specs"], check=True)
    changed = 0
    for path in specs:
        text, found = re.subn(
            r"^(  concurrency: )(\d+)",
            lambda match: f"{match[1]}{int(match[2]) + 1}",
            path.read_text(encoding="utf-8"),
            count=1,
            flags=re.MULTILINE,
        )
        if found and changed < CHANGED_SPECS:
            path.write_text(text, encoding="utf-8")
            changed += 1
    subprocess.run([*git, "commit", "-q", "-am", "a few specs change"], check=True)
    return root / "specs"


# -- the table -------------------------------------------------------------------------------


def startup_rows(
    modaliac: Path, modal: Path | None, runs: int, cwd: Path, *, warm_up: bool
) -> list[Row]:
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "modaliac --version": [str(modaliac), "--version"],
        "modaliac --help": [str(modaliac), "--help"],
    }
    if modal is not None:
        commands["modal --help"] = [str(modal), "--help"]
    times = time_commands(commands, runs, cwd, warm_up=warm_up)
    base = times.get("modal --help")
    rows = [Row("python -c pass", times["python -c pass"], "s")]
    for label in ("modaliac --version", "modaliac --help"):
        rows.append(Row(f"{label} vs modal --help", times[label], "s", base, STARTUP_TARGET))
    if base is not None:
        rows.append(Row("modal --help", base, "s"))
    return rows


def command_rows(
    modaliac: Path, repo: Path, apps: int, runs: int, floor: float, out: Path, *, warm_up: bool
) -> list[Row]:
    """plan --offline, render and fmt --check per spec against the floor, and diff --base
    against plan over the same specs."""
    specs = sorted(repo.glob("*.yaml"))
    one = repo.parent / "one"
    one.mkdir()
    one_spec = one / specs[0].name
    one_spec.write_bytes(specs[0].read_bytes())
    state = repo.parent / NO_STATE
    tool = str(modaliac)

    def per(label: str, argv: Callable[[Path, str], list[str]]) -> dict[str, list[str]]:
        return {f"{label} N": argv(repo, "all"), f"{label} 1": argv(one, "one")}

    commands = {
        **per("plan", lambda d, _: [tool, "plan", "--offline", str(d), "--state", str(state)]),
        **per("render", lambda d, name: [tool, "render", str(d), "-o", str(out / name)]),
        **per("fmt", lambda d, _: [tool, "fmt", "--check", str(d)]),
        "diff": [tool, "diff", "--base", "HEAD~1", str(repo)],
    }
    times = time_commands(commands, runs, repo.parent, warm_up=warm_up)
    n = len(specs)

    def marginal(label: str) -> float | None:
        """ms a spec beyond the first; None when noise swamps it (N took no longer than 1)."""
        more = times[f"{label} N"] - times[f"{label} 1"]
        return more / (n - 1) * 1000 if more > 0 else None

    mix = f"{n} mixed specs, {apps} apps"
    return [
        Row(f"floor: ruamel C safe load, per spec ({n} specs)", floor * 1000, "ms"),
        Row(
            f"plan --offline, per spec ({mix})",
            marginal("plan"),
            "ms",
            floor * 1000,
            PER_SPEC_TARGET,
        ),
        Row(
            f"render -o DIR, per spec ({mix})",
            marginal("render"),
            "ms",
            floor * 1000,
            PER_SPEC_TARGET,
        ),
        Row(f"fmt --check, per spec ({mix})", marginal("fmt"), "ms", floor * 1000, PER_SPEC_TARGET),
        Row(
            f"diff --base HEAD~1 vs plan --offline ({n} specs, {CHANGED_SPECS} changed)",
            times["diff"],
            "s",
            times["plan N"],
            DIFF_TARGET,
        ),
    ]


def load_rows(runs: int, repeat: int) -> list[Row]:
    """``load_spec`` of each shape against the C safe floor on the same file, in process."""
    from modal_iac.loading.load import load_spec
    from modal_iac.spec.address import Project

    project = Project.here()
    rows = []
    for path in SHAPES:
        text = floor_text(path.read_text(encoding="utf-8"))
        floor = per_item(c_safe_load, [text] * repeat, runs)
        cost = per_item(lambda item: load_spec(item, project=project), [path] * repeat, runs)
        rows.append(
            Row(f"load_spec {path.relative_to(REPO)}", cost * 1000, "ms", floor * 1000, LOAD_TARGET)
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="The default run is long (41 minutes on 2 busy CPUs); --quick takes under a minute.",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument("--specs", type=int, default=1000, help="mixed specs per command")
    parser.add_argument(
        "--memory-specs", type=int, default=5000, help="specs for the peak memory of plan"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="20 specs, 50 for memory, 1 run, no warm-up: a smoke test",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile of plan over the specs"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.specs, args.memory_specs = 1, 20, 50
    if args.runs < 1 or args.specs < 2 or args.memory_specs < 1:
        parser.error("--runs and --memory-specs must be at least 1, --specs at least 2")

    modaliac = script("modaliac")
    if modaliac is None:
        print("bench: modaliac is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 1
    modal = script("modal")
    print(f"# modaliac CLI benchmark: {machine_line()}")
    warm = "no warm-up: --quick" if args.quick else "after one untimed warm-up each"
    print(f"# medians of {args.runs} interleaved runs ({warm})")
    print(f"# modaliac: {modaliac}\n# modal: {modal or 'not installed'}")
    print()

    with tempfile.TemporaryDirectory(prefix="modaliac-bench-") as tmp:
        root = Path(tmp)
        repo = git_repo(root / "repo", args.specs)
        apps = check_mix(modaliac, repo, repo.parent / NO_STATE)
        texts = [
            floor_text(path.read_text(encoding="utf-8")) for path in sorted(repo.glob("*.yaml"))
        ]
        floor = per_item(c_safe_load, texts, args.runs)
        memory_dir = root / "memory"
        mixed_specs(memory_dir, args.memory_specs)
        plan_big = [str(modaliac), "plan", "--offline", str(memory_dir), "--state", NO_STATE]
        peaks = [peak_rss_mib(plan_big, root) for _ in range(min(args.runs, 3))]
        sections = [
            (
                "start-up" + ("" if modal else "; modal not installed: no baseline"),
                startup_rows(modaliac, modal, args.runs, root, warm_up=not args.quick),
            ),
            (
                "per spec against the floor; diff against plan",
                command_rows(
                    modaliac,
                    repo,
                    apps,
                    args.runs,
                    floor,
                    root / "rendered",
                    warm_up=not args.quick,
                ),
            ),
            (
                "peak memory (max RSS)",
                [
                    Row(
                        f"plan --offline over {args.memory_specs} mixed specs",
                        statistics.median(peaks),
                        "MiB",
                        target=MEMORY_TARGET_MIB,
                    )
                ],
            ),
            (
                "in process: load_spec of each shape against the floor",
                load_rows(args.runs, 3 if args.quick else 50),
            ),
        ]
        print(table(HEADER, sections))
        print()
        if hasattr(os, "getloadavg"):
            print(f"load average at the end: {os.getloadavg()[0]:.2f} (noise: compare with start)")
        if args.profile:
            print(f"\n# cProfile of modaliac plan --offline over {args.specs} specs (top 40)")
            sys.stdout.flush()
            profile_plan(repo, repo.parent / NO_STATE, 40)
    return 0


def profile_plan(directory: Path, state: Path, top: int) -> None:
    """cProfile of one ``modaliac plan --offline`` over ``directory`` (a fresh interpreter)."""
    code = (
        "import cProfile, os, pstats, sys\n"
        "prof = cProfile.Profile()\n"
        "prof.enable()\n"
        "from modal_iac.cli import main\n"
        "real, sys.stdout = sys.stdout, open(os.devnull, 'w')\n"
        f"main(['plan', '--offline', {str(directory)!r}, '--state', {str(state)!r}])\n"
        "prof.disable()\n"
        "sys.stdout = real\n"
        f"pstats.Stats(prof).sort_stats('cumulative').print_stats({top})\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=directory.parent, check=True)


if __name__ == "__main__":
    sys.exit(main())
