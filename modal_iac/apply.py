"""Carry out a plan: deploy, stop, record. Deciding happened in plan.py; this only executes.

The state is written after every app that finishes, so an apply that fails or is killed half
way leaves a state that says exactly which apps are deployed, and a re-run converges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .address import Address
from .plan import Change, Plan
from .state import AppRecord, State

if TYPE_CHECKING:
    from .modal_api import DeployJob, DeployResult

MANAGED_BY = "managed-by"


class Store(Protocol):
    def read(self) -> State: ...

    def write(self, state: State) -> None: ...


@dataclass(frozen=True)
class Outcome:
    address: str
    action: str
    ok: bool
    detail: str


def app_tags(record: AppRecord) -> dict[str, str]:
    """The spec's labels plus what identifies modaliac's deploy: owner, code and spec hashes."""
    labels = record.settings.get("labels") or {}
    return {
        **{str(k): str(v) for k, v in labels.items()},
        MANAGED_BY: "modaliac",
        "modaliac-source": record.source_hash[:12],
        "modaliac-spec": record.spec_digest[:12],
    }


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
    on_event: Callable[[str, str], None] = lambda address, event: None,
) -> list[Outcome]:
    """Apply every change of ``plan``; returns one outcome per app that needed work."""
    from . import modal_api

    state = store.read()
    outcomes: list[Outcome] = []

    def save(address: str, record: AppRecord | None) -> None:
        if record is None:
            state.apps.pop(address, None)
        else:
            state.apps[address] = record
        store.write(state)

    for change in plan.changes:
        if change.record is not None and needs_recording(change, state):
            record = replace(change.record, deployed_version=change.observed_version)
            try:
                # The interrupted apply may have published the app but not tagged it yet.
                modal_api.set_tags(change.app, change.environment, app_tags(record))
            except modal_api.ModalApiError as exc:
                outcomes.append(Outcome(change.address, "record", False, str(exc)))
                continue
            save(change.address, record)
            outcomes.append(Outcome(change.address, "record", True, "recorded"))

    deploys = [c for c in plan.changes if c.action in ("create", "update", "replace")]
    by_address = {c.address: c for c in deploys}
    jobs = [_job(change) for change in deploys]

    renamed: list[Change] = []

    def finished(result: DeployResult) -> None:
        change = by_address[result.address]
        if result.ok and change.record is not None:
            # A renamed app stays marked until its old address is stopped (below), so a
            # failure there leaves a state that still says the old app runs.
            record = replace(
                change.record, deployed_version=result.version, renamed_from=change.renamed_from
            )
            save(result.address, record)
            detail = f"deployed v{result.version} in {result.seconds:.1f}s"
            if change.renamed_from:
                renamed.append(change)
                return
        else:
            detail = result.error
        outcomes.append(Outcome(result.address, change.action, result.ok, detail))

    if jobs:
        modal_api.deploy_all(
            jobs, build_dir, parallel=parallel, on_event=on_event, on_result=finished
        )
    for change in renamed:
        outcomes.append(_stop_renamed(change, state.apps[change.address], save, on_event))
    for change in plan.changes:
        if change.action != "delete":
            continue
        on_event(change.address, "stopping")
        try:
            stopped = modal_api.stop(change.app, change.environment)
        except modal_api.ModalApiError as exc:
            outcomes.append(Outcome(change.address, "delete", False, str(exc)))
            on_event(change.address, "failed")
            continue
        save(change.address, None)
        detail = "stopped" if stopped else "already gone; removed from the state"
        outcomes.append(Outcome(change.address, "delete", True, detail))
        on_event(change.address, detail)
    return outcomes


def _stop_renamed(
    change: Change,
    record: AppRecord,
    save: Callable[[str, AppRecord | None], None],
    on_event: Callable[[str, str], None],
) -> Outcome:
    """Stop the app a rename left at its old address, then record the rename as done."""
    from . import modal_api

    old = Address.parse(record.renamed_from or "")
    deployed = f"deployed v{record.deployed_version}"
    on_event(change.address, f"stopping {old} (renamed)")
    try:
        stopped = modal_api.stop(old.app, old.environment)
    except modal_api.ModalApiError as exc:
        return Outcome(
            change.address,
            change.action,
            False,
            f"{deployed}, but stopping {old} failed: {exc}; the state keeps the rename, so the "
            "next apply stops it",
        )
    save(change.address, replace(record, renamed_from=None))
    gone = f"stopped {old}" if stopped else f"{old} was already gone"
    return Outcome(change.address, change.action, True, f"{deployed}; {gone}")


def record_refreshes(plan: Plan, store: Store) -> None:
    """Write what a refresh-only plan takes from Modal into the state, in one write."""
    state = store.read()
    for refreshed in plan.refreshes:
        if refreshed.after is None:
            state.apps.pop(refreshed.address, None)
        else:
            state.apps[refreshed.address] = refreshed.after
    store.write(state)


def _job(change: Change) -> DeployJob:
    from .modal_api import DeployJob

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
    )
