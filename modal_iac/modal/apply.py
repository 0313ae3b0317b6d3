"""Carry out a plan: deploy, stop, record. Deciding happened in plan.py; this only executes.

The state records every app as it finishes (``Store.record``: a journal line for a local
state), so an apply that fails or is killed half way leaves a state that says exactly which
apps are deployed, and a re-run converges. A halt
(Ctrl-C, a state that cannot be written, a Modal that stopped answering) starts nothing new:
every change gets an outcome, finished, failed or cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import StateError
from ..plan.changes import Change, Plan
from ..spec.address import Address
from ..state.records import AppRecord, State
from .halt import DEPLOY_TIMEOUT, NO_PROGRESS_TIMEOUT, Halt
from .outcome import Outcome
from .tags import app_tags

if TYPE_CHECKING:
    from .deploy import DeployJob, DeployResult


class Store(Protocol):
    def read(self) -> State: ...

    def write(self, state: State) -> None: ...

    def record(self, state: State, address: str) -> None: ...


def needs_recording(change: Change, state: State) -> bool:
    """A no-op whose code Modal already runs, but the state does not say so yet (an apply
    that deployed it was killed before it could record)."""
    if change.action != "no-op" or change.observed_version is None:
        return False
    recorded = state.apps.get(change.address)
    return recorded is None or recorded.deployed_version != change.observed_version


def execute(
    plan: Plan,
    store: Store,
    *,
    build_dir: Path,
    parallel: int = 4,
    deploy_timeout: float = DEPLOY_TIMEOUT,
    no_progress_timeout: float = NO_PROGRESS_TIMEOUT,
    halt: Halt | None = None,
    on_event: Callable[[str, str], None] = lambda address, event: None,
    on_log: Callable[[str, str], None] = lambda address, text: None,
    keep_failed: bool = False,
) -> list[Outcome]:
    """Apply every change of ``plan``; returns one outcome per app that needed work.

    Once ``halt`` is set (Ctrl-C, or a state write failed, or Modal stopped answering),
    nothing new starts: the remaining changes are reported cancelled. A change the plan
    verifies is checked once deployed (verify.py); a failed check rolls it back, or stops a
    new app unless ``keep_failed``.
    """
    from . import gate
    from .changes import set_tags, stop
    from .deploy import deploy_all
    from .sdk import ModalApiError

    halt = halt if halt is not None else Halt()
    state = store.read()
    outcomes: list[Outcome] = []

    def save(address: str, record: AppRecord | None) -> str:
        """Record one app; returns why the state could not be written ("" if it was). A
        failed write halts the apply: the next one could not be recorded either."""
        if record is None:
            state.apps.pop(address, None)
        else:
            state.apps[address] = record
        try:
            store.record(state, address)
        except StateError as exc:
            halt.stop("the state cannot be written")
            return str(exc)
        return ""

    def not_started(change: Change, action: str) -> Outcome:
        return Outcome(change.address, action, "cancelled", f"not started ({halt.reason})")

    for change in plan.changes:
        if change.record is not None and needs_recording(change, state):
            if halt:
                outcomes.append(not_started(change, "record"))
                continue
            record = replace(change.record, deployed_version=change.observed_version)
            try:
                # The interrupted apply may have published the app but not tagged it yet.
                set_tags(change.app, change.environment, app_tags(record), halt=halt)
            except ModalApiError as exc:
                outcomes.append(Outcome(change.address, "record", _status(exc), str(exc)))
                continue
            problem = save(change.address, record)
            detail = f"not recorded: {problem}" if problem else "recorded"
            outcomes.append(
                Outcome(change.address, "record", "failed" if problem else "ok", detail)
            )

    deploys = [c for c in plan.changes if c.action in ("create", "update", "replace")]
    unverifiable = gate.unverifiable(deploys)
    outcomes += [Outcome(a, by.action, "failed", why) for a, (by, why) in unverifiable.items()]
    # Each generated file is rendered once (checked against the plan's hash) and that text
    # is what the app deploys and what its record keeps: the record's source is otherwise
    # made again on every read (plan.Desired), once more for the job, the record and a check.
    deploys = [_pinned(c) for c in deploys if c.address not in unverifiable]
    previous = dict(state.apps)  # what each app was before this apply, for a rollback
    checks: list[tuple[Change, DeployResult]] = []
    by_address = {c.address: c for c in deploys}
    jobs = [_job(change) for change in deploys]
    reported: set[str] = set()
    renamed: list[Change] = []

    def finished(result: DeployResult) -> None:
        reported.add(result.address)
        change = by_address[result.address]
        if result.ok and change.record is not None:
            # A renamed app stays marked until its old address is stopped (below), so a
            # failure there leaves a state that still says the old app runs.
            record = replace(
                change.record, deployed_version=result.version, renamed_from=change.renamed_from
            )
            problem = save(result.address, record)
            detail = f"deployed v{result.version} in {result.seconds:.1f}s"
            if problem:
                detail += f", but the state does not record it ({problem}); the next apply does"
                outcomes.append(Outcome(result.address, change.action, "failed", detail))
                return
            if change.verify is not None:  # checked once every deploy has finished
                checks.append((change, result))
                return
            if change.renamed_from:
                renamed.append(change)
                return
        else:
            detail = result.error
        outcomes.append(Outcome(result.address, change.action, result.status, detail))

    if jobs and halt:  # halted while recording: nothing is imported or connected
        outcomes += [not_started(change, change.action) for change in deploys]
    elif jobs:
        try:
            deploy_all(
                jobs,
                build_dir,
                parallel=parallel,
                deploy_timeout=deploy_timeout,
                no_progress_timeout=no_progress_timeout,
                halt=halt,
                on_event=on_event,
                on_result=finished,
                on_log=on_log,
            )
        except ModalApiError as exc:  # before any deploy: Modal cannot be reached
            for change in deploys:
                if change.address not in reported:
                    outcomes.append(Outcome(change.address, change.action, "failed", str(exc)))
    for change, result in checks:
        checked = gate.Gate(change, result, previous.get(change.address), save, halt, on_event)
        outcome = checked.run(keep_failed)
        if outcome.ok and change.renamed_from:
            renamed.append(change)
        else:
            outcomes.append(outcome)
    for change in renamed:
        outcomes.append(_stop_renamed(change, state.apps[change.address], save, halt, on_event))
    for change in plan.changes:
        if change.action != "delete":
            continue
        if halt:
            outcomes.append(not_started(change, "delete"))
            continue
        on_event(change.address, "stopping")
        try:
            stopped = stop(change.app, change.environment, halt=halt)
        except ModalApiError as exc:
            outcomes.append(Outcome(change.address, "delete", _status(exc), str(exc)))
            on_event(change.address, "failed")
            continue
        detail = "stopped" if stopped else "already gone; removed from the state"
        problem = save(change.address, None)
        if problem:
            outcomes.append(Outcome(change.address, "delete", "failed", f"{detail}, but {problem}"))
            continue
        outcomes.append(Outcome(change.address, "delete", "ok", detail))
        on_event(change.address, detail)
    return outcomes


def _status(exc: Exception) -> str:
    from .sdk import Cancelled

    return "cancelled" if isinstance(exc, Cancelled) else "failed"


def _stop_renamed(
    change: Change,
    record: AppRecord,
    save: Callable[[str, AppRecord | None], str],
    halt: Halt,
    on_event: Callable[[str, str], None],
) -> Outcome:
    """Stop the app a rename left at its old address, then record the rename as done."""
    from .changes import stop
    from .sdk import ModalApiError

    old = Address.parse(record.renamed_from or "")
    deployed = f"deployed v{record.deployed_version}"
    keeps = "the state keeps the rename, so the next apply stops it"
    if halt:
        return Outcome(
            change.address,
            change.action,
            "cancelled",
            f"{deployed}; stopping {old} not started ({halt.reason}); {keeps}",
        )
    on_event(change.address, f"stopping {old} (renamed)")
    try:
        stopped = stop(old.app, old.environment, halt=halt)
    except ModalApiError as exc:
        return Outcome(
            change.address,
            change.action,
            _status(exc),
            f"{deployed}, but stopping {old} failed: {exc}; {keeps}",
        )
    problem = save(change.address, replace(record, renamed_from=None))
    gone = f"stopped {old}" if stopped else f"{old} was already gone"
    if problem:
        return Outcome(
            change.address, change.action, "failed", f"{deployed}; {gone}, but {problem}"
        )
    return Outcome(change.address, change.action, "ok", f"{deployed}; {gone}")


def record_refreshes(plan: Plan, store: Store) -> None:
    """Write what a refresh-only plan takes from Modal into the state, in one write."""
    state = store.read()
    for refreshed in plan.refreshes:
        if refreshed.after is None:
            state.apps.pop(refreshed.address, None)
        else:
            state.apps[refreshed.address] = refreshed.after
    store.write(state)


def _pinned(change: Change) -> Change:
    """``change`` with its record's source made once, as plain text."""
    if change.record is None:
        return change
    return replace(change, record=replace(change.record, source=change.record.source))


def _job(change: Change) -> DeployJob:
    from .deploy import DeployJob

    record = change.record
    assert record is not None, "deploy changes always carry the record they apply"
    return DeployJob(
        address=change.address,
        app=change.app,
        environment=change.environment,
        source=record.source,
        module_name=Address(change.environment, change.app).module_name,
        deployment_tag=record.deployment_tag,
        tags=app_tags(record),
        strategy=change.strategy or "rolling",
    )
