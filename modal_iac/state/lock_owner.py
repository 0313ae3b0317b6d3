"""Who holds a state lock: the note a holder writes beside its lock, and, for a local lock
whose holder wrote none, what the OS says. Shared by the local and the Modal store."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import sys
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from ..errors import StateError
from ..tokens import printable, token_kind

# The moments a lock entry may name: from 1970 to the end of year 9999, what a datetime shows.
LAST_MOMENT = 253_402_300_799.0
MAX_PID = 2**31  # past any pid a kernel hands out (and what os.kill takes)


def utc_time(seconds: float) -> str:
    """A moment as people in any time zone read it alike."""
    if not (isinstance(seconds, int | float) and 0 <= seconds <= LAST_MOMENT):
        return "an unreadable time"  # a NaN, an infinity, or past year 9999
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _checked(data: dict[str, object]) -> dict[str, object]:
    """The fields of a lock note, or ValueError naming the first that is not what a holder
    writes (never its value: the note is anyone's text)."""
    found: dict[str, object] = {}
    for item in fields(LockOwner):
        if item.name not in data:
            if item.name == "expires_at":
                continue
            raise ValueError(f"it has no {item.name}")
        value = data[item.name]
        if item.name == "expires_at" and value is None:
            pass  # a local lock has no lease
        elif item.name in ("since", "expires_at"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"its {item.name} is not a number")
            if not 0 <= value <= LAST_MOMENT:  # a NaN fails this too
                raise ValueError(f"its {item.name} is not a moment between 1970 and 9999")
            value = float(value)
        elif item.name == "pid":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_PID:
                raise ValueError("its pid is not a process id")
        elif not isinstance(value, str):
            raise ValueError(f"its {item.name} is not text")
        found[item.name] = value
    return found


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
    def parse(cls, text: str) -> LockOwner:
        """The owner recorded in ``text``; ValueError saying why it is not one (empty, partly
        written, or a field of the wrong type or out of range: a note is anyone's text).

        Fields this version does not know are ignored, so a newer modaliac's lock still counts.
        """
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise ValueError("it is not JSON") from None
        if not isinstance(data, dict):
            raise ValueError("it is not a JSON object")
        return cls(**_checked(data))  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, text: str) -> LockOwner | None:
        """The owner recorded in ``text``, or None if it is not one (see ``parse``)."""
        try:
            return cls.parse(text)
        except ValueError:
            return None

    def describe(self) -> str:
        kind = token_kind(self.command)
        if kind is None:
            command = f"`{_one_line(self.command, 200)}`"
        else:
            command = f"a command holding {kind}, not shown"
        user, host = _one_line(self.user, 64), _one_line(self.host, 255)
        who = f"{user}@{host} (pid {self.pid}, {command})"
        return f"{who} since {utc_time(self.since)}"


def _one_line(text: str, limit: int) -> str:
    """A holder's own words, shown: printable (no escape sequence reaches the terminal) and
    at most ``limit`` characters."""
    shown = printable(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


@dataclass(frozen=True)
class Unreadable(LockOwner):
    """A lock entry that names no holder modaliac can read (damaged, another tool's, or
    hostile): held, never taken over (fail closed), until a person removes it."""

    why: str = ""

    def describe(self) -> str:
        return f"a lock entry modaliac cannot read ({self.why})"


def remote_owner(raw: object) -> LockOwner:
    """The holder a Modal lock entry names, or ``Unreadable`` (a lease needs an end to
    lapse)."""
    try:
        if not isinstance(raw, str):
            raise ValueError("it is not text")
        owner = LockOwner.parse(raw)
        if owner.expires_at is None:
            raise ValueError("it has no expires_at")
        return owner
    except ValueError as exc:
        digest = hashlib.sha256(repr(raw).encode()).hexdigest()[:16]
        return Unreadable("", 0, "?", "?", 0.0, f"unreadable-{digest}", None, why=str(exc))


def lock_id(owner: LockOwner) -> str:
    """The lock's id that ``state unlock`` takes, so it removes that lock and no other: the
    same while its holder renews it, another for the next holder."""
    return hashlib.sha256(owner.token.encode()).hexdigest()[:12]


def alive(pid: int) -> bool:
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


class StateLockedError(StateError):
    """Another run holds the state's lock (or this run lost its lease)."""
