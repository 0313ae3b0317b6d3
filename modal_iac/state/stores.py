"""Where the state lives: what every store does (``StateStore``), and which store a
``--state`` value names (``open_store``): the local file (store.py) or a file on a Modal
Volume (modal_store.py, loaded only when one is named).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import StateError
from .lock_owner import LockOwner
from .records import REMOTE_PREFIX, State
from .store import LocalStore

if TYPE_CHECKING:
    from .modal_store import ModalStore

SYNTAX = "modal:[<environment>:]<volume>[/<path>]"
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # Modal's object names
_ENVIRONMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class StateStore(Protocol):
    """Where the state lives. ``plan`` only reads; ``apply`` reads, then writes under ``lock``.

    ``lock(owner, wait)`` is a context manager yielding this run's ``LockOwner``; ``owner``
    names the operation (e.g. ``"modaliac apply specs/"``), pid, host, user and time are added.
    If another run holds the lock after ``wait`` seconds it raises ``StateLockedError``, one
    line naming the holder and what to do. ``refresh()`` renews a lease-based lock during a
    long apply (a no-op for stores whose lock has no lease). ``record(state, address)``, under
    the lock, makes ``state``'s entry for ``address`` (or its absence) durable: what apply
    calls after each app, in time that does not grow with the state.
    """

    def read(self) -> State: ...

    def write(self, state: State) -> None: ...

    def record(self, state: State, address: str) -> None: ...

    def lock(
        self, owner: str, wait: float = 0.0
    ) -> contextlib.AbstractContextManager[LockOwner]: ...

    def refresh(self) -> None: ...

    def describe(self) -> str: ...


def open_store(spec: str | os.PathLike[str]) -> StateStore:
    """The store a ``--state`` value names.

    - ``modal:<volume>[/<path>]``: the file ``<path>`` (default ``state.json``) on the Modal
      Volume ``<volume>`` in the default environment (``MODAL_ENVIRONMENT`` or the profile's).
    - ``modal:<environment>:<volume>[/<path>]``: the same in a named environment.
      Modal names cannot hold ``:`` or ``/``, so the syntax is unambiguous.
    - anything else: a local file path (``~`` expanded).

    Naming a Modal store imports nothing from Modal; the SDK is loaded on first use.
    """
    text = os.fspath(spec)
    if text.startswith(REMOTE_PREFIX):
        return _modal_store(text)
    return LocalStore(Path(text).expanduser())


def _modal_store(spec: str) -> ModalStore:
    """The store ``modal:[<environment>:]<volume>[/<path>]`` names."""
    from .modal_store import ModalStore

    where, _, path = spec.removeprefix(REMOTE_PREFIX).partition("/")
    environment, _, volume = where.rpartition(":")
    if (
        ":" in environment
        or not _NAME.fullmatch(volume)
        or (environment and not _ENVIRONMENT.fullmatch(environment))
    ):
        raise StateError(
            f"{spec}: not a Modal state location; expected {SYNTAX}, "
            "names made of letters, digits, '-', '_' and '.'"
        )
    return ModalStore(volume, path, environment or None)
