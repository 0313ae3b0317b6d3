"""The servicer and the servers: grpclib speaking Modal's API, plus a tiny HTTP blob server.

Every one of the ~285 RPCs of ``ModalClientBase`` is generated here and routed through one
dispatcher, which records the request, applies any injected fault, then calls the matching
method of ``Handlers`` or answers UNIMPLEMENTED. Both servers share one event loop running in a
background thread, so tests drive the real client from their own thread.

``rpc_delay`` stands in for a real network: every RPC waits that long (an ``asyncio.sleep``
on the server's loop, so concurrent calls wait side by side, as they would on the wire)
before it is answered.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import math
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any

import grpclib.const
import grpclib.server
from aiohttp import web
from google.protobuf.message import Message  # type: ignore[import-untyped]
from grpclib.const import Status
from grpclib.encoding.base import StatusDetailsCodecBase
from grpclib.exceptions import GRPCError
from modal_proto import api_pb2
from modal_proto.api_grpc import ModalClientBase

from .apps import AppHandlers
from .billing import BillingHandlers
from .functions import FunctionHandlers
from .images import ImageHandlers
from .state import Call, State
from .storage import StorageHandlers

HOST = "127.0.0.1"


def _cardinalities() -> dict[str, grpclib.const.Cardinality]:
    """RPC name -> cardinality, read from the generated mapping (it only looks methods up)."""

    class _Names:
        def __getattr__(self, name: str) -> str:
            return name

    mapping = ModalClientBase.__mapping__(_Names())  # type: ignore[arg-type]
    return {handler.func: handler.cardinality for handler in mapping.values()}


CARDINALITY = _cardinalities()


class Handlers(AppHandlers, FunctionHandlers, ImageHandlers, StorageHandlers, BillingHandlers):
    """Every modelled RPC, one method each, named exactly like the RPC.

    Each method takes the request and the recorded ``Call`` and returns the response (a list of
    responses for server-streaming RPCs); it runs under the state lock. Errors are raised as
    ``GRPCError`` with the status Modal's servers use, so the client turns them into the same
    exceptions (NOT_FOUND -> ``modal.exception.NotFoundError`` and so on).
    """


class StatusDetailsCodec(StatusDetailsCodecBase):
    """Error details as Modal's servers send them: an RPCStatus with packed messages.

    The client reads typed details from it, e.g. FunctionLookupError on a class name.
    """

    def encode(
        self, status: Status, message: str | None, details: Sequence[Message] | None
    ) -> bytes:
        rpc_status = api_pb2.RPCStatus(code=status.value, message=message or "")
        for detail in details or ():
            rpc_status.details.add().Pack(detail, type_url_prefix="type.modal.com/")
        encoded: bytes = rpc_status.SerializeToString()
        return encoded

    def decode(self, status: Status, message: str | None, data: bytes) -> Any:
        raise NotImplementedError("the server only encodes")


def _answer_every_rpc(cls: type[LocalModalServicer]) -> type[LocalModalServicer]:
    """Give the servicer one method per RPC, each routed through ``_dispatch``."""

    def make(name: str) -> Callable[[LocalModalServicer, Any], Coroutine[Any, Any, None]]:
        async def rpc(self: LocalModalServicer, stream: grpclib.server.Stream[Any, Any]) -> None:
            await self._dispatch(name, stream)

        rpc.__name__ = rpc.__qualname__ = name
        return rpc

    for name in CARDINALITY:
        setattr(cls, name, make(name))
    abc.update_abstractmethods(cls)
    return cls


@_answer_every_rpc
class LocalModalServicer(ModalClientBase):
    """Modal's gRPC service over in-memory ``State``; RPCs without a handler are UNIMPLEMENTED."""

    def __init__(self, state: State, rpc_delay: float = 0.0) -> None:
        self.state = state
        self.handlers = Handlers(state)
        self.rpc_delay = rpc_delay

    async def _dispatch(self, name: str, stream: grpclib.server.Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        metadata = (
            {k: v for k, v in stream.metadata.items() if isinstance(v, str)}
            if stream.metadata
            else {}
        )
        call = Call(name, request, metadata, self.state.clock())
        self.state.record(call)
        peer = stream.peer.addr()
        state = self.state
        with state.lock:
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            state.connections.add(peer)
            state.in_flight_on[peer] = on_one = state.in_flight_on.get(peer, 0) + 1
            state.max_in_flight_on_one = max(state.max_in_flight_on_one, on_one)
        try:
            await self._answer(name, stream, call)
        finally:
            with state.lock:
                state.in_flight -= 1
                state.in_flight_on[peer] -= 1

    async def _answer(self, name: str, stream: grpclib.server.Stream[Any, Any], call: Call) -> None:
        request = call.request
        if self.rpc_delay:  # the round trip of a distant server, before it acts
            await asyncio.sleep(self.rpc_delay)
        with self.state.lock:
            fault = self.state.faults.take(name)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                raise GRPCError(fault.status, f"{name}: {fault.message}")
        handler = getattr(self.handlers, name, None)
        if handler is None:
            raise GRPCError(Status.UNIMPLEMENTED, f"{name} is not modelled by the local Modal API")
        try:
            with self.state.lock:
                response = handler(request, call)
        except GRPCError:
            raise
        except Exception as exc:  # a bug here: keep it for the test to see, answer INTERNAL
            self.state.errors.append(exc)
            raise GRPCError(Status.INTERNAL, f"local Modal API failed in {name}: {exc!r}") from exc
        if CARDINALITY[name] is grpclib.const.Cardinality.UNARY_STREAM:
            for message in response:
                await stream.send_message(message)
        else:
            await stream.send_message(response)


def _blob_app(state: State) -> web.Application:
    """PUT/GET of blobs (files of 4 MiB or more) and volume blocks, like the presigned URLs."""

    async def put_blob(request: web.Request) -> web.Response:
        body = await request.read()
        with state.lock:
            state.blobs[request.match_info["blob_id"]] = body
        return web.Response(headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

    async def get_blob(request: web.Request) -> web.Response:
        with state.lock:
            body = state.blobs.get(request.match_info["blob_id"])
        return web.Response(status=404) if body is None else web.Response(body=body)

    async def put_block(request: web.Request) -> web.Response:
        body = await request.read()
        digest = hashlib.sha256(body).hexdigest()
        if digest != request.match_info["sha256"]:
            return web.Response(status=400, text="sha256 mismatch")
        with state.lock:
            state.content[digest] = body
            state.block_bytes += len(body)
        return web.Response(body=digest.encode())

    async def get_content(request: web.Request) -> web.Response:
        with state.lock:
            body = state.content.get(request.match_info["sha256"])
        if body is None:
            return web.Response(status=404)
        start = int(request.query.get("start", 0))
        end = int(request.query.get("end", len(body)))
        return web.Response(body=body[start:end])

    app = web.Application(client_max_size=1 << 30)
    app.router.add_put("/blob/{blob_id}", put_blob)
    app.router.add_get("/blob/{blob_id}", get_blob)
    app.router.add_put("/block/{sha256}", put_block)
    app.router.add_get("/content/{sha256}", get_content)
    return app


def _bound_socket(port: int = 0) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only for sockets that say
    # so, and with Nagle on every dependent RPC waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    return sock


def reset_modal_client() -> None:
    """Make the in-process SDK forget the client and environments it cached for an earlier
    server (``modal.Client.from_env()`` is a process-wide singleton)."""
    import modal
    import modal._environments
    import modal.client

    if modal.client._Client._client_from_env is not None:
        modal.Client.from_env().close()
    modal._environments.ENVIRONMENT_CACHE.clear()


def wait_for_port(port: int, timeout: float = 5.0) -> None:
    """Poll until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {HOST}:{port} after {timeout}s") from None
            time.sleep(0.01)


class LocalModalServer:
    """A local Modal API on 127.0.0.1: ``with LocalModalServer() as api: ... api.url ...``.

    ``rpc_delay`` (seconds) delays every RPC like a network round trip (0: a server next door).
    """

    def __init__(self, state: State | None = None, port: int = 0, rpc_delay: float = 0.0) -> None:
        if not (rpc_delay >= 0 and math.isfinite(rpc_delay)):
            raise ValueError(
                f"rpc_delay must be a finite number of seconds >= 0, not {rpc_delay!r}"
            )
        self.state = state or State()
        self.requested_port = port
        self.rpc_delay = rpc_delay
        self.port = 0
        self.http_port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def env(self, environment: str = "") -> dict[str, str]:
        """The variables that point the real client here (dummy credentials)."""
        env = {
            "MODAL_SERVER_URL": self.url,
            "MODAL_TOKEN_ID": "ak-local",
            "MODAL_TOKEN_SECRET": "as-local",
        }
        if environment:
            env["MODAL_ENVIRONMENT"] = environment
        return env

    def start(self, timeout: float = 5.0) -> LocalModalServer:
        grpc_sock, http_sock = _bound_socket(self.requested_port), _bound_socket()
        self.port, self.http_port = grpc_sock.getsockname()[1], http_sock.getsockname()[1]
        self.state.http_url = f"http://{HOST}:{self.http_port}"
        self._thread = threading.Thread(
            target=self._run, args=(grpc_sock, http_sock), name="local-modal-api", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            self.stop()
            raise RuntimeError("the local Modal API did not start") from self._error
        wait_for_port(self.port, timeout)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may have just finished
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def serve_forever(self) -> None:
        """Block until the server stops (for ``python -m modal_iac.local_api``)."""
        if self._thread is not None:
            while self._thread.is_alive():
                self._thread.join(0.5)

    def __enter__(self) -> LocalModalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, grpc_sock: socket.socket, http_sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(grpc_sock, http_sock))
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self, grpc_sock: socket.socket, http_sock: socket.socket) -> None:
        self._stop = asyncio.Event()
        # mypy cannot see that _answer_every_rpc implemented the abstract methods.
        servicer = LocalModalServicer(self.state, self.rpc_delay)  # type: ignore[abstract]
        grpc_server = grpclib.server.Server([servicer], status_details_codec=StatusDetailsCodec())
        await grpc_server.start(sock=grpc_sock)
        runner = web.AppRunner(_blob_app(self.state), access_log=None)
        await runner.setup()
        await web.SockSite(runner, http_sock).start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            grpc_server.close()
            await grpc_server.wait_closed()
            await runner.cleanup()
