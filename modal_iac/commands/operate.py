"""The commands that talk to Modal: apply, destroy, import, rollback, and the state.

Each is glue over the stages: load and render the specs, read the state under its lock,
observe Modal (``modal/observe.py``), make the plan (``plan.py``), show it, ask, execute
(``apply.py``), record. The console and the confirmation prompt are passed in.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from ..errors import ModaliacError
from ..modal.halt import EXIT_INTERRUPTED, Halt, catching_interrupts
from ..plan.changes import Plan
from ..spec.address import Project
from ..state.records import AppRecord, State
from .console import EXIT_ERROR, EXIT_OK, Console
from .plan import build_plan, plan_inputs

T = TypeVar("T")

if TYPE_CHECKING:
    from ..modal.outcome import Outcome
    from ..modal.sdk_log import SdkLog
    from ..plan.changes import Inputs
    from ..plan.plan import Desired
    from ..state.stores import StateStore
    from .progress import AppLogs


def owner() -> str:
    """The command, for the lock; the store adds user, host, pid and time (``LockOwner``)."""
    return " ".join(["modaliac", *sys.argv[1:]])[:200]


# -- apply ----------------------------------------------------------------------------------


def cmd_apply(args: argparse.Namespace, console: Console, confirm: Callable[[str], bool]) -> int:
    from ..modal.sdk import require_credentials
    from ..modal.sdk_log import SdkLog, capturing
    from ..plan.targets import UsageError, state_store

    require_credentials()
    project = Project.here()
    store = state_store(args.state, project, console.error)
    saved = len(args.targets) == 1 and args.targets[0].endswith(".json")
    if saved and (
        args.replace or args.refresh_only or args.env or args.strategy or args.verify is not None
    ):
        raise UsageError(
            "apply PLAN.json applies the plan as saved: no --env, --replace, --strategy, "
            "--verify or --refresh-only (make the plan with them)"
        )
    events, console = _events_stream(args, console)
    asked = _asked(args, project, saved)  # before the lock: a refused input writes nothing
    log = SdkLog.for_command(project.log_dir, "apply", project.root)
    halt = Halt()
    try:
        with (
            capturing(log) as capture,
            catching_interrupts(halt),
            store.lock(owner(), wait=args.lock_timeout),
        ):

            def ask(question: str) -> bool:
                with capture.paused():  # the prompt must reach the terminal
                    return confirm(question)

            return _apply_locked(args, console, ask, store, project, asked, halt, log, events)
    finally:
        log.close()


@dataclass(frozen=True)
class _Asked:
    """What an apply was asked for, checked before the state is locked: a saved plan, read
    and verified against the files it was made from, or the specs' apps."""

    reviewed: Plan | None = None
    targets: list[str] = field(default_factory=list)
    inputs: Inputs | None = None
    desired: list[Desired] = field(default_factory=list)


def _asked(args: argparse.Namespace, project: Project, saved: bool) -> _Asked:
    from ..plan.saved import read_plan, verify
    from ..plan.targets import spec_targets
    from .plan import desired_for

    if saved:
        reviewed = read_plan(args.targets[0])
        verify(reviewed, args.targets[0], project)
        if reviewed.blockers:
            first = reviewed.blockers[0]
            raise ModaliacError(
                f"{args.targets[0]}: the plan is blocked ({len(reviewed.blockers)} blocker(s); "
                f"{first.address}: {first.text()}); a blocked plan is never applied: fix what "
                "it says, then make the plan again"
            )
        return _Asked(reviewed=reviewed)
    targets = spec_targets(args.targets, project, "apply")
    inputs = plan_inputs(args, targets, project)
    desired = desired_for(inputs, project, online=True, targets=targets)
    return _Asked(targets=targets, inputs=inputs, desired=desired)


def _apply_locked(
    args: argparse.Namespace,
    console: Console,
    confirm: Callable[[str], bool],
    store: StateStore,
    project: Project,
    asked: _Asked,
    halt: Halt,
    log: SdkLog,
    events: TextIO,
) -> int:
    """The apply, with the state locked and the SDK's output going to ``log``."""
    from ..modal.apply import execute, needs_recording, record_refreshes
    from ..modal.rates import current_prices
    from ..plan.costs import Costing
    from ..plan.present import as_text
    from ..review.cost import load_prices
    from .progress import AppLogs, make_display

    state = store.read()
    if asked.reviewed is not None:
        plan = _check_fresh(asked.reviewed, state, args.targets[0], project)
    else:
        assert asked.inputs is not None
        # Modal's rates (apply runs with credentials) are read over their own client while
        # the plan observes the apps: a few round trips fewer in a row.
        from ..modal import billing, observe  # noqa: F401  (imported here, never by two threads at once)

        prices = _started(lambda: current_prices(load_prices(), None))
        plan = build_plan(
            asked.inputs,
            state,
            project,
            online=True,
            targets=asked.targets,
            desired=asked.desired,
        )
        pricing = Costing(prices())
        console.print(as_text(plan, color=console.color, costing=pricing, project=project), end="")
    if plan.blockers:
        listed = "; ".join(f"{b.address}: {b.text()}" for b in plan.blockers)
        console.error("apply refused: " + listed)
        return EXIT_ERROR
    pending = plan.has_changes or any(needs_recording(c, state) for c in plan.changes)
    if not pending:
        console.print("Nothing to apply.")
        return EXIT_OK
    logs = AppLogs(project.log_dir, project.root)
    if not plan.inputs.refresh_only:  # a log planted where one goes: refused before asking
        logs.check([change.address for change in plan.changes if change.action != "no-op"])
    if plan.has_changes and not args.yes and not confirm("Apply these changes?"):
        console.error("apply cancelled: nothing was changed")
        return EXIT_ERROR
    if plan.inputs.refresh_only:
        record_refreshes(plan, store)
        console.print(f"Refresh finished: {len(plan.refreshes)} recorded in the state.")
        return EXIT_OK
    build_dir = Path(args.build_dir) if args.build_dir else project.build_dir
    display = make_display(events, logs, json_events=args.json, stream_logs=args.logs)
    display.prefix = sum(c.action != "no-op" for c in plan.changes) > 1
    try:
        halt.armed = True  # from here on, Ctrl-C lets what is in flight finish, then reports
        outcomes = execute(
            plan,
            store,
            build_dir=build_dir,
            parallel=args.parallel,
            deploy_timeout=args.deploy_timeout,
            no_progress_timeout=args.no_progress_timeout,
            halt=halt,
            on_event=display.event,
            on_log=display.log,
            keep_failed=args.keep_failed,
        )
        display.settle({outcome.address: outcome.status for outcome in outcomes})
        for outcome in outcomes:  # why it failed, at the end of the app's own log
            if not outcome.ok and logs.started(outcome.address):
                logs.note(outcome.address, f"{outcome.status}: {outcome.detail}", keep=True)
    finally:
        display.close()
        logs.close()
    _log_tails(outcomes, logs, console, project)
    return _report(outcomes, halt, log, console, project)


def _started(work: Callable[[], T]) -> Callable[[], T]:
    """``work`` begun on a daemon thread (a Ctrl-C or an error meanwhile never waits for
    it); the returned function waits for its result, or raises what it raised."""
    import threading

    done: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            done.append(work())
        except BaseException as exc:  # handed to the waiting thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="modaliac-background", daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        if failed:
            raise failed[0]
        return done[0]

    return result


def _events_stream(args: argparse.Namespace, console: Console) -> tuple[TextIO, Console]:
    """Where progress events go, and the console for everything else: with ``--json`` the
    events own stdout and the rest (plan, summary) goes to stderr."""
    from ..plan.targets import UsageError

    if not args.json:
        return console.out, console
    if getattr(args, "confirm", False) and not args.yes:
        raise UsageError("--json needs --yes: a prompt would mix with the events")
    return console.out, Console(console.err, console.err, color=False)


def _log_tails(outcomes: list[Outcome], logs: AppLogs, console: Console, project: Project) -> None:
    """For each app that failed: where its log is, and its last lines. With the report, on
    stdout (stderr keeps its one line saying what to do; with ``--json`` all goes there)."""
    for outcome in outcomes:
        if outcome.status != "failed" or not logs.written(outcome.address):
            continue
        where = os.path.relpath(logs.path(outcome.address), project.cwd)
        console.print(f"{outcome.address}: its log is {where}; the last lines:")
        for line in logs.tail(outcome.address):
            console.print(f"  | {line}")


MARKS = {"ok": "ok", "failed": "FAILED", "cancelled": "CANCELLED"}


def _report(
    outcomes: list[Outcome], halt: Halt, log: SdkLog, console: Console, project: Project
) -> int:
    """One line per app, a count, and (when anything went wrong) one line on stderr saying
    what the state records and what to do; the exit status follows."""
    width = max([6, *(len(MARKS[o.status]) for o in outcomes)])
    for outcome in outcomes:
        mark = MARKS[outcome.status]
        console.print(f"{mark:{width}} {outcome.action:8} {outcome.address}: {outcome.detail}")
    done = sum(o.status == "ok" for o in outcomes)
    failed = sum(o.status == "failed" for o in outcomes)
    cancelled = sum(o.status == "cancelled" for o in outcomes)
    if not halt:
        console.print(f"Apply finished: {done} succeeded, {failed} failed.")
    else:
        ended = "interrupted" if halt.interrupted else "stopped"
        console.print(f"Apply {ended}: {done} succeeded, {failed} failed, {cancelled} cancelled.")
    if not halt and not failed:
        return EXIT_OK
    where = (
        f" The Modal SDK's output is in {os.path.relpath(log.path, project.cwd)}."
        if log.written
        else ""
    )
    if not halt:
        console.error(
            f"{failed} app(s) failed; the state records the {done} that succeeded, and for "
            "each failed app the version Modal runs now. "
            f"Fix the cause and run apply again.{where}"
        )
        return EXIT_ERROR
    console.error(
        f"apply {'interrupted' if halt.interrupted else 'stopped: ' + halt.reason}: the state "
        f"records the {done} that succeeded; {failed} failed, {cancelled} cancelled. Run apply "
        f"again to finish.{where}"
    )
    return EXIT_INTERRUPTED if halt.interrupted else EXIT_ERROR


def _check_fresh(reviewed: Plan, state: State, path: str, project: Project) -> Plan:
    """A saved plan applies only while planning its inputs again gives the very same plan:
    the recorded state, what Modal runs and the specs are what the plan saw."""
    for change in reviewed.changes:
        recorded = state.apps.get(change.address)
        if recorded is None and change.source_hash_before is not None:
            raise ModaliacError(
                f"{path}: {change.address}: the plan changes an app the state does not record "
                "(another run removed it, or the file was edited); make the plan again"
            )
        was = (change.source_hash_before, change.recorded_version)
        is_now = (recorded.source_hash, recorded.deployed_version) if recorded else (None, None)
        if was != is_now:
            raise ModaliacError(
                f"{path}: stale plan: the recorded state of {change.address} changed since the "
                "plan was made (another apply ran); run modaliac plan again"
            )
    fresh = build_plan(reviewed.inputs, state, project, online=True)
    if fresh.workspace != reviewed.workspace:
        raise ModaliacError(
            f"{path}: the plan was made against {reviewed.workspace or 'an unnamed workspace'} "
            f"and this run is against {fresh.workspace}: a saved plan applies to the Modal "
            "workspace it was reviewed for only; make the plan again there"
        )
    now = {c.address: c for c in fresh.changes}
    for change in reviewed.changes:
        seen = now.get(change.address)
        if seen is None:
            continue
        if (seen.observed_state, seen.observed_version) != (
            change.observed_state,
            change.observed_version,
        ):
            raise ModaliacError(
                f"{path}: stale plan: {change.address} on Modal is now {seen.observed_state} "
                f"v{seen.observed_version} (the plan saw {change.observed_state} "
                f"v{change.observed_version}); run modaliac plan again"
            )
    difference = _difference(reviewed, fresh)
    if difference:
        raise ModaliacError(
            f"{path}: this plan is not what planning it again gives now ({difference}): the "
            "specs, the state or Modal changed, or the file was edited; make the plan again"
        )
    return reviewed


def _difference(reviewed: Plan, fresh: Plan) -> str:
    """What first differs between a saved plan and the same plan made now; empty if none."""
    old = {c.address: c for c in reviewed.changes}
    new = {c.address: c for c in fresh.changes}
    for address in sorted(old.keys() | new.keys()):
        if address not in new:
            return f"{address} is no longer planned"
        if address not in old:
            return f"{address} is planned now and was not reviewed"
        for name in (
            "action",
            "record",
            "fields",
            "blockers",
            "drift",
            "notes",
            "renamed_from",
            "strategy",
            "verify",
        ):
            if getattr(old[address], name) != getattr(new[address], name):
                return f"{address}: its {name.replace('_', ' ')} {_differ(name)}"
    if reviewed.refreshes != fresh.refreshes:
        return "the records a refresh takes from Modal differ"
    if reviewed.warnings != fresh.warnings:
        return "its warnings differ"
    return ""


def _differ(name: str) -> str:
    return "differ" if name in ("fields", "blockers", "notes") else "differs"


# -- destroy, import, rollback, state -------------------------------------------------------


@contextlib.contextmanager
def _one_recorded(
    args: argparse.Namespace, console: Console
) -> Iterator[tuple[Console, TextIO, StateStore, State, AppRecord]]:
    """What ``destroy`` and ``rollback`` act on: the one recorded app ``args.target`` names,
    with the state read and its lock held for the whole change."""
    from ..modal.sdk import require_credentials
    from ..plan.targets import one_address, recorded_at, state_store

    require_credentials()
    events, console = _events_stream(args, console)
    project = Project.here()
    address = one_address(args.target, args.env, project)
    store = state_store(args.state, project, console.error)
    recorded_at(store.read(), address)  # before the lock: a wrong target writes nothing
    with store.lock(owner(), wait=args.lock_timeout):
        state = store.read()  # what decides, read under the lock
        yield console, events, store, state, recorded_at(state, address)


def _showing(
    args: argparse.Namespace, events: TextIO, record: AppRecord
) -> contextlib.AbstractContextManager[Callable[[str], None]]:
    """The one-app progress display of ``destroy`` and ``rollback``."""
    from .progress import make_display, one_app

    return one_app(make_display(events, None, json_events=args.json), record.address)


def cmd_destroy(args: argparse.Namespace, console: Console, confirm: Callable[[str], bool]) -> int:
    from ..modal.changes import stop

    with _one_recorded(args, console) as (console, events, store, state, record):
        console.print(f"- destroy {record.address}: the Modal app will be stopped")
        if not args.yes and not confirm(f"Stop {record.address}?"):
            console.error("destroy cancelled: nothing was changed")
            return EXIT_ERROR
        with _showing(args, events, record) as show:
            show("stopping")
            stopped = stop(record.app, record.environment)
            del state.apps[record.address]
            store.write(state)
            show("stopped" if stopped else "already gone")
    console.print(
        f"{record.address}: {'stopped' if stopped else 'already gone'}; removed from the state"
    )
    return EXIT_OK


def cmd_import(args: argparse.Namespace, console: Console) -> int:
    from ..modal.observe import Query, observe
    from ..modal.sdk import require_credentials
    from ..plan.targets import new_address, state_store

    target = new_address(args.app, args.env, "import", "modaliac cannot manage an app of that name")
    require_credentials()
    project = Project.here()
    address = str(target)
    if args.generate_spec:
        from .adopt import check_new_spec

        check_new_spec(Path(args.generate_spec))
    store = state_store(args.state, project, console.error)
    # Before the lock, so a wrong target writes nothing: the state does not record the app
    # and Modal runs it. Modal may change either way under the lock too; the state may not.
    _refuse_managed(store.read(), address)
    seen = observe([Query(target.app, target.environment)]).apps[(target.environment, target.app)]
    if seen.state != "deployed" or seen.current is None:
        raise ModaliacError(f"{address}: no deployed app of that name on Modal ({seen.state})")
    with store.lock(owner(), wait=args.lock_timeout):
        state = store.read()
        _refuse_managed(state, address)
        if args.generate_spec:
            state.apps[address] = record = _import_with_spec(args, project, target, seen)
            store.write(state)
            console.print(
                f"{address}: imported v{seen.current.version} and wrote {args.generate_spec}: "
                "fill in model.id (and check what its comments mark), then `modaliac plan` "
                "shows the change"
            )
            if not record.settings:
                console.error(
                    f"{args.generate_spec}: needs more than model.id to validate (`modaliac "
                    f"validate {args.generate_spec}` says what); the next plan lists every "
                    "setting as new"
                )
            return EXIT_OK
        state.apps[address] = AppRecord(
            app=target.app,
            environment=target.environment,
            spec_path="",
            spec_digest="",
            source_hash="",
            settings={},
            deployed_version=seen.current.version,
            deployment_tag=seen.current.tag,
            env_option=args.env,
        )
        store.write(state)
    console.print(
        f"{address}: imported v{seen.current.version}. Write a spec with `app: {target.app}`"
        + (f" (environment {target.environment})" if target.environment else "")
        + "; the next plan shows what applying it would change."
    )
    return EXIT_OK


def _import_with_spec(
    args: argparse.Namespace, project: Project, target: Any, seen: Any
) -> AppRecord:
    """Write the spec of an app Modal runs; the record holds what that spec resolves to."""
    import hashlib

    from .adopt import read_functions, recorded_settings, spec_text, write_new_spec
    from .fmt import format_text

    path = Path(args.generate_spec)
    functions, keys = read_functions(target.app, target.environment)
    written = spec_text(target.app, target.environment, seen.tags, functions, keys)
    text = format_text(written, str(path))
    write_new_spec(path, text)
    return AppRecord(
        app=target.app,
        environment=target.environment,
        spec_path=project.recorded(path),
        spec_digest=hashlib.sha256(text.encode()).hexdigest(),
        source_hash="",  # Modal runs code modaliac did not generate
        settings=recorded_settings(text) or {},
        deployed_version=seen.current.version,
        deployment_tag=seen.current.tag,
        env_option=args.env,
    )


def cmd_rollback(args: argparse.Namespace, console: Console, confirm: Callable[[str], bool]) -> int:
    from ..modal.changes import rollback

    with _one_recorded(args, console) as (console, events, store, state, record):
        wanted = "the previous version" if args.to == -1 else f"v{args.to}"
        console.print(f"~ rollback {record.address}: Modal will serve {wanted} again")
        if not args.yes and not confirm(f"Roll {record.address} back to {wanted}?"):
            console.error("rollback cancelled: nothing was changed")
            return EXIT_ERROR
        with _showing(args, events, record) as show:
            show("rolling back")
            version = rollback(record.app, record.environment, args.to)
            state.apps[record.address] = replace(record, deployed_version=version)
            store.write(state)
            show(f"rolled back to v{version}")
    console.print(
        f"{record.address}: rolled back to {wanted}, now v{version}. The spec still describes "
        "the newer code: the next plan reports the rollback as drift."
    )
    return EXIT_OK


def _refuse_managed(state: State, address: str) -> None:
    if address in state.apps:
        raise ModaliacError(f"{address}: already managed by modaliac")
