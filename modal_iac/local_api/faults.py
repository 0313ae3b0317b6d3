"""Faults a test injects into the local Modal API: per-RPC queues of failures and delays, and
failures pinned to the Nth call of an RPC, taken by the server before it answers each call."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from grpclib.const import Status


@dataclass(frozen=True)
class Fault:
    """What to do to one call: wait ``delay`` seconds, then fail with ``status`` if it is set."""

    status: Status | None = None
    message: str = "injected by the local Modal API"
    delay: float = 0.0


def as_status(status: Status | str | int) -> Status:
    if isinstance(status, Status):
        return status
    if isinstance(status, str):
        return Status[status.upper()]
    return Status(status)


class Faults:
    """Per-RPC fault queues, plus faults pinned to the Nth call of an RPC (1-based; retries
    count as calls)."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Fault]] = {}
        self._nth: dict[str, dict[int, Fault]] = {}
        self.calls: Counter[str] = Counter()

    def add(
        self,
        rpc: str,
        status: Status | str | int | None = None,
        *,
        delay: float = 0.0,
        message: str = "injected by the local Modal API",
        times: int = 1,
    ) -> None:
        """Queue ``times`` faults for the next calls of ``rpc`` (a status, a delay, or both)."""
        fault = Fault(None if status is None else as_status(status), message, delay)
        self._queues.setdefault(rpc, deque()).extend([fault] * times)

    def fail_nth(
        self,
        rpc: str,
        n: int,
        status: Status | str | int = Status.FAILED_PRECONDITION,
        *,
        message: str = "injected by the local Modal API",
        times: int = 1,
    ) -> None:
        """Fail calls n .. n+times-1 of ``rpc`` (default: a status the client never retries)."""
        pinned = self._nth.setdefault(rpc, {})
        for k in range(n, n + times):
            pinned[k] = Fault(as_status(status), message)

    def take(self, rpc: str) -> Fault | None:
        self.calls[rpc] += 1
        pinned = self._nth.get(rpc, {}).pop(self.calls[rpc], None)
        if pinned is not None:
            return pinned
        queue = self._queues.get(rpc)
        return queue.popleft() if queue else None

    def clear(self) -> None:
        self._queues.clear()
        self._nth.clear()
