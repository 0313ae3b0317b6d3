"""The recorded state: what modaliac last applied, per app, and where it is kept.

The state holds names, hashes, resolved settings and the rendered source, never a secret
value (specs cannot hold one: load.py refuses them). It lives behind a ``StateStore``: a local
JSON file (``LocalStore``, the default) or a file on a Modal Volume (``remote_state.ModalStore``),
chosen by ``open_store``. Either way writes are atomic and an apply holds a lock, so two
applies never interleave their writes. A local state records each app an apply finishes as
one line of its journal (journal.py), folded into the file as the lock is released.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from .. import __version__
from ..deferred import DeferredText
from ..errors import ModaliacError, StateError
from ..files import joined, parse_json, read_bytes
from ..spec.address import Address, check_environment
from ..tokens import shown, token_kind
from .journal import (
    Journal,
    JournalWriter,
    digest,
    entry_line,
    journal_path,
    read_journal,
    sync_directory,
)
from .lock_owner import LockOwner, alive, flock_holder

STATE_FORMAT = "modaliac-state"
STATE_VERSION = 2
APP_KEY = re.compile(r"^([a-zA-Z0-9][a-zA-Z0-9_-]{0,63}/)?[a-zA-Z0-9._-]{1,64}$")  # an address
READABLE_VERSIONS = (1, 2)
REMOTE_PREFIX = "modal:"  # --state modal:... names a state on a Modal Volume (remote_state.py)


@dataclass(frozen=True)
class AppRecord:
    """One app as modaliac last applied it: what Modal runs, as far as modaliac knows.

    ``spec_path`` is relative to the project root. ``env_option`` is the ``--env`` of the run
    that applied it (None: none), so a plan only removes apps of its own environment.
    ``overrides`` are autoscaler settings changed by hand on Modal that ``apply
    --refresh-only`` recorded (function -> setting -> value). ``renamed_from`` is the address
    ``state mv`` moved this record from: Modal cannot rename an app, so the next apply
    deploys this address and then stops that one. ``last_apply`` says what the last apply
    did when a verification failed (rolled back, kept running).
    """

    app: str
    environment: str | None
    spec_path: str
    spec_digest: str
    source_hash: str
    settings: dict[str, Any]
    # A plan's records make the source when it is read (plan.Desired).
    source: DeferredText = DeferredText("")  # noqa: RUF009 (a descriptor, shared by design)
    modaliac_version: str = __version__
    deployed_version: int | None = None  # Modal's app version after modaliac's deploy
    deployment_tag: str = ""  # the tag modaliac deployed with: modaliac-<source hash>
    env_option: str | None = None
    overrides: dict[str, dict[str, int]] = field(default_factory=dict)
    renamed_from: str | None = None
    last_apply: str | None = None  # what the last apply did when it did not go as planned

    @property
    def address(self) -> str:
        return str(Address(self.environment, self.app))


@dataclass
class State:
    apps: dict[str, AppRecord] = field(default_factory=dict)

    def to_json(self) -> str:
        document = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "apps": {address: asdict(record) for address, record in sorted(self.apps.items())},
        }
        return json.dumps(document, indent=2, sort_keys=True) + "\n"

    def in_environment(self, environment: str | None) -> list[str]:
        """The recorded addresses of one environment, sorted."""
        return sorted(a for a, r in self.apps.items() if r.environment == environment)


def read_state(path: Path) -> State:
    """The state at ``path`` with its journal replayed (journal.py): what the last apply
    recorded, even one still running or killed half way. A missing file is an empty state."""
    for _ in range(READ_ATTEMPTS):
        before = _identity(path)
        data = read_bytes(path, str(path), "state", MAX_STATE_BYTES, joined(StateError))
        pending = read_journal(journal_path(path))
        if pending is None or _identity(path) == before:
            return replayed(data, pending, path)
        # A fold replaced the state between the two reads: read the pair again.
    raise StateError(f"{path}: the state kept changing while it was read; retry")


MAX_STATE_BYTES = 256 * 2**20
READ_ATTEMPTS = 5


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def replayed(data: bytes | None, pending: Journal | None, path: Path) -> State:
    """The state file's ``data`` with the journal ``pending`` replayed on it: the journal's
    lines, if it extends this very file; nothing, if it was folded into it already."""
    state = State() if data is None else parse_state(_decoded(data, path), str(path))
    if pending is None:
        return state
    current = digest(data)
    if pending.base != current:
        if pending.sealed == current:
            return state  # a fold wrote this file, then stopped before removing the journal
        raise StateError(
            f"{journal_path(path)}:1:1: base: the journal extends another version of {path} "
            "(the file was replaced since); neither can be trusted alone: move the journal "
            "away, then run plan (an app Modal runs that the state does not record is shown "
            "as one apply only records)"
        )
    where = str(journal_path(path))
    return replay_entries(
        state, ((f"{where}:{n}:1", address, raw) for n, address, raw in pending.entries)
    )


def replay_entries(
    state: State, entries: Iterable[tuple[str, str, dict[str, Any] | None]]
) -> State:
    """``state`` with journal entries (where, address, record; None: removed) applied in
    order, each record checked as the state's own; the local and the Modal journal's."""
    for where, address, raw in entries:
        if raw is None:
            state.apps.pop(address, None)
        else:
            state.apps[address] = checked_entry(address, raw, f"{where}: record")
    return state


def _decoded(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StateError(f"{path}: byte {exc.start} is not UTF-8; is it a state?") from None


def parse_state(text: str, where: str) -> State:
    """A state document from its JSON text; ``where`` names it in the one-line errors.

    Every record is checked before any is used: a hand-edited or damaged state is one line
    naming the entry, never an internal error, and an entry whose key is not its own address
    is refused (it would make a command act on an app the key does not name)."""
    document = parse_json(text, where, "state", joined(StateError))
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise StateError(f"{where}: not a modaliac state file")
    version = document.get("version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise StateError(
            f"{where}: state version {shown(json.dumps(version), 20)} is not one this modaliac "
            "reads "
            f"({', '.join(map(str, READABLE_VERSIONS))}); use the modaliac version that wrote it"
        )
    apps = document.get("apps")
    if not isinstance(apps, dict):
        raise StateError(f"{where}: the state is damaged (apps is not a mapping)")
    state = State()
    for key, raw in apps.items():
        state.apps[key] = checked_entry(key, raw, f"{where}: apps", migrate=version == 1)
    return state


def checked_entry(key: str, raw: Any, where: str, *, migrate: bool = False) -> AppRecord:
    """The record a state (or its journal) keeps under ``key``, which must be its address."""
    label = key if APP_KEY.match(key) and token_kind(key) is None else shown(key)
    record = parse_record(raw, f"{where}.{label}", migrate=migrate)
    if record.address != key:
        named = record.address if token_kind(record.address) is None else shown(record.app)
        raise StateError(
            f"{where}.{label}: the entry is for {named}; each entry's key must be its "
            "address (ENVIRONMENT/APP)"
        )
    return record


_FIELDS = {f.name: f for f in fields(AppRecord)}
_REQUIRED = [
    name for name, f in _FIELDS.items() if f.default is MISSING and f.default_factory is MISSING
]
_TYPES: dict[str, tuple[type, ...]] = {
    "app": (str,),
    "environment": (str, type(None)),
    "spec_path": (str,),
    "spec_digest": (str,),
    "source_hash": (str,),
    "settings": (dict,),
    "source": (str,),
    "modaliac_version": (str,),
    "deployed_version": (int, type(None)),
    "deployment_tag": (str,),
    "env_option": (str, type(None)),
    "overrides": (dict,),
    "renamed_from": (str, type(None)),
    "last_apply": (str, type(None)),
}


def parse_record(raw: Any, where: str, *, migrate: bool = False) -> AppRecord:
    """One entry of a state (or a plan's record), checked field by field."""
    if not isinstance(raw, dict):
        raise StateError(f"{where}: the entry is not a mapping")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise StateError(f"{where}: unknown field {shown(unknown[0], 40)}")
    missing = [name for name in _REQUIRED if name not in raw]
    if missing:
        raise StateError(f"{where}: the entry has no {missing[0]!r}")
    for name, value in raw.items():
        allowed = _TYPES[name]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise StateError(f"{where}.{name}: has the wrong type ({type(value).__name__})")
    try:
        Address.parse(raw["app"], None)
        if raw["environment"] is not None:
            check_environment(raw["environment"], "environment")
        if raw.get("renamed_from") is not None:
            Address.parse(raw["renamed_from"])
        if raw.get("env_option") is not None:
            check_environment(raw["env_option"], "env_option")
    except ModaliacError as exc:
        raise StateError(f"{where}: {exc}") from None
    overrides = raw.get("overrides", {})
    if not all(
        isinstance(settings, dict)
        and all(isinstance(k, str) and type(v) is int for k, v in settings.items())
        for settings in overrides.values()
    ):
        raise StateError(f"{where}.overrides: expected function -> setting -> whole number")
    if migrate and "env_option" not in raw:
        # Version 1 did not record --env: take the app's environment, which errs towards
        # keeping an app (a plan of another --env never removes it).
        raw = {**raw, "env_option": raw["environment"]}
    return AppRecord(**raw)


def write_state(path: Path, state: State) -> None:
    """Replace the state file atomically: readers see the old file or the new one. (A
    ``LocalStore`` also folds its journal; this writes the file alone.)"""
    _replace_file(path, state.to_json().encode("utf-8"))


def _replace_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".state-", suffix=".json")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


# -- locking ----------------------------------------------------------------------------------


class StateLockedError(StateError):
    """Another run holds the state's lock (or this run lost its lease)."""


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


class LocalStore:
    """The state as a local JSON file; the lock is an OS file lock on ``<path>.lock``.

    ``flock`` is released by the kernel when its process exits, however it exits, so a crashed
    or killed apply never leaves the state locked, and the lock file is never deleted (deleting
    a locked file lets a second process lock a fresh inode while the first still holds the old).
    The file's content only says who holds it; the lock is the ``flock``.

    ``record`` appends to the journal (journal.py); releasing the lock folds the journal into
    the state file, and so does every ``write``.
    """

    def __init__(
        self, path: Path, *, poll: float = 0.05, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.journal_path = journal_path(path)
        self.poll = poll
        self.clock = clock
        self._held = False
        self._journal: JournalWriter | None = None
        self._appending = threading.Lock()  # apply may record from several threads

    def describe(self) -> str:
        return str(self.path)

    def read(self) -> State:
        return read_state(self.path)

    def record(self, state: State, address: str) -> None:
        if not self._held:
            raise StateError(f"{self.path}: recording an app needs the state's lock")
        entry = state.apps.get(address)
        line = entry_line(address, None if entry is None else asdict(entry))
        with self._appending:
            try:
                self._journal_writer().append(line)
            except OSError as exc:
                raise StateError(f"{self.path}: cannot write the state: {exc}") from None

    def write(self, state: State) -> None:
        """Replace the state file, folding the journal: seal it with the file about to be
        written, replace the file, then remove the journal (journal.py says why)."""
        data = state.to_json().encode("utf-8")
        with self._appending:
            try:
                if self._journal is not None or self.journal_path.exists():
                    writer = self._journal_writer()
                    writer.seal(digest(data) or "")
                    _replace_file(self.path, data)
                    self._close_journal()
                    self.journal_path.unlink()
                    sync_directory(self.path.parent)
                else:
                    _replace_file(self.path, data)
            except OSError as exc:
                raise StateError(f"{self.path}: cannot write the state: {exc}") from None

    def _journal_writer(self) -> JournalWriter:
        """This run's journal: the one on disk if it extends the state file as it is now,
        else a new one (a folded journal is replaced; a foreign one is refused by reading)."""
        if self._journal is None:
            data = read_bytes(
                self.path, str(self.path), "state", MAX_STATE_BYTES, joined(StateError)
            )
            pending = read_journal(self.journal_path)
            replayed(data, pending, self.path)  # refuses a damaged or foreign journal
            base = digest(data)
            if pending is not None and pending.base == base:
                self._journal = JournalWriter.resume(self.journal_path, pending.complete)
            else:
                self._journal = JournalWriter.start(self.journal_path, base)
        return self._journal

    def _close_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _fold(self) -> None:
        """Write what this run journaled into the state file, once, as the lock is released.
        If that fails (a full disk), the journal stays, and every reader still replays it."""
        if self._journal is not None:
            self.write(read_state(self.path))

    def refresh(self) -> None:
        """Nothing to renew: the lock lasts as long as the process holding it."""

    @contextlib.contextmanager
    def lock(self, owner: str, wait: float = 0.0) -> Iterator[LockOwner]:
        fd = self._acquire(wait)
        try:
            me = LockOwner.current(owner, self.clock())
            note = me.to_json().encode()
            # Write, then cut to length: the file never reads as empty while it is held.
            os.pwrite(fd, note, 0)
            os.ftruncate(fd, len(note))
            self._held = True
            try:
                yield me
            finally:
                with contextlib.suppress(StateError):  # unfolded, the journal still counts
                    self._fold()
        finally:
            self._held = False
            self._close_journal()
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # a released lock names nobody
            os.close(fd)  # closing the last descriptor releases the flock

    def _acquire(self, wait: float) -> int:
        try:
            import fcntl  # POSIX only; imported here so reading a state works everywhere
        except ImportError:
            raise StateError(f"{self.path}: locking a local state needs fcntl (POSIX)") from None
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateError(f"{self.lock_path}: cannot open the state lock: {exc}") from None
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                now = time.monotonic()
                if now >= deadline:
                    # The holder writes its note just after taking the lock: give it a
                    # moment (and keep trying the lock, which it may release meanwhile).
                    holder = self._noted_holder()
                    if holder is not None or now >= deadline + NOTE_WAIT:
                        os.close(fd)
                        raise self._locked(holder) from None
                time.sleep(self.poll)
            except OSError as exc:
                os.close(fd)
                raise StateError(f"{self.lock_path}: cannot lock the state: {exc}") from None

    def _noted_holder(self) -> LockOwner | None:
        """The holder the lock file names, unless the note is not written yet, or is left
        from a holder that was killed (its process is gone; the OS freed its lock)."""
        try:
            holder = LockOwner.from_json(self.lock_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return None
        if holder is None or (holder.host == socket.gethostname() and not alive(holder.pid)):
            return None
        return holder

    def _locked(self, holder: LockOwner | None) -> StateLockedError:
        holder = holder or flock_holder(self.lock_path)
        who = (
            holder.describe()
            if holder
            else f"another process, which has not named itself within {NOTE_WAIT:g}s"
        )
        return StateLockedError(
            f"{self.path} is locked by {who}; wait for it to finish and retry, "
            "or stop that process (its lock is freed when it exits)"
        )


NOTE_WAIT = 2.0  # how long a refused run waits for the holder's note before asking the OS


# -- choosing a store -------------------------------------------------------------------------


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
        from .modal_store import ModalStore

        return ModalStore.from_spec(text)
    return LocalStore(Path(text).expanduser())
