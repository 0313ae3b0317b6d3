"""The connection to Modal through the real ``modal`` SDK: credentials, one client of our own,
and ``run``, the one way a call is made, under modaliac's deadlines and with one error type.
The modules beside it ask Modal for one thing each: ``observe`` (what a plan compares),
``lookups`` (tagged apps, web URLs), ``changes`` (stop, tags, rollback), ``deploy``,
``billing``. Only they (and the state store on Modal, and the test server in ``local_api``)
import ``modal``, each lazily from the commands.

The SDK retries a closed port for about a minute and sets no deadline on a hanging server, so
every operation runs under modaliac's own deadline and fails with one ModalApiError line.
A deploy has two: the user's ``--deploy-timeout``, and a no-progress limit on the answers the
SDK's channel receives (grpclib events), which ends an apply against a Modal that stopped;
both, and a halted apply (``halt.py``), end the call by cancelling it (``Supervisor``).

Two kinds of calls, kept apart because the SDK's objects belong to the event loop that made
them. Reads (history, lifecycle, tags, scheduling overrides, secret and volume existence) go
through a client of our own on our own loop, with ``api_pb2`` messages, as the SDK's own
``modal app`` commands do; none of them has a public method. Deploys use the public
``App.deploy.aio``, which runs on the SDK's loop with the SDK's client, gathered concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import modal
import modal.config
from grpclib import GRPCError
from modal.client import _Client
from modal_proto import api_pb2

from ..errors import ModaliacError
from ..tokens import url_shown
from .halt import Halt

T = TypeVar("T")
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
CANCEL_WAIT = 2.0  # how long a cancelled call may take to unwind before it is left behind
NO_CREDENTIALS = (
    "no Modal credentials: run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"
)


class ModalApiError(ModaliacError):
    """Modal could not be reached, or refused a request."""


class Reader(Protocol):
    """What the read helpers use of a client: its stub (a ``_Client``, or ``observe.Bounded``)."""

    @property
    def _stub(self) -> Any: ...


# -- running SDK calls under a deadline ---------------------------------------------------


_PRINTABLE_TOKEN = re.compile(r"[!-~]+")  # ASCII without spaces or control characters


def require_credentials() -> None:
    """Credentials that are there and can be sent: a token pasted with a newline made the SDK
    fail with the whole secret in its message. Their values are never shown."""
    config = modal.config.config
    if not (config.get("token_id") and config.get("token_secret")):
        raise ModalApiError(NO_CREDENTIALS)
    for key, variable in (("token_id", "MODAL_TOKEN_ID"), ("token_secret", "MODAL_TOKEN_SECRET")):
        value = config.get(key)
        if not isinstance(value, str) or not _PRINTABLE_TOKEN.fullmatch(value):
            raise ModalApiError(
                f"the Modal {key.replace('_', ' ')} ({variable}, or {key} in the Modal config) "
                "holds a space, a line break or a control character; set it without one (its "
                "value is not shown)"
            )
    server = config.get("server_url")
    if not isinstance(server, str) or not _PRINTABLE_TOKEN.fullmatch(server):
        raise ModalApiError(
            f"the Modal server URL (MODAL_SERVER_URL, or server_url in the Modal config) "
            f"{server_shown()} holds a space, a line break or a control character; set it "
            "without one"
        )


def server_shown() -> str:
    """The configured server URL as messages show it (``tokens.url_shown``)."""
    return url_shown(str(modal.config.config.get("server_url") or ""))


def run(
    make: Callable[[_Client], Awaitable[T]],
    *,
    timeout: float | None = None,
    halt: Halt | None = None,
) -> T:
    """Connect (with a short deadline), then run ``make(client)`` under ``timeout`` (default:
    ``READ_TIMEOUT``, read at call time so the module's deadlines can be changed). With
    ``halt``, a halted apply stops waiting after the halt's grace (``Cancelled``)."""
    require_credentials()
    limit = READ_TIMEOUT if timeout is None else timeout
    config = modal.config.config

    async def main() -> T:
        # Not Client.from_env(): that is a process-wide singleton the SDK's own loop shares.
        client = _Client(
            config["server_url"],
            api_pb2.CLIENT_TYPE_CLIENT,
            (config["token_id"], config["token_secret"]),
        )
        try:
            await deadline(client._open(), CONNECT_TIMEOUT, "connecting to Modal")  # type: ignore[no-untyped-call]
            await deadline(client.hello(), CONNECT_TIMEOUT, "connecting to Modal")  # type: ignore[no-untyped-call]
            if halt is None:
                return await deadline(make(client), limit, "waiting for Modal")
            supervisor = Supervisor(halt)
            try:
                return await supervisor.run(make(client), limit=limit, doing="waiting for Modal")
            finally:
                supervisor.close()
        finally:
            await client.close()

    return asyncio.run(main())


async def deadline(awaitable: Awaitable[T], seconds: float, doing: str) -> T:
    server = server_shown()
    try:
        return await asyncio.wait_for(_sdk_errors(awaitable, doing), seconds)
    except TimeoutError:
        raise ModalApiError(f"{doing} timed out after {seconds:g}s ({server})") from None


async def _sdk_errors(awaitable: Awaitable[T], doing: str) -> T:
    """``awaitable``, with every way the SDK or the connection fails turned into one line."""
    server = server_shown()
    try:
        return await awaitable
    except TimeoutError:  # one of the SDK's own deadlines (before OSError: it is one)
        raise ModalApiError(f"{doing} timed out ({server})") from None
    except modal.exception.Error as exc:
        raise ModalApiError(f"Modal: {_first_line(str(exc))}{_how_to_fix(exc)}") from None
    except GRPCError as exc:
        reason = exc.message or exc.status.name
        raise ModalApiError(f"Modal refused the request: {reason}") from None
    except OSError as exc:
        raise ModalApiError(f"cannot reach Modal at {server}: {exc}") from None


def _how_to_fix(exc: modal.exception.Error) -> str:
    """What to do about an error Modal's words leave open: a missing environment (``--env``
    names one the workspace lacks) is created with the modal CLI."""
    missing = re.match(r"Environment '([^'\s]{1,64})' not found", str(exc).strip())
    if isinstance(exc, modal.exception.NotFoundError) and missing:
        name = missing.group(1)
        return f"; create it with: modal environment create {name} (or choose another --env)"
    return ""


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


# -- waiting under a deadline, a no-progress limit and the apply's halt -------------------


class Cancelled(ModalApiError):
    """modaliac stopped waiting for Modal because the apply halted (Ctrl-C, say)."""


@dataclass
class Progress:
    """When Modal last answered anything on the channel the deploys use (``time.monotonic``).

    While an app deploys the SDK heartbeats it every 15 s, so a live Modal answers at least
    that often, however long a build or an upload takes; silence means Modal stopped.
    """

    last: float = field(default_factory=time.monotonic)

    async def answered(self, event: object) -> None:
        self.last = time.monotonic()


class Supervisor:
    """Waits for Modal calls under a deadline, a no-progress limit and the apply's halt, on
    the running loop. A call the halt ends gets the halt's grace first, then is cancelled."""

    def __init__(self, halt: Halt) -> None:
        self.halt = halt
        self.loop = asyncio.get_running_loop()
        self.server = server_shown()
        self._changed = asyncio.Event()
        self._unwatch = halt.watch(self._wake)

    def close(self) -> None:
        self._unwatch()

    def _wake(self) -> None:  # from any thread, or a signal handler
        with contextlib.suppress(RuntimeError):  # the loop has just closed
            self.loop.call_soon_threadsafe(self._changed.set)

    async def run(
        self,
        work: Awaitable[T],
        *,
        limit: float,
        doing: str,
        progress: Progress | None = None,
        quiet: float = 0.0,
    ) -> T:
        task = asyncio.ensure_future(_sdk_errors(work, doing))
        started = time.monotonic()
        try:
            while not task.done():
                now = time.monotonic()
                if now >= started + limit:
                    raise ModalApiError(f"{doing} timed out after {limit:g}s ({self.server})")
                if progress is not None and now >= max(progress.last, started) + quiet:
                    self.halt.stop("Modal stopped answering")
                    raise ModalApiError(f"Modal answered nothing for {quiet:g}s ({self.server})")
                cancel_at = self.halt.cancel_at()
                if cancel_at is not None and now >= cancel_at:
                    raise Cancelled(f"cancelled while {doing} ({self.halt.reason})")
                checks = [started + limit, math.inf if cancel_at is None else cancel_at]
                if progress is not None:
                    checks.append(max(progress.last, started) + quiet)
                self._changed.clear()
                changed = asyncio.ensure_future(self._changed.wait())
                await asyncio.wait(
                    {task, changed}, timeout=min(checks) - now, return_when=asyncio.FIRST_COMPLETED
                )
                changed.cancel()
            return task.result()
        finally:
            await _abandon(task)


async def _abandon(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait a moment for it. The SDK's own task is cancelled in turn and
    awaited by synchronicity; a second cancel stops that wait, so nothing here can hang."""
    for _ in range(2):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_WAIT)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" at exit
