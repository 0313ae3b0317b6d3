"""The Modal store's journal: one small file per app an apply finished, so a run's uploads
grow linearly with its apps, not with apps times the state's size.

A Volume has no append, so the journal is a folder beside the state, ``<state>.journal/``,
holding one file per recorded app, ``<NNNNNN>.json``, numbered in the order they were
recorded. Each is a journal in journal.py's format with a single entry: the header naming the
state it extends (the SHA-256 of the state file's bytes), then ``{"address", "record"}``, the
state's own record (never a secret). Every reader lists the folder and replays the entries on
the state, so a run killed at any point leaves a state that tells the truth.

The lock holder folds the journal once, at release: it uploads ``sealed.json`` (a journal with
no entry whose seal names the state about to be written), then the new state, then removes
the entries, and the seal last. So whatever the folder holds when a fold stops:

- entries whose base is the state file: not folded yet; they are replayed, in number order;
- entries, and a seal from their base to the state file: folded already; they are ignored,
  and the next run that writes removes them;
- anything else (entries of another version of the state, a file that is no journal entry):
  refused, one located line saying what to do. Nothing is ignored silently.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

from ..errors import StateError
from .journal import digest, entry_line, header_line, parse_journal, seal_line
from .records import State, replay_entries

SEAL_NAME = "sealed.json"
_ENTRY_NAME = re.compile(r"[0-9]{6,}\.json")


def journal_folder(state_path: str) -> str:
    return state_path + ".journal"


def entry_path(state_path: str, number: int) -> str:
    return posixpath.join(journal_folder(state_path), f"{number:06d}.json")


def seal_path(state_path: str) -> str:
    return posixpath.join(journal_folder(state_path), SEAL_NAME)


def entry_number(name: str) -> int | None:
    """The number of a journal entry's file name; None for the seal."""
    if name == SEAL_NAME:
        return None
    if not _ENTRY_NAME.fullmatch(name):
        raise ValueError(name)
    return int(name.removesuffix(".json"))


def entry_file(base: str | None, address: str, record: dict[str, Any] | None) -> bytes:
    return header_line(base) + entry_line(address, record)


def seal_file(base: str | None, folded: str) -> bytes:
    return header_line(base) + seal_line(folded)


@dataclass(frozen=True)
class Entry:
    """One recorded app: ``record`` None means the app was removed."""

    number: int
    where: str  # how errors name the file
    base: str | None
    address: str
    record: dict[str, Any] | None


@dataclass(frozen=True)
class Seal:
    where: str
    base: str | None
    folded: str


def parse_entry(data: bytes, where: str, number: int, repair: str) -> Entry:
    journal = parse_journal(data, where)
    if (
        journal is None
        or journal.sealed is not None
        or len(journal.entries) != 1
        or journal.complete != len(data)
    ):
        raise StateError(f"{where}:1:1: expected a journal header and one entry; {repair}")
    _, address, record = journal.entries[0]
    return Entry(number, where, journal.base, address, record)


def parse_seal(data: bytes, where: str, repair: str) -> Seal:
    journal = parse_journal(data, where)
    if journal is None or journal.sealed is None or journal.entries or not data.endswith(b"\n"):
        raise StateError(f"{where}:1:1: expected a journal header and a seal; {repair}")
    return Seal(where, journal.base, journal.sealed)


class Unsettled(Exception):
    """The journal does not extend the state read with it: a fold may have run between the
    reads (read again), or the state was replaced under the journal (refuse)."""


def pending(data: bytes | None, entries: list[Entry], seal: Seal | None) -> bool:
    """Whether ``entries`` still have to be replayed on the state file ``data`` (False: there
    are none, or a fold wrote them into it already); raises ``Unsettled`` otherwise."""
    if not entries:
        return False
    current = digest(data)
    if all(entry.base == current for entry in entries):
        return True
    base = entries[0].base
    if (
        seal is not None
        and seal.folded == current
        and seal.base == base
        and all(entry.base == base for entry in entries)
    ):
        return False
    stray = next(entry for entry in entries if entry.base != current)
    raise Unsettled(stray.where)


def replay(state: State, entries: list[Entry]) -> State:
    """``state`` with the entries applied in the order they were recorded."""
    ordered = sorted(entries, key=lambda entry: entry.number)
    return replay_entries(state, ((f"{e.where}:2:1", e.address, e.record) for e in ordered))
