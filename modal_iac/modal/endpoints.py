"""Requests to a deployed app's web endpoint: what each kind of service answers, the payload
and headers (API key, Modal's proxy auth) it wants, and one HTTP client.

``modaliac test`` and ``bench`` (commands/probe.py, bench.py) send these requests to a URL
the user names; verify.py sends the same request to each new version after a deploy. The
standard library's ``http.client`` is enough for a handful of JSON POSTs, and one kept-alive
connection per thread makes warm latencies measure the server, not a new TLS handshake.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ModaliacError
from ..tokens import printable, scrub, url_shown

if TYPE_CHECKING:
    import http.client

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
    """Time for waiting on an endpoint (bench's scale-down wait, verify's deadline); tests
    pass a fake one so nothing sleeps for real."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


CLOCK = Clock()


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


def request_kind(values: dict[str, Any]) -> str | None:
    """The request an app answers, from its flat settings (None: they do not say)."""
    if values.get("engine.name") == "transformers":
        return "embed"
    return {"embed": "embedding", "generate": "chat"}.get(values.get("model.task", ""))


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


def api_key(service: Service) -> str | None:
    """The key to send, from the environment (None: no key to send); raises ProbeError when
    the endpoint requires one that is not set."""
    if service.key_env is None:
        return None
    key = os.environ.get(service.key_env)
    if not key and service.key_required:
        state = "is empty" if key == "" else "is not set"
        raise ProbeError(f"${service.key_env} {state}: export the endpoint's API key in it")
    if key and (not key.isprintable() or key != key.strip()):
        # http.client refuses such a header with a message that quotes it.
        raise ProbeError(
            f"${service.key_env} holds a line break, control character or surrounding space: "
            "export the key alone (its value is not shown)"
        )
    return key or None


@dataclass(frozen=True)
class Reply:
    seconds: float
    summary: str
    items: int | None  # embeddings returned, or tokens generated when the server says


# -- one request --------------------------------------------------------------------------


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
            raise ProbeError(f"{url_shown(base)}: not an http(s) URL")
        self.base, self.key, self.timeout = base, key, timeout
        self.proxy_token = proxy_token
        self._parts = parts
        self._local = threading.local()

    def where(self, path: str) -> str:
        """The URL of ``path`` as messages show it (no ``user:password@``)."""
        return url_shown(self.base + path)

    def masked(self, text: str) -> str:
        """Server text fit to print: printable, and without the credentials this client sent
        (a server may echo the key it refused) or anything else shaped like a token."""
        for secret in (self.key, *(self.proxy_token or ())):
            if secret:
                text = text.replace(secret, "(the key sent, not shown)")
        return scrub(printable(text))

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
                raise Unreachable(f"{self.where(path)}: the server closed the connection") from None
            except TimeoutError:
                self._drop()
                late = f"{self.where(path)}: no answer within {self.timeout:g}s"
                raise ProbeError(late) from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                why = self.masked(str(exc))
                raise Unreachable(f"{self.where(path)}: cannot connect: {why}") from None
            seconds = time.perf_counter() - start
            if response.will_close:
                self._drop()
            return response.status, response.reason, raw, seconds
        raise ProbeError(f"{self.where(path)}: the server closed the connection")


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
    where = client.where(path)
    if not 200 <= status < 300:
        detail = client.masked(_error_detail(raw))
        hint = ""
        if status == 401:
            hint = (
                f" (key read from ${service.key_env})"
                if client.key
                else " (no API key sent: set it in the environment, see --api-key-env)"
            )
        detail = f": {detail}" if detail else ""
        message = f"{where}: HTTP {status} {client.masked(reason)}{detail}{hint}"
        raise Refused(message, status)
    try:
        answer = json.loads(raw)
        reply = _summary(service.kind, answer, seconds)
    except (ValueError, KeyError, IndexError, TypeError):
        shown = client.masked(_short(raw.decode(errors="replace")))
        raise ProbeError(f"{where}: unexpected answer: {shown}") from None
    return Reply(reply.seconds, client.masked(reply.summary), reply.items)


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
