"""What a command talks to: the console it prints on, and the exit statuses it returns.

The console is passed to every command, never global; ``cli.py`` makes it and decides colour.
"""

from __future__ import annotations

import os
import re
from typing import TextIO

from ..tokens import scrub

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CHANGES = 0, 1, 2, 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader left
# Control characters but the newline and the tab: an error line never moves the cursor,
# clears the screen or sets a title, whatever file name or argument it quotes.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def quotable(text: str) -> str:
    """``text`` fit for an error line that quotes what the user typed: token-shaped parts
    named by their kind, control characters (but the newline and the tab) shown as "?"."""
    return _CONTROL.sub("?", scrub(text))


class Console:
    """Where output goes, and whether it may be coloured. Passed in, never global.

    A reader that goes away (``modaliac plan | head -1``) is not an error: the rest of the
    output is dropped and the command carries on (an apply never stops half way because
    nobody reads its progress); ``lost`` says it happened.
    """

    def __init__(self, out: TextIO, err: TextIO, *, color: bool) -> None:
        self.out, self.err, self.color = out, err, color
        self.lost = False

    def print(self, text: str = "", end: str = "\n") -> None:
        self._write(self.out, text + end)

    def error(self, text: str) -> None:
        """An error line on stderr, ``quotable``: it may quote a path or an address."""
        self._write(self.err, quotable(text) + "\n")

    def flush(self) -> None:
        for stream in (self.out, self.err):
            try:
                stream.flush()
            except BrokenPipeError:
                self.drop(stream)

    def _write(self, stream: TextIO, text: str) -> None:
        try:
            stream.write(text)
        except BrokenPipeError:
            self.drop(stream)

    def drop(self, stream: TextIO) -> None:
        """Send what ``stream`` still holds, and everything after, nowhere: its reader left,
        and the interpreter's last flush must not fail with a traceback either."""
        self.lost = True
        try:
            fd = stream.fileno()
        except (OSError, ValueError):  # not a file (a test's buffer): nothing to redirect
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)


def wants_color(stream: TextIO, choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()
