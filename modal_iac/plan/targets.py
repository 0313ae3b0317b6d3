"""What a command acts on: the project's state, the specs it names, and the app a target names.

Every command goes through here, so every command resolves an app the same way:

- a spec path (a name ending in ``.yaml``/``.yml``, whatever is on disk) is loaded with the
  run's ``--env`` and names the apps that spec yields there;
- anything else is an address, ``ENVIRONMENT/APP`` or ``APP``; a bare ``APP`` lives in the
  ``--env`` environment, else the Modal profile's, else the workspace's default.

A target that the state does not record is one error listing what the state does record in
that environment: no command ever falls back to an app of another environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModaliacError, SpecError, StateError
from ..files import is_folder
from ..spec.address import (
    SPEC_SUFFIXES,
    Address,
    AddressError,
    Project,
    profile_environment,
    unaddressable,
)
from ..tokens import shown

if TYPE_CHECKING:
    from ..loading.load import LoadedSpec
    from ..state.records import AppRecord, State
    from ..state.stores import StateStore
    from .plan import Desired

STATE_ENV = "MODALIAC_STATE"


class UsageError(Exception):
    """A command used wrongly (exit status 2), found after argument parsing."""


# -- the state --------------------------------------------------------------------------------


def state_store(
    value: str | None, project: Project, warn: Callable[[str], None] | None = None
) -> StateStore:
    """The store ``--state`` names, else ``$MODALIAC_STATE``, else the project's
    ``.modaliac/state.json`` (at the project root, wherever the command runs from)."""
    from ..state.stores import open_store

    chosen = value or os.environ.get(STATE_ENV)
    if chosen:
        if not chosen.isprintable():
            named = "--state" if value else STATE_ENV
            raise StateError(
                f"{named}: {shown(chosen)} holds a control character; name the state's file "
                "(or modal:VOLUME) in printable characters"
            )
        return open_store(chosen)
    stray = project.cwd / ".modaliac" / "state.json"
    if warn is not None and project.cwd != project.root and stray.exists():
        warn(
            f"warning: {os.path.relpath(stray, project.cwd)} is not this project's state; using "
            f"{project.shown(project.state_path.relative_to(project.root).as_posix())} (the "
            "project root's); pass --state to use the other"
        )
    # Relative to where the user stands, so its errors read the way the user types the path.
    return open_store(os.path.relpath(project.state_path, project.cwd))


# -- specs ------------------------------------------------------------------------------------


def spec_targets(targets: Sequence[str], project: Project, command: str) -> list[str]:
    """The targets given, or the project's ``specs/`` folder."""
    for target in targets:
        check_target(target, command)
    if targets:
        return list(targets)
    if not project.spec_dir.is_dir():
        raise UsageError(
            f"{command}: no specs/ directory at the project root ({project.root}); name spec "
            "files or a directory"
        )
    return [os.path.relpath(project.spec_dir, project.cwd)]


def spec_files(targets: Sequence[str]) -> list[str | Path]:
    from ..loading.load import find_spec_files

    files: list[str | Path] = []
    for target in targets:
        found = find_spec_files(target)
        if not found:
            raise SpecError(target, "holds no *.yaml spec files")
        files.extend(found)
    return files


def desired_apps(files: list[str | Path], env: str | None, project: Project) -> list[Desired]:
    """Every app the spec files yield with ``--env`` ``env``, at its resolved address.

    Each spec is loaded and reduced to its apps before the next is loaded: a ``Desired``
    keeps no model, so thousands of specs are never all held at once."""
    from ..loading.load import load_each
    from ..render.app import render_all
    from .plan import Desired

    def apps(item: LoadedSpec) -> list[Desired]:
        return [Desired(item, app, env) for app in render_all(item)]

    return [app for found in load_each(files, env, project, apps) for app in found]


def delete_scope(targets: Sequence[str], project: Project) -> list[str]:
    """The planned directories, as the state records spec paths (relative to the root)."""
    return [project.recorded(t) for t in targets if is_folder(t)]


# -- one target -------------------------------------------------------------------------------


def check_target(target: str, command: str) -> None:
    """Refuse an empty target: it would name every spec below the working directory."""
    if not target.strip():
        raise UsageError(
            f"{command}: an empty target; name a spec file, a directory or an app address"
        )


def is_spec_path(target: str) -> bool:
    """A spec path by its name alone, so what the working directory holds never turns an
    address into a path: a file named ``prod/minilm`` does not shadow the address."""
    return target.endswith(SPEC_SUFFIXES)


def _file_hint(target: str) -> str:
    """What to say when an address that failed is also a file's name."""
    if os.path.lexists(target):  # never raises: a name too long for the system is no file
        return f" ({shown(target)} on disk is not read: a spec file's name ends in .yaml or .yml)"
    return ""


@dataclass(frozen=True)
class Named:
    """The apps one target names, and the spec it was read from (None: an address)."""

    addresses: tuple[Address, ...]
    loaded: LoadedSpec | None = None


def named(target: str, env: str | None, project: Project) -> Named:
    """The address(es) a target names, resolved the one way every command shares."""
    check_target(target, "target")
    if is_spec_path(target):
        from ..loading.load import load_spec

        loaded = load_spec(target, env, project=project)
        spec = loaded.spec
        return Named(tuple(Address(spec.environment, app) for app in spec.app_names()), loaded)
    try:
        return Named((parse_address(target, env),))
    except AddressError as exc:
        raise AddressError(str(exc) + _file_hint(target)) from None


def one_address(target: str, env: str | None, project: Project) -> Address:
    """The single app a target names; a spec that yields several asks for one of them."""
    found = named(target, env, project).addresses
    if len(found) > 1:
        listed = ", ".join(map(str, found))
        raise ModaliacError(f"{target} defines several apps ({listed}); name one of them")
    return found[0]


def find_record(state: State, target: str, env: str | None, project: Project) -> AppRecord:
    """The recorded app a target names, exactly: never one of another environment."""
    address = one_address(target, env, project)
    record = state.apps.get(str(address))
    if record is None:
        raise ModaliacError(str(not_recorded(state, address)) + _file_hint(target))
    return record


def recorded_at(state: State, address: Address) -> AppRecord:
    """The app ``state`` records at ``address``; refused, naming what is recorded, if none."""
    record = state.apps.get(str(address))
    if record is None:
        raise not_recorded(state, address)
    return record


def not_recorded(state: State, address: Address) -> ModaliacError:
    where = (
        f"environment {address.environment}" if address.environment else "the default environment"
    )
    there = state.in_environment(address.environment)
    message = f"{address}: not recorded in the state; recorded in {where}: "
    message += ", ".join(there) if there else "nothing"
    elsewhere = sorted(
        a for a, r in state.apps.items() if r.app == address.app and a != str(address)
    )
    if elsewhere:
        message += f" (the same app name is recorded as {', '.join(elsewhere)})"
    return ModaliacError(message)


def new_address(text: str, env: str | None, role: str, advice: str) -> Address:
    """An address a command is about to record, as ``parse_address`` reads it, refused
    (``role``: the argument, ``advice``: what to do) unless every later command can name it:
    an app ending in ``.yaml``/``.yml`` would be read as a spec file's path."""
    address = parse_address(text, env)
    problem = unaddressable(address.app)
    if problem is not None:
        raise AddressError(f"{role}: {problem}; {advice}")
    return address


def parse_address(text: str, env: str | None = None) -> Address:
    """An ``ENVIRONMENT/APP`` or ``APP`` argument; a bare ``APP`` is in ``env``, else the
    Modal profile's environment, else the workspace's default."""
    if env is None and "/" not in text:
        env = profile_environment()
    return Address.parse(text, env)
