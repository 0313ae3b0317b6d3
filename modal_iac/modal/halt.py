"""When an apply stops: the limits it keeps on Modal, and why it stops starting work.

An apply must end, whatever Modal does: each app's deploy has a deadline the user sets
(``--deploy-timeout``), and a Modal that stops answering altogether ends the apply sooner
(``--no-progress-timeout``). Ctrl-C, a state that cannot be written or such a silent Modal
``halt`` the apply: nothing new starts, what is in flight gets ``INTERRUPT_GRACE`` seconds to
finish, the rest is cancelled, and the summary says which apps finished, failed or were
cancelled. Nothing here imports ``modal``: the CLI reads the defaults for its help.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

# A first deploy builds the image: a vLLM image installs a CUDA torch environment of about
# 9.4 GB, which takes Modal's builders several minutes and, on a busy day, a quarter of an
# hour. Half an hour is twice that, and still ends a publish that hangs within the half hour.
DEPLOY_TIMEOUT = 1800.0
# While an app deploys the SDK heartbeats it every 15 s, so a Modal that answers nothing for
# a minute (four heartbeats) has stopped; a slow build or upload still answers heartbeats.
NO_PROGRESS_TIMEOUT = 60.0
# How long in-flight deploys and calls may still finish after a halt (Ctrl-C, say).
INTERRUPT_GRACE = 3.0
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C ended


class Halt:
    """Why an apply stops starting work; the first reason wins.

    Set from a signal handler, from the thread that writes the state, or by the deploy loop,
    so it takes no lock (a handler that waited for a lock its own thread holds would never
    return). ``watch`` registers a callback that wakes an event loop when the halt is set.
    """

    def __init__(self, grace: float = INTERRUPT_GRACE) -> None:
        self.grace = grace
        self.reason = ""
        self.interrupted = False  # by the user: the apply exits EXIT_INTERRUPTED
        self.hard = False  # Ctrl-C twice: cancel what is in flight at once
        self.armed = False  # until the apply changes something, Ctrl-C simply aborts it
        self._at = 0.0
        self._watchers: list[Callable[[], None]] = []

    def __bool__(self) -> bool:
        return bool(self.reason)

    def stop(self, reason: str) -> None:
        if not self.reason:
            self._at = time.monotonic()
            self.reason = reason
        self._wake()

    def interrupt(self) -> None:
        """Ctrl-C: halt; a second one cancels in-flight work without the grace."""
        if self.interrupted:
            self.hard = True
        self.interrupted = True
        self.stop("interrupted by Ctrl-C")

    def cancel_at(self) -> float | None:
        """When in-flight work is cancelled (``time.monotonic()``), or None while not halted."""
        if not self.reason:
            return None
        return self._at if self.hard else self._at + self.grace

    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` whenever the halt changes; returns the function that stops it."""
        self._watchers.append(wake)
        return lambda: self._watchers.remove(wake)

    def _wake(self) -> None:
        for wake in list(self._watchers):
            wake()


@contextlib.contextmanager
def catching_interrupts(halt: Halt) -> Iterator[Halt]:
    """Once ``halt.armed``, turn Ctrl-C into ``halt.interrupt()`` instead of a
    KeyboardInterrupt, so the apply can finish what is in flight, record it and say what
    happened; before (planning, asking), Ctrl-C aborts as usual. Signals reach only the main
    thread; elsewhere (a test's thread) this changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield halt
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if not halt.armed:
            raise KeyboardInterrupt
        halt.interrupt()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield halt
    finally:
        signal.signal(signal.SIGINT, previous)
