"""The generated OpenAI-compatible server, run for real on this CPU with a stand-in for vLLM.

A generated app file is imported (offline, as ``modal deploy`` imports it) and its own code
runs: the authenticating proxy (``build_proxy``: the guard of templates/_http_guard.py.j2, then
the proxy) under uvicorn on 127.0.0.1 in front of a stand-in ``vllm serve`` (an aiohttp server
written here that records every request it gets: path, headers, body),
and the start-up helpers (``wait_healthy``, ``warm_up``, ``sleep_engine``, ``wake_engine``)
against the same stand-in. The ``Server`` class itself then runs its snapshot hooks in
Modal's order with a fake ``vllm`` executable on PATH (this file, run as a script). Last, each
example is deployed to the local Modal API and the FunctionCreate requests are checked.

Every server here binds a free port on 127.0.0.1 and stops itself; waits are short polls.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import web
from helpers import import_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as the fake `vllm`, this file imports nothing else of ours

CHAT = "examples/qwen-chat-sleep-snapshot.yaml"
NETRA = "examples/netra-multimodal-embedding-sleep.yaml"
KALM = "specs/kalm.yaml"
TOKEN = "internal-token-" + "x" * 20  # what the proxy sends vLLM
PUBLIC_KEY = "public-key-" + "y" * 20  # what clients send the proxy
LIMIT = 4096  # the body limit (bytes) of the proxy under test
RECORD_ENV = "MODALIAC_STAND_IN_RECORD"

# Specs for modes no example has: a server alone with sleep level 2, and an open server
# without a snapshot.
_MODEL = {"id": "org/model", "revision": "0123abc"}
SYNTHETIC: dict[str, dict[str, Any]] = {
    "sleep-level-2": {
        "app": "server-sleep-2",
        "model": {**_MODEL, "task": "embed", "multimodal": False},
        "engine": {"sleep_level": 2},
        "gpu": "L4",
        "snapshot": "sleep",
        "surfaces": {"class": False, "http": {"api_key_secret": "key", "api_key_env": "API_KEY"}},
    },
    "open-no-snapshot": {
        "app": "server-open",
        "model": {**_MODEL, "task": "generate"},
        "gpu": "L4",
        "surfaces": {"class": False, "http": {"open": True}, "downloader": False},
    },
    # primitive server (Modal's @app.server): the same hooks, the guard on its own port.
    "server-sleep-bearer-and-proxy": {
        "app": "server-primitive-sleep",
        "model": {**_MODEL, "task": "generate"},
        "gpu": "L4",
        "snapshot": "sleep",
        "scaling": {"concurrency": 8},
        "surfaces": {
            "class": False,
            "http": {"api_key_secret": "key", "proxy_auth": True, "primitive": "server"},
        },
    },
    "server-gpu-proxy-only": {
        "app": "server-primitive-gpu",
        "model": {**_MODEL, "task": "embed", "multimodal": False},
        "gpu": "L4",
        "snapshot": "gpu",
        "surfaces": {"class": False, "http": {"proxy_auth": True, "primitive": "server"}},
    },
    "cls-proxy-only": {
        "app": "server-proxy-auth",
        "model": {**_MODEL, "task": "generate"},
        "gpu": "L4",
        "surfaces": {"class": False, "http": {"proxy_auth": True}},
    },
    "server-bearer-no-snapshot": {
        "app": "server-primitive-plain",
        "model": {**_MODEL, "task": "generate"},
        "gpu": "L4",
        "surfaces": {"class": False, "http": {"api_key_secret": "key", "primitive": "server"}},
    },
}
SERVER_CASES = [
    "server-sleep-bearer-and-proxy",
    "server-gpu-proxy-only",
    "server-bearer-no-snapshot",
]


# -- the stand-in for `vllm serve` ------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def call(self) -> str:
        return f"{self.method} {self.path}" + (f"?{self.query}" if self.query else "")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class StandIn:
    """vLLM 0.33's routes as the proxy and the helpers use them. /v1 needs ``token`` (as
    ``VLLM_API_KEY`` makes vLLM do); /sleep, /wake_up and friends need nothing, as in vLLM."""

    token: str | None = TOKEN
    record_file: Path | None = None
    unhealthy: int = 0  # answer /health with 503 this many times first
    refuse_sleep: bool = False
    fail_embeddings: bool = False
    events: int = 4
    gates: list[threading.Event] | None = None  # the client sets gate i on reading event i
    event_interval: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    asleep: bool = False
    gate_timeouts: int = 0
    aborted: threading.Event = field(default_factory=threading.Event)
    events_sent: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def calls(self) -> list[str]:
        return [seen.call for seen in self.seen]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(
            request.method,
            request.path,
            request.rel_url.raw_query_string,
            {name.lower(): value for name, value in request.headers.items()},
            await request.read(),
        )
        self.seen.append(seen)
        if self.record_file is not None:
            with self.record_file.open("a") as out:
                out.write(json.dumps({"call": seen.call, "body": seen.body.decode()}) + "\n")
        guarded = request.path.startswith("/v1/") and self.token is not None
        if guarded and seen.headers.get("authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "Unauthorized"}, status=401)
        route = (request.method, request.path)
        if route == ("GET", "/health"):
            if self.unhealthy > 0:
                self.unhealthy -= 1
                return web.Response(status=503)
            return web.Response(status=200)
        if route == ("GET", "/v1/models"):
            return web.json_response({"object": "list", "data": [{"id": "stand-in"}]})
        if route == ("POST", "/v1/embeddings"):
            if self.fail_embeddings:
                error = {"message": "bad input", "type": "BadRequestError", "code": 400}
                return web.json_response({"error": error}, status=400)
            return web.json_response({"data": [{"index": 0, "embedding": [0.6, 0.8]}]})
        if route == ("POST", "/v1/chat/completions"):
            if seen.json().get("stream"):
                return await self.stream(request)
            message = {"role": "assistant", "content": "hello"}
            return web.json_response({"choices": [{"index": 0, "message": message}]})
        if route == ("POST", "/sleep"):
            self.asleep = not self.refuse_sleep
            return web.json_response({"status": "sleeping", "level": int(request.query["level"])})
        if route == ("POST", "/wake_up"):
            tags = request.query.getall("tags", [])
            if not tags or "kv_cache" in tags:
                self.asleep = False
            return web.json_response({"status": "sleeping" if self.asleep else "awake"})
        if route == ("POST", "/collective_rpc"):
            return web.json_response({"results": [None]})
        if route == ("GET", "/is_sleeping"):
            return web.json_response({"is_sleeping": self.asleep})
        if route == ("GET", "/metrics"):
            return web.Response(text="vllm:num_requests_running 0\n")
        return web.json_response({"detail": "Not Found"}, status=404)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        try:
            for index in range(self.events):
                chunk = {"choices": [{"index": 0, "delta": {"content": f"token-{index}"}}]}
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.events_sent += 1
                # With gates, the next event exists only once the client has this one: a
                # proxy that buffered the stream would stall here.
                gate = None if self.gates is None else self.gates[index]
                if gate is not None and not await loop.run_in_executor(None, gate.wait, 5):
                    self.gate_timeouts += 1
                await asyncio.sleep(self.event_interval)
            await response.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.aborted.set()
            raise
        await response.write_eof()
        return response


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def poll(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@contextlib.contextmanager
def running_stand_in(stand_in: Any) -> Iterator[str]:
    """A stand-in (anything whose ``app()`` is an aiohttp application) on a free port in a
    thread of its own; yields its base URL. test_gateway.py serves its stand-ins with it too."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(stand_in.app(), handle_signals=False, access_log=None)
    port = free_port()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextlib.contextmanager
def running_asgi(app: Any) -> Iterator[int]:
    """An ASGI app under uvicorn on a free port (lifespan on); yields the port."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert poll(lambda: server.started), "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    sent = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        return Answer(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def send_raw(
    port: int,
    method: str,
    path: str,
    headers: list[tuple[str, str]] = [],  # noqa: B006 (never changed)
    body: bytes = b"",
    *,
    chunked: bool = False,
    declared: int | None = None,
) -> Answer:
    """One request written out by hand, in one write, and its answer: headers may repeat, the
    body may be chunked (in three chunks), and ``declared`` sends a Content-Length with no
    body after it (the answer must come before any body does)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    data = body
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        size = -(-len(body) // 3) or 1
        parts = [body[at : at + size] for at in range(0, len(body), size)]
        data = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"
    elif declared is not None:
        lines.append(f"Content-Length: {declared}")
        data = b""
    else:
        lines.append(f"Content-Length: {len(body)}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        found = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, found, response.read())


def bearer(key: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {key}")]


def refused_credentials(key: str) -> list[tuple[str, list[tuple[str, str]], int]]:
    """(case, headers, status) of requests every guarded endpoint refuses before its app sees
    them: 400 for two Authorization headers (the guard says why), 401 for the rest."""
    return [
        ("no header", [], 401),
        ("wrong key", bearer("wrong"), 401),
        ("key cut short", bearer(key[:-1]), 401),
        ("key with more", bearer(key + "z"), 401),
        ("empty bearer", [("Authorization", "Bearer")], 401),
        ("bearer and blanks", [("Authorization", "Bearer   ")], 401),
        ("basic scheme", [("Authorization", f"Basic {key}")], 401),
        ("no scheme", [("Authorization", key)], 401),
        ("two headers, both right", bearer(key) * 2, 400),
        ("two headers, the second right", [*bearer("wrong"), *bearer(key)], 400),
    ]


def accepted_credentials(key: str) -> list[list[tuple[str, str]]]:
    """Authorization headers every guarded endpoint takes: the scheme in any case."""
    return [bearer(key), [("authorization", f"bearer {key}")], [("AUTHORIZATION", f"BEARER {key}")]]


def assert_refused(answer: Answer, status: int) -> None:
    """The guard's refusal: an OpenAI-style JSON error, and the challenge with a 401."""
    kind = "authentication_error" if status == 401 else "invalid_request_error"
    assert_openai_error(answer, status, kind)
    assert ("www-authenticate" in answer.headers) == (status == 401)
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"


def json_of_size(size: int, **fields: Any) -> bytes:
    """A JSON object with ``fields`` and a padding field, exactly ``size`` bytes long."""
    empty = json.dumps({**fields, "user": ""}).encode()
    assert len(empty) <= size
    return json.dumps({**fields, "user": "x" * (size - len(empty))}).encode()


def unsent_health_bodies(port: int) -> list[Answer]:
    """GET /health declaring a body far past any limit, then one that never comes: neither is
    sent, so both are answered only by an endpoint that never reads a health check's body
    (send_raw gives up after 10 s)."""
    return [send_raw(port, "GET", "/health", declared=size) for size in (10**15, 100)]


def nested(depth: int) -> str:
    """A JSON value ``depth`` lists deep."""
    return "[" * depth + "]" * depth


# (case, body, what the 400's message says) for every endpoint that parses a JSON body.
HOSTILE_JSON_BODIES = [
    ("utf-16", '{"texts": ["a"]}'.encode("utf-16"), "not UTF-8 (at byte 0)"),
    ("latin-1", '{"user": "caf\xe9"}'.encode("latin-1"), "not UTF-8 (at byte 13)"),
    ("too-deep-to-recurse", nested(1200).encode(), "nests deeper than 100 levels"),
    # Parsed whole where Python's recursion limit is higher: the depth is judged first.
    ("deep-list", nested(500).encode(), "nests deeper than 100 levels"),
    ("one-level-too-deep", b'{"user": ' + nested(100).encode() + b"}", "deeper than 100"),
    ("nan", b'{"user": NaN}', "holds NaN, which JSON has no number for"),
    ("infinity", b'{"user": [-Infinity]}', "holds -Infinity"),
    ("float-overflow", b'{"user": 1e999}', "the number '1e999', too large for a float"),
    ("duplicate-key", b'{"user": "a", "user": "b"}', "the key 'user' twice in one object"),
    ("lone-surrogate", b'{"user": ["\\ud83d"]}', "holds \\ud83d, half of a surrogate pair: send"),
    ("top-level-list", b"[]", "must be a JSON object, not list"),
    ("syntax", b'{"user": "' + b"x" * 3000 + b'" oops', "Expecting ',' delimiter at line 1"),
]


# Every case of HOSTILE_JSON_BODIES as a test's (body, says).
each_hostile_json_body = pytest.mark.parametrize(
    ("body", "says"),
    [(body, says) for _, body, says in HOSTILE_JSON_BODIES],
    ids=[case for case, _, _ in HOSTILE_JSON_BODIES],
)


def assert_refused_json(answer: Answer, says: str) -> None:
    """A 400 naming what is wrong with the body, quoting no more than a short excerpt."""
    assert_openai_error(answer, 400, "invalid_request_error")
    message = answer.json()["error"]["message"]
    assert says in message
    assert len(message) < 160, message


API_KEY_MISSING = "secret {secret!r} holds no {env} (or an empty one): put the API key in it"
NO_KEY_VALUES = [None, "", "  \t "]  # the variable unset, empty, blank
NO_KEY_IDS = ["unset", "empty", "blank"]


def set_key(monkeypatch: pytest.MonkeyPatch, env: str, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(env, raising=False)
    else:
        monkeypatch.setenv(env, value)


# -- generated modules -----------------------------------------------------------------------


def loaded_case(case: str) -> Any:
    from modal_iac.loading.load import LoadedSpec, load_spec
    from modal_iac.spec.service import Spec

    if case in SYNTHETIC:
        spec = Spec.model_validate(SYNTHETIC[case])
        assert not spec.problems(), spec.problems()
        digest = hashlib.sha256(json.dumps(SYNTHETIC[case], sort_keys=True).encode()).hexdigest()
        return LoadedSpec(case, digest, spec)
    with contextlib.chdir(ROOT):
        return load_spec(case)


def import_source(source: str, folder: Path, stem: str) -> ModuleType:
    """Import a generated file as `modal deploy` does: registered in sys.modules first."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"vllm_server_{stem.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    path = folder / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    return import_file(path, name)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], ModuleType]:
    """The imported app module of a case (a spec path or a SYNTHETIC name), once each."""
    from modal_iac.render.app import render

    folder = tmp_path_factory.mktemp("apps")
    modules: dict[str, ModuleType] = {}

    def get(case: str) -> ModuleType:
        if case not in modules:
            modules[case] = import_source(render(loaded_case(case)).source, folder, Path(case).stem)
        return modules[case]

    return get


@pytest.fixture
def server(generated: Callable[[str], ModuleType]) -> ModuleType:
    """Any generated module: the helpers are the same fixed code in every one."""
    return generated(NETRA)


@pytest.fixture
def stand_in() -> StandIn:
    return StandIn()


@pytest.fixture
def upstream(stand_in: StandIn) -> Iterator[str]:
    with running_stand_in(stand_in) as url:
        yield url


@dataclass
class Unreachable:
    calls: int = 0

    async def __call__(self) -> None:
        self.calls += 1


@pytest.fixture
def unreachable() -> Unreachable:
    return Unreachable()


@pytest.fixture
def proxy(server: ModuleType, upstream: str, unreachable: Unreachable) -> Iterator[int]:
    """The generated proxy, with an API key and a body limit of LIMIT bytes, in front of the
    stand-in; yields its port."""
    app = server.build_proxy(upstream, PUBLIC_KEY, TOKEN, unreachable, LIMIT)
    with running_asgi(app) as port:
        yield port


# -- the proxy -------------------------------------------------------------------------------


def assert_openai_error(answer: Answer, status: int, kind: str) -> None:
    assert answer.status == status
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (kind, status, None)
    assert error["message"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [(headers, status) for _, headers, status in refused_credentials(PUBLIC_KEY)],
    ids=[case for case, _, _ in refused_credentials(PUBLIC_KEY)],
)
def test_the_proxy_refuses_bad_credentials_before_vllm_sees_them(
    proxy: int, stand_in: StandIn, headers: list[tuple[str, str]], status: int
) -> None:
    for method, path in [("GET", "/v1/models"), ("POST", "/v1/embeddings"), ("GET", "/metrics")]:
        answer = send_raw(proxy, method, path, headers, b'{"input": "x"}')
        assert_refused(answer, status)
    assert stand_in.seen == [], "a refused request reached vLLM"


def test_the_right_key_is_forwarded_as_vllms_own_token(proxy: int, stand_in: StandIn) -> None:
    for headers in [*accepted_credentials(PUBLIC_KEY), bearer(f"  {PUBLIC_KEY}")]:
        answer = send_raw(proxy, "GET", "/v1/models", headers)
        assert answer.status == 200
        assert answer.json()["data"] == [{"id": "stand-in"}]
    assert send_raw(proxy, "GET", "/v1/models", bearer(TOKEN)).status == 401, "vLLM's token"
    # vLLM gets the proxy's token, never the client's key.
    assert [seen.headers["authorization"] for seen in stand_in.seen] == [f"Bearer {TOKEN}"] * 4
    assert not any(PUBLIC_KEY in str(seen) for seen in stand_in.seen)


def test_an_empty_api_key_is_never_a_key(server: ModuleType, upstream: str) -> None:
    for empty in ("", "   "):
        with pytest.raises(ValueError, match="the API key is empty"):
            server.build_proxy(upstream, empty, TOKEN)


def test_a_body_at_the_limit_passes_and_one_byte_more_is_refused_unread(
    proxy: int, stand_in: StandIn
) -> None:
    at_limit = json_of_size(LIMIT, input="x")
    for chunked in (False, True):
        answer = send_raw(
            proxy, "POST", "/v1/embeddings", bearer(PUBLIC_KEY), at_limit, chunked=chunked
        )
        assert answer.status == 200
    assert [len(seen.body) for seen in stand_in.seen] == [LIMIT, LIMIT]
    assert stand_in.seen[0].body == stand_in.seen[1].body == at_limit
    stand_in.seen.clear()

    over = json_of_size(LIMIT + 1, input="x")
    declared = send_raw(proxy, "POST", "/v1/embeddings", bearer(PUBLIC_KEY), declared=LIMIT + 1)
    chunked = send_raw(proxy, "POST", "/v1/embeddings", bearer(PUBLIC_KEY), over, chunked=True)
    for answer in (declared, chunked):
        assert_openai_error(answer, 413, "invalid_request_error")
        assert str(LIMIT) in answer.json()["error"]["message"]
    # Without a key, the Content-Length is not even looked at: 401 first.
    assert send_raw(proxy, "POST", "/v1/embeddings", declared=LIMIT + 1).status == 401
    assert stand_in.seen == [], "vLLM saw bytes of a refused body"


def guard_directly(server: ModuleType, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """What the guard (open, LIMIT bytes) sends for ``scope``, called without a server, for
    requests uvicorn here never passes on; its app must not be reached."""
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the request reached the app")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(server.guard(app, None, LIMIT)(scope, receive, send))
    return sent


def test_what_uvicorn_would_not_pass_on_is_refused_too(server: ModuleType) -> None:
    """A Content-Length that is no number (uvicorn answers 400 itself) and a websocket
    (uvicorn here has no websocket library): no generated endpoint offers websockets."""
    headers = [(b"content-length", b"1e3")]
    scope = {"type": "http", "method": "POST", "path": "/v1/x", "headers": headers}
    start, body = guard_directly(server, scope)
    assert start["status"] == 400
    assert json.loads(body["body"])["error"]["message"] == "Content-Length is not a number"
    scope = {"type": "websocket", "path": "/v1/realtime", "headers": []}
    assert guard_directly(server, scope) == [{"type": "websocket.close", "code": 1008}]


def test_health_is_forwarded_without_a_key(proxy: int, stand_in: StandIn) -> None:
    assert request(proxy, "GET", "/health").status == 200
    stand_in.unhealthy = 1
    assert request(proxy, "GET", "/health").status == 503  # vLLM's own answer, passed on
    assert stand_in.calls() == ["GET /health", "GET /health"]


def test_health_is_answered_without_waiting_for_its_body(proxy: int, stand_in: StandIn) -> None:
    assert [answer.status for answer in unsent_health_bodies(proxy)] == [200, 200]
    assert stand_in.calls() == ["GET /health", "GET /health"]
    assert [seen.body for seen in stand_in.seen] == [b"", b""]


PRIVATE = [
    ("POST", "/sleep?level=1"),
    ("POST", "/wake_up"),
    ("POST", "/wake_up?tags=weights"),
    ("POST", "/collective_rpc"),
    ("GET", "/is_sleeping"),
    ("GET", "/metrics"),
    ("POST", "/reset_prefix_cache"),
    ("GET", "/server_info"),
    ("GET", "/"),
    ("GET", "/v1"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("POST", "/v1/../sleep?level=1"),
    ("POST", "/v1/%2e%2e/sleep?level=1"),
    ("POST", "/v1/./../collective_rpc"),
    ("GET", "/health/../metrics"),
    ("POST", "/v2/embed"),
]


@pytest.mark.parametrize(("method", "path"), PRIVATE, ids=[p for _, p in PRIVATE])
def test_private_routes_are_401_or_404_and_never_reach_vllm(
    proxy: int, stand_in: StandIn, method: str, path: str
) -> None:
    body = {"method": "reload_weights"} if "collective_rpc" in path else None
    assert_refused(request(proxy, method, path, body), 401)
    assert_openai_error(request(proxy, method, path, body, key=PUBLIC_KEY), 404, "NotFoundError")
    assert stand_in.seen == []


def test_requests_and_answers_pass_unchanged(proxy: int, stand_in: StandIn) -> None:
    body = {"model": "bigemma3", "input": ["a", "b"], "encoding_format": "float"}
    answer = request(
        proxy,
        "POST",
        "/v1/embeddings?trace=1&x=%20y",
        body,
        key=PUBLIC_KEY,
        headers={"X-Id": "7", "Modal-Key": "wk-id", "Modal-Secret": "ws-secret"},
    )
    assert answer.status == 200
    assert answer.json() == {"data": [{"index": 0, "embedding": [0.6, 0.8]}]}
    (seen,) = stand_in.seen
    assert (seen.method, seen.path, seen.query) == ("POST", "/v1/embeddings", "trace=1&x=%20y")
    assert seen.json() == body
    assert seen.body == json.dumps(body).encode(), "the body's bytes are forwarded as sent"
    assert seen.headers["x-id"] == "7"
    assert seen.headers["content-type"] == "application/json"
    # A caller's Modal proxy token stays with the proxy: vLLM never sees it.
    assert "modal-key" not in seen.headers and "modal-secret" not in seen.headers

    stand_in.fail_embeddings = True
    answer = request(proxy, "POST", "/v1/embeddings", body, key=PUBLIC_KEY)
    assert answer.status == 400, "vLLM's errors reach the client as vLLM wrote them"
    assert answer.json()["error"]["message"] == "bad input"


def test_streaming_passes_through_chunk_by_chunk_in_order(proxy: int, stand_in: StandIn) -> None:
    stand_in.events = 5
    stand_in.gates = [threading.Event() for _ in range(stand_in.events)]
    connection = http.client.HTTPConnection("127.0.0.1", proxy, timeout=10)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    headers = {"Authorization": f"Bearer {PUBLIC_KEY}", "Content-Type": "application/json"}
    connection.request("POST", "/v1/chat/completions", json.dumps(body), headers)
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("content-type") == "text/event-stream"
    received = []
    while True:
        line = response.readline()
        if not line:
            break
        if line.startswith(b"data: "):
            received.append(line[6:].strip())
            if len(received) <= stand_in.events:
                stand_in.gates[len(received) - 1].set()  # lets the stand-in send the next
    connection.close()
    tokens = [json.loads(data)["choices"][0]["delta"]["content"] for data in received[:-1]]
    assert tokens == [f"token-{i}" for i in range(5)]
    assert received[-1] == b"[DONE]"
    assert stand_in.gate_timeouts == 0, "the proxy held back an event until the next one"


def leave_mid_stream(port: int, key: str, model: str = "m", first: bytes = b"token-0") -> None:
    """Start a streamed chat completion, read it up to ``first``, and hang up."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    body = json.dumps({"model": model, "messages": [], "stream": True}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    received = b""
    while first not in received:
        chunk = sock.recv(65536)
        assert chunk, "the stream ended before its first event"
        received += chunk
    sock.close()


def test_a_client_that_leaves_mid_stream_aborts_the_vllm_request(
    proxy: int, stand_in: StandIn
) -> None:
    stand_in.events, stand_in.event_interval = 500, 0.01
    leave_mid_stream(proxy, PUBLIC_KEY)
    assert poll(stand_in.aborted.is_set), "vLLM kept generating for a client that left"
    assert stand_in.events_sent < 500


def test_vllm_down_is_a_503_json_error(server: ModuleType, unreachable: Unreachable) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with running_asgi(server.build_proxy(dead, PUBLIC_KEY, TOKEN, unreachable)) as port:
        answer = request(port, "POST", "/v1/embeddings", {"input": "x"}, key=PUBLIC_KEY)
        assert_openai_error(answer, 503, "ServiceUnavailableError")
        assert request(port, "GET", "/health").status == 503
        # Refusals happen before the upstream is tried, so they do not count as outages.
        assert request(port, "GET", "/v1/models").status == 401
        assert request(port, "POST", "/sleep", key=PUBLIC_KEY).status == 404
    assert unreachable.calls == 2


def test_without_an_api_key_the_proxy_is_open_but_still_only_v1_and_health(
    server: ModuleType, upstream: str, stand_in: StandIn
) -> None:
    with running_asgi(server.build_proxy(upstream, None, TOKEN)) as port:
        assert request(port, "GET", "/v1/models").status == 200
        assert request(port, "GET", "/health").status == 200
        for method, path in PRIVATE:
            assert request(port, method, path).status == 404
    assert stand_in.calls() == ["GET /v1/models", "GET /health"]
    assert stand_in.seen[0].headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("value", NO_KEY_VALUES, ids=NO_KEY_IDS)
@pytest.mark.parametrize("case", [KALM, "sleep-level-2"])
def test_the_server_does_not_start_without_its_api_key(
    case: str,
    value: str | None,
    generated: Callable[[str], ModuleType],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Server.serve, the ASGI factory Modal calls as the container starts, raises: Modal
    then fails the start with this message instead of serving open."""
    http = loaded_case(case).spec.surfaces.http
    set_key(monkeypatch, http.api_key_env, value)
    instance = generated(case).Server._get_user_cls()()
    with pytest.raises(RuntimeError) as caught:
        instance.serve()
    assert str(caught.value) == API_KEY_MISSING.format(
        secret=http.api_key_secret, env=http.api_key_env
    )


def test_a_server_the_spec_declares_open_starts_without_a_key(
    generated: Callable[[str], ModuleType],
    upstream: str,
    stand_in: StandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = generated("open-no-snapshot")
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    monkeypatch.setattr(module, "VLLM_URL", upstream)
    instance = module.Server._get_user_cls()()
    instance.token = TOKEN  # what the start hook sets
    with running_asgi(instance.serve()) as port:
        assert request(port, "GET", "/v1/models").status == 200
        assert request(port, "GET", "/metrics").status == 404
        assert send_raw(port, "POST", "/v1/embeddings", declared=32 * 2**20 + 1).status == 413
    assert stand_in.calls() == ["GET /v1/models"]
    assert stand_in.seen[0].headers["authorization"] == f"Bearer {TOKEN}"


# -- start-up helpers ------------------------------------------------------------------------


def image_of(message: dict[str, Any]) -> bytes:
    (part,) = [p for p in message["content"] if p["type"] == "image_url"]
    prefix = "data:image/png;base64,"
    url = part["image_url"]["url"]
    assert url.startswith(prefix)
    import base64

    return base64.b64decode(url[len(prefix) :], validate=True)


def assert_png(data: bytes, size: int) -> None:
    """A well-formed PNG: signature, chunks with good CRCs, an image of size x size RGB."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, []
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        kind, payload = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        crc = int.from_bytes(data[at + 8 + length : at + 12 + length], "big")
        assert zlib.crc32(kind + payload) == crc, kind
        chunks.append((kind, payload))
        at += 12 + length
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    header = chunks[0][1]
    assert (int.from_bytes(header[:4], "big"), int.from_bytes(header[4:8], "big")) == (size, size)
    assert header[8:10] == bytes([8, 2]), "8-bit RGB"
    assert len(zlib.decompress(chunks[1][1])) == size * (1 + 3 * size)


def test_warm_up_of_a_multimodal_chat_model(
    generated: Callable[[str], ModuleType], upstream: str, stand_in: StandIn
) -> None:
    chat = generated(CHAT)
    assert (chat.TASK, chat.SERVED_MODEL_NAME, chat.MULTIMODAL) == ("generate", "qwen3.6-27b", True)
    chat.warm_up(upstream, TOKEN, chat.TASK, chat.SERVED_MODEL_NAME, chat.MULTIMODAL)
    assert stand_in.calls() == ["POST /v1/chat/completions"] * 2
    text, image = (seen.json() for seen in stand_in.seen)
    assert {seen.headers["authorization"] for seen in stand_in.seen} == {f"Bearer {TOKEN}"}
    assert text["model"] == image["model"] == "qwen3.6-27b"
    assert text["max_tokens"] == image["max_tokens"] == 8
    (message,) = text["messages"]
    assert message["role"] == "user" and isinstance(message["content"], str)
    (message,) = image["messages"]
    assert [part["type"] for part in message["content"]] == ["image_url", "text"]
    assert_png(image_of(message), 64)
    assert "stream" not in text


def test_warm_up_of_a_multimodal_embedding_model(
    generated: Callable[[str], ModuleType], upstream: str, stand_in: StandIn
) -> None:
    netra = generated(NETRA)
    assert (netra.TASK, netra.SERVED_MODEL_NAME, netra.MULTIMODAL) == ("embed", "bigemma3", True)
    netra.warm_up(upstream, TOKEN, netra.TASK, netra.SERVED_MODEL_NAME, netra.MULTIMODAL)
    assert stand_in.calls() == ["POST /v1/embeddings"] * 2
    text, image = (seen.json() for seen in stand_in.seen)
    assert text == {
        "model": "bigemma3",
        "input": [text["input"][0], "a second input"],
        "encoding_format": "float",
    }
    assert set(image) == {"model", "messages", "encoding_format"}
    (message,) = image["messages"]
    assert message["role"] == "user"
    assert_png(image_of(message), 64)


@pytest.mark.parametrize(
    ("task", "path"), [("embed", "/v1/embeddings"), ("generate", "/v1/chat/completions")]
)
def test_warm_up_of_a_text_model_sends_no_image(
    server: ModuleType, upstream: str, stand_in: StandIn, task: str, path: str
) -> None:
    server.warm_up(upstream, TOKEN, task, "m", False)
    assert stand_in.calls() == [f"POST {path}"]
    assert "image_url" not in stand_in.seen[0].body.decode()


def test_a_failed_warm_up_fails_the_start_with_vllms_message(
    server: ModuleType, upstream: str, stand_in: StandIn
) -> None:
    stand_in.fail_embeddings = True
    with pytest.raises(RuntimeError, match=r"/v1/embeddings answered 400: .*bad input"):
        server.warm_up(upstream, TOKEN, "embed", "m", False)


@pytest.mark.parametrize("level", [1, 2])
def test_sleep(server: ModuleType, upstream: str, stand_in: StandIn, level: int) -> None:
    server.sleep_engine(upstream, level)
    assert stand_in.calls() == [f"POST /sleep?level={level}", "GET /is_sleeping"]
    assert stand_in.asleep


def test_a_sleep_that_does_not_take_is_an_error(
    server: ModuleType, upstream: str, stand_in: StandIn
) -> None:
    stand_in.refuse_sleep = True
    with pytest.raises(RuntimeError, match="did not go to sleep"):
        server.sleep_engine(upstream, 1)


def test_wake_level_1(server: ModuleType, upstream: str, stand_in: StandIn) -> None:
    stand_in.asleep = True
    server.wake_engine(upstream, 1)
    assert stand_in.calls() == ["POST /wake_up", "GET /is_sleeping"]
    assert stand_in.seen[0].body == b""


def test_wake_level_2_is_three_steps(server: ModuleType, upstream: str, stand_in: StandIn) -> None:
    stand_in.asleep = True
    server.wake_engine(upstream, 2)
    assert stand_in.calls() == [
        "POST /wake_up?tags=weights",
        "POST /collective_rpc",
        "POST /wake_up?tags=kv_cache",
        "GET /is_sleeping",
    ]
    assert stand_in.seen[1].json() == {"method": "reload_weights"}
    assert not stand_in.asleep


def test_wait_healthy_polls_until_vllm_answers(
    server: ModuleType, upstream: str, stand_in: StandIn
) -> None:
    stand_in.unhealthy = 3
    server.wait_healthy(upstream, 5, interval=0.01)
    assert stand_in.calls() == ["GET /health"] * 4


def test_wait_healthy_gives_up(server: ModuleType) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TimeoutError, match="not healthy"):
        server.wait_healthy(dead, 0.05, interval=0.01)
    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    exited.wait(10)
    with pytest.raises(RuntimeError, match="exited with status 3"):
        server.wait_healthy(dead, 5, exited, interval=0.01)


def test_start_vllm_passes_the_token_by_environment_only(
    generated: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = generated("sleep-level-2")  # API key under API_KEY, not VLLM_API_KEY
    started: list[tuple[list[str], dict[str, str]]] = []

    def popen(argv: list[str], env: dict[str, str]) -> str:
        started.append((argv, env))
        return "process"

    monkeypatch.setattr(module.subprocess, "Popen", popen)
    monkeypatch.setenv("API_KEY", PUBLIC_KEY)
    monkeypatch.setenv("VLLM_SERVER_DEV_MODE", "0")
    assert module.start_vllm(module.SERVE_ARGS, TOKEN, module.VLLM_ENV) == "process"
    ((argv, env),) = started
    assert argv == ["vllm", "serve", *module.SERVE_ARGS]
    assert TOKEN not in argv and PUBLIC_KEY not in " ".join(argv)
    assert env["VLLM_API_KEY"] == TOKEN
    assert "API_KEY" not in env, "the public key stays out of vLLM's environment"
    assert env["VLLM_SERVER_DEV_MODE"] == "1", "sleep mode needs the dev routes"


def test_a_snapshot_needs_the_class_or_the_server() -> None:
    """The server takes every snapshot mode now; with neither surface there is nothing to
    snapshot, which is an error on the snapshot key."""
    from modal_iac.spec.service import Spec

    for mode in ("gpu", "sleep"):
        alone = {**SYNTHETIC["open-no-snapshot"], "snapshot": mode}
        assert Spec.model_validate(alone).problems() == []
    neither = {**alone, "surfaces": {"downloader": True}}
    ((where, message),) = Spec.model_validate(neither).problems()
    assert where == ("snapshot",)
    assert "neither" in message


def test_tiny_png_is_a_valid_image(server: ModuleType) -> None:
    assert_png(server.tiny_png(), 64)
    assert_png(server.tiny_png(3), 3)


def test_names_a_surface_could_take_are_reserved(generated: Callable[[str], ModuleType]) -> None:
    """A downloader or class named like a helper would replace it in the generated file."""
    from modal_iac.render.app import render
    from modal_iac.spec.reserved import VLLM_NAMES

    for case in (KALM, "open-no-snapshot"):
        spec = loaded_case(case).spec
        tree = ast.parse(render(loaded_case(case)).source)
        names: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        chosen = {spec.surfaces.class_.name if spec.surfaces.class_ else None}
        chosen.add(spec.surfaces.downloader.name if spec.surfaces.downloader else None)
        takeable = {n for n in names - chosen if n and not n.isupper() and not n.startswith("_")}
        assert takeable <= VLLM_NAMES, sorted(takeable - VLLM_NAMES)


# -- the Server class, end to end with a fake `vllm` -----------------------------------------

E2E = [CHAT, NETRA, KALM, "sleep-level-2", "open-no-snapshot", *SERVER_CASES]


def run_fake_vllm(argv: list[str]) -> None:
    """``vllm serve MODEL --host H --port P ...``: the stand-in, token from VLLM_API_KEY."""
    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    args, _ = parser.parse_known_args(argv)
    assert args.command == "serve" and args.host == "127.0.0.1"
    record = Path(os.environ[RECORD_ENV])
    environment = {
        "argv": argv,
        "dev_mode": os.environ.get("VLLM_SERVER_DEV_MODE"),
        "token": os.environ.get("VLLM_API_KEY"),
        "public_key_seen": PUBLIC_KEY in os.environ.values(),
    }
    (record.parent / "environment.json").write_text(json.dumps(environment))
    stand_in = StandIn(token=os.environ["VLLM_API_KEY"], record_file=record)
    web.run_app(stand_in.app(), host=args.host, port=args.port, print=None, access_log=None)


def recorded(record: Path) -> list[str]:
    """The calls the fake vLLM got, consecutive health checks counted once."""
    calls: list[str] = []
    for line in record.read_text().splitlines() if record.exists() else []:
        call = json.loads(line)["call"]
        if not (call == "GET /health" and calls and calls[-1] == call):
            calls.append(call)
    return calls


def expected_calls(spec: Any) -> tuple[list[str], list[str]]:
    """What vLLM sees before the snapshot, and after the restore (or at start, without one)."""
    warm = "POST /v1/embeddings" if spec.model.task == "embed" else "POST /v1/chat/completions"
    warm_up = [warm] * (2 if spec.model.multimodal else 1)
    if spec.snapshot == "none":
        return [], ["GET /health"]
    if spec.snapshot == "gpu":
        return ["GET /health", *warm_up], ["GET /health"]
    level = spec.engine.sleep_level
    sleep = [f"POST /sleep?level={level}", "GET /is_sleeping"]
    if level == 1:
        wake = ["POST /wake_up"]
    else:
        wake = ["POST /wake_up?tags=weights", "POST /collective_rpc", "POST /wake_up?tags=kv_cache"]
    return ["GET /health", *warm_up, *sleep], [*wake, "GET /is_sleeping", "GET /health"]


@pytest.mark.parametrize("case", E2E)
def test_server_class_runs_its_hooks_in_modals_order(
    case: str,
    generated: Callable[[str], ModuleType],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modal._partial_function import _find_partial_methods_for_user_cls, _PartialFunctionFlags

    module = generated(case)
    spec = loaded_case(case).spec
    http = spec.surfaces.http
    port = free_port()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vllm"
    fake.write_text(f'#!/bin/sh\nexec {sys.executable} {Path(__file__)} "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    record = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(RECORD_ENV, str(record))
    monkeypatch.setenv(http.api_key_env, PUBLIC_KEY)
    argv = list(module.SERVE_ARGS)
    argv[argv.index(f"--port={http.port}")] = f"--port={port}"
    monkeypatch.setattr(module, "SERVE_ARGS", argv)
    monkeypatch.setattr(module, "VLLM_URL", f"http://127.0.0.1:{port}")
    original_wait = module.wait_healthy
    monkeypatch.setattr(module, "wait_healthy", lambda *args: original_wait(*args, interval=0.02))
    primitive_server = http.primitive == "server"
    if primitive_server:  # the guard listens where Modal's @app.server routes
        monkeypatch.setattr(module, "PUBLIC_PORT", free_port())

    user_cls = module.Server._get_user_cls()

    def hooks(flag: Any) -> list[str]:
        return list(_find_partial_methods_for_user_cls(user_cls, flag))

    instance = user_cls()
    before, after = expected_calls(spec)
    try:
        for name in hooks(_PartialFunctionFlags.ENTER_PRE_SNAPSHOT):
            getattr(instance, name)()
        assert recorded(record) == before
        if primitive_server:  # nothing listens in the snapshot: the key is read after it
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", module.PUBLIC_PORT), timeout=1).close()
        for name in hooks(_PartialFunctionFlags.ENTER_POST_SNAPSHOT):
            getattr(instance, name)()
        assert recorded(record) == before + after

        environment = json.loads((tmp_path / "environment.json").read_text())
        assert environment["token"] == instance.token != PUBLIC_KEY
        assert not environment["public_key_seen"]
        assert environment["dev_mode"] == ("1" if spec.snapshot == "sleep" else None)

        # The web method builds the proxy after the restore, from the secret's current value.
        key = None if http.api_key_secret is None else PUBLIC_KEY
        credentials = [] if key is None else bearer(key)
        assert http.max_body * 2**20 == module.MAX_BODY_BYTES
        served: Any = (
            contextlib.nullcontext(module.PUBLIC_PORT)
            if primitive_server
            else running_asgi(instance.serve())
        )
        with served as public:
            assert request(public, "GET", "/v1/models", key=key).status == 200
            assert request(public, "POST", "/sleep?level=1", key=key).status == 404
            if key is not None:
                assert request(public, "GET", "/v1/models", key="wrong").status == 401
            limit = module.MAX_BODY_BYTES
            answer = send_raw(public, "POST", "/v1/embeddings", credentials, declared=limit + 1)
            assert answer.status == 413
        assert recorded(record)[len(before + after) :] == ["GET /v1/models"]
    finally:
        for name in hooks(_PartialFunctionFlags.EXIT):
            getattr(instance, name)()
    assert instance.process.poll() is not None, "the exit hook stops vLLM"
    if primitive_server:
        assert poll(lambda: _closed(module.PUBLIC_PORT)), "the exit hook stops the endpoint"


def _closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


# -- deploying to the local Modal API --------------------------------------------------------

DEPLOYED = [CHAT, NETRA, KALM, "examples/chat-gpu-fallback.yaml"]


@pytest.mark.parametrize("case", DEPLOYED)
def test_deploy_sends_the_server_definition(
    case: str, modal_api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modal.runner
    from modal_proto import api_pb2

    from modal_iac.render.app import render

    loaded = loaded_case(case)
    spec = loaded.spec
    http = spec.surfaces.http
    assert http is not None and http.api_key_secret is not None
    for name in spec.secrets:
        modal_api.state.add_secret(name)
    if spec.hf_token_secret is not None:
        modal_api.state.add_secret(spec.hf_token_secret, ("HF_TOKEN",))
    modal_api.state.add_secret(http.api_key_secret, (http.api_key_env,))
    rendered = render(loaded)
    module = import_source(rendered.source, tmp_path, Path(case).stem)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    modal.runner.deploy_app(module.app, name=spec.app)

    state = modal_api.state
    # A GPU fallback list is sent as FunctionData, one ranked Function per GPU choice.
    record = state.function(spec.app, "Server.*")
    assert record.data is not None
    ranked = [r.function.resources.gpu_config for r in record.data.ranked_functions]
    assert [(gpu.gpu_type, gpu.count) for gpu in ranked] == [(g.type, g.count) for g in spec.gpu]
    server = record.definition
    assert server.is_class
    assert server.definition_type == api_pb2.Function.DEFINITION_TYPE_FILE
    assert list(server.method_definitions) == ["serve"]
    web = server.method_definitions["serve"].webhook_config
    assert web.type == api_pb2.WEBHOOK_TYPE_ASGI_APP
    gpu_snapshot = spec.snapshot in ("gpu", "sleep")
    assert server.checkpointing_enabled == gpu_snapshot
    assert dict(server.experimental_options) == (
        {"enable_gpu_snapshot": "True"} if gpu_snapshot else {}
    )
    scaling = spec.scaling
    autoscaler = server.autoscaler_settings
    assert autoscaler.min_containers == scaling.min_containers
    assert autoscaler.scaledown_window == scaling.scaledown_window
    assert autoscaler.buffer_containers == scaling.buffer_containers
    assert autoscaler.HasField("max_containers") == (scaling.max_containers is not None)
    assert server.max_concurrent_inputs == spec.concurrency
    assert server.timeout_secs == scaling.timeout
    assert server.startup_timeout_secs == scaling.startup_timeout
    token = [spec.hf_token_secret] if spec.hf_token_secret else []
    assert state.secret_names(server.secret_ids) == [*spec.secrets, *token, http.api_key_secret]
    assert state.volume_mounts(server) == spec.volumes

    for request in state.requests("FunctionCreate"):
        name = request.function.function_name or request.function_data.function_name
        if name != "Server.*":
            secrets = state.secret_names(request.function.secret_ids)
            assert http.api_key_secret not in secrets, f"{name} holds the API key"
    publish = state.requests("AppPublish")[0]
    assert "Server" in publish.class_ids
    assert state.app_files(spec.app)[f"/root/{module.__name__}.py"] == rendered.source.encode()


@pytest.mark.parametrize(("case", "proxy_auth"), [(KALM, False), ("cls-proxy-only", True)])
def test_the_class_based_server_asks_modal_for_proxy_auth_only_when_the_spec_does(
    case: str, proxy_auth: bool, modal_api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modal.runner

    from modal_iac.render.app import render

    loaded = loaded_case(case)
    spec = loaded.spec
    for name in spec.referenced_secrets():
        modal_api.state.add_secret(name, (spec.secret_keys().get(name, "VLLM_API_KEY"),))
    module = import_source(render(loaded).source, tmp_path, Path(case).stem)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    modal.runner.deploy_app(module.app, name=spec.app)

    server = modal_api.state.function(spec.app, "Server.*").definition
    web = server.method_definitions["serve"].webhook_config
    assert web.requires_proxy_auth is proxy_auth
    # proxy_auth alone: no key secret is attached, and the guard checks no Bearer key.
    expected = [*spec.secrets] if spec.surfaces.http.api_key_secret is None else None
    if expected is not None:
        assert modal_api.state.secret_names(server.secret_ids) == expected


def test_proxy_auth_alone_serves_without_a_bearer_key(
    generated: Callable[[str], ModuleType],
    upstream: str,
    stand_in: StandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Modal checks the proxy token before the request reaches the container; the guard then
    forwards /v1 without asking for a Bearer key, and still only /v1 and /health."""
    module = generated("cls-proxy-only")
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    monkeypatch.setattr(module, "VLLM_URL", upstream)
    instance = module.Server._get_user_cls()()
    instance.token = TOKEN
    with running_asgi(instance.serve()) as port:
        assert request(port, "GET", "/v1/models").status == 200
        assert request(port, "POST", "/sleep?level=1").status == 404
    assert stand_in.calls() == ["GET /v1/models"]


def test_an_app_server_whose_vllm_died_ends_its_container_as_modal_ends_a_server(
    generated: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An @app.server container has no inputs to stop fetching: it runs until SIGTERM (modal's
    container entrypoint, call_server), which then runs the exit hook. With vLLM gone, the
    proxy's 503 path sends it that SIGTERM; while vLLM runs, nothing happens."""
    module = generated("server-bearer-no-snapshot")
    instance = module.Server._get_user_cls()()
    instance.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    sent: list[tuple[int, int]] = []
    with monkeypatch.context() as patched:
        patched.setattr(module.os, "kill", lambda pid, sig: sent.append((pid, sig)))
        asyncio.run(instance._upstream_unreachable())
    assert sent == []
    instance.process.kill()
    instance.process.wait()
    monkeypatch.setattr(module.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    asyncio.run(instance._upstream_unreachable())
    assert sent == [(os.getpid(), module.signal.SIGTERM)]


@pytest.mark.parametrize("case", SERVER_CASES)
def test_primitive_server_deploys_as_modals_app_server(
    case: str, modal_api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``primitive: server``: one server function ``Server`` with the HTTP config on the
    guard's port, proxy auth unless the spec leaves it out, the spec's concurrency as the
    autoscaler's target and the snapshot flags of the class-based server."""
    import modal.runner

    from modal_iac.render.app import render
    from modal_iac.spec.surfaces import SERVER_PUBLIC_PORT

    loaded = loaded_case(case)
    spec = loaded.spec
    http = spec.surfaces.http
    for name in spec.referenced_secrets():
        modal_api.state.add_secret(name, (spec.secret_keys().get(name, http.api_key_env),))
    module = import_source(render(loaded).source, tmp_path, case)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    modal.runner.deploy_app(module.app, name=spec.app)

    creates = {
        r.function.function_name: r.function for r in modal_api.state.requests("FunctionCreate")
    }
    server = creates["Server"]
    assert server.is_server and server.implementation_name == "Server.*"
    assert server.http_config.port == SERVER_PUBLIC_PORT
    assert server.http_config.unauthenticated == (not http.proxy_auth)
    assert server.http_config.startup_timeout == spec.scaling.startup_timeout
    assert server.autoscaler_settings.target_concurrency_float == spec.concurrency
    assert server.max_concurrent_inputs == 0  # no cap: @app.server answers 429 above one
    gpu_snapshot = spec.snapshot in ("gpu", "sleep")
    assert server.checkpointing_enabled == gpu_snapshot
    assert dict(server.experimental_options) == (
        {"enable_gpu_snapshot": "True"} if gpu_snapshot else {}
    )
    assert server.autoscaler_settings.scaledown_window == spec.scaling.scaledown_window
    assert modal_api.state.secret_names(server.secret_ids) == spec.referenced_secrets()
    assert not server.method_definitions and "Server.*" not in creates
    assert modal_api.state.requests("AppPublish")[0].function_ids["Server"]


def test_the_sleeping_examples_deploy_as_the_seeds_describe(
    modal_api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 003 (A100-80GB, scale to zero, 32 concurrent) and seed 002 (L40S, 60 s)."""
    import modal.runner

    from modal_iac.render.app import render

    found = {}
    modal_api.state.add_secret("huggingface", ("HF_TOKEN",))
    for name in ("vllm-api-key", "netra-api-key"):  # both examples keep the default key name
        modal_api.state.add_secret(name, ("VLLM_API_KEY",))
    for case in (CHAT, NETRA):
        loaded = loaded_case(case)
        module = import_source(render(loaded).source, tmp_path, Path(case).stem)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        modal_api.state.clear_calls()
        modal.runner.deploy_app(module.app, name=loaded.spec.app)
        (server,) = [
            r.function
            for r in modal_api.state.requests("FunctionCreate")
            if r.function.function_name == "Server.*"
        ]
        found[case] = server
    chat, netra = found[CHAT], found[NETRA]
    assert chat.resources.gpu_config.gpu_type == "A100-80GB"
    assert (chat.autoscaler_settings.min_containers, chat.max_concurrent_inputs) == (0, 32)
    assert modal_api.state.secret_names(chat.secret_ids) == ["huggingface", "vllm-api-key"]
    assert netra.resources.gpu_config.gpu_type == "L40S"
    assert netra.autoscaler_settings.scaledown_window == 60
    assert chat.checkpointing_enabled and netra.checkpointing_enabled


if __name__ == "__main__":  # the fake `vllm` executable of the end-to-end test
    run_fake_vllm(sys.argv[1:])


@pytest.mark.parametrize(
    ("values", "status"),
    [
        ([b"9" * 5000], 413),  # past Python's int() digit limit: compared as digits
        ([b"0" * 5000 + b"1"], None),
        ([b""], 400),
        ([b"-1"], 400),
        ([b" 1"], 400),
        ([b"\xd9\xa3"], 400),  # an Arabic-Indic digit is no ASCII digit
        ([b"1", b"2"], 400),
    ],
)
def test_every_content_length_is_judged_without_an_internal_error(
    server: ModuleType, values: list[bytes], status: int | None
) -> None:
    headers = [(b"content-length", value) for value in values]
    scope = {"type": "http", "method": "POST", "path": "/v1/x", "headers": headers}
    if status is None:
        with pytest.raises(AssertionError, match="reached the app"):
            guard_directly(server, scope)
        return
    start, _ = guard_directly(server, scope)
    assert start["status"] == status
