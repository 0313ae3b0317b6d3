"""How the Modal store calls the SDK: every call under a deadline of modaliac's own, the
work on an event loop of its own, and every way Modal can fail as one ``StateError`` line.

The SDK retries a closed port for about a minute and puts no deadline on a hanging server,
so a store that waited on it could hold an apply for minutes; ``within`` bounds each call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import StateError
from ..tokens import url_shown

T = TypeVar("T")


class _Deadline(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


async def within(seconds: float, awaitable: Coroutine[Any, Any, T]) -> T:
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise _Deadline(seconds) from None


def _run_coroutine(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work()`` to completion on a loop of our own (the SDK's objects live on its loop).

    From inside a running loop (say, a callback of an async apply) ``asyncio.run`` would refuse,
    so the work then runs on a short-lived thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(work())).result()


def run_modal(where: str, doing: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` and turn every way Modal can fail into one StateError line: ``where``
    (the store), what it was ``doing``, and what went wrong."""
    try:
        import modal.config
        import modal.exception
        from grpclib.exceptions import GRPCError
    except ImportError:
        raise StateError(
            f"{where}: a state on Modal needs the Modal SDK: pip install 'modaliac[modal]'"
        ) from None
    try:
        return _run_coroutine(work)
    except _Deadline as exc:
        server = url_shown(str(modal.config.config.get("server_url") or ""))
        raise StateError(
            f"{where}: {doing} timed out after {exc.seconds:g}s; is Modal reachable at {server}?"
        ) from None
    except (modal.exception.Error, OSError) as exc:  # before GRPCError: some are both
        raise StateError(f"{where}: {doing}: {_first_line(exc)}") from None
    except GRPCError as exc:
        raise StateError(
            f"{where}: {doing}: Modal refused: {exc.message or exc.status.name}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
