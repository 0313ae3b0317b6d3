"""Health-gated apply: after a deploy, one real request of the kind the app serves.

The request is ``modaliac test``'s (endpoints.py: the same payloads, keys and proxy-auth headers),
sent to the URL Modal reports for the new version. A server still starting (connection
refused, 502/503/504, or Modal's 303 after 150 s) is asked again until the timeout, so a cold
start fits in it; any other error, or no answer in time, fails the check. A gateway app is
checked once per model behind its router. When a check fails, gate.py rolls the app back (or
stops a new one) and checks the version that serves again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..plan.changes import Verification
from ..spec.address import Address
from ..spec.fields import shown_duration
from ..tokens import url_shown
from .endpoints import (
    CLOCK,
    PATHS,
    Http,
    ProbeError,
    Refused,
    Service,
    Unreachable,
    api_key,
    endpoint_auth,
    payload,
    proxy_token,
    request_kind,
    send,
    served_url,
)

RETRY_PAUSE = 0.5  # seconds between attempts while the new version starts
# What a proxy answers while no container is ready yet. Modal answers a web request that has
# not finished after 150 s with a 303 to a result URL (docs: guide/webhook-timeouts); asking
# again sends one more request to a container that is warm by then.
STARTING = (303, 502, 503, 504)


class NotVerifiable(ProbeError):
    """The check cannot even be sent from here (a key or a proxy token is not set)."""


@dataclass(frozen=True)
class Target:
    """What one check is sent to: an app's name and flat settings (from the state record)."""

    app: str
    environment: str | None
    values: dict[str, Any]

    @property
    def gateway(self) -> bool:
        return "router.api_key_env" in self.values

    @property
    def models(self) -> list[str]:
        """A gateway app's model short names, in the order of its settings."""
        names = [key.split(".")[1] for key in self.values if key.startswith("models.")]
        return list(dict.fromkeys(names))


def services(target: Target, url: str) -> list[tuple[str, Service]]:
    """(what is checked, how) for each request the check sends to ``url``."""
    key_env, keyed, proxy_auth = endpoint_auth(target.values)
    if target.gateway:
        return [
            (f"model {name}", Service(url, "chat", name, key_env, keyed, None, proxy_auth))
            for name in target.models
        ]
    kind = request_kind(target.values) or "chat"
    model = None if kind == "embed" else target.values.get("model.served_name")
    return [("", Service(url, kind, model, key_env, keyed, None, proxy_auth))]


def preflight(target: Target) -> None:
    """Raise NotVerifiable when this machine cannot send the check (before anything deploys:
    a missing local key must not roll back a good version)."""
    try:
        for _, service in services(target, "http://127.0.0.1"):
            api_key(service)
            proxy_token(service)
    except ProbeError as exc:
        raise NotVerifiable(f"cannot verify: {exc}") from None


def check(
    target: Target,
    verification: Verification,
    *,
    url_of: Callable[[Target], str] | None = None,
    now: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> str:
    """Send the check and return what answered ("" when every request was answered); raises
    ProbeError saying what failed. The whole check, cold start included, is bounded by the
    verification's timeout."""
    now = now or CLOCK.now
    sleep = sleep or CLOCK.sleep
    deadline = now() + verification.timeout
    url = (url_of or deployed_url)(target)
    answered: list[str] = []
    for what, service in services(target, url):
        prefix = f"{what}: " if what else ""
        try:
            reply = _answer(
                service, verification.prompt, deadline, verification.timeout, now, sleep
            )
        except ProbeError as exc:
            raise ProbeError(f"{prefix}{exc}") from None
        answered.append(f"{prefix}{reply}")
    return "; ".join(answered)


def deployed_url(target: Target) -> str:
    """The URL Modal reports for the app now (a router's for a gateway app)."""
    from .lookups import web_urls

    urls = web_urls(target.app, target.environment)
    if target.gateway and "router" in urls:
        return urls["router"]
    if not urls:
        address = Address(target.environment, target.app)
        raise ProbeError(f"{address}: no web endpoint to verify")
    return served_url(urls)


def _answer(
    service: Service,
    prompt: str | None,
    deadline: float,
    timeout: int,
    now: Callable[[], float],
    sleep: Callable[[float], None],
) -> str:
    key, token = api_key(service), proxy_token(service)
    body = payload(service, prompt)
    where = url_shown(service.url + PATHS[service.kind])
    late = f"{where}: no answer within {shown_duration(timeout)}"
    while True:
        remaining = deadline - now()
        if remaining <= 0:
            raise ProbeError(late)
        client = Http(service.url, key, remaining, token)
        started = time.perf_counter()
        try:
            reply = send(client, service, body)
        except (Unreachable, Refused) as exc:
            starting = isinstance(exc, Unreachable) or getattr(exc, "status", 0) in STARTING
            if not starting or now() + RETRY_PAUSE >= deadline:
                raise
            sleep(RETRY_PAUSE)
            continue
        except ProbeError:
            if now() >= deadline:  # the read timed out: say the whole wait, not what was left
                raise ProbeError(late) from None
            raise
        return f"answered in {(time.perf_counter() - started) * 1000:.0f} ms, {reply.summary}"
