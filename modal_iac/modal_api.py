"""Everything modaliac asks of Modal, through the real ``modal`` SDK. The only module (with the
test server in ``local_api``) that imports ``modal``.

The SDK retries a closed port for about a minute and sets no deadline on a hanging server, so
every operation here runs under modaliac's own deadline and fails with one ModalApiError line.

Two kinds of calls, kept apart because the SDK's objects belong to the event loop that made
them. Reads (history, lifecycle, tags, scheduling overrides, secret and volume existence) go
through a client of our own on our own loop, with ``api_pb2`` messages, as the SDK's own
``modal app`` commands do; none of them has a public method. Deploys use the public
``App.deploy.aio``, which runs on the SDK's loop with the SDK's client, gathered concurrently.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import modal
import modal.config
from grpclib import GRPCError
from modal.client import _Client
from modal_proto import api_pb2

from .address import Address
from .errors import ModaliacError
from .observed import Deployment, Observed, Override

T = TypeVar("T")
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
DEPLOY_TIMEOUT = 900.0
NO_CREDENTIALS = (
    "no Modal credentials: run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"
)


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


@dataclass(frozen=True)
class DeployJob:
    address: str
    app: str
    environment: str | None
    source: str
    module_name: str
    deployment_tag: str
    tags: dict[str, str]


@dataclass(frozen=True)
class DeployResult:
    address: str
    ok: bool
    version: int | None = None
    error: str = ""
    seconds: float = 0.0


# -- running SDK calls under a deadline ---------------------------------------------------


def require_credentials() -> None:
    if not (modal.config.config.get("token_id") and modal.config.config.get("token_secret")):
        raise ModalApiError(NO_CREDENTIALS)


def run(make: Callable[[_Client], Awaitable[T]], *, timeout: float | None = None) -> T:
    """Connect (with a short deadline), then run ``make(client)`` under ``timeout`` (default:
    ``READ_TIMEOUT``, read at call time so the module's deadlines can be changed)."""
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
            await _deadline(client._open(), CONNECT_TIMEOUT, "connecting to Modal")  # type: ignore[no-untyped-call]
            await _deadline(client.hello(), CONNECT_TIMEOUT, "connecting to Modal")  # type: ignore[no-untyped-call]
            return await _deadline(make(client), limit, "waiting for Modal")
        finally:
            await client.close()

    return asyncio.run(main())


async def _deadline(awaitable: Awaitable[T], seconds: float, doing: str) -> T:
    server = modal.config.config.get("server_url")
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise ModalApiError(f"{doing} timed out after {seconds:g}s ({server})") from None
    except modal.exception.Error as exc:
        raise ModalApiError(f"Modal: {_first_line(str(exc))}") from None
    except GRPCError as exc:
        reason = exc.message or exc.status.name
        raise ModalApiError(f"Modal refused the request: {reason}") from None
    except OSError as exc:
        raise ModalApiError(f"cannot reach Modal at {server}: {exc}") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


# -- observing ----------------------------------------------------------------------------


def observe(queries: list[Query]) -> dict[tuple[str | None, str], Observed]:
    """Observe every app concurrently over one client: N apps cost about two round trips.

    First, at once: one AppList per environment (to tell stopped from missing), one existence
    check per distinct secret and volume, one lookup per app. Then the details of the apps
    that exist, again all at once.
    """

    async def make(client: _Client) -> dict[tuple[str | None, str], Observed]:
        environments = sorted({q.environment or "" for q in queries})
        secrets = sorted({(q.environment or "", n) for q in queries for n in q.secrets})
        volumes = sorted({(q.environment or "", n) for q in queries for n in q.volumes})
        listings, secret_ok, volume_ok, lookups = await asyncio.gather(
            asyncio.gather(
                *(
                    client._stub.AppList(api_pb2.AppListRequest(environment_name=env))
                    for env in environments
                )
            ),
            asyncio.gather(*(_secret_exists(client, name, env) for env, name in secrets)),
            asyncio.gather(*(_volume_exists(client, name, env) for env, name in volumes)),
            asyncio.gather(
                *(
                    client._stub.AppGetByDeploymentName(
                        api_pb2.AppGetByDeploymentNameRequest(
                            name=q.app, environment_name=q.environment or ""
                        )
                    )
                    for q in queries
                )
            ),
        )
        stopped = {
            (env, item.name or item.description)
            for env, listing in zip(environments, listings, strict=True)
            for item in listing.apps
            if item.state == api_pb2.APP_STATE_STOPPED
        }
        missing = {
            ("secret", *key) for key, ok in zip(secrets, secret_ok, strict=True) if not ok
        } | {("volume", *key) for key, ok in zip(volumes, volume_ok, strict=True) if not ok}
        found = await asyncio.gather(
            *(
                _observe_one(client, q, lookup.app_id, stopped, missing)
                for q, lookup in zip(queries, lookups, strict=True)
            )
        )
        return {(o.environment, o.app): o for o in found}

    return run(make)


async def _observe_one(
    client: _Client,
    query: Query,
    app_id: str,
    stopped: set[tuple[str, str]],
    missing: set[tuple[str, str, str]],
) -> Observed:
    env = query.environment or ""
    base = Observed(
        app=query.app,
        environment=query.environment,
        missing_secrets=tuple(n for n in query.secrets if ("secret", env, n) in missing),
        missing_volumes=tuple(n for n in query.volumes if ("volume", env, n) in missing),
        secret_keys=dict(query.secret_keys),
    )
    if not app_id:
        return replace(base, state="stopped" if (env, query.app) in stopped else "missing")
    lifecycle, history, tags, overrides = await asyncio.gather(
        client._stub.AppGetLifecycle(api_pb2.AppGetLifecycleRequest(app_id=app_id)),
        client._stub.AppDeploymentHistory(api_pb2.AppDeploymentHistoryRequest(app_id=app_id)),
        client._stub.AppGetTags(api_pb2.AppGetTagsRequest(app_id=app_id)),
        _overrides(client, app_id),
    )
    return replace(
        base,
        app_id=app_id,
        state=_state_name(lifecycle.lifecycle.app_state),
        history=tuple(
            sorted(
                (_deployment(entry) for entry in history.app_deployment_histories),
                key=lambda d: d.version,
                reverse=True,
            )
        ),
        tags=dict(tags.tags),
        overrides=overrides,
    )


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
    )


async def _overrides(client: _Client, app_id: str) -> tuple[Override, ...]:
    layout = await client._stub.AppGetLayout(api_pb2.AppGetLayoutRequest(app_id=app_id))
    names = {fid: tag for tag, fid in layout.app_layout.function_ids.items()}
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


async def _secret_exists(client: _Client, name: str, env: str) -> bool:
    return await _exists(
        client._stub.SecretGetOrCreate(
            api_pb2.SecretGetOrCreateRequest(deployment_name=name, environment_name=env)
        )
    )


async def _volume_exists(client: _Client, name: str, env: str) -> bool:
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


def deploy_all(
    jobs: list[DeployJob],
    build_dir: Path,
    *,
    parallel: int = 4,
    on_event: Callable[[str, str], None] = lambda address, event: None,
    on_result: Callable[[DeployResult], None] = lambda result: None,
) -> list[DeployResult]:
    """Deploy apps in-process, at most ``parallel`` at once; one failure never stops the rest.

    Each generated file is written under ``build_dir`` and imported under its own module name,
    registered in sys.modules so Modal uploads the source file instead of pickling.
    """
    modules = {job.address: _import(job, build_dir) for job in jobs}

    async def make(client: _Client) -> list[DeployResult]:
        # ``client`` proves Modal answers before anything is deployed; the deploys themselves
        # run on the SDK's loop with its own client.
        gate = asyncio.Semaphore(max(1, parallel))

        async def one(job: DeployJob) -> DeployResult:
            async with gate:
                on_event(job.address, "deploying")
                started = time.monotonic()
                try:
                    app = modules[job.address].app
                    await _deadline(
                        app.deploy.aio(
                            name=job.app,
                            environment_name=job.environment or "",
                            tag=job.deployment_tag,
                        ),
                        DEPLOY_TIMEOUT,
                        "deploying",
                    )
                    version = await _deadline(
                        _publish_tags(client, app.app_id, job.tags), READ_TIMEOUT, "tagging"
                    )
                except ModaliacError as exc:
                    result = DeployResult(job.address, False, error=str(exc))
                else:
                    result = DeployResult(
                        job.address, True, version, seconds=time.monotonic() - started
                    )
                on_result(result)
                on_event(job.address, f"deployed v{result.version}" if result.ok else "failed")
                return result

        return list(await asyncio.gather(*(one(job) for job in jobs)))

    # Each app has its own deadlines (deploy, then tagging); this outer one is only a backstop
    # and must outlast every round of ``parallel`` apps, or one slow batch cancels the rest.
    rounds = -(-len(jobs) // max(1, parallel))
    return run(make, timeout=rounds * (DEPLOY_TIMEOUT + READ_TIMEOUT) + READ_TIMEOUT)


def _import(job: DeployJob, build_dir: Path) -> Any:
    build_dir.mkdir(parents=True, exist_ok=True)
    path = build_dir / f"{job.module_name}.py"  # the module name is unique to the address
    path.write_text(job.source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(job.module_name, path)
    if spec is None or spec.loader is None:
        raise ModalApiError(f"{path}: cannot import the generated app")
    module = importlib.util.module_from_spec(spec)
    sys.modules[job.module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[job.module_name]
        raise ModalApiError(f"{path}: the generated app does not import: {exc}") from None
    return module


async def _publish_tags(client: _Client, app_id: str, tags: dict[str, str]) -> int:
    """Replace the app's tags (labels plus modaliac's own); returns the deployed version."""
    await client._stub.AppSetTags(api_pb2.AppSetTagsRequest(app_id=app_id, tags=tags))
    lifecycle = await client._stub.AppGetLifecycle(api_pb2.AppGetLifecycleRequest(app_id=app_id))
    return int(lifecycle.lifecycle.version)


def stop(app: str, environment: str | None) -> bool:
    """Stop a deployed app; False when there was nothing to stop."""

    async def make(client: _Client) -> bool:
        found = await client._stub.AppGetByDeploymentName(
            api_pb2.AppGetByDeploymentNameRequest(name=app, environment_name=environment or "")
        )
        if not found.app_id:
            return False
        await client._stub.AppStop(api_pb2.AppStopRequest(app_id=found.app_id))
        return True

    return run(make)


def set_tags(app: str, environment: str | None, tags: dict[str, str]) -> None:
    """Replace a deployed app's tags."""

    async def make(client: _Client) -> None:
        found = await client._stub.AppGetByDeploymentName(
            api_pb2.AppGetByDeploymentNameRequest(name=app, environment_name=environment or "")
        )
        if not found.app_id:
            raise ModalApiError(f"app {str(Address(environment, app))!r} is not deployed")
        await _publish_tags(client, found.app_id, tags)

    run(make)


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
    """The public URL of each web function of a deployed app, by function name (class methods
    as ``Class.method``), read from the app's layout as ``modal.Cls.from_name`` hydrates it."""

    async def make(client: _Client) -> dict[str, str]:
        found = await client._stub.AppGetByDeploymentName(
            api_pb2.AppGetByDeploymentNameRequest(name=app, environment_name=environment or "")
        )
        if not found.app_id:
            raise ModalApiError(f"app {str(Address(environment, app))!r} is not deployed")
        layout = await client._stub.AppGetLayout(api_pb2.AppGetLayoutRequest(app_id=found.app_id))
        urls: dict[str, str] = {}
        for item in layout.app_layout.objects:
            function = item.function_handle_metadata
            if function.web_url:
                urls[function.function_name] = function.web_url
            for method, meta in function.method_handle_metadata.items():
                if meta.web_url:
                    urls[meta.function_name or method] = meta.web_url
        return dict(sorted(urls.items()))

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
