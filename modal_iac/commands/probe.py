"""Operator commands that look at a running service: ``url``, ``test`` and ``bench``.

A target is a URL, a spec file, or an app name (described by the state when modaliac applied
it). Specs and the state say what kind of request the service answers, which model name to
send, where the API key lives and how long the scaledown window is; a bare URL needs
``--kind``. The requests themselves (payloads, keys, the HTTP client) are modal/endpoints.py's,
which verify.py sends after a deploy too.
"""

from __future__ import annotations

import argparse
import os
import urllib.parse
from typing import TYPE_CHECKING, Any

from ..modal.endpoints import (
    DEFAULT_KEY_ENV,
    KINDS,
    PROXY_TOKEN_ID_ENV,
    PROXY_TOKEN_SECRET_ENV,
    SCALEDOWN_MARGIN,
    Http,
    ProbeError,
    Service,
    api_key,
    endpoint_auth,
    payload,
    proxy_token,
    request_kind,
    send,
    served_url,
)
from ..tokens import printable, url_shown
from .options import app_env_option, env_var_name, state_option

if TYPE_CHECKING:
    from .console import Console

# -- the parser ---------------------------------------------------------------------------


def register(commands: Any) -> None:
    """Add this module's subcommands to the CLI's parser (lazy: nothing heavy imported)."""
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
    _request_options(test)
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
    _request_options(bench)
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


def _request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="APP|SPEC|URL")
    parser.add_argument("--kind", choices=KINDS, help="request kind (default: from the spec)")
    parser.add_argument("--model", help="model name to send (default: the spec's served name)")
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        type=env_var_name,
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
        from ..spec.service import Spec
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
    kind = args.kind or request_kind(values)
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


def _check_destination(url: str, args: argparse.Namespace, notices: list[str]) -> str:
    """The host of a URL the user gave. Plain http to another machine is refused unless the
    user says so (``--allow-http``): the prompt, and a key the user named, would cross the
    network unencrypted."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProbeError(f"{url_shown(url)}: not an http(s) URL")
    if parts.scheme == "http" and not _is_local(parts.hostname):
        if not args.allow_http:
            raise ProbeError(
                f"{url_shown(url)}: plain http to {printable(parts.hostname)} sends the request "
                "unencrypted; use https, or pass --allow-http"
            )
        notices.append(f"sending over plain http to {printable(parts.hostname)} (--allow-http)")
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


def _seconds(value: Any) -> int:
    from ..spec.fields import _parse_duration

    return _parse_duration(value)


# -- one request --------------------------------------------------------------------------


def cmd_test(args: argparse.Namespace, console: Console) -> int:
    service = resolve(args)
    for notice in service.notices:
        console.error(f"note: {notice}")
    client = Http(service.url, api_key(service), args.timeout, proxy_token(service))
    reply = send(client, service, payload(service, args.prompt))
    model = f" ({service.model})" if service.model else ""
    console.print(
        f"{url_shown(service.url)} {service.kind}{model}: ok in "
        f"{reply.seconds * 1000:.0f} ms, {reply.summary}"
    )
    return 0
