"""What an apply, destroy or rollback shows while it runs: a live line per app on a terminal,
plain one-line events elsewhere, one JSON object per event with ``--json``.

Every display takes the same events, ``event(address, phase)``: a phase word while an app
is under way (``deploying``, ``building image``, ``uploading``, ``creating functions``,
``publishing``, ``verifying``, ``rolling back``, ``stopping``) or a final word (``deployed
v3``, ``stopped``, ``failed``, ``cancelled``), which ends the app's clock. Events arrive from
the SDK's thread as well as the main one, so each display takes a lock.

Modal's own build output for an app goes to ``.modaliac/logs/ADDRESS.log`` (``AppLogs``),
scrubbed of anything shaped like a token; ``--logs`` also streams it. ``rich`` is imported
only when a live display starts, so ``modaliac --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ..errors import ModaliacError
from ..files import check_own, joined, open_own, own_folder
from ..tokens import scrub

_FAIL = joined(ModaliacError)

OK_PREFIXES = ("deployed", "stopped", "already gone", "rolled back", "recorded")
LOG_TAIL = 10  # lines of an app's log a failure prints


def status_of(phase: str) -> str:
    """``running`` for a phase word, else the final status the word means."""
    if phase in ("ok", "failed", "cancelled"):
        return phase
    if phase.startswith(OK_PREFIXES):
        return "ok"
    return "running"


@dataclass
class Line:
    """One app's line: its phase, when it started, and (once final) when it ended."""

    address: str
    phase: str
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def status(self) -> str:
        return status_of(self.phase)

    def elapsed(self, now: float) -> float:
        return (self.ended if self.ended is not None else now) - self.started


class AppLogs:
    """``<folder>/ADDRESS.log`` per app (``ENVIRONMENT/APP.log`` in an environment): its
    phases with the time, and Modal's build output.

    The file is made only when there is something to read: build output, or a failure
    (``note(..., keep=True)``); until then the phases wait in memory, so an apply where Modal
    built nothing and nothing failed leaves no file. Each run starts an app's file afresh (the
    last run is what a reader wants). ``check`` refuses, before an apply deploys anything, a
    log path that is not ours (a link, a pipe, a folder); one that cannot be written later
    (or is planted since) is skipped rather than failing the command, never written through."""

    def __init__(self, folder: Path, base: Path | None = None) -> None:
        self.folder = folder
        # The folders from ``base`` down are made as our own: never a link to one elsewhere.
        self.base = base if base is not None else folder.parent
        self._files: dict[str, TextIO | None] = {}
        self._pending: dict[str, list[str]] = {}  # phases noted before the file is made
        self._written: set[str] = set()
        self._lock = threading.Lock()

    def path(self, address: str) -> Path:
        """``APP.log``, or ``ENVIRONMENT/APP.log``: an environment's folder, so no two
        addresses share a file (``dev/x`` and an app named ``dev__x`` used to)."""
        return self.folder / f"{address}.log"

    def check(self, addresses: list[str]) -> None:
        """Refuse, before anything is deployed, a log path that is not ours to write: a
        symbolic link (its target would be overwritten), a pipe, a device or a folder planted
        there or at a folder above it."""
        for address in addresses:
            check_own(self.path(address), self.base, "log", _FAIL)

    def _open(self, address: str) -> TextIO:
        path = self.path(address)
        own_folder(path.parent, self.base, "log", _FAIL)
        fd = open_own(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "log", _FAIL)
        return os.fdopen(fd, "w", encoding="utf-8", errors="replace")

    def write(self, address: str, text: str) -> None:
        with self._lock:
            if address not in self._files:
                try:
                    self._files[address] = self._open(address)
                except (OSError, ModaliacError):  # planted since ``check``: no log, then
                    self._files[address] = None
                text = "".join(self._pending.pop(address, [])) + text
            handle = self._files[address]
            if handle is not None:
                try:
                    handle.write(scrub(text))
                    handle.flush()
                    self._written.add(address)
                except (OSError, ValueError):
                    self._files[address] = None

    def note(self, address: str, phase: str, *, keep: bool = False) -> None:
        """A timestamped line saying what happened; ``keep`` makes the file if it is not yet."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"[modaliac {stamp}] {phase}\n"
        with self._lock:
            if address not in self._files and not keep:
                self._pending.setdefault(address, []).append(line)
                return
        self.write(address, line)

    def started(self, address: str) -> bool:
        """Whether anything was noted for ``address`` in this run."""
        return address in self._pending or address in self._files

    def written(self, address: str) -> bool:
        """Whether this run wrote ``address``'s log (a file from an earlier run does not count)."""
        return address in self._written

    def tail(self, address: str, lines: int = LOG_TAIL) -> list[str]:
        try:  # never a pipe (it would wait for a writer) nor a device: our own file only
            fd = open_own(self.path(address), os.O_RDONLY, "log", _FAIL)
            with os.fdopen(fd, encoding="utf-8", errors="replace") as handle:
                return [line.rstrip("\n") for line in deque(handle, maxlen=lines)]
        except (OSError, ModaliacError):
            return []

    def close(self) -> None:
        with self._lock:
            for handle in self._files.values():
                if handle is not None:
                    handle.close()
            self._files = {address: None for address in self._files}


class Display:
    """Plain one-line events (not a terminal): ``  ADDRESS: PHASE``, with the elapsed time
    once an app ends. ``--logs`` lines go to the same stream, prefixed when several apps run."""

    def __init__(self, out: TextIO, logs: AppLogs | None = None, *, stream_logs: bool = False):
        self.out = out
        self.logs = logs
        self.stream_logs = stream_logs
        self.prefix = False  # set when several apps run at once
        self.lines: dict[str, Line] = {}
        self._lock = threading.Lock()

    def event(self, address: str, phase: str) -> None:
        with self._lock:
            line = self.lines.get(address)
            if line is None:
                line = self.lines[address] = Line(address, phase)
            line.phase = phase  # a phase after a final word (verifying) reopens the line
            line.ended = None if line.status == "running" else time.monotonic()
            self._show(line)
        if self.logs is not None:
            self.logs.note(address, phase)

    def log(self, address: str, text: str) -> None:
        """Modal's build output for ``address`` (any number of lines)."""
        if self.logs is not None:
            self.logs.write(address, text)
        if self.stream_logs:
            with self._lock:
                for row in scrub(text).splitlines():
                    self._log_line(address, row)

    def settle(self, statuses: dict[str, str]) -> None:
        """End each line with its app's outcome (``ok``, ``failed``, ``cancelled``) where its
        last event says otherwise: a phase reported through ``on_event`` (verifying, rolling
        back) may be the last word an app gets, and a deployed app can still fail after."""
        for address, status in statuses.items():
            line = self.lines.get(address)
            if line is not None and line.status != status:
                self.event(address, status)

    def close(self) -> None:
        """Stop showing; every display is closed before the summary is printed."""

    def _show(self, line: Line) -> None:
        ended = f" ({line.elapsed(time.monotonic()):.1f}s)" if line.ended is not None else ""
        self._write(f"  {line.address}: {line.phase}{ended}\n")

    def _log_line(self, address: str, row: str) -> None:
        self._write((f"{address} | {row}" if self.prefix else row) + "\n")

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass  # nobody reads the progress: the command carries on


class JsonDisplay(Display):
    """``--json``: one object per event per line, ``{"app", "phase", "elapsed", "status"}``;
    build output is only streamed with ``--logs``, then as ``{"app", "log"}`` objects."""

    def _show(self, line: Line) -> None:
        event = {
            "app": line.address,
            "phase": line.phase,
            "elapsed": round(line.elapsed(time.monotonic()), 3),
            "status": line.status,
        }
        self._write(json.dumps(event, sort_keys=True) + "\n")

    def _log_line(self, address: str, row: str) -> None:
        self._write(json.dumps({"app": address, "log": row}, sort_keys=True) + "\n")


class LiveDisplay(Display):
    """On a terminal: a ``rich`` live table, one row per app (phase, elapsed, status),
    redrawn four times a second; ``--logs`` lines scroll above it."""

    def __init__(self, out: TextIO, logs: AppLogs | None = None, *, stream_logs: bool = False):
        super().__init__(out, logs, stream_logs=stream_logs)
        from rich.console import Console
        from rich.live import Live

        self._console = Console(file=out, force_terminal=True, highlight=False)
        self._live: Any = Live(
            get_renderable=self._table,
            console=self._console,
            refresh_per_second=4,
            redirect_stdout=False,  # the SDK's output goes to its log (sdk_log.Capture)
            redirect_stderr=False,
            transient=False,
        )
        self._live.start()

    def _show(self, line: Line) -> None:
        pass  # the table is redrawn from ``self.lines``

    def _log_line(self, address: str, row: str) -> None:
        from rich.text import Text

        self._live.console.print(Text(f"{address} | {row}" if self.prefix else row))

    def close(self) -> None:
        with self._lock:
            if self._live is not None:
                self._live.refresh()
                self._live.stop()
                self._live = None

    def _table(self) -> Any:
        from rich.table import Table

        now = time.monotonic()
        table = Table.grid(padding=(0, 2))
        marks = {"running": "[cyan]…[/]", "ok": "[green]ok[/]", "failed": "[red]FAILED[/]"}
        marks["cancelled"] = "[yellow]CANCELLED[/]"
        for line in list(self.lines.values()):
            table.add_row(
                marks[line.status],
                line.address,
                line.phase,
                f"{line.elapsed(now):.0f}s" if line.ended is None else f"{line.elapsed(now):.1f}s",
            )
        return table


def make_display(
    out: TextIO,
    logs: AppLogs | None,
    *,
    json_events: bool = False,
    stream_logs: bool = False,
) -> Display:
    """The display for ``out``: JSON events if asked, a live table on a terminal, else plain."""
    if json_events:
        return JsonDisplay(out, logs, stream_logs=stream_logs)
    try:
        terminal = out.isatty()
    except (AttributeError, ValueError):
        terminal = False
    if terminal:
        return LiveDisplay(out, logs, stream_logs=stream_logs)
    return Display(out, logs, stream_logs=stream_logs)


@contextlib.contextmanager
def one_app(display: Display, address: str) -> Iterator[Callable[[str], None]]:
    """Show one app's phases (destroy, rollback); an error or Ctrl-C ends its line as failed
    or cancelled, and the display is closed before anything else is printed."""
    try:
        yield lambda phase: display.event(address, phase)
    except KeyboardInterrupt:
        display.event(address, "cancelled")
        raise
    except Exception:
        display.event(address, "failed")
        raise
    finally:
        display.close()
