"""Operator commands that look at a running service: ``url``, ``test`` and ``bench``.

A target is a URL, a spec file, or an app name (described by the state when modaliac applied
it). Specs and the state say what kind of request the service answers, which model name to
send, where the API key lives and how long the scaledown window is; a bare URL needs
``--kind``. Requests go through ``http.client`` from the standard library: a handful of JSON
POSTs need no HTTP package, and one kept-alive connection per thread makes warm latencies
measure the server rather than a new TLS handshake.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ModaliacError

if TYPE_CHECKING:
    import http.client

    from ..cli import Console

KINDS = ("embedding", "chat", "completion", "embed")
PATHS = {
    "embedding": "/v1/embeddings",
    "chat": "/v1/chat/completions",
    "completion": "/v1/completions",
    "embed": "/embed",
}
ITEMS = {"embedding": "embeddings", "embed": "embeddings", "chat": "tokens", "completion": "tokens"}
PROMPTS = {
    "embedding": "modaliac test: how fast is a cold start?",
    "embed": "modaliac test: how fast is a cold start?",
    "chat": "Say hello in five words.",
    "completion": "The capital of France is",
}
MAX_TOKENS = 32
DEFAULT_KEY_ENV = "VLLM_API_KEY"
# Where a proxy auth token of the workspace is read from (Modal's docs name no variable).
PROXY_TOKEN_ID_ENV = "MODAL_PROXY_TOKEN_ID"
PROXY_TOKEN_SECRET_ENV = "MODAL_PROXY_TOKEN_SECRET"
SCALEDOWN_MARGIN = 30  # seconds past the window before the container is surely gone


class ProbeError(ModaliacError):
    """A request failed, or the target cannot be resolved to an endpoint."""


class Unreachable(ProbeError):
    """No HTTP answer at all: the connection was refused or closed (a server still starting)."""


class Refused(ProbeError):
    """The server answered with an HTTP error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Clock:
    """Time for the scale-down wait; tests pass a fake one so nothing sleeps for real."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


CLOCK = Clock()


# -- the parser ---------------------------------------------------------------------------


def register(commands: Any, state_option: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add this module's subcommands to the CLI's parser (lazy: nothing heavy imported)."""
    from ..cli import app_env_option

    url = commands.add_parser(
        "url",
        help="print the deployed endpoint URL(s) of an app",
        description="Print the URL of each web endpoint of a deployed app, read from Modal.",
    )
    url.add_argument("target", metavar="APP|SPEC")
    app_env_option(url)
    state_option(url)
    url.set_defaults(run=cmd_url)

    test = commands.add_parser(
        "test",
        help="send one real request to a deployed endpoint",
        description=(
            "Send one request of the kind the service answers (embedding, chat, completion, "
            "or the transformers engine's /embed) and print its latency and a short result."
        ),
    )
    _request_options(test, state_option)
    test.set_defaults(run=cmd_test)

    bench = commands.add_parser(
        "bench",
        help="measure cold start, warm latency and throughput",
        description=(
            "Measure the first request (cold start), then N warm requests (p50/p95/p99, "
            "requests and items per second), and optionally, after waiting out the scaledown "
            "window, the cold start of a new container."
        ),
    )
    _request_options(bench, state_option)
    bench.add_argument("-n", "--warm", type=_positive, default=10, help="warm requests (10)")
    bench.add_argument(
        "--concurrency", type=_positive, default=1, help="warm requests in flight at once (1)"
    )
    bench.add_argument(
        "--wait-scaledown",
        nargs="?",
        type=float,
        const=-1.0,
        metavar="SECONDS",
        help="then wait this long (default: the spec's scaledown window + "
        f"{SCALEDOWN_MARGIN}s) and measure the next cold start",
    )
    bench.add_argument("--json", metavar="FILE", help="write the results as JSON")
    bench.add_argument("--png", metavar="FILE", help="draw the latencies (needs matplotlib)")
    bench.set_defaults(run="commands.bench:cmd_bench")


def _request_options(
    parser: argparse.ArgumentParser, state_option: Callable[[argparse.ArgumentParser], None]
) -> None:
    parser.add_argument("target", metavar="APP|SPEC|URL")
    parser.add_argument("--kind", choices=KINDS, help="request kind (default: from the spec)")
    parser.add_argument("--model", help="model name to send (default: the spec's served name)")
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="environment variable holding the API key (default: the spec's api_key_env)",
    )
    parser.add_argument(
        "--proxy-auth",
        action="store_true",
        help="send Modal's proxy auth headers (Modal-Key, Modal-Secret) from "
        f"${PROXY_TOKEN_ID_ENV} and ${PROXY_TOKEN_SECRET_ENV} (default: when the spec says "
        "proxy_auth)",
    )
    parser.add_argument("--prompt", help="text to send instead of a built-in one")
    parser.add_argument(
        "--allow-http",
        action="store_true",
        help="allow a plain http URL on another machine (the request is not encrypted)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for an answer (600)"
    )
    from ..cli import app_env_option

    app_env_option(parser)
    state_option(parser)


def _usage(message: str) -> Exception:
    """A usage error for the CLI's handler (exit status 2)."""
    from ..plan.targets import UsageError

    return UsageError(message)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


# -- what a target is ---------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """One endpoint and how to talk to it."""

    url: str
    kind: str
    model: str | None  # None: let the server pick its only model
    key_env: str | None  # None: send no key
    key_required: bool
    scaledown: int | None  # seconds, when a spec or the state says
    proxy_auth: bool = False  # send Modal's proxy token (Modal-Key, Modal-Secret)
    notices: tuple[str, ...] = ()  # said before the first request (a key not sent, plain http)


def cmd_url(args: argparse.Namespace, console: Console) -> int:
    targets = _described(args.target, args)
    if not targets:
        raise _usage("url: name an app or a spec, not a URL")
    lines: list[str] = []
    for app, environment, _ in targets:
        urls = _web_urls(app, environment)
        lines.extend(
            url if len(urls) == 1 and len(targets) == 1 else f"{url}  {app} {name}"
            for name, url in urls.items()
        )
    for line in lines:
        console.print(line)
    return 0


Described = tuple[str, str | None, dict[str, Any] | None]


def _described(target: str, args: argparse.Namespace) -> list[Described]:
    """(app, environment, flat settings) of each app a target names: none for a URL, one for
    a spec or an address, several for a gateway spec (no settings). An address the state
    records brings its settings; one it does not is looked up on Modal as it is, in its own
    environment (never another's)."""
    if target.lower().startswith(("http://", "https://")):
        return []
    from ..plan.targets import named, state_store
    from ..spec.address import Project

    project = Project.here()
    found = named(target, args.env, project)
    if found.loaded is not None:
        from ..spec.models import Spec
        from ..spec.settings import settings

        spec = found.loaded.spec
        if isinstance(spec, Spec):
            return [(spec.app, spec.environment, settings(spec))]
        return [(a.app, a.environment, None) for a in found.addresses]
    address = found.addresses[0]
    record = state_store(args.state, project).read().apps.get(str(address))
    return [(address.app, address.environment, record.settings if record else None)]


def _web_urls(app: str, environment: str | None) -> dict[str, str]:
    from ..modal.lookups import web_urls
    from ..spec.address import Address

    urls = web_urls(app, environment)
    if not urls:
        raise ProbeError(f"{Address(environment, app)}: no web endpoint (is surfaces.http on?)")
    return urls


def resolve(args: argparse.Namespace) -> Service:
    targets = _described(args.target, args)
    values: dict[str, Any] | None = None
    if not targets:
        url = args.target
    elif len(targets) > 1:
        raise _usage(f"{args.target} describes several apps; name one (`modaliac url` lists them)")
    else:
        app, environment, values = targets[0]
        url = served_url(_web_urls(app, environment))
    values = values or {}
    kind = args.kind or _kind(values)
    if kind is None:
        raise _usage(
            f"{args.target}: no spec or recorded app says what it serves; "
            f"pass --kind ({', '.join(KINDS)})"
        )
    model = args.model
    if model is None and kind != "embed":
        model = values.get("model.served_name")
    recorded_key, keyed, proxy_auth = endpoint_auth(values)
    key_env = args.api_key_env or recorded_key
    notices: list[str] = []
    if not targets:
        host = _check_destination(url, args, notices)
        if key_env is None and _is_local(host):
            key_env = DEFAULT_KEY_ENV  # this machine: send the key if there is one
        elif key_env is None and os.environ.get(DEFAULT_KEY_ENV):
            notices.append(
                f"not sending ${DEFAULT_KEY_ENV} to {host}: it is not an app's Modal URL nor "
                "this machine; name the variable with --api-key-env to send it there"
            )
    scaledown = values.get("scaling.scaledown_window")
    return Service(
        url=url.rstrip("/"),
        kind=kind,
        model=model,
        key_env=key_env,
        key_required=keyed or args.api_key_env is not None,
        scaledown=_seconds(scaledown) if scaledown is not None else None,
        notices=tuple(notices),
        proxy_auth=proxy_auth or args.proxy_auth,
    )


def served_url(urls: dict[str, str]) -> str:
    """The URL that serves requests among an app's web URLs: an HTTP server's, else the one."""
    served = [u for name, u in urls.items() if name.endswith(".serve") or name == "Server"]
    return served[0] if served else next(iter(urls.values()))


def endpoint_auth(values: dict[str, Any]) -> tuple[str | None, bool, bool]:
    """From an app's flat settings: the variable its API key is read from (None: no key),
    whether the endpoint requires one, and whether it wants Modal's proxy auth."""
    surface = "router" if "router.api_key_env" in values else "surfaces.http"
    keyed = bool(values.get(f"{surface}.api_key_secret"))
    key_env = values.get(f"{surface}.api_key_env") if keyed else None
    return key_env, keyed, bool(values.get(f"{surface}.proxy_auth"))


def _check_destination(url: str, args: argparse.Namespace, notices: list[str]) -> str:
    """The host of a URL the user gave. Plain http to another machine is refused unless the
    user says so (``--allow-http``): the prompt, and a key the user named, would cross the
    network unencrypted."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProbeError(f"{url}: not an http(s) URL")
    if parts.scheme == "http" and not _is_local(parts.hostname):
        if not args.allow_http:
            raise ProbeError(
                f"{url}: plain http to {parts.hostname} sends the request unencrypted; use "
                "https, or pass --allow-http"
            )
        notices.append(f"sending over plain http to {parts.hostname} (--allow-http)")
    return parts.hostname


def _is_local(host: str) -> bool:
    """This machine: ``localhost`` and its subdomains (RFC 6761), or a loopback address."""
    import ipaddress

    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _kind(values: dict[str, Any]) -> str | None:
    if values.get("engine.name") == "transformers":
        return "embed"
    return {"embed": "embedding", "generate": "chat"}.get(values.get("model.task", ""))


def _seconds(value: Any) -> int:
    from ..spec.fields import _parse_duration

    return _parse_duration(value)


def proxy_token(service: Service) -> tuple[str, str] | None:
    """The workspace proxy auth token (id, secret) an endpoint with Modal's proxy auth needs,
    from the environment; never printed."""
    if not service.proxy_auth:
        return None
    token_id = os.environ.get(PROXY_TOKEN_ID_ENV, "").strip()
    secret = os.environ.get(PROXY_TOKEN_SECRET_ENV, "").strip()
    if not token_id or not secret:
        missing = PROXY_TOKEN_ID_ENV if not token_id else PROXY_TOKEN_SECRET_ENV
        raise ProbeError(
            f"${missing} is not set: this endpoint uses Modal's proxy auth; export a proxy "
            f"auth token of the workspace (Modal settings, Proxy Auth Tokens) as "
            f"${PROXY_TOKEN_ID_ENV} and ${PROXY_TOKEN_SECRET_ENV}"
        )
    return token_id, secret


def _api_key(service: Service) -> str | None:
    if service.key_env is None:
        return None
    key = os.environ.get(service.key_env)
    if not key and service.key_required:
        raise ProbeError(f"${service.key_env} is not set: export the endpoint's API key in it")
    return key or None


# -- one request --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    seconds: float
    summary: str
    items: int | None  # embeddings returned, or tokens generated when the server says


class Http:
    """POSTs JSON to one endpoint, keeping one connection per thread."""

    def __init__(
        self,
        base: str,
        key: str | None,
        timeout: float,
        proxy_token: tuple[str, str] | None = None,
    ) -> None:
        import threading
        import urllib.parse

        parts = urllib.parse.urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProbeError(f"{base}: not an http(s) URL")
        self.base, self.key, self.timeout = base, key, timeout
        self.proxy_token = proxy_token
        self._parts = parts
        self._local = threading.local()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        import http.client

        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        kind = (
            http.client.HTTPSConnection
            if self._parts.scheme == "https"
            else http.client.HTTPConnection
        )
        conn = kind(self._parts.hostname or "", self._parts.port, timeout=self.timeout)
        self._local.conn = conn
        return conn, False

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, str, bytes, float]:
        """(status, reason, body, seconds); a reused connection the server closed is retried
        once on a new one, timed afresh."""
        import http.client

        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        if self.proxy_token is not None:
            headers["Modal-Key"], headers["Modal-Secret"] = self.proxy_token
        target = self._parts.path.rstrip("/") + path
        for _attempt in range(2):
            conn, reused = self._connection()
            start = time.perf_counter()
            try:
                conn.request("POST", target, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop()
                if reused:
                    continue
                raise Unreachable(f"{self.base}{path}: the server closed the connection") from None
            except TimeoutError:
                self._drop()
                raise ProbeError(f"{self.base}{path}: no answer within {self.timeout:g}s") from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                raise Unreachable(f"{self.base}{path}: cannot connect: {exc}") from None
            seconds = time.perf_counter() - start
            if response.will_close:
                self._drop()
            return response.status, response.reason, raw, seconds
        raise ProbeError(f"{self.base}{path}: the server closed the connection")


def payload(service: Service, prompt: str | None) -> dict[str, Any]:
    text = prompt or PROMPTS[service.kind]
    body: dict[str, Any]
    if service.kind == "embed":
        return {"texts": [text]}
    if service.kind == "embedding":
        body = {"input": [text], "encoding_format": "float"}
    elif service.kind == "chat":
        body = {"messages": [{"role": "user", "content": text}], "max_tokens": MAX_TOKENS}
    else:
        body = {"prompt": text, "max_tokens": MAX_TOKENS}
    if service.model:
        body["model"] = service.model
    return body


def send(client: Http, service: Service, body: dict[str, Any]) -> Reply:
    path = PATHS[service.kind]
    status, reason, raw, seconds = client.post(path, body)
    where = f"{client.base}{path}"
    if not 200 <= status < 300:
        detail = _error_detail(raw)
        hint = ""
        if status == 401:
            hint = (
                f" (key read from ${service.key_env})"
                if client.key
                else " (no API key sent: set it in the environment, see --api-key-env)"
            )
        message = f"{where}: HTTP {status} {reason}{': ' + detail if detail else ''}{hint}"
        raise Refused(message, status)
    try:
        answer = json.loads(raw)
        return _summary(service.kind, answer, seconds)
    except (ValueError, KeyError, IndexError, TypeError):
        shown = _short(raw.decode(errors="replace"))
        raise ProbeError(f"{where}: unexpected answer: {shown}") from None


def _summary(kind: str, answer: Any, seconds: float) -> Reply:
    if kind == "embed":
        vectors = answer["embeddings"]
        dimension = answer.get("dimension", len(vectors[0]))
        return Reply(seconds, f"{len(vectors)} embedding(s) of dimension {dimension}", len(vectors))
    if kind == "embedding":
        data = answer["data"]
        dimension = len(data[0]["embedding"])
        return Reply(seconds, f"{len(data)} embedding(s) of dimension {dimension}", len(data))
    choice = answer["choices"][0]
    text = choice["message"]["content"] if kind == "chat" else choice["text"]
    tokens = (answer.get("usage") or {}).get("completion_tokens")
    return Reply(seconds, f"reply: {_short(str(text))!r}", tokens)


def _error_detail(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return _short(raw.decode(errors="replace"))
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        return _short(str(error)) if error is not None else ""
    return _short(str(data))


def _short(text: str, words: int = 12) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def cmd_test(args: argparse.Namespace, console: Console) -> int:
    service = resolve(args)
    for notice in service.notices:
        console.error(f"note: {notice}")
    client = Http(service.url, _api_key(service), args.timeout, proxy_token(service))
    reply = send(client, service, payload(service, args.prompt))
    model = f" ({service.model})" if service.model else ""
    console.print(
        f"{service.url} {service.kind}{model}: ok in {reply.seconds * 1000:.0f} ms, {reply.summary}"
    )
    return 0
