"""Wall times of modaliac against Modal (a local Modal API) next to ``modal deploy`` in one run.

    python benchmarks/bench_modal.py [--runs N] [--plan-sizes 1,10,50] [--apply-sizes 5,20]
                                     [--parallel 4,8] [--profile]

The local Modal API (``python -m modal_iac.local_api``) runs as its own process, so its work
does not share a GIL with the measured commands; every command talks to it through the real
``modal`` client with a throw-away HOME. Measured, medians of N interleaved runs:

- ``modaliac plan DIR`` (online) over 1, 10 and 50 apps deployed beforehand and unchanged,
  beside ``import modal`` and the offline plan of the same specs;
- ``modaliac apply --yes DIR`` over 5 and 20 apps, each spec changed before every run so
  every run deploys every app, with ``--parallel`` 4 and 8, beside a shell loop of
  ``modal deploy FILE`` over the same specs rendered by ``modaliac render``.

Targets (plan of 50 under 3x plan of 1; apply of 20 at least 5x faster than the loop) are
printed with the figures; a miss is reported, never an exit status. The script exits non-zero
only when a command fails. ``--profile`` adds a phase breakdown and a cProfile (every thread)
of one in-process plan and one in-process apply over the largest sizes. The local API sets
TCP_NODELAY on its sockets, so it answers like a server next door: the figures are modaliac's
own cost, not network latency.
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

HEADER = ["measurement", "median", "min .. max", "client cpu", "server cpu", "target", "met"]
SECRETS = ("huggingface=HF_TOKEN", "kalm-api-key=VLLM_API_KEY")  # what specs/kalm.yaml reads
PLAN_RATIO_TARGET = 3.0  # plan(50) / plan(1)
APPLY_SPEEDUP_TARGET = 5.0  # loop of `modal deploy` / apply, for 20 apps
COMMAND_TIMEOUT = 900.0
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
    target: float | None = None  # an upper bound on the median, set once known

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def cells(self) -> list[str]:
        median = f"{self.median:.3f} s"
        spread = f"{min(self.times):.3f} s .. {max(self.times):.3f} s"
        cpu = [
            f"{statistics.median(x):.2f} s" if x else "" for x in (self.client_cpu, self.server_cpu)
        ]
        if self.target is None:
            return [self.label, median, spread, *cpu, "", ""]
        met = "yes" if self.median < self.target else "NO"
        return [self.label, median, spread, *cpu, f"< {self.target:.3f} s", met]


@dataclass(frozen=True)
class Command:
    """A command to time; ``prepare`` runs untimed before every run (e.g. change the specs)."""

    label: str
    argv: list[str]
    prepare: Callable[[], None] = lambda: None
    check: Callable[[str], str | None] = lambda out: None  # stdout -> a complaint, or None


# -- the local Modal API, as its own process ---------------------------------------------


class LocalApi:
    """``python -m modal_iac.local_api`` in a child process; ``env`` points clients at it."""

    def __init__(self, home: Path, log_dir: Path) -> None:
        self.env = child_env(home)
        self._out = log_dir / "local-api.out"
        self._err = log_dir / "local-api.err"
        argv = [sys.executable, "-m", "modal_iac.local_api"]
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


def time_commands(commands: list[Command], runs: int, api: LocalApi, cwd: Path) -> list[Row]:
    """Wall and CPU times of each command, ``runs`` times, interleaved round by round.

    Each command first runs once untimed (to check it and warm the page cache). A round runs
    every command once, so a burst of noise on the machine hits all of them alike.
    """
    rows = [Row(command.label) for command in commands]
    for attempt in range(runs + 1):
        for command, row in zip(commands, rows, strict=True):
            command.prepare()
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            server = api.cpu_seconds()
            start = time.perf_counter()
            out = run_checked(command.argv, api, cwd)
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


def plan_rows(tools: Tools, api: LocalApi, sizes: list[int], runs: int) -> list[Row]:
    """Online plan over ``size`` deployed, unchanged apps (``--detailed-exitcode`` must say 0)."""
    commands = [
        Command("python -c 'import modal'", [sys.executable, "-c", "import modal"]),
    ]
    for size in sizes:
        specs, state = tools.root / f"plan-{size}", tools.root / f"plan-{size}.state.json"
        write_specs(specs, f"plan{size}", size, tools.seed_text, revision=0)
        deploy = [str(tools.modaliac), "apply", "--yes", str(specs), "--state", str(state)]
        deploy += ["--build-dir", str(tools.root / "build" / specs.name), "--parallel", "8"]
        print(f"# deploying {size} app(s) for plan ...", flush=True)
        if applied(size)(run_checked(deploy, api, tools.root)) is not None:
            raise SystemExit(f"bench: deploying {size} apps for plan did not deploy them all")
        base = [str(tools.modaliac), "plan", str(specs), "--state", str(state)]
        commands.append(Command(plan_label(size), [*base, "--detailed-exitcode"]))
        if size in (sizes[0], sizes[-1]):
            commands.append(Command(plan_label(size, offline=True), [*base, "--offline"]))
    rows = time_commands(commands, runs, api, tools.root)
    by_label = {row.label: row for row in rows}
    if sizes[0] == 1:
        for size in sizes[1:]:
            by_label[plan_label(size)].target = PLAN_RATIO_TARGET * by_label[plan_label(1)].median
    return rows


def apply_rows(
    tools: Tools, api: LocalApi, size: int, parallels: list[int], runs: int
) -> list[Row]:
    """Apply over ``size`` changed apps at each ``--parallel``, and the loop of ``modal
    deploy`` over the same specs rendered, all redeploying the same apps in turn."""
    specs, state = tools.root / f"apply-{size}", tools.root / f"apply-{size}.state.json"
    rendered = tools.root / f"rendered-{size}"
    revision = 0

    def change() -> None:
        nonlocal revision
        revision += 1
        write_specs(specs, f"apply{size}", size, tools.seed_text, revision)

    def change_and_render() -> None:
        change()
        shutil.rmtree(rendered, ignore_errors=True)
        render = [str(tools.modaliac), "render", str(specs), "-o", str(rendered)]
        run_checked(render, api, tools.root)

    commands = []
    for parallel in parallels:
        argv = [str(tools.modaliac), "apply", "--yes", str(specs), "--state", str(state)]
        argv += ["--build-dir", str(tools.root / "build" / specs.name)]
        argv += ["--parallel", str(parallel)]
        commands.append(Command(apply_label(size, parallel), argv, change, applied(size)))
    # The loop of seed 004's deploy.py: one `modal deploy` process per app, one after another.
    loop = f'for f in "$1"/*.py; do "{tools.modal}" deploy "$f" >/dev/null || exit 1; done'
    commands.append(
        Command(loop_label(size), ["sh", "-c", loop, "sh", str(rendered)], change_and_render)
    )
    rows = time_commands(commands, runs, api, tools.root)
    loop_row = rows[-1]
    if size == 20:
        for row in rows[:-1]:
            row.target = loop_row.median / APPLY_SPEEDUP_TARGET
    return rows


def plan_label(size: int, *, offline: bool = False) -> str:
    what = "offline" if offline else "online"
    return f"modaliac plan ({what}), {size} deployed app{'' if size == 1 else 's'}"


def apply_label(size: int, parallel: int) -> str:
    return f"modaliac apply --yes, {size} changed apps, --parallel {parallel}"


def loop_label(size: int) -> str:
    return f"loop of {size} x `modal deploy FILE`"


# -- profiling in process -------------------------------------------------------------------


def phases_in_process(argv: list[str]) -> None:
    """Run ``modaliac ARGV`` in this (fresh) interpreter and print the wall time of each stage.
    Called by ``--profile`` through ``python -c``."""
    phases: dict[str, float] = {}
    started = time.perf_counter()
    from modal_iac import cli

    phases["import modal_iac.cli"] = time.perf_counter() - started
    start = time.perf_counter()
    import modal_iac.deploy as deploy
    import modal_iac.modal_api as modal_api
    import modal_iac.state as state

    phases["import modal (modal_iac.modal_api)"] = time.perf_counter() - start
    _time_phase(phases, cli, "desired_apps", "load + render specs")
    _time_phase(phases, modal_api, "observe", "observe Modal (the online plan)")
    _time_phase(phases, deploy, "deploy_all", "deploy_all (parallel deploys)")
    nested: dict[str, float] = {}
    _time_phase(nested, deploy, "_import", "import the generated files")
    _time_phase(nested, state, "write_state", "write the state (once per app)")
    _run_cli(cli.main, argv)
    total = time.perf_counter() - started
    print(f"modaliac {' '.join(argv[:2])} ...: {total:.3f} s after interpreter start-up")
    for phase, seconds in phases.items():
        print(f"  {phase:44} {seconds:.3f} s")
        if phase.startswith("deploy_all"):
            for part, part_seconds in nested.items():
                print(f"    {'of which ' + part:42} {part_seconds:.3f} s")
    other = "other (imports of pydantic, Jinja, the stages)"
    print(f"  {other:44} {total - sum(phases.values()):.3f} s")


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


def _time_phase(phases: dict[str, float], module: object, name: str, label: str) -> None:
    """Wrap ``module.name`` so that its wall time adds up under ``label``."""
    inner = getattr(module, name)

    def timed(*args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            phases[label] = phases.get(label, 0.0) + time.perf_counter() - start

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


def print_derived(rows: dict[str, Row], plan_sizes: list[int], apply_sizes: list[int]) -> None:
    """The ratios the targets are about, and where the time of plan goes."""
    small, large = plan_sizes[0], plan_sizes[-1]
    if large > small:
        ratio = rows[plan_label(large)].median / rows[plan_label(small)].median
        target = ""
        if (small, large) == (1, 50):
            met = "yes" if ratio < PLAN_RATIO_TARGET else "NO"
            target = f" (target < {PLAN_RATIO_TARGET:g}: {met})"
        print(f"plan({large}) / plan({small}) = {ratio:.2f}{target}")
        slope = (rows[plan_label(large)].median - rows[plan_label(small)].median) / (large - small)
        print(f"online plan: marginal cost {slope * 1000:.1f} ms per deployed app")
    online, offline = rows[plan_label(small)], rows[plan_label(small, offline=True)]
    modal = rows["python -c 'import modal'"]
    print(
        f"online plan of {small} over offline: {online.median - offline.median:+.3f} s "
        f"(importing modal alone: {modal.median:.3f} s)"
    )
    for size in apply_sizes:
        loop = rows[loop_label(size)]
        per_app = loop.median / size
        for label, row in rows.items():
            if not label.startswith(f"modaliac apply --yes, {size} "):
                continue
            speedup = loop.median / row.median
            target = ""
            if size == 20:
                met = "yes" if speedup >= APPLY_SPEEDUP_TARGET else "NO"
                target = f" (target >= {APPLY_SPEEDUP_TARGET:g}x: {met})"
            print(f"{size} apps, {label.rsplit(', ', 1)[1]}: {speedup:.2f}x the loop{target}")
        print(f"{size} apps: the loop costs {per_app:.3f} s per `modal deploy`")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument("--plan-sizes", default="1,10,50", help="deployed apps to plan over")
    parser.add_argument("--apply-sizes", default="5,20", help="changed apps to apply")
    parser.add_argument("--parallel", default="4,8", help="apply --parallel values to compare")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile one in-process plan and apply over the largest sizes",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    plan_sizes, apply_sizes, parallels = (
        _counts(parser, option, value)
        for option, value in (
            ("--plan-sizes", args.plan_sizes),
            ("--apply-sizes", args.apply_sizes),
            ("--parallel", args.parallel),
        )
    )
    modaliac, modal = script("modaliac"), script("modal")
    if modaliac is None or modal is None:
        print("bench: modaliac and modal must be installed (pip install -e '.[test]')")
        return 1

    print(f"# modaliac against Modal benchmark: {machine_line()}")
    print(f"# medians of {args.runs} interleaved runs (after one untimed warm-up each)")
    print(f"# python: {sys.executable}\n# modaliac: {modaliac}\n# modal: {modal}")
    print("# Modal: the local Modal API (python -m modal_iac.local_api) in its own process")
    print()
    with tempfile.TemporaryDirectory(prefix="modaliac-bench-modal-") as tmp:
        root = Path(tmp)
        (root / "home").mkdir()
        api = LocalApi(root / "home", root)
        try:
            tools = Tools(modaliac, modal, root, SEED_SPEC.read_text(encoding="utf-8"))
            sections = [
                (
                    "plan DIR, online: apps deployed beforehand, unchanged (exit 0 checked)",
                    plan_rows(tools, api, plan_sizes, args.runs),
                )
            ]
            for size in apply_sizes:
                print(f"# applying {size} changed apps ...", flush=True)
                sections.append(
                    (
                        f"apply --yes DIR, {size} specs changed before every run",
                        apply_rows(tools, api, size, parallels, args.runs),
                    )
                )
            print()
            print(table(HEADER, sections))
            print()
            if hasattr(os, "getloadavg"):
                print(f"load average at the end: {os.getloadavg()[0]:.2f} (compare with start)")
            by_label = {row.label: row for _, rows in sections for row in rows}
            print_derived(by_label, plan_sizes, apply_sizes)
            if args.profile:
                _profile(tools, api, plan_sizes[-1], apply_sizes[-1], parallels[-1])
            api.check_alive()
        finally:
            api.stop()
    return 0


def _profile(tools: Tools, api: LocalApi, plan_size: int, apply_size: int, parallel: int) -> None:
    """Stage times, then a cProfile, of one in-process plan and one in-process apply."""
    specs = tools.root / f"plan-{plan_size}"
    argv = ["plan", str(specs), "--state", str(tools.root / f"plan-{plan_size}.state.json")]
    print(f"\n# in process: {plan_label(plan_size)}")
    run_in_process("phases_in_process", repr(argv), api, tools.root)
    run_in_process("profile_in_process", f"{argv!r}, 25", api, tools.root)

    specs = tools.root / f"apply-{apply_size}"
    argv = ["apply", "--yes", str(specs), "--state"]
    argv += [str(tools.root / f"apply-{apply_size}.state.json"), "--parallel", str(parallel)]
    argv += ["--build-dir", str(tools.root / "build" / "in-process")]
    print(f"\n# in process: {apply_label(apply_size, parallel)}")
    for revision, function, args in (
        (10_000, "phases_in_process", repr(argv)),
        (10_001, "profile_in_process", f"{argv!r}, 25"),
    ):
        write_specs(specs, f"apply{apply_size}", apply_size, tools.seed_text, revision)
        run_in_process(function, args, api, tools.root)


def _counts(parser: argparse.ArgumentParser, option: str, value: str) -> list[int]:
    counts = sorted({int(part) for part in value.split(",") if part.strip()})
    if not counts or counts[0] < 1:
        parser.error(f"{option} needs positive counts")
    return counts


if __name__ == "__main__":
    sys.exit(main())
