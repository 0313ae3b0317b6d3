"""Wall times of modaliac against Modal (a local Modal API) next to ``modal deploy``, at a
server next door and at a network's latency, side by side in one run.

    python benchmarks/bench_modal.py [--runs N] [--delays 0,0.05] [--apply-sizes 1,20,100]
                                     [--loop-sizes 20,100] [--plan-sizes 1,200]
                                     [--parallel P,...] [--quick] [--profile]

The local Modal API (``python -m modal_iac.local_api --rpc-delay D``) runs as its own process,
so its work does not share a GIL with the measured commands, and delays every RPC by D seconds
(an asyncio sleep: calls in flight together wait side by side, as on a network). Every command
talks to it through the real ``modal`` client with a throw-away HOME. For each delay, medians of
N interleaved runs of:

- ``modaliac apply --yes DIR`` of 1, 20 and 100 new apps (fresh names and an empty state on
  every run), beside a shell loop of ``modal deploy FILE`` over the same specs rendered by
  ``modaliac render`` (fresh names too); apply of one app is the fixed cost every apply pays,
  so the loop of N over it bounds what an apply of N could reach;
- ``modaliac plan DIR`` (online, ``--detailed-exitcode`` must say 0) over 1 and 200 apps
  deployed beforehand and unchanged, beside ``import modal`` and the offline plan.

Targets, at 50 ms: apply of 20 at least 15x faster than the loop; apply of 100 at most 3.5x
apply of 20; plan of 200 at most 2x plan of 1. They are printed with the ratios (a miss is
reported, never an exit status); the script exits non-zero only when a command fails.
``--quick`` runs tiny sizes once (a check that the script works, not a measurement).
``--profile`` adds a phase breakdown and a cProfile (every thread) of one in-process plan and
one in-process apply over the largest sizes, at the last delay.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import REPO, SEED_SPEC, machine_line, script, set_line, table

HEADER = ["measurement", "median", "min .. max", "client cpu", "server cpu"]
SECRETS = ("huggingface=HF_TOKEN", "kalm-api-key=VLLM_API_KEY")  # what specs/kalm.yaml reads
TARGET_DELAY = 0.05  # the targets are about a network of 50 ms round trips
LOOP_SPEEDUP_TARGET = 15.0  # loop of `modal deploy` / apply, for 20 apps
APPLY_GROWTH_TARGET = 3.5  # apply of 100 / apply of 20
PLAN_GROWTH_TARGET = 2.0  # plan of 200 / plan of 1
APPLY_SIZES, PLAN_SIZES = (20, 100), (1, 200)
QUICK = {
    "runs": 1,
    "delays": "0,0.01",
    "apply_sizes": "1,2",
    "loop_sizes": "2",
    "plan_sizes": "1,2",
}
COMMAND_TIMEOUT = 1800.0
GPUS = ("A100-40GB", "A100-80GB", "H100", "L40S")
# Waits, not work: the client waiting for the server, idle worker threads of the SDK.
IDLE = r"^(?!.*(epoll' objects|SimpleQueue' objects|_thread.lock' objects))"


@dataclass
class Row:
    """One measured line: wall times, and the CPU the command and the local API spent."""

    label: str
    times: list[float] = field(default_factory=list)  # seconds, wall
    client_cpu: list[float] = field(default_factory=list)  # the command and its children
    server_cpu: list[float] = field(default_factory=list)  # the local Modal API process

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def cells(self) -> list[str]:
        median = f"{self.median:.3f} s"
        spread = f"{min(self.times):.3f} s .. {max(self.times):.3f} s"
        cpu = [
            f"{statistics.median(x):.2f} s" if x else "" for x in (self.client_cpu, self.server_cpu)
        ]
        return [self.label, median, spread, *cpu]


@dataclass(frozen=True)
class Command:
    """A command to time; ``prepare`` runs untimed before every run (e.g. write new specs)."""

    label: str
    argv: list[str] | Callable[[], list[str]]
    prepare: Callable[[], None] = lambda: None
    check: Callable[[str], str | None] = lambda out: None  # stdout -> a complaint, or None
    warm_up: bool = True  # an untimed first run; a loop of many deploys warms itself

    def command(self) -> list[str]:
        return self.argv() if callable(self.argv) else self.argv


# -- the local Modal API, as its own process ---------------------------------------------


class LocalApi:
    """``python -m modal_iac.local_api`` in a child process; ``env`` points clients at it."""

    def __init__(self, home: Path, log_dir: Path, rpc_delay: float = 0.0) -> None:
        self.env = child_env(home)
        self.rpc_delay = rpc_delay
        self._out = log_dir / f"local-api-{rpc_delay:g}.out"
        self._err = log_dir / f"local-api-{rpc_delay:g}.err"
        argv = [sys.executable, "-m", "modal_iac.local_api", "--rpc-delay", str(rpc_delay)]
        for name in SECRETS:
            argv += ["--secret", name]
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self.process = subprocess.Popen(argv, stdout=out, stderr=err, env=self.env, cwd=REPO)
        try:
            self.env.update(self._read_exports(timeout=30.0))
            self._wait_for_port(timeout=10.0)
        except BaseException:
            self.stop()
            raise

    def _read_exports(self, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = dict(
                re.findall(r"^export (MODAL_\w+)=(\S+)$", self._out.read_text(), re.MULTILINE)
            )
            if {"MODAL_SERVER_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"} <= found.keys():
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"bench: the local Modal API did not start:\n{self.log()}")

    def _wait_for_port(self, timeout: float) -> None:
        host, port = self.env["MODAL_SERVER_URL"].removeprefix("http://").rsplit(":", 1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((host, int(port)), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"bench: nothing listens on {host}:{port}") from None
                time.sleep(0.02)

    def cpu_seconds(self) -> float:
        """User + system CPU of the server so far (Linux /proc; NaN elsewhere)."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return float("nan")
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise SystemExit(f"bench: the local Modal API exited:\n{self.log()}")

    def log(self) -> str:
        return self._err.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # its Ctrl-C path stops the server cleanly
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def child_env(home: Path) -> dict[str, str]:
    """This environment minus any Modal or modaliac setting, with a throw-away HOME."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MODAL_") and key != "MODALIAC_STATE"
    }
    env.update(HOME=str(home), NO_COLOR="1")
    return env


# -- specs ----------------------------------------------------------------------------------


def write_specs(directory: Path, prefix: str, count: int, seed_text: str, revision: int) -> None:
    """``count`` valid specs named ``<prefix>-NNN``; ``revision`` changes max_num_seqs in all
    of them (a setting in the generated file, so a new revision is a real deploy)."""
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        text = seed_text
        text = set_line(text, r"app: .*", f"app: {prefix}-{index:03d}")
        text = set_line(text, r"  team: .*", f"  team: team-{index % 7}")
        text = set_line(text, r"gpu: .*", f"gpu: {GPUS[index % len(GPUS)]}")
        text = set_line(text, r"  max_num_seqs: .*", f"  max_num_seqs: {64 + revision}")
        (directory / f"{prefix}-{index:03d}.yaml").write_text(text, encoding="utf-8")


# -- measuring ------------------------------------------------------------------------------


def run_checked(argv: list[str], api: LocalApi, cwd: Path) -> str:
    """Run a command to completion against the API; its stdout, or exit the bench on failure."""
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=api.env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise SystemExit(f"bench: {' '.join(argv)} took over {COMMAND_TIMEOUT:g}s") from None
    if done.returncode != 0:
        api.check_alive()
        raise SystemExit(
            f"bench: {' '.join(argv)} exited {done.returncode}:\n{done.stderr.strip()}\n"
            f"{done.stdout.strip()[-2000:]}"
        )
    return done.stdout


def time_commands(commands: list[Command], sizes: Sizes, api: LocalApi, cwd: Path) -> list[Row]:
    """Wall and CPU times of each command, ``sizes.runs`` times, interleaved round by round.

    Each command first runs once untimed (to check it and warm the page cache) unless it
    says it needs no warm-up, or the run is ``--quick``. A round runs every command once, so
    a burst of noise on the machine hits all of them alike.
    """
    rows = [Row(command.label) for command in commands]
    for attempt in range(sizes.runs + 1):
        for command, row in zip(commands, rows, strict=True):
            if not attempt and not (command.warm_up and sizes.warm_up):
                continue
            command.prepare()
            argv = command.command()
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            server = api.cpu_seconds()
            start = time.perf_counter()
            out = run_checked(argv, api, cwd)
            elapsed = time.perf_counter() - start
            server = api.cpu_seconds() - server
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            complaint = command.check(out)
            if complaint:
                raise SystemExit(f"bench: {command.label}: {complaint}\n{out[-2000:]}")
            if attempt:
                row.times.append(elapsed)
                row.client_cpu.append(
                    after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
                )
                row.server_cpu.append(server)
    return rows


def applied(count: int) -> Callable[[str], str | None]:
    """A check that an apply really deployed ``count`` apps and nothing failed."""
    expected = f"Apply finished: {count} succeeded, 0 failed."

    def check(out: str) -> str | None:
        return None if expected in out else f"expected {expected!r} in the output"

    return check


# -- the two experiments --------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    modaliac: Path
    modal: Path
    root: Path  # the temporary project folder: specs, states, build and render folders
    seed_text: str


@dataclass
class Fresh:
    """A new set of ``count`` specs (new app names) in a new folder, each time it is called."""

    tools: Tools
    name: str  # of the experiment: the folder and app-name prefix
    count: int
    runs: int = 0

    def __call__(self) -> None:
        self.runs += 1
        write_specs(self.specs, self.prefix, self.count, self.tools.seed_text, revision=0)

    @property
    def prefix(self) -> str:
        return f"{self.name}r{self.runs}"

    @property
    def specs(self) -> Path:
        return self.tools.root / "specs" / self.prefix

    @property
    def state(self) -> Path:
        return self.tools.root / "states" / f"{self.prefix}.json"


def plan_rows(tools: Tools, api: LocalApi, sizes: Sizes) -> list[Row]:
    """Online plan over ``size`` deployed, unchanged apps (``--detailed-exitcode`` must say 0)."""
    commands = [
        Command("python -c 'import modal'", [sys.executable, "-c", "import modal"]),
    ]
    for size in sizes.plan:
        specs = tools.root / "specs" / f"plan{size}-{api.rpc_delay:g}"
        state = tools.root / "states" / f"{specs.name}.json"
        write_specs(specs, f"plan{size}", size, tools.seed_text, revision=0)
        deploy = [str(tools.modaliac), "apply", "--yes", str(specs), "--state", str(state)]
        deploy += ["--build-dir", str(tools.root / "build" / specs.name), "--parallel", "32"]
        print(f"# deploying {size} app(s) to plan at {delay_label(api.rpc_delay)} ...", flush=True)
        if applied(size)(run_checked(deploy, api, tools.root)) is not None:
            raise SystemExit(f"bench: deploying {size} apps for plan did not deploy them all")
        base = [str(tools.modaliac), "plan", str(specs), "--state", str(state)]
        commands.append(Command(plan_label(size), [*base, "--detailed-exitcode"]))
        commands.append(Command(plan_label(size, offline=True), [*base, "--offline"]))
    return time_commands(commands, sizes, api, tools.root)


def apply_rows(tools: Tools, api: LocalApi, size: int, sizes: Sizes) -> list[Row]:
    """Apply of ``size`` new apps at each ``--parallel`` (None: apply's default), and the loop
    of ``modal deploy`` over the same specs rendered, every run deploying apps new to Modal."""
    commands = []
    for parallel in sizes.parallels:
        fresh = Fresh(tools, f"apply{size}p{parallel or 0}", size)

        def argv(fresh: Fresh = fresh, parallel: int | None = parallel) -> list[str]:
            command = [str(tools.modaliac), "apply", "--yes", str(fresh.specs)]
            command += ["--state", str(fresh.state), "--build-dir", str(tools.root / "build")]
            return command + (["--parallel", str(parallel)] if parallel else [])

        label = apply_label(size, parallel)
        commands.append(Command(label, argv, fresh, applied(size)))
    if size in sizes.loop:
        fresh = Fresh(tools, f"loop{size}", size)
        rendered = tools.root / "rendered"

        def render() -> None:
            fresh()
            shutil.rmtree(rendered, ignore_errors=True)
            run_checked(
                [str(tools.modaliac), "render", str(fresh.specs), "-o", str(rendered)],
                api,
                tools.root,
            )

        # The loop of seed 004's deploy.py: one `modal deploy` process per app, in turn.
        script = f'for f in "$1"/*.py; do "{tools.modal}" deploy "$f" >/dev/null || exit 1; done'
        argv = ["sh", "-c", script, "sh", str(rendered)]
        commands.append(Command(loop_label(size), argv, render, warm_up=False))
    return time_commands(commands, sizes, api, tools.root)


def delay_label(delay: float) -> str:
    return f"{delay * 1000:g} ms a round trip"


def plan_label(size: int, *, offline: bool = False) -> str:
    what = "offline" if offline else "online"
    return f"modaliac plan ({what}), {size} deployed app{'' if size == 1 else 's'}"


def apply_label(size: int, parallel: int | None) -> str:
    label = f"modaliac apply --yes, {size} new app{'' if size == 1 else 's'}"
    return label + (f", --parallel {parallel}" if parallel else "")


def loop_label(size: int) -> str:
    return f"loop of {size} x `modal deploy FILE`"


# -- profiling in process -------------------------------------------------------------------


def phases_in_process(argv: list[str]) -> None:
    """Run ``modaliac ARGV`` in this (fresh) interpreter and print the wall time and the CPU
    time (of every thread: the SDK deploys on its own) of each stage. Called by ``--profile``
    through ``python -c``."""
    phases: dict[str, tuple[float, float]] = {}
    started, started_cpu = time.perf_counter(), time.process_time()
    from modal_iac import cli

    phases["import modal_iac.cli"] = (
        time.perf_counter() - started,
        time.process_time() - started_cpu,
    )
    start, start_cpu = time.perf_counter(), time.process_time()
    import modal_iac.modal.deploy as deploy
    import modal_iac.modal.observe as modal_api
    import modal_iac.plan.targets as targets
    import modal_iac.state.store as state

    phases["import modal (modal_iac.modal.observe)"] = (
        time.perf_counter() - start,
        time.process_time() - start_cpu,
    )
    _time_phase(phases, targets, "desired_apps", "load + render specs")
    _time_phase(phases, modal_api, "observe", "observe Modal (the online plan)")
    _time_phase(phases, deploy, "deploy_all", "deploy_all (parallel deploys)")
    nested: dict[str, tuple[float, float]] = {}
    _time_phase(nested, deploy, "_import", "import the generated files")
    _time_phase(nested, state.LocalStore, "record", "record each app (a journal line)")
    _run_cli(cli.main, argv)
    total, total_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    print(
        f"modaliac {' '.join(argv[:2])} ...: {total:.3f} s after interpreter start-up, "
        f"{total_cpu:.3f} s of CPU"
    )
    print(f"  {'stage':44} {'wall':>7}  {'cpu':>7}")
    for phase, (seconds, cpu) in phases.items():
        print(f"  {phase:44} {seconds:.3f} s  {cpu:.3f} s")
        if phase.startswith("deploy_all"):
            for part, (part_seconds, part_cpu) in nested.items():
                print(f"    {'of which ' + part:42} {part_seconds:.3f} s  {part_cpu:.3f} s")
    other = "other (imports of pydantic, Jinja, the stages)"
    other_wall = total - sum(wall for wall, _ in phases.values())
    other_cpu = total_cpu - sum(cpu for _, cpu in phases.values())
    print(f"  {other:44} {other_wall:.3f} s  {other_cpu:.3f} s")


def profile_in_process(argv: list[str], top: int) -> None:
    """Run ``modaliac ARGV`` in this (fresh) interpreter under a cProfile of every thread (the
    SDK deploys on its own event-loop thread, out of sight of a plain cProfile). Called by
    ``--profile`` through ``python -c``."""
    import cProfile
    import pstats
    import threading

    profiles: list[cProfile.Profile] = []
    thread_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()
        try:
            thread_run(self)
        finally:
            profile.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    main_profile = cProfile.Profile()
    main_profile.enable()
    from modal_iac import cli

    _run_cli(cli.main, argv)
    main_profile.disable()
    print(
        f"# cProfile of the main thread and {len(profiles)} other thread(s), top {top} by "
        "tottime, waits (epoll, idle worker threads, locks) left out"
    )
    stats = pstats.Stats(main_profile)
    for profile in profiles:
        stats.add(profile)
    stats.sort_stats("tottime").print_stats(IDLE, top)
    if os.environ.get("BENCH_CALLERS"):
        stats.print_callers(os.environ["BENCH_CALLERS"])


def _run_cli(main: Callable[[list[str]], int], argv: list[str]) -> float:
    """``main(argv)`` with its output swallowed; its wall time. Exits if the command fails."""
    import io

    real_stdout, sys.stdout = sys.stdout, io.StringIO()
    start = time.perf_counter()
    try:
        code = main(argv)
    finally:
        output, sys.stdout = sys.stdout.getvalue(), real_stdout
    if code != 0:
        raise SystemExit(f"modaliac {' '.join(argv)} exited {code}:\n{output[-2000:]}")
    return time.perf_counter() - start


def _time_phase(
    phases: dict[str, tuple[float, float]], module: object, name: str, label: str
) -> None:
    """Wrap ``module.name`` so that its wall and CPU times add up under ``label``."""
    inner = getattr(module, name)

    def timed(*args: object, **kwargs: object) -> object:
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            wall, cpu = phases.get(label, (0.0, 0.0))
            phases[label] = (
                wall + time.perf_counter() - start,
                cpu + time.process_time() - start_cpu,
            )

    setattr(module, name, timed)


def run_in_process(function: str, args: str, api: LocalApi, cwd: Path) -> None:
    """``bench_modal.<function>(<args>)`` in a fresh interpreter pointed at the local API."""
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import bench_modal; bench_modal.{function}({args})"
    )
    sys.stdout.flush()
    subprocess.run([sys.executable, "-c", code], cwd=cwd, env=api.env, check=True)


# -- output ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    runs: int
    delays: list[float]
    apply: list[int]
    loop: list[int]  # the apply sizes that also get a loop of `modal deploy`
    plan: list[int]
    parallels: list[int | None]  # None: apply's own default
    warm_up: bool = True  # an untimed first run of each command (not with --quick)


def ratio_lines(rows: dict[str, Row], delay: float, sizes: Sizes) -> list[str]:
    """The ratios the targets are about, at one delay; a target is judged only at the delay
    and the sizes it is stated for."""
    lines = []
    at = f"at {TARGET_DELAY * 1000:g} ms"

    def judged(name: str, value: float, target: str, met: bool, stated: bool, where: str) -> None:
        verdict = f"target {target}: {'yes' if met else 'NO'}"
        if not (stated and delay == TARGET_DELAY):
            verdict = f"the target {target} is for {where} {at}"
        lines.append(f"{name} = {value:.2f} ({verdict})")

    for parallel in sizes.parallels:
        for size in sizes.loop:
            speedup = rows[loop_label(size)].median / rows[apply_label(size, parallel)].median
            target = f">= {LOOP_SPEEDUP_TARGET:g}"
            stated, where = size == APPLY_SIZES[0], f"{APPLY_SIZES[0]} apps"
            met = speedup >= LOOP_SPEEDUP_TARGET
            judged(
                f"loop({size}) / apply({size}{_p(parallel)})", speedup, target, met, stated, where
            )
        if 1 in sizes.apply:  # apply of one app bounds every apply: it is its fixed cost
            one = rows[apply_label(1, parallel)].median
            for size in (size for size in sizes.loop if size > 1):
                bound = rows[loop_label(size)].median / one
                lines.append(
                    f"loop({size}) / apply(1{_p(parallel)}) = {bound:.2f}: the most an apply of "
                    f"{size} could reach (apply of one app takes {one:.3f} s)"
                )
        small, large = _growth_sizes(sizes.apply)
        if large > small:
            growth = (
                rows[apply_label(large, parallel)].median
                / rows[apply_label(small, parallel)].median
            )
            target = f"<= {APPLY_GROWTH_TARGET:g}"
            stated, where = (small, large) == APPLY_SIZES, "{} and {} apps".format(*APPLY_SIZES)
            met = growth <= APPLY_GROWTH_TARGET
            name = f"apply({large}{_p(parallel)}) / apply({small}{_p(parallel)})"
            judged(name, growth, target, met, stated, where)
    for size in sizes.loop:
        per_app = rows[loop_label(size)].median / size
        lines.append(f"the loop of {size}: {per_app:.3f} s per `modal deploy`")
    small, large = sizes.plan[0], sizes.plan[-1]
    if large > small:
        growth = rows[plan_label(large)].median / rows[plan_label(small)].median
        target = f"<= {PLAN_GROWTH_TARGET:g}"
        stated, where = (small, large) == PLAN_SIZES, "{} and {} apps".format(*PLAN_SIZES)
        met = growth <= PLAN_GROWTH_TARGET
        judged(f"plan({large}) / plan({small}), online", growth, target, met, stated, where)
        slope = (rows[plan_label(large)].median - rows[plan_label(small)].median) / (large - small)
        lines.append(f"online plan: marginal cost {slope * 1000:.1f} ms per deployed app")
    online, offline = rows[plan_label(small)], rows[plan_label(small, offline=True)]
    modal = rows["python -c 'import modal'"].median
    lines.append(
        f"online plan of {small} over offline: {online.median - offline.median:+.3f} s "
        f"(importing modal alone: {modal:.3f} s)"
    )
    return lines


def _growth_sizes(applied: list[int]) -> tuple[int, int]:
    """The two apply sizes whose ratio is judged: the target's when both ran, else the
    smallest and the largest (above the single app of the bound, when two sizes are)."""
    if set(APPLY_SIZES) <= set(applied):
        return APPLY_SIZES
    above_one = [size for size in applied if size > 1]
    chosen = above_one if len(above_one) > 1 else applied
    return chosen[0], chosen[-1]


def _p(parallel: int | None) -> str:
    return f", --parallel {parallel}" if parallel else ""


def measure(tools: Tools, delay: float, sizes: Sizes) -> list[str]:
    """Every experiment against one local API delaying each RPC by ``delay``: the table's
    sections and the ratio lines."""
    home = tools.root / f"home-{delay:g}"
    home.mkdir()
    api = LocalApi(home, tools.root, rpc_delay=delay)
    try:
        sections = []
        for size in sizes.apply:
            print(f"# applying {size} new apps at {delay_label(delay)} ...", flush=True)
            rows = apply_rows(tools, api, size, sizes)
            sections.append((f"{delay_label(delay)}: apply --yes DIR, {size} new apps", rows))
        rows = plan_rows(tools, api, sizes)
        sections.append((f"{delay_label(delay)}: plan DIR over deployed, unchanged apps", rows))
        api.check_alive()
    finally:
        api.stop()
    by_label = {row.label: row for _, rows in sections for row in rows}
    return [table(HEADER, sections), "", *ratio_lines(by_label, delay, sizes)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--delays", default=f"0,{TARGET_DELAY:g}", help="seconds each RPC is delayed, per run"
    )
    parser.add_argument("--apply-sizes", default="1,20,100", help="new apps to apply")
    parser.add_argument(
        "--loop-sizes",
        default=None,
        help="apply sizes that also get a loop of `modal deploy` (default: every apply size)",
    )
    parser.add_argument("--plan-sizes", default="1,200", help="deployed apps to plan over")
    parser.add_argument(
        "--parallel", default="", help="apply --parallel values to compare (default: apply's own)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, one run: checks the script, no figures"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile one in-process plan and apply over the largest sizes",
    )
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    apply_sizes = _counts(parser, "--apply-sizes", args.apply_sizes)
    loop_sizes = (
        apply_sizes
        if args.loop_sizes is None
        else _counts(parser, "--loop-sizes", args.loop_sizes, empty=True)
    )
    if not set(loop_sizes) <= set(apply_sizes):
        parser.error("--loop-sizes must be among --apply-sizes")
    parallels: list[int | None] = [None]
    if args.parallel:
        parallels = list(_counts(parser, "--parallel", args.parallel))
    sizes = Sizes(
        runs=args.runs,
        delays=_delays(parser, args.delays),
        apply=apply_sizes,
        loop=loop_sizes,
        plan=_counts(parser, "--plan-sizes", args.plan_sizes),
        parallels=parallels,
        warm_up=not args.quick,
    )
    modaliac, modal = script("modaliac"), script("modal")
    if modaliac is None or modal is None:
        print("bench: modaliac and modal must be installed (pip install -e '.[test]')")
        return 1

    print(f"# modaliac against Modal benchmark: {machine_line()}")
    print(f"# medians of {args.runs} interleaved runs (after one untimed warm-up each, but loops)")
    print(f"# python: {sys.executable}\n# modaliac: {modaliac}\n# modal: {modal}")
    print("# Modal: the local Modal API (python -m modal_iac.local_api --rpc-delay D), own process")
    print()
    with tempfile.TemporaryDirectory(prefix="modaliac-bench-modal-") as tmp:
        tools = Tools(modaliac, modal, Path(tmp), SEED_SPEC.read_text(encoding="utf-8"))
        results = [measure(tools, delay, sizes) for delay in sizes.delays]
        print()
        for lines in results:
            print("\n".join(lines))
            print()
        if hasattr(os, "getloadavg"):
            print(f"load average at the end: {os.getloadavg()[0]:.2f} (compare with start)")
        if args.profile:
            _profile(tools, sizes)
    return 0


def _profile(tools: Tools, sizes: Sizes) -> None:
    """Stage times, then a cProfile, of one in-process plan and one in-process apply (new
    apps) over the largest sizes, at the last delay."""
    delay = sizes.delays[-1]
    home = tools.root / "home-profile"
    home.mkdir()
    api = LocalApi(home, tools.root, rpc_delay=delay)
    try:
        plan = Fresh(tools, "profileplan", sizes.plan[-1])
        plan()
        argv = ["plan", str(plan.specs), "--state", str(plan.state)]
        deploy = [str(tools.modaliac), "apply", "--yes", *argv[1:], "--parallel", "32"]
        run_checked([*deploy, "--build-dir", str(tools.root / "build")], api, tools.root)
        print(f"\n# in process, at {delay_label(delay)}: {plan_label(sizes.plan[-1])}")
        run_in_process("phases_in_process", repr(argv), api, tools.root)
        run_in_process("profile_in_process", f"{argv!r}, 25", api, tools.root)

        apply = Fresh(tools, "profileapply", sizes.apply[-1])
        print(f"\n# in process, at {delay_label(delay)}: {apply_label(apply.count, None)}")
        for function, top in (("phases_in_process", ""), ("profile_in_process", ", 25")):
            apply()
            argv = ["apply", "--yes", str(apply.specs), "--state", str(apply.state)]
            argv += ["--build-dir", str(tools.root / "build")]
            run_in_process(function, f"{argv!r}{top}", api, tools.root)
    finally:
        api.stop()


def _counts(
    parser: argparse.ArgumentParser, option: str, value: str, *, empty: bool = False
) -> list[int]:
    counts = sorted({int(part) for part in value.split(",") if part.strip()})
    if (not counts and not empty) or (counts and counts[0] < 1):
        parser.error(f"{option} needs positive counts")
    return counts


def _delays(parser: argparse.ArgumentParser, value: str) -> list[float]:
    try:
        delays = sorted({float(part) for part in value.split(",") if part.strip()})
    except ValueError:
        delays = []
    if not delays or delays[0] < 0:
        parser.error("--delays needs seconds >= 0, like 0,0.05")
    return delays


if __name__ == "__main__":
    sys.exit(main())
