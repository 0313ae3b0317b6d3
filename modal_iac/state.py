"""The recorded state: what modaliac last applied, per app, and where it is kept.

The state holds names, hashes, resolved settings and the rendered source, never a secret
value (specs cannot hold one: load.py refuses them). It lives behind a ``StateStore``: a local
JSON file (``LocalStore``, the default) or a file on a Modal Volume (``remote_state.ModalStore``),
chosen by ``open_store``. Either way writes are atomic and an apply holds a lock, so two
applies never interleave their writes.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from . import __version__
from .address import Address, check_environment
from .deferred import DeferredText
from .errors import ModaliacError, StateError
from .files import joined, parse_json, read_text
from .tokens import shown, token_kind

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
    """The state at ``path``; a missing file is an empty state (nothing applied yet)."""
    text = read_text(path, str(path), "state", MAX_STATE_BYTES, joined(StateError))
    return State() if text is None else parse_state(text, str(path))


MAX_STATE_BYTES = 256 * 2**20


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
        label = key if APP_KEY.match(key) and token_kind(key) is None else shown(key)
        record = parse_record(raw, f"{where}: apps.{label}", migrate=version == 1)
        if record.address != key:
            named = record.address if token_kind(record.address) is None else shown(record.app)
            raise StateError(
                f"{where}: apps.{label}: the entry is for {named}; each entry's key must be its "
                "address (ENVIRONMENT/APP)"
            )
        state.apps[key] = record
    return state


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
    """Replace the state file atomically: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".state-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(state.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(folder: Path) -> None:
    """Make the rename itself durable: a power cut after it must not bring the old file back."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory; the rename still happened
        pass
    finally:
        os.close(fd)


# -- locking ----------------------------------------------------------------------------------


class StateLockedError(StateError):
    """Another run holds the state's lock (or this run lost its lease)."""


def utc_time(seconds: float) -> str:
    """A moment as people in any time zone read it alike."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        return "unknown"


@dataclass(frozen=True)
class LockOwner:
    """Who holds a state lock, written beside the lock so a blocked run can say who to ask.

    ``token`` tells this holder from any other with the same pid and host (a remote lock is
    released or renewed only by the holder whose token it carries). ``expires_at`` is the end
    of a remote lease; a local lock has none (the OS frees it when its process exits).
    """

    command: str
    pid: int
    host: str
    user: str
    since: float
    token: str
    expires_at: float | None = None

    @classmethod
    def current(cls, command: str, now: float) -> LockOwner:
        """This process, doing ``command`` (empty: the command line it was started with)."""
        label = command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]).strip()
        return cls(
            command=label[:200],
            pid=os.getpid(),
            host=socket.gethostname(),
            user=_user(),
            since=now,
            token=uuid.uuid4().hex,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LockOwner | None:
        """The owner recorded in ``text``, or None if it is not one (empty, partly written).

        Fields this version does not know are ignored, so a newer modaliac's lock still counts.
        """
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                return None
            return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
        except (ValueError, TypeError):
            return None

    def describe(self) -> str:
        kind = token_kind(self.command)
        command = f"`{self.command}`" if kind is None else f"a command holding {kind}, not shown"
        who = f"{self.user}@{self.host} (pid {self.pid}, {command})"
        return f"{who} since {utc_time(self.since)}"


class StateStore(Protocol):
    """Where the state lives. ``plan`` only reads; ``apply`` reads, then writes under ``lock``.

    ``lock(owner, wait)`` is a context manager yielding this run's ``LockOwner``; ``owner``
    names the operation (e.g. ``"modaliac apply specs/"``), pid, host, user and time are added.
    If another run holds the lock after ``wait`` seconds it raises ``StateLockedError``, one
    line naming the holder and what to do. ``refresh()`` renews a lease-based lock during a
    long apply (a no-op for stores whose lock has no lease).
    """

    def read(self) -> State: ...

    def write(self, state: State) -> None: ...

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
    """

    def __init__(
        self, path: Path, *, poll: float = 0.05, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.poll = poll
        self.clock = clock

    def describe(self) -> str:
        return str(self.path)

    def read(self) -> State:
        return read_state(self.path)

    def write(self, state: State) -> None:
        try:
            write_state(self.path, state)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot write the state: {exc}") from None

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
            yield me
        finally:
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
        if holder is None or (holder.host == socket.gethostname() and not _alive(holder.pid)):
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but belongs to someone else
        return True
    return True


def flock_holder(path: Path) -> LockOwner | None:
    """Who holds the ``flock`` on ``path``, as Linux's ``/proc/locks`` tells it, for a holder
    that has not written its note (stopped right after taking the lock, say). None where
    there is no ``/proc`` (macOS) or the holder is not visible from here."""
    try:
        found = os.stat(path)
        table = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    file = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
    for line in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 1234 08:02:5678 0 EOF" (a waiter reads "1: -> FLOCK ...")
        columns = line.split()
        if len(columns) >= 6 and columns[1:2] == ["FLOCK"] and columns[5] == file:
            return _process(int(columns[4])) if columns[4].isdigit() else None
    return None


def _process(pid: int) -> LockOwner | None:
    """A running process described as a lock owner: command line, user and start time."""
    proc = Path(f"/proc/{pid}")
    try:
        command = (
            proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
        uid = proc.stat().st_uid
        ticks = int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    try:
        import pwd

        user = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        user = str(uid)
    since = boot + ticks / os.sysconf("SC_CLK_TCK")
    one_line = " ".join(command.split())  # a ``python -c`` script spans lines
    return LockOwner(one_line[:200], pid, socket.gethostname(), user, since, "")


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
        from .remote_state import ModalStore

        return ModalStore.from_spec(text)
    return LocalStore(Path(text).expanduser())
