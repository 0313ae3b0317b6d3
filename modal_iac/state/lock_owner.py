"""Who holds a state lock: the note a holder writes beside its lock, and, for a local lock
whose holder wrote none, what the OS says. Shared by the local and the Modal store."""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from ..errors import StateError
from ..tokens import token_kind


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
