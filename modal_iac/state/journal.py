"""The state's journal: one line per app an apply finished, so a run writes in linear time.

Rewriting the whole state after every app (with fsyncs) makes an apply of N apps write
O(N^2) bytes. Instead the lock holder appends one JSON line per finished app to
``<state>.journal`` (written and fsynced before the app is reported recorded), and folds the
journal into the state once, when it releases the lock. Every reader of the state replays
the journal, so a run killed at any point still leaves a state that tells the truth.

The file: a header line ``{"format": "modaliac-journal", "version": 1, "base": DIGEST}``
naming the state it extends (the SHA-256 of the state file's bytes; null: no file yet), then
``{"address": ADDRESS, "record": RECORD | null}`` lines (null: the app was removed), and,
just before a fold replaces the state, ``{"sealed": DIGEST}``: the state the fold writes, so
a journal left by a fold killed before it removed the journal is known as already folded.
Records are the state's own entries: names, hashes and settings, never a secret value.

Only an incomplete last line (no newline: a write cut short by a crash) is ignored; any
other line that does not parse is refused with its line and column, like any hostile input.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StateError
from ..files import joined, open_own, parse_json, read_bytes

JOURNAL_FORMAT = "modaliac-journal"
JOURNAL_VERSION = 1
MAX_JOURNAL_BYTES = 512 * 2**20
READ_ATTEMPTS = 5  # a fold replaced the state between reading it and its journal: read again


def journal_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".journal")


def digest(data: bytes | None) -> str | None:
    """What a journal's header names a state by: None for a state file not written yet."""
    return None if data is None else hashlib.sha256(data).hexdigest()


@dataclass
class Journal:
    """A parsed journal: ``entries`` are (line number, address, raw record or None); the
    records are checked by the state's reader, which knows their fields."""

    base: str | None
    entries: list[tuple[int, str, dict[str, Any] | None]] = field(default_factory=list)
    sealed: str | None = None
    complete: int = 0  # bytes up to the end of the last complete line before any seal


def read_journal(path: Path) -> Journal | None:
    """The journal at ``path``; None if there is none, or if only part of its header was
    ever written (the first append of a run was cut short: nothing was recorded)."""
    data = read_bytes(path, str(path), "state journal", MAX_JOURNAL_BYTES, joined(StateError))
    return None if data is None else parse_journal(data, str(path))


def parse_journal(data: bytes, where: str) -> Journal | None:
    complete = data.rfind(b"\n") + 1  # an incomplete last line is a write cut short
    lines = data[:complete].split(b"\n")[:-1]
    if not lines:
        return None
    header = _line(lines[0], where, 1)
    if (
        not isinstance(header, dict)
        or header.get("format") != JOURNAL_FORMAT
        or header.get("version") != JOURNAL_VERSION
        or not (header.get("base") is None or isinstance(header.get("base"), str))
    ):
        raise StateError(
            f"{where}:1:1: not a modaliac state journal (version {JOURNAL_VERSION}); "
            "if you did not put it there, move it away and run apply again"
        )
    journal = Journal(header["base"], complete=len(lines[0]) + 1)
    for number, raw in enumerate(lines[1:], start=2):
        entry = _line(raw, where, number)
        if journal.sealed is not None:
            raise StateError(f"{where}:{number}:1: a line after the seal; {_REPAIR}")
        if isinstance(entry, dict) and set(entry) == {"sealed"}:
            if not isinstance(entry["sealed"], str):
                raise StateError(f"{where}:{number}:1: sealed: expected a digest; {_REPAIR}")
            journal.sealed = entry["sealed"]
            continue
        if (
            not isinstance(entry, dict)
            or set(entry) != {"address", "record"}
            or not isinstance(entry["address"], str)
            or not (entry["record"] is None or isinstance(entry["record"], dict))
        ):
            raise StateError(f"{where}:{number}:1: expected an address and its record; {_REPAIR}")
        journal.entries.append((number, entry["address"], entry["record"]))
        journal.complete += len(raw) + 1
    return journal


_REPAIR = (
    "the journal is damaged: move it away, then run plan (an app Modal runs that the "
    "state does not record is shown as one apply only records)"
)


def _line(raw: bytes, where: str, number: int) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StateError(f"{where}:{number}:{exc.start + 1}: not UTF-8; {_REPAIR}") from None
    try:
        return parse_json(text, where, "journal line", joined(StateError))
    except StateError as exc:
        # parse_json names line 1 of the one line it saw (or no place): name the file's line.
        message = str(exc).removeprefix(where).removeprefix(":1").removeprefix(":")
        column = "" if message[:1].isdigit() else "1:"
        raise StateError(f"{where}:{number}:{column}{message}; {_REPAIR}") from None


def entry_line(address: str, record: dict[str, Any] | None) -> bytes:
    return (json.dumps({"address": address, "record": record}, sort_keys=True) + "\n").encode()


def header_line(base: str | None) -> bytes:
    header = {"base": base, "format": JOURNAL_FORMAT, "version": JOURNAL_VERSION}
    return (json.dumps(header, sort_keys=True) + "\n").encode()


def seal_line(folded: str) -> bytes:
    return (json.dumps({"sealed": folded}) + "\n").encode()


class JournalWriter:
    """Appends to a journal; every line is on disk (fsynced) before ``append`` returns."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def start(cls, path: Path, base: str | None) -> JournalWriter:
        """A new journal extending the state whose digest is ``base``, replacing any old one
        atomically (a crash leaves the old journal or the new one, never half a header)."""
        for left in path.parent.glob(f".{path.name}-*"):  # by a run killed here: we hold
            left.unlink(missing_ok=True)  # the lock, so no other run is writing one
        temp = path.with_name(f".{path.name}-{os.getpid()}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        with os.fdopen(open_own(temp, flags, "state journal", _FAIL), "wb") as handle:
            handle.write(header_line(base))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        sync_directory(path.parent)
        return cls(path, open_own(path, os.O_WRONLY | os.O_APPEND, "state journal", _FAIL))

    @classmethod
    def resume(cls, path: Path, complete: int) -> JournalWriter:
        """Go on appending to a journal of the same state, after cutting off an incomplete
        last line (a new line written after it would be glued to it) and a seal (of a fold
        killed before it replaced the state)."""
        fd = open_own(path, os.O_WRONLY | os.O_APPEND, "state journal", _FAIL)
        try:
            if os.fstat(fd).st_size != complete:
                os.ftruncate(fd, complete)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def append(self, line: bytes) -> None:
        written = 0
        while written < len(line):
            written += os.write(self._fd, line[written:])
        os.fsync(self._fd)

    def seal(self, folded: str) -> None:
        self.append(seal_line(folded))

    def close(self) -> None:
        os.close(self._fd)


_FAIL = joined(StateError)


def sync_directory(folder: Path) -> None:
    """Make a rename or removal durable: a power cut after it must not undo it."""
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
