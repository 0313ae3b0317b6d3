"""The Modal SDK's own output during an apply goes to a log file, not to the user's terminal.

The SDK logs (``modal-client``, ``modal-utils``), warns, prints and, when Modal stops
answering, logs a traceback for every failed heartbeat, from its own thread. modaliac's
summary says what happened in a few lines; what the SDK said is kept under
``.modaliac/logs/`` for whoever wants the detail, and the failure line names the file.
Only output through Python (``sys.stdout``/``sys.stderr``, ``logging``, ``warnings``) is
caught: the SDK writes nothing to the file descriptors directly.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ..errors import ModaliacError
from ..files import check_own, joined, open_own, own_folder

FORMAT = "%(asctime)s %(threadName)s %(name)s %(levelname)s: %(message)s"
_FAIL = joined(ModaliacError)


class SdkLog(io.TextIOBase):
    """A log file created on its first write, so an apply the SDK says nothing during leaves
    no file behind. Safe to write from any thread; if it cannot be written (a read-only
    project), the output is dropped rather than failing the apply."""

    def __init__(self, path: Path, base: Path | None = None) -> None:
        super().__init__()
        self.path = path
        # The folders from ``base`` down are made as our own: never a link to one elsewhere.
        self.base = base if base is not None else path.parent.parent
        self._file: TextIO | None = None
        self._broken = False
        self._lock = threading.Lock()

    @classmethod
    def for_command(cls, folder: Path, command: str, base: Path) -> SdkLog:
        """``<folder>/<command>-<UTC time>-<pid>.log``: one file per run, sorted by time. A
        link, a file or a pipe where a folder from ``base`` down to it belongs is refused
        now, before the command does anything."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        log = cls(folder / f"{command}-{stamp}-{os.getpid()}.log", base)
        check_own(log.path, base, "log", _FAIL)
        return log

    @property
    def written(self) -> bool:
        return self._file is not None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            if self._file is None and not self._broken:
                try:
                    own_folder(self.path.parent, self.base, "log", _FAIL)
                    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
                    fd = open_own(self.path, flags, "log", _FAIL)
                    self._file = os.fdopen(fd, "a", encoding="utf-8", errors="replace")
                except (OSError, ModaliacError):  # a link or a pipe planted there: no log
                    self._broken = True
            if self._file is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._file.write(text)
                    self._file.flush()
        return len(text)

    def flush(self) -> None:
        """Every write is flushed already; after ``close`` this is a no-op, not an error."""

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None
                self._broken = True  # nothing reopens a closed log
        super().close()


class Capture:
    """While active, everything the SDK says goes to ``log``; ``paused()`` lets a prompt
    reach the terminal."""

    def __init__(self, log: SdkLog) -> None:
        self.log = log
        self._handler = logging.StreamHandler(log)
        self._handler.setFormatter(logging.Formatter(FORMAT))
        self._saved: dict[str, Any] = {}

    def start(self) -> None:
        loggers = [logging.getLogger(), *_loggers_with_handlers()]
        self._saved = {
            "handlers": {logger: logger.handlers[:] for logger in loggers},
            "last_resort": logging.lastResort,
            "showwarning": warnings.showwarning,
            "stdout": sys.stdout,
            "stderr": sys.stderr,
        }
        for logger in loggers:  # the others reach the root's handler through propagation
            logger.handlers = (
                [self._handler] if logger is loggers[0] or not logger.propagate else []
            )
        logging.lastResort = self._handler
        warnings.showwarning = self._warning
        sys.stdout = sys.stderr = self.log

    def stop(self) -> None:
        if not self._saved:
            return
        for logger, handlers in self._saved["handlers"].items():
            logger.handlers = handlers
        logging.lastResort = self._saved["last_resort"]
        warnings.showwarning = self._saved["showwarning"]
        sys.stdout, sys.stderr = self._saved["stdout"], self._saved["stderr"]
        self._saved = {}

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        active = bool(self._saved)
        self.stop()
        try:
            yield
        finally:
            if active:
                self.start()

    def _warning(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        self.log.write(warnings.formatwarning(message, category, filename, lineno, line))


def _loggers_with_handlers() -> list[logging.Logger]:
    """Loggers with handlers of their own (the SDK's print to the stderr they were made with)."""
    return [
        logger
        for logger in list(logging.Logger.manager.loggerDict.values())
        if isinstance(logger, logging.Logger) and logger.handlers
    ]


@contextlib.contextmanager
def capturing(log: SdkLog) -> Iterator[Capture]:
    capture = Capture(log)
    capture.start()
    try:
        yield capture
    finally:
        capture.stop()
