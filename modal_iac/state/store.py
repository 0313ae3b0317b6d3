"""The state in a local JSON file: atomic writes, an OS file lock, and a journal.

``LocalStore`` is the default ``StateStore`` (stores.py). Writes replace the file atomically
and an apply holds the lock, so two applies never interleave their writes. Each app an apply
finishes is one line of the state's journal (journal.py), folded into the file as the lock is
released; every reader replays it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

from ..errors import StateError
from ..files import joined, open_own, read_bytes
from .journal import (
    READ_ATTEMPTS,
    Journal,
    JournalWriter,
    digest,
    entry_line,
    journal_path,
    read_journal,
    sync_directory,
)
from .lock_owner import LockOwner, StateLockedError, alive, flock_holder
from .records import State, parse_state, replay_entries


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


def _decoded(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StateError(f"{path}: byte {exc.start} is not UTF-8; is it a state?") from None


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
        except OSError as exc:
            raise StateError(f"{self.lock_path}: cannot open the state lock: {exc}") from None
        flags = os.O_RDWR | os.O_CREAT
        fd = open_own(self.lock_path, flags, "state lock", joined(StateError))
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
                    holder = self._noted_holder(fd)
                    if holder is not None or now >= deadline + NOTE_WAIT:
                        os.close(fd)
                        raise self._locked(holder) from None
                time.sleep(self.poll)
            except OSError as exc:
                os.close(fd)
                raise StateError(f"{self.lock_path}: cannot lock the state: {exc}") from None

    def _noted_holder(self, fd: int) -> LockOwner | None:
        """The holder the lock file names, unless the note is not written yet, or is left
        from a holder that was killed (its process is gone; the OS freed its lock)."""
        try:
            holder = LockOwner.from_json(os.pread(fd, 2**16, 0).decode("utf-8"))
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
