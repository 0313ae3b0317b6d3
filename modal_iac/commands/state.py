"""``modaliac state``: list, show, rm and mv what the state records; never what Modal runs."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields, replace

from ..errors import ModaliacError
from ..spec.address import Project
from ..state.records import State
from .console import EXIT_OK, Console
from .operate import owner


def _state_list_json(state: State, project: Project) -> str:
    """``state list --format json``: one object per recorded app (docs/formats.md)."""
    apps = [
        {
            "address": address,
            "app": record.app,
            "environment": record.environment,
            "version": record.deployed_version,
            "spec": project.shown(record.spec_path) if record.spec_path else None,
        }
        for address, record in sorted(state.apps.items())
    ]
    return json.dumps({"apps": apps}, indent=2)


def cmd_state(args: argparse.Namespace, console: Console) -> int:
    from ..plan.targets import find_record, state_store

    project = Project.here()
    if args.state_command in ("rm", "mv"):
        return _edit_state(args, console, project)
    if args.state_command == "unlock":
        return _unlock(args, console, project)
    state = state_store(args.state, project, console.error).read()
    if args.state_command == "list" and args.format == "json":
        console.print(_state_list_json(state, project))
        return EXIT_OK
    if args.state_command == "list":
        if not state.apps:
            console.print("No apps recorded.")
        for address, record in sorted(state.apps.items()):
            version = f"v{record.deployed_version}" if record.deployed_version else "-"
            where = project.shown(record.spec_path) if record.spec_path else "(imported)"
            console.print(f"{address:40} {version:6} {where}")
        return EXIT_OK
    record = find_record(state, args.target, args.env, project)
    shown = {f.name: getattr(record, f.name) for f in fields(record)}
    if not args.source:
        del shown["source"]
    console.print(json.dumps(shown, indent=2, sort_keys=True))
    return EXIT_OK


def _edit_state(args: argparse.Namespace, console: Console, project: Project) -> int:
    """``state rm`` and ``state mv``: change what the state records, never what Modal runs."""
    from ..plan.targets import new_address, one_address, parse_address, recorded_at, state_store

    # The targets, and that the state records them, before the lock: a wrong one writes
    # nothing. Under the lock the state is read again, and that read decides.
    if args.state_command == "rm":
        addresses = [one_address(target, args.env, project) for target in args.targets]
    else:
        # OLD may be any recorded name (moving an app off a name no command could name is
        # the way out); NEW is recorded, so it must be one every command can name.
        old = parse_address(args.source)
        new = new_address(
            args.destination, None, "state mv NEW", "name the app without .yaml or .yml"
        )
        addresses = [old]
    store = state_store(args.state, project, console.error)
    before = store.read()
    for address in addresses:
        recorded_at(before, address)
    with store.lock(owner(), wait=args.lock_timeout):
        state = store.read()
        if args.state_command == "rm":
            records = [recorded_at(state, address) for address in addresses]
            for record in records:
                del state.apps[record.address]
            store.write(state)
            for record in records:
                console.print(
                    f"{record.address}: removed from the state; Modal still runs it (modaliac "
                    f"import {record.address} adopts it again)"
                )
            return EXIT_OK
        found = recorded_at(state, old)
        if new == old:
            raise ModaliacError(f"{old}: moving an app onto itself changes nothing")
        if str(new) in state.apps:
            raise ModaliacError(f"{new}: already recorded; remove it first (modaliac state rm)")
        origin = found.renamed_from or str(old)  # where Modal still runs it
        moved = replace(
            found,
            app=new.app,
            environment=new.environment,
            renamed_from=None if origin == str(new) else origin,
        )
        del state.apps[str(old)]
        state.apps[str(new)] = moved
        store.write(state)
    if moved.renamed_from is None:
        console.print(f"{old}: moved back to {new}, where Modal runs it; nothing left to do")
        return EXIT_OK
    console.print(
        f"{old}: moved to {new} in the state. Modal cannot rename an app: {new} is a new app "
        f"there (with its own URL). Rename the app in its spec (app: {new.app}"
        + (f", environment {new.environment}" if new.environment else "")
        + f"); the next apply deploys {new} and then stops {moved.renamed_from}."
    )
    return EXIT_OK


def _unlock(args: argparse.Namespace, console: Console, project: Project) -> int:
    """``state unlock LOCK_ID``: Terraform's force-unlock, for a state kept on Modal."""
    from ..plan.targets import state_store
    from ..state.modal_store import ModalStore

    store = state_store(args.state, project, console.error)
    if not isinstance(store, ModalStore):
        raise ModaliacError(
            f"{store.describe()}: a local state's lock is the OS's, freed when its holder "
            "exits; there is no lock to remove (stop the process that holds it)"
        )
    removed = store.break_lock(args.lock_id)
    if removed is None:
        console.print(f"{store.describe()}: not locked; nothing removed")
    else:
        console.print(f"{store.describe()}: removed the lock held by {removed.describe()}")
    return EXIT_OK
