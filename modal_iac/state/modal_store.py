"""The state on Modal: a JSON file on a Volume, guarded by a leased lock entry in a Dict.

Why two objects: a Volume keeps files until they are deleted, but two writers of one file race
(the last one wins); a Dict has an atomic create (``put(key, value, skip_if_exists=True)``)
but drops an entry left idle for 7 days. So the Volume holds the state and the Dict only the
lock, whose entry (Dict ``modaliac-locks`` in the same environment, key ``<volume>/<path>``)
names its holder and the end of its lease: a crashed apply blocks others for one lease at most.
Under the lock, each app an apply finishes is one small file of a journal folder beside the
state (modal_journal.py), folded into the state file once, as the lock is released.

The SDK is imported on first use, so naming a Modal store costs nothing offline. Every call
runs under modaliac's own deadline and fails with one ``StateError`` line (modal_calls.py).
"""

from __future__ import annotations

import contextlib
import functools
import posixpath
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import StateError
from ..tokens import shown
from .journal import READ_ATTEMPTS, digest
from .lock_owner import LockOwner, StateLockedError, Unreadable, lock_id, remote_owner, utc_time
from .modal_calls import run_modal, within
from .modal_journal import (
    Entry,
    Seal,
    Unsettled,
    entry_file,
    entry_number,
    entry_path,
    journal_folder,
    parse_entry,
    parse_seal,
    pending,
    replay,
    seal_file,
    seal_path,
)
from .records import REMOTE_PREFIX, State, parse_state
from .volume_files import listing, read_each, read_optional, remove_each, upload

if TYPE_CHECKING:
    import modal

T = TypeVar("T")
Handle = TypeVar("Handle", "modal.Volume", "modal.Dict")

LOCKS_DICT = "modaliac-locks"
DEFAULT_PATH = "state.json"
DEFAULT_LEASE = 15 * 60.0
MAX_LEASE = 24 * 3600.0  # a lease ending further ahead than this is no lease modaliac wrote
CALL_TIMEOUT = 5.0  # one small RPC (connecting included): an unreachable API fails this fast
TRANSFER_TIMEOUT = 60.0  # reading or writing the state file itself


class _Vanished(Exception):
    """The lock entry was released between two of our calls: look again."""


@dataclass
class _Snapshot:
    """The state file and its journal, read together; ``pending``: the entries still have to
    be replayed (False: none, or folded into ``data`` already)."""

    data: bytes | None
    entries: list[Entry] = field(default_factory=list)
    seal: Seal | None = None
    pending: bool = False


def _clean_path(path: str) -> str:
    if not path or path.endswith("/"):
        path += DEFAULT_PATH
    return posixpath.normpath("/" + path).lstrip("/")


class ModalStore:
    """The state file ``path`` on the Modal Volume ``volume`` (created if missing).

    ``lease``: how long a lock lasts unless renewed. While the lock is held a heartbeat thread
    renews it every ``renew_every`` seconds (default: a third of the lease), so an apply whose
    first image build outlasts the lease keeps its lock, and a killed one loses it one lease
    later; ``write()`` renews it too. ``clock`` is wall time (leases are compared across
    machines) and injectable.
    """

    def __init__(
        self,
        volume: str,
        path: str = DEFAULT_PATH,
        environment: str | None = None,
        *,
        lease: float = DEFAULT_LEASE,
        timeout: float = CALL_TIMEOUT,
        transfer_timeout: float = TRANSFER_TIMEOUT,
        poll: float = 1.0,
        clock: Callable[[], float] = time.time,
        renew_every: float | None = None,
    ) -> None:
        self.volume = volume
        self.path = _clean_path(path)
        self.environment = environment or None
        self.lease = lease
        self.timeout = timeout
        self.transfer_timeout = transfer_timeout
        self.poll = poll
        self.clock = clock
        self.renew_every = lease / 3 if renew_every is None else renew_every
        self.key = f"{volume}/{self.path}"
        self._held: LockOwner | None = None
        self._lost: StateLockedError | None = None  # why this run no longer holds the lock
        self._mutex = threading.RLock()  # renewals (heartbeat, write) and release, one at once
        self._stopping = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._volume: modal.Volume | None = None
        self._locks: modal.Dict | None = None
        self._appending = threading.Lock()  # apply may record from several threads
        self._base: str | None = None  # the state this run's journal extends
        self._next: int | None = None  # the next entry's number; None: no journal yet

    def describe(self) -> str:
        environment = f"{self.environment}:" if self.environment else ""
        return f"{REMOTE_PREFIX}{environment}{self.volume}/{self.path}"

    # -- the state file ---------------------------------------------------------------------

    def read(self) -> State:
        """The recorded state with its journal replayed: what the last apply recorded, even
        one still running or killed half way. A volume without the file is an empty state."""
        snapshot = self._run("reading the state", self._snapshot)
        state = self._parsed(snapshot.data)
        return replay(state, snapshot.entries) if snapshot.pending else state

    def write(self, state: State) -> None:
        """Replace the file in one upload (readers see the old state or the new one), folding
        any journal: seal it with the file about to be written, upload the file, then remove
        the entries and the seal (modal_journal.py says why).

        Under the lock, first renew the lease, which also proves the lock is still ours.
        """
        self.refresh()  # renews a held lease; raises if the lock was lost
        data = state.to_json().encode("utf-8")

        async def work() -> None:
            await self._replace(data, await self._snapshot())

        with self._appending:
            self._next = None  # a journal after this write extends the new file
            self._run("writing the state", work)

    def _fold(self) -> None:
        """Write what the journal holds into the state file, reading it once."""
        self.refresh()  # renews a held lease; raises if the lock was lost

        async def work() -> None:
            snapshot = await self._snapshot()
            if snapshot.pending:
                state = replay(self._parsed(snapshot.data), snapshot.entries)
                await self._replace(state.to_json().encode("utf-8"), snapshot)

        with self._appending:
            self._next = None
            self._run("folding the state journal", work)

    async def _replace(self, data: bytes, snapshot: _Snapshot) -> None:
        """Upload ``data`` as the state file, in place of ``snapshot`` and its journal."""
        volume = await self._hydrated(self._volume_object())
        if snapshot.pending:
            seal = seal_file(snapshot.entries[0].base, digest(data) or "")
            await self._transfer(upload(volume, seal_path(self.path), seal))
            await self._transfer(upload(volume, self.path, data))
            await self._remove_journal(volume, snapshot)
            return
        if snapshot.entries or snapshot.seal is not None:  # folded already: clear it first,
            await self._remove_journal(volume, snapshot)  # as its seal names the file
        await self._transfer(upload(volume, self.path, data))  # replaced here

    def record(self, state: State, address: str) -> None:
        """Make ``state``'s entry for ``address`` (or its absence) durable: one journal file
        of that entry alone, so a run uploads each record once (a Volume has no append)."""
        self.refresh()  # renews a held lease; raises if the lock was lost
        if self._held is None:
            raise StateError(f"{self.describe()}: recording an app needs the state's lock")
        entry = state.apps.get(address)
        record = None if entry is None else asdict(entry)

        async def work(number: int) -> None:
            volume = await self._hydrated(self._volume_object())
            data = entry_file(self._base, address, record)
            # Never replace an entry: a second writer of one number fails instead.
            await self._transfer(upload(volume, entry_path(self.path, number), data, force=False))

        with self._appending:
            if self._next is None:
                self._run("starting the state journal", self._start_journal)
            number = self._next
            assert number is not None
            self._next = number + 1  # even if the upload fails: it may have landed
            self._run(f"recording {address}", functools.partial(work, number))

    async def _start_journal(self) -> None:
        """This run's journal extends the state file as it is now: go on after the entries
        a killed run left (its lease lapsed, ours took over), or clear a folded journal."""
        volume = await self._hydrated(self._volume_object())
        snapshot = await self._snapshot()
        if not snapshot.pending and (snapshot.entries or snapshot.seal is not None):
            await self._remove_journal(volume, snapshot)
            snapshot = _Snapshot(snapshot.data)
        self._base = digest(snapshot.data)
        self._next = 1 + max((entry.number for entry in snapshot.entries), default=0)

    async def _snapshot(self) -> _Snapshot:
        """The state file and its journal as of one moment. The folder is listed first, so a
        fold that runs meanwhile shows as a journal that does not extend the file read after
        it (or an entry gone): then everything is read again."""
        volume = await self._hydrated(self._volume_object())
        stray = ""
        for _ in range(READ_ATTEMPTS):
            names = self._numbered(
                await within(self.timeout, listing(volume, journal_folder(self.path)))
            )
            data = await self._transfer(read_optional(volume, self.path))
            try:
                files = await self._transfer(read_each(volume, [path for path, _ in names]))
            except FileNotFoundError:
                continue
            snapshot = _Snapshot(data)
            for (path, number), content in zip(names, files, strict=True):
                where = self._where(path)
                if number is None:
                    snapshot.seal = parse_seal(content, where, self._repair())
                else:
                    snapshot.entries.append(parse_entry(content, where, number, self._repair()))
            try:
                snapshot.pending = pending(data, snapshot.entries, snapshot.seal)
            except Unsettled as exc:
                stray = str(exc)
                continue
            return snapshot
        if not stray:
            raise StateError(f"{self.describe()}: the state kept changing while it was read; retry")
        raise StateError(
            f"{stray}:1:1: base: the journal extends another version of {self.describe()} "
            f"(the file was replaced since); neither can be trusted alone: {self._repair()}"
        )

    async def _remove_journal(self, volume: modal.Volume, snapshot: _Snapshot) -> None:
        """The entries first, the seal last: while entries remain, the seal tells they are
        folded."""
        paths = [entry_path(self.path, entry.number) for entry in snapshot.entries]
        await within(self.timeout, remove_each(volume, paths))
        await within(self.timeout, remove_each(volume, [seal_path(self.path)]))

    async def _transfer(self, awaitable: Coroutine[Any, Any, T]) -> T:
        return await within(self.transfer_timeout, awaitable)

    def _parsed(self, data: bytes | None) -> State:
        if data is None:
            return State()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StateError(
                f"{self.describe()}: the state is not UTF-8 text (byte {exc.start})"
            ) from None
        return parse_state(text, self.describe())

    def _numbered(self, names: list[str]) -> list[tuple[str, int | None]]:
        """The journal folder's files as (path, entry number; None for the seal), by number;
        a file that is neither is refused, not skipped."""
        found: list[tuple[str, int | None]] = []
        for name in names:
            path = posixpath.join(journal_folder(self.path), name)
            try:
                found.append((path, entry_number(name)))
            except ValueError:
                raise StateError(
                    f"{self._where(path)}: not an entry of the state's journal; {self._repair()}"
                ) from None
        return sorted(found, key=lambda item: -1 if item[1] is None else item[1])

    def _where(self, path: str) -> str:
        environment = f"{self.environment}:" if self.environment else ""
        return f"{REMOTE_PREFIX}{environment}{self.volume}/{path}"

    def _repair(self) -> str:
        environment = f" --env {self.environment}" if self.environment else ""
        folder = journal_folder(self.path)
        return (
            f"the journal is damaged: remove it (modal volume rm -r{environment} {self.volume} "
            f"{folder}), then run plan (an app Modal runs that the state does not record is "
            "shown as one apply only records)"
        )

    # -- the lock ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, owner: str, wait: float = 0.0) -> Iterator[LockOwner]:
        """Hold the state's lock, renewed by a heartbeat until released; if another run holds
        it after ``wait`` seconds, raise StateLockedError. A lease that has lapsed is taken
        over."""
        me = self._acquire(owner, wait)
        self._held, self._lost = me, None
        self._next = None
        self._start_heartbeat()
        finished = False
        try:
            yield me
            finished = True
        finally:
            try:
                if self._next is not None:  # fold what this run journaled, once
                    with contextlib.suppress(StateError):  # unfolded, the journal still counts
                        self._fold()
            finally:
                self._next = None
                self._stop_heartbeat()
            try:
                if finished:
                    self._release()
                else:
                    with contextlib.suppress(StateError):  # the lease lapses by itself
                        self._release()
            finally:
                self._lost = None

    def refresh(self) -> None:
        """Extend this run's lease; raise StateLockedError if the lock is no longer ours."""
        with self._mutex:
            if self._lost is not None:
                raise self._lost
            held = self._held
            if held is None:
                return
            renewed = replace(held, expires_at=self.clock() + self.lease)

            async def work() -> LockOwner | None:
                locks = await self._hydrated(self._locks_object())
                raw = await within(self.timeout, locks.get.aio(self.key))
                current = None if raw is None else remote_owner(raw)
                if current is None or current.token != held.token:
                    return current
                await within(self.timeout, locks.put.aio(self.key, renewed.to_json()))
                return renewed

            current = self._run("renewing the state lock", work)
            if current is None or current.token != held.token:
                self._held = None
                whom = f"taken over by {current.describe()}" if current else "removed"
                self._lost = StateLockedError(
                    f"{self.describe()}: this run's lock was {whom} (its lease lapsed "
                    f"at {_utc(held.expires_at)}); stop, and plan again"
                )
                raise self._lost
            self._held = renewed

    def _start_heartbeat(self) -> None:
        self._stopping.clear()
        self._heartbeat = threading.Thread(
            target=self._beat, name="modaliac-lock-heartbeat", daemon=True
        )
        self._heartbeat.start()

    def _stop_heartbeat(self) -> None:
        self._stopping.set()
        if self._heartbeat is not None:
            # A renewal in flight is bounded by the call deadlines; release waits for it anyway.
            self._heartbeat.join(timeout=3 * self.timeout)
            self._heartbeat = None

    def _beat(self) -> None:
        """Renew the lease until told to stop. A renewal Modal does not answer is retried at
        the next beat (the lease still runs); a lock found lost ends the beat, and the next
        write says so."""
        while not self._stopping.wait(self.renew_every):
            try:
                self.refresh()
            except StateLockedError:
                return
            except StateError:
                continue

    def break_lock(self, expected: str) -> LockOwner | None:
        """Remove the lock whose ``lock_id`` is ``expected`` (for a person who knows its holder
        is gone), and return its holder; None if nothing holds the lock. A lock of another id
        is left in place, and StateLockedError names it."""

        async def work() -> LockOwner | None:
            locks = await self._hydrated(self._locks_object())
            raw = await within(self.timeout, locks.get.aio(self.key))
            if raw is None or lock_id(remote_owner(raw)) != expected:
                return None if raw is None else remote_owner(raw)
            popped = await within(self.timeout, locks.pop.aio(self.key, None))
            if popped is not None and lock_id(remote_owner(popped)) != expected:
                await self._put_new(locks, self.key, popped)  # taken over in between: restore
                return remote_owner(popped)
            return remote_owner(raw)

        holder = self._run("removing the state lock", work)
        if holder is not None and lock_id(holder) != expected:
            raise StateLockedError(
                f"{self.describe()} is locked by {holder.describe()} (lock id "
                f"{lock_id(holder)}), not by lock {shown(expected)}; nothing removed"
            )
        return holder

    def _acquire(self, owner: str, wait: float) -> LockOwner:
        base = LockOwner.current(owner, self.clock())
        deadline = time.monotonic() + wait
        while True:
            now = self.clock()
            me = replace(base, since=now, expires_at=now + self.lease)
            holder = self._run("taking the state lock", functools.partial(self._attempt, me))
            if holder is None:
                return me
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._locked(holder, now)
            time.sleep(min(self.poll, remaining))

    def _locked(self, holder: LockOwner, now: float) -> StateLockedError:
        """Why the lock cannot be had: a holder whose lease lapses (wait), or an entry no
        modaliac run would have written, which stays until a person removes it."""
        unlock = f"modaliac state unlock {lock_id(holder)} --state {self.describe()}"
        if isinstance(holder, Unreadable):
            return StateLockedError(
                f"{self.describe()} is locked by {holder.describe()}; it never lapses by "
                f"itself: if no modaliac run holds it, remove it: {unlock}"
            )
        ends = holder.expires_at or 0.0
        if ends > now + max(self.lease, MAX_LEASE):
            return StateLockedError(
                f"{self.describe()} is locked by {holder.describe()} until {_utc(ends)}, "
                f"further ahead than any modaliac lease ({self.lease / 60:g} minutes, renewed "
                f"while held); if that process is gone, remove it: {unlock}"
            )
        return StateLockedError(
            f"{self.describe()} is locked by {holder.describe()}; wait for it to finish "
            f"and retry, or if that process is gone, retry after {_utc(ends)} when its "
            "lease lapses"
        )

    async def _attempt(self, me: LockOwner) -> LockOwner | None:
        """One try at the lock: None if ``me`` holds it now, else its holder."""
        locks = await self._hydrated(self._locks_object())
        for _ in range(5):
            try:
                if await self._put_new(locks, self.key, me.to_json()):
                    return None
                held = await self._holder(locks)
                if isinstance(held, Unreadable) or (held.expires_at or 0.0) > self.clock():
                    return held  # held; an unreadable entry is never taken over
                return await self._take_over(locks, held, me)
            except _Vanished:
                continue
        raise StateLockedError(f"{self.describe()}: the lock keeps changing hands; retry")

    async def _take_over(
        self, locks: modal.Dict, lapsed: LockOwner, me: LockOwner
    ) -> LockOwner | None:
        """Replace a lock whose lease is over; exactly one taker of one lapsed lease wins.

        Popping and re-putting alone is not enough: a second taker who saw the same lapsed
        entry would pop the first taker's fresh lock. So the right to take over is itself an
        atomic create, keyed by the lapsed holder's token. Claims stay behind (Modal drops idle
        Dict entries after 7 days), so a late taker with a stale view still loses.
        """
        claim = f"{self.key}#takeover:{lapsed.token}"
        if not await self._put_new(locks, claim, me.token):
            return await self._holder(locks)
        popped = await within(self.timeout, locks.pop.aio(self.key, None))
        if popped is not None:
            gone = remote_owner(popped)
            if gone.token != lapsed.token or (gone.expires_at or 0.0) > self.clock():
                # Renewed by its holder, or released and retaken, since we looked: put it back.
                await self._put_new(locks, self.key, popped)
                return gone
        if await self._put_new(locks, self.key, me.to_json()):
            return None
        return await self._holder(locks)

    def _release(self) -> None:
        """Remove the lock only if it is still ours (after a lapse it may be someone else's)."""
        with self._mutex:  # after a renewal in flight, never during one
            held, self._held = self._held, None
        if held is None:
            return

        async def work() -> None:
            locks = await self._hydrated(self._locks_object())
            raw = await within(self.timeout, locks.get.aio(self.key))
            if raw is None or remote_owner(raw).token != held.token:
                return
            popped = await within(self.timeout, locks.pop.aio(self.key, None))
            if popped is not None and remote_owner(popped).token != held.token:
                await self._put_new(locks, self.key, popped)  # taken over in between: restore

        self._run("releasing the state lock", work)

    async def _put_new(self, locks: modal.Dict, key: str, value: object) -> bool:
        created: bool = await within(self.timeout, locks.put.aio(key, value, skip_if_exists=True))
        return created

    async def _holder(self, locks: modal.Dict) -> LockOwner:
        raw = await within(self.timeout, locks.get.aio(self.key))
        if raw is None:
            raise _Vanished
        return remote_owner(raw)

    # -- talking to Modal -------------------------------------------------------------------

    def _volume_object(self) -> modal.Volume:
        if self._volume is None:
            import modal

            self._volume = modal.Volume.from_name(
                self.volume, environment_name=self.environment, create_if_missing=True
            )
        return self._volume

    def _locks_object(self) -> modal.Dict:
        if self._locks is None:
            import modal

            self._locks = modal.Dict.from_name(
                LOCKS_DICT, environment_name=self.environment, create_if_missing=True
            )
        return self._locks

    async def _hydrated(self, obj: Handle) -> Handle:
        """Look the object up (and connect, the first time) under the short deadline."""
        await within(self.timeout, obj.hydrate.aio())
        return obj

    def _run(self, doing: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``work`` and turn every way Modal can fail into one StateError line."""
        return run_modal(self.describe(), doing, work)


def _utc(seconds: float | None) -> str:
    return utc_time(seconds or 0.0)
