"""Everything modaliac asks of Modal, through the real ``modal`` SDK. The only module (with the
test server in ``local_api``) that imports ``modal``.

The SDK retries a closed port for about a minute and sets no deadline on a hanging server, so
every operation here runs under modaliac's own deadline and fails with one ModalApiError line.
A deploy has two: the user's ``--deploy-timeout``, and a no-progress limit on the answers the
SDK's channel receives (grpclib events), which ends an apply against a Modal that stopped;
both, and a halted apply (``halt.py``), end the call by cancelling it.

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
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import modal
import modal.config
from grpclib import GRPCError
from modal.client import _Client
from modal_proto import api_pb2

from ..errors import ModaliacError
from ..plan.observed import Commit, Deployment, Observed, Override
from ..spec.address import Address
from ..spec.fields import HF_TOKEN_KEY, IGNORED_HF_TOKEN_KEY
from .halt import Halt

T = TypeVar("T")
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
CANCEL_WAIT = 2.0  # how long a cancelled call may take to unwind before it is left behind
NO_CREDENTIALS = (
    "no Modal credentials: run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"
)


# A key a secret must hold -> the spelling people store it under instead, which its reader
# ignores (huggingface_hub reads HF_TOKEN, never HUGGINGFACE_TOKEN).
MISSPELT_KEYS = {HF_TOKEN_KEY: IGNORED_HF_TOKEN_KEY}


class ModalApiError(ModaliacError):
    """Modal could not be reached, or refused a request."""


@dataclass(frozen=True)
class Query:
    """What to observe for one app: its name, and the secrets and volumes it references."""

    app: str
    environment: str | None
    secrets: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    secret_keys: dict[str, str] = field(default_factory=dict)  # secret -> the key it must hold


class _Reader(Protocol):
    """What the read helpers use of a client: its stub (a ``_Client``, or ``_Bounded``)."""

    @property
    def _stub(self) -> Any: ...


# At most this many requests in flight on one client. grpclib's send_request retries a request
# that finds every HTTP/2 stream taken each time any stream closes, and h2 counts the open
# streams on every try (grpclib/protocol.py send_request, h2/connection.py _open_streams): a
# thousand requests gathered at once cost CPU quadratic in their number on the loop's one
# thread. Servers commonly allow 100 streams a connection; this stays below.
MAX_IN_FLIGHT = 64


class _Bounded:
    """A client for gathered reads: each RPC waits for one of ``MAX_IN_FLIGHT`` slots."""

    def __init__(self, client: _Reader) -> None:
        self._stub = _BoundedStub(client._stub, asyncio.Semaphore(MAX_IN_FLIGHT))


class _BoundedStub:
    def __init__(self, stub: Any, slots: asyncio.Semaphore) -> None:
        self._inner = stub
        self._slots = slots

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            async with self._slots:
                return await method(*args, **kwargs)

        return call


# -- running SDK calls under a deadline ---------------------------------------------------


def require_credentials() -> None:
    if not (modal.config.config.get("token_id") and modal.config.config.get("token_secret")):
        raise ModalApiError(NO_CREDENTIALS)


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
    server = modal.config.config.get("server_url")
    try:
        return await asyncio.wait_for(_sdk_errors(awaitable, doing), seconds)
    except TimeoutError:
        raise ModalApiError(f"{doing} timed out after {seconds:g}s ({server})") from None


async def _sdk_errors(awaitable: Awaitable[T], doing: str) -> T:
    """``awaitable``, with every way the SDK or the connection fails turned into one line."""
    server = modal.config.config.get("server_url")
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


# -- observing ----------------------------------------------------------------------------


def observe(queries: list[Query]) -> dict[tuple[str | None, str], Observed]:
    """Observe every app concurrently over one client: a few apps cost about three round
    trips, more cost one round trip per ``MAX_IN_FLIGHT`` requests (about 6 an app).

    First, at once: one AppList per environment (each deployed app's id, by its name; stopped
    apps; running containers) and one existence check per distinct secret and volume. Then,
    again all at once, the details of each app the listing shows deployed, and a lookup by
    name of each app it does not (``_observe_one``).
    """

    async def make(sdk_client: _Client) -> dict[tuple[str | None, str], Observed]:
        client = _Bounded(sdk_client)
        environments = sorted({q.environment or "" for q in queries})
        secrets = sorted({(q.environment or "", n) for q in queries for n in q.secrets})
        # A secret that must hold a key (an endpoint's API key) is asked for it as the deploy
        # will ask: with required_keys, so a secret without the key blocks the plan.
        keyed = sorted(
            {(q.environment or "", n, k) for q in queries for n, k in q.secret_keys.items()}
        )
        volumes = sorted({(q.environment or "", n) for q in queries for n in q.volumes})
        listings, secret_ok, key_ok, volume_ok = await asyncio.gather(
            asyncio.gather(
                *(
                    client._stub.AppList(api_pb2.AppListRequest(environment_name=env))
                    for env in environments
                )
            ),
            asyncio.gather(*(_secret_exists(client, name, env) for env, name in secrets)),
            asyncio.gather(
                *(_secret_exists(client, name, env, (key,)) for env, name, key in keyed)
            ),
            asyncio.gather(*(_volume_exists(client, name, env) for env, name in volumes)),
        )
        items = [
            (env, item)
            for env, listing in zip(environments, listings, strict=True)
            for item in listing.apps
        ]
        listed = _deployed_by_name(items)
        stopped = {
            (env, item.name or item.description)
            for env, item in items
            if item.state == api_pb2.APP_STATE_STOPPED
        }
        missing = (
            {("secret", *key) for key, ok in zip(secrets, secret_ok, strict=True) if not ok}
            | {("volume", *key) for key, ok in zip(volumes, volume_ok, strict=True) if not ok}
            | {("key", env, n) for (env, n, _), ok in zip(keyed, key_ok, strict=True) if not ok}
        )
        missing |= await _misspelt_keys(client, keyed, key_ok, missing)
        running = {item.app_id: item.n_running_tasks for _, item in items}
        found = await asyncio.gather(
            *(
                _observe_one(
                    client, q, listed.get((q.environment or "", q.app)), stopped, missing, running
                )
                for q in queries
            )
        )
        return {(o.environment, o.app): o for o in found}

    return run(make)


def _deployed_by_name(
    items: list[tuple[str, api_pb2.AppListResponse.AppListItem]],
) -> dict[tuple[str, str], str]:
    """(environment, name) -> app id of each app a listing shows deployed under that name:
    what AppGetByDeploymentName would answer. Matched by the deployment name alone (never the
    description); a name listed twice is left out, for the lookup to settle."""
    ids: dict[tuple[str, str], list[str]] = {}
    for env, item in items:
        if item.state == api_pb2.APP_STATE_DEPLOYED and item.name:
            ids.setdefault((env, item.name), []).append(item.app_id)
    return {key: found[0] for key, found in ids.items() if len(found) == 1}


def apps_tagged(
    environments: list[str | None], key: str, value: str
) -> list[tuple[str | None, str]]:
    """(environment, app) of every deployed app of these environments whose tag ``key`` is
    ``value``: one AppList per environment, then every deployed app's tags, at once."""

    async def make(sdk_client: _Client) -> list[tuple[str | None, str]]:
        client = _Bounded(sdk_client)
        envs = sorted(set(environments), key=lambda env: env or "")
        listings = await asyncio.gather(
            *(
                client._stub.AppList(api_pb2.AppListRequest(environment_name=env or ""))
                for env in envs
            )
        )
        deployed = [
            (env, item)
            for env, listing in zip(envs, listings, strict=True)
            for item in listing.apps
            if item.state == api_pb2.APP_STATE_DEPLOYED and item.name
        ]
        tags = await asyncio.gather(
            *(
                client._stub.AppGetTags(api_pb2.AppGetTagsRequest(app_id=item.app_id))
                for _, item in deployed
            )
        )
        return sorted(
            (
                (env, item.name)
                for (env, item), found in zip(deployed, tags, strict=True)
                if found.tags.get(key) == value
            ),
            key=lambda pair: (pair[0] or "", pair[1]),
        )

    return run(make)


async def _observe_one(
    client: _Reader,
    query: Query,
    listed: str | None,
    stopped: set[tuple[str, str]],
    missing: set[tuple[str, str, str]],
    running: dict[str, int],
) -> Observed:
    env = query.environment or ""
    base = Observed(
        app=query.app,
        environment=query.environment,
        missing_secrets=tuple(n for n in query.secrets if ("secret", env, n) in missing),
        secrets_without_key=tuple(
            n
            for n in query.secret_keys
            if ("key", env, n) in missing and ("secret", env, n) not in missing
        ),
        missing_volumes=tuple(n for n in query.volumes if ("volume", env, n) in missing),
        secret_keys=dict(query.secret_keys),
        misspelt_keys={
            n: MISSPELT_KEYS[k]
            for n, k in query.secret_keys.items()
            if ("misspelt", env, n) in missing
        },
    )
    app_id = listed
    if app_id is None:  # not listed as deployed: the lookup by name is the authority
        lookup = await client._stub.AppGetByDeploymentName(
            api_pb2.AppGetByDeploymentNameRequest(name=query.app, environment_name=env)
        )
        if not lookup.app_id:
            return replace(base, state="stopped" if (env, query.app) in stopped else "missing")
        app_id = lookup.app_id
    state, history, tags, (overrides, urls) = await asyncio.gather(
        _app_state(client, app_id, listed=listed is not None),
        client._stub.AppDeploymentHistory(api_pb2.AppDeploymentHistoryRequest(app_id=app_id)),
        client._stub.AppGetTags(api_pb2.AppGetTagsRequest(app_id=app_id)),
        _layout_reads(client, app_id),
    )
    return replace(
        base,
        app_id=app_id,
        state=state,
        history=tuple(
            sorted(
                (_deployment(entry) for entry in history.app_deployment_histories),
                key=lambda d: d.version,
                reverse=True,
            )
        ),
        tags=dict(tags.tags),
        overrides=overrides,
        containers=running.get(app_id, 0),
        urls=urls,
    )


async def _app_state(client: _Reader, app_id: str, *, listed: bool) -> str:
    """The app's state: deployed if the listing says so, else as its lifecycle says."""
    if listed:
        return _state_name(api_pb2.APP_STATE_DEPLOYED)
    lifecycle = await client._stub.AppGetLifecycle(api_pb2.AppGetLifecycleRequest(app_id=app_id))
    return _state_name(lifecycle.lifecycle.app_state)


def _state_name(value: int) -> str:
    name = str(api_pb2.AppState.Name(value)).removeprefix("APP_STATE_").lower()
    return "missing" if name == "unspecified" else name


def _deployment(entry: api_pb2.AppDeploymentHistory) -> Deployment:
    kind = str(api_pb2.DeploymentType.Name(entry.deployment_type)) if entry.deployment_type else ""
    return Deployment(
        version=entry.version,
        tag=entry.tag,
        deployed_by=entry.deployed_by,
        deployed_at=entry.deployed_at,
        deployment_type=kind.removeprefix("DEPLOYMENT_TYPE_").lower() or "standard",
        rollback_version=entry.rollback_version,
        client_version=entry.client_version,
        commit=_commit(entry.commit_info) if entry.HasField("commit_info") else None,
    )


def _commit(info: api_pb2.CommitInfo) -> Commit | None:
    if not info.commit_hash:
        return None
    return Commit(
        commit_hash=info.commit_hash,
        branch=info.branch,
        dirty=info.dirty,
        author=info.author_name,
        repo_url=info.repo_url,
    )


async def _layout_reads(
    client: _Reader, app_id: str
) -> tuple[tuple[Override, ...], dict[str, str]]:
    """The hand-made autoscaler overrides and the web URLs, from one read of the layout."""
    layout = await client._stub.AppGetLayout(api_pb2.AppGetLayoutRequest(app_id=app_id))
    return await _overrides(client, layout.app_layout), _layout_urls(layout.app_layout)


def _layout_urls(layout: api_pb2.AppLayout) -> dict[str, str]:
    """The public URL of each web function, by function name (class methods as
    ``Class.method``, an @app.server by its name), as ``modal.Cls.from_name`` hydrates it."""
    urls: dict[str, str] = {}
    for item in layout.objects:
        function = item.function_handle_metadata
        if function.web_url:
            urls[function.function_name] = function.web_url
        for url in function._experimental_flash_urls[:1]:  # an @app.server's one URL
            urls[function.function_name] = url
        for method, meta in function.method_handle_metadata.items():
            if meta.web_url:
                urls[meta.function_name or method] = meta.web_url
    return dict(sorted(urls.items()))


async def _overrides(client: _Reader, layout: api_pb2.AppLayout) -> tuple[Override, ...]:
    names = {fid: tag for tag, fid in layout.function_ids.items()}
    responses = await asyncio.gather(
        *(
            client._stub.FunctionGetSchedulingParams(
                api_pb2.FunctionGetSchedulingParamsRequest(function_id=fid)
            )
            for fid in sorted(names)
        )
    )
    found = []
    for fid, response in zip(sorted(names), responses, strict=True):
        config = response.autoscaler_configuration
        events = dict(config.override_events)
        for descriptor, value in config.override_settings.ListFields():
            event = events.get(descriptor.name)
            found.append(
                Override(
                    function=names[fid],
                    setting=descriptor.name,
                    value=int(value),
                    static_value=int(getattr(config.static_settings, descriptor.name)),
                    by=(event.requested_by or event.user_id) if event else "",
                )
            )
    return tuple(found)


async def _misspelt_keys(
    client: _Reader,
    keyed: list[tuple[str, str, str]],
    key_ok: list[bool],
    missing: set[tuple[str, str, str]],
) -> set[tuple[str, str, str]]:
    """Secrets that lack their key but hold its well-known wrong spelling (seed 002 stored
    the Hugging Face token as HUGGINGFACE_TOKEN), asked of Modal the same way."""
    suspects = [
        (env, name, MISSPELT_KEYS[key])
        for (env, name, key), ok in zip(keyed, key_ok, strict=True)
        if not ok and key in MISSPELT_KEYS and ("secret", env, name) not in missing
    ]
    held = await asyncio.gather(
        *(_secret_exists(client, name, env, (wrong,)) for env, name, wrong in suspects)
    )
    return {
        ("misspelt", env, name) for (env, name, _), ok in zip(suspects, held, strict=True) if ok
    }


async def _secret_exists(
    client: _Reader, name: str, env: str, required_keys: tuple[str, ...] = ()
) -> bool:
    """Whether the secret exists (and holds ``required_keys``, checked by Modal itself)."""
    return await _exists(
        client._stub.SecretGetOrCreate(
            api_pb2.SecretGetOrCreateRequest(
                deployment_name=name, environment_name=env, required_keys=list(required_keys)
            )
        )
    )


async def _volume_exists(client: _Reader, name: str, env: str) -> bool:
    return await _exists(
        client._stub.VolumeGetOrCreate(
            api_pb2.VolumeGetOrCreateRequest(deployment_name=name, environment_name=env)
        )
    )


async def _exists(call: Awaitable[Any]) -> bool:
    try:
        await call
    except modal.exception.NotFoundError:
        return False
    return True


# -- changing -----------------------------------------------------------------------------


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
        self.server = modal.config.config.get("server_url")
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


async def publish_tags(client: _Client, app_id: str, tags: dict[str, str]) -> int:
    """Replace the app's tags (labels plus modaliac's own); returns the deployed version.
    The two calls are independent, so they share one round trip."""
    _, lifecycle = await asyncio.gather(
        client._stub.AppSetTags(api_pb2.AppSetTagsRequest(app_id=app_id, tags=tags)),
        client._stub.AppGetLifecycle(api_pb2.AppGetLifecycleRequest(app_id=app_id)),
    )
    return int(lifecycle.lifecycle.version)


def stop(app: str, environment: str | None, *, halt: Halt | None = None) -> bool:
    """Stop a deployed app; False when there was nothing to stop."""

    async def make(client: _Client) -> bool:
        found = await client._stub.AppGetByDeploymentName(
            api_pb2.AppGetByDeploymentNameRequest(name=app, environment_name=environment or "")
        )
        if not found.app_id:
            return False
        await client._stub.AppStop(api_pb2.AppStopRequest(app_id=found.app_id))
        return True

    return run(make, halt=halt)


def set_tags(
    app: str, environment: str | None, tags: dict[str, str], *, halt: Halt | None = None
) -> None:
    """Replace a deployed app's tags."""

    async def make(client: _Client) -> None:
        found = await client._stub.AppGetByDeploymentName(
            api_pb2.AppGetByDeploymentNameRequest(name=app, environment_name=environment or "")
        )
        if not found.app_id:
            raise ModalApiError(f"app {str(Address(environment, app))!r} is not deployed")
        await publish_tags(client, found.app_id, tags)

    run(make, halt=halt)


def rollback(app: str, environment: str | None, version: int) -> int:
    """Roll an app back to ``version`` (-1: the previous one); returns the new version."""

    async def make(client: _Client) -> int:
        found = await client._stub.AppGetByDeploymentName(
            api_pb2.AppGetByDeploymentNameRequest(name=app, environment_name=environment or "")
        )
        if not found.app_id:
            raise ModalApiError(f"app {str(Address(environment, app))!r} is not deployed")
        await client._stub.AppRollback(
            api_pb2.AppRollbackRequest(app_id=found.app_id, version=version)
        )
        lifecycle = await client._stub.AppGetLifecycle(
            api_pb2.AppGetLifecycleRequest(app_id=found.app_id)
        )
        return int(lifecycle.lifecycle.version)

    return run(make)


def web_urls(app: str, environment: str | None) -> dict[str, str]:
    """The public URL of each web function of a deployed app (``_layout_urls``)."""

    async def make(client: _Client) -> dict[str, str]:
        found = await client._stub.AppGetByDeploymentName(
            api_pb2.AppGetByDeploymentNameRequest(name=app, environment_name=environment or "")
        )
        if not found.app_id:
            raise ModalApiError(f"app {str(Address(environment, app))!r} is not deployed")
        layout = await client._stub.AppGetLayout(api_pb2.AppGetLayoutRequest(app_id=found.app_id))
        return _layout_urls(layout.app_layout)

    return run(make)


def router_urls(
    apps: list[tuple[str, str | None]], function: str = "router"
) -> dict[tuple[str, str | None], str | None]:
    """The web URL of one function (a gateway's ``router``) of each app, None where the app is
    not deployed or has no such web function: one client, all apps concurrently."""

    async def one(client: _Client, app: str, environment: str | None) -> str | None:
        found = await client._stub.AppGetByDeploymentName(
            api_pb2.AppGetByDeploymentNameRequest(name=app, environment_name=environment or "")
        )
        if not found.app_id:
            return None
        layout = await client._stub.AppGetLayout(api_pb2.AppGetLayoutRequest(app_id=found.app_id))
        for item in layout.app_layout.objects:
            meta = item.function_handle_metadata
            if meta.function_name == function and meta.web_url:
                return str(meta.web_url)
        return None

    async def make(client: _Client) -> dict[tuple[str, str | None], str | None]:
        urls = await asyncio.gather(*(one(client, app, env) for app, env in apps))
        return dict(zip(apps, urls, strict=True))

    return run(make)


def app_web_urls(
    apps: list[tuple[str, str | None]],
) -> dict[tuple[str, str | None], dict[str, str] | None]:
    """The web URLs of each app (``_layout_urls``), None where the app is not deployed: one
    client, all apps concurrently."""

    async def one(client: _Client, app: str, environment: str | None) -> dict[str, str] | None:
        found = await client._stub.AppGetByDeploymentName(
            api_pb2.AppGetByDeploymentNameRequest(name=app, environment_name=environment or "")
        )
        if not found.app_id:
            return None
        layout = await client._stub.AppGetLayout(api_pb2.AppGetLayoutRequest(app_id=found.app_id))
        return _layout_urls(layout.app_layout)

    async def make(client: _Client) -> dict[tuple[str, str | None], dict[str, str] | None]:
        urls = await asyncio.gather(*(one(client, app, env) for app, env in apps))
        return dict(zip(apps, urls, strict=True))

    return run(make)


# -- billing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BilledItem:
    """One row of Modal's billing report: what one object cost in one interval."""

    object_id: str
    description: str
    environment: str
    start: datetime
    cost: Decimal
    tags: dict[str, str]


def billing_rates() -> dict[str, Decimal]:
    """The workspace's rates (``Workspace.billing.rates()``): name -> USD per unit per hour
    for compute, as Decimals. Deprecated names are left out, as the SDK's iteration does."""
    from modal._workspace import _Workspace

    async def make(client: _Client) -> dict[str, Decimal]:
        rates = await _Workspace.from_context(client=client).billing.rates()
        return {name: rates[name] for name in rates}

    return run(make)


def billing_report(
    start: datetime, end: datetime, resolution: str, tags: list[str]
) -> list[BilledItem]:
    """``Workspace.billing.report()`` from ``start`` (inclusive) to ``end`` (exclusive), each
    row carrying the ``tags`` named."""
    from modal._workspace import _Workspace

    async def make(client: _Client) -> list[BilledItem]:
        billing = _Workspace.from_context(client=client).billing
        items = await billing.report(start=start, end=end, resolution=resolution, tag_names=tags)
        return [
            BilledItem(
                item.object_id,
                item.description,
                item.environment_name,
                item.interval_start,
                item.cost,
                dict(item.tags),
            )
            for item in items
        ]

    return run(make)
