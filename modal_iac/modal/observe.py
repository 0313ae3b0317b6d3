"""Observing apps on Modal: what ``plan`` compares the specs against, read in a few round trips.

For each app: whether it is deployed, stopped or missing, its id, deployment history, tags,
hand-made autoscaler overrides, running containers and web URLs; and whether the secrets and
volumes it references exist (a secret holding the key its reader needs). Every read is an
``api_pb2`` request on a client of our own (``sdk.run``), gathered concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import modal
from google.protobuf.empty_pb2 import Empty  # type: ignore[import-untyped]
from modal.client import _Client
from modal_proto import api_pb2

from ..plan.observed import Commit, Deployment, Observed, Override
from ..spec.fields import HF_TOKEN_KEY, IGNORED_HF_TOKEN_KEY
from .lookups import deployed_id, layout_urls, list_apps
from .sdk import Reader, run

# A key a secret must hold -> the spelling people store it under instead, which its reader
# ignores (huggingface_hub reads HF_TOKEN, never HUGGINGFACE_TOKEN).
MISSPELT_KEYS = {HF_TOKEN_KEY: IGNORED_HF_TOKEN_KEY}


# At most this many requests in flight on one connection. grpclib's send_request retries a
# request that finds every HTTP/2 stream taken each time any stream closes, and h2 counts the
# open streams on every try (grpclib/protocol.py send_request, h2/connection.py _open_streams):
# a thousand requests gathered at once cost CPU quadratic in their number on the loop's one
# thread. Servers commonly allow 100 streams a connection; this stays below.
MAX_IN_FLIGHT = 64
# Many apps are read over several connections, one more for each this many apps, up to
# MAX_CONNECTIONS: at a real network's latency a plan's reads are bound by round trips, about
# five an app, and one connection answers at most MAX_IN_FLIGHT of them a round trip.
APPS_A_CONNECTION = 50
MAX_CONNECTIONS = 4


class Bounded:
    """A client for gathered reads over one or more connections: each RPC goes to the
    connection with the fewest in flight, and waits while every one has ``MAX_IN_FLIGHT``."""

    def __init__(self, *clients: Reader) -> None:
        self._stub = _BoundedStub([client._stub for client in clients])


class _BoundedStub:
    def __init__(self, stubs: list[Any]) -> None:
        self._stubs = stubs
        self._in_flight = [0] * len(stubs)
        # Fewer in flight in all than the connections' slots leaves one below MAX_IN_FLIGHT.
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT * len(stubs))

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            async with self._slots:
                least = min(range(len(self._stubs)), key=self._in_flight.__getitem__)
                self._in_flight[least] += 1
                try:
                    return await getattr(self._stubs[least], name)(*args, **kwargs)
                finally:
                    self._in_flight[least] -= 1

        return call


@contextlib.asynccontextmanager
async def spread(client: _Client, apps: int) -> AsyncIterator[Bounded]:
    """``client``, and for many apps more connections like it (same server and credentials,
    closed on the way out), as one ``Bounded`` client."""
    more = [
        _Client(
            client.server_url,
            client.client_type,
            client._credentials,  # type: ignore[attr-defined]
            oauth_credentials=client._oauth_credentials,  # type: ignore[attr-defined]
        )
        for _ in range(min(MAX_CONNECTIONS, 1 + apps // APPS_A_CONNECTION) - 1)
    ]
    try:
        for extra in more:
            await extra._open()  # type: ignore[no-untyped-call]
        yield Bounded(client, *more)
    finally:
        for extra in more:
            await extra.close()


@dataclass(frozen=True)
class Query:
    """What to observe for one app: its name, and the secrets and volumes it references."""

    app: str
    environment: str | None
    secrets: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    secret_keys: dict[str, str] = field(default_factory=dict)  # secret -> the key it must hold


@dataclass(frozen=True)
class Observation:
    """What one pass over Modal saw: each app by (environment, name), and the workspace it
    was read from (its name and the server's URL), which a saved plan must be applied to."""

    apps: dict[tuple[str | None, str], Observed]
    workspace: str


def observe(queries: list[Query]) -> Observation:
    """Observe every app concurrently: a few apps cost about three round trips, many cost one
    round trip per ``MAX_IN_FLIGHT`` requests (about 6 an app) on each connection ``spread``
    opens.

    First, at once: one AppList per environment (each deployed app's id, by its name; stopped
    apps; running containers) and one existence check per distinct secret and volume. Then,
    again all at once, the details of each app the listing shows deployed, and a lookup by
    name of each app it does not (``_observe_one``). The workspace's name is read alongside.
    """

    async def make(sdk_client: _Client) -> Observation:
        async with spread(sdk_client, len(queries)) as client:
            environments = sorted({q.environment or "" for q in queries})
            secrets = sorted({(q.environment or "", n) for q in queries for n in q.secrets})
            # A secret that must hold a key (an endpoint's API key) is asked for it as the deploy
            # will ask: with required_keys, so a secret without the key blocks the plan.
            keyed = sorted(
                {(q.environment or "", n, k) for q in queries for n, k in q.secret_keys.items()}
            )
            volumes = sorted({(q.environment or "", n) for q in queries for n in q.volumes})
            listings, secret_ok, key_ok, volume_ok, workspace = await asyncio.gather(
                list_apps(client, environments),
                asyncio.gather(*(_secret_exists(client, name, env) for env, name in secrets)),
                asyncio.gather(
                    *(_secret_exists(client, name, env, (key,)) for env, name, key in keyed)
                ),
                asyncio.gather(*(_volume_exists(client, name, env) for env, name in volumes)),
                client._stub.WorkspaceNameLookup(Empty()),
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
                        client,
                        q,
                        listed.get((q.environment or "", q.app)),
                        stopped,
                        missing,
                        running,
                    )
                    for q in queries
                )
            )
            where = f"{workspace.workspace_name} at {sdk_client.server_url}"
            return Observation({(o.environment, o.app): o for o in found}, where)

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
        client = Bounded(sdk_client)
        envs = sorted(set(environments), key=lambda env: env or "")
        listings = await list_apps(client, [env or "" for env in envs])
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
    client: Reader,
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
        app_id = await deployed_id(client, query.app, env)
        if not app_id:
            return replace(base, state="stopped" if (env, query.app) in stopped else "missing")
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


async def _app_state(client: Reader, app_id: str, *, listed: bool) -> str:
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


async def _layout_reads(client: Reader, app_id: str) -> tuple[tuple[Override, ...], dict[str, str]]:
    """The hand-made autoscaler overrides and the web URLs, from one read of the layout."""
    layout = await client._stub.AppGetLayout(api_pb2.AppGetLayoutRequest(app_id=app_id))
    return await _overrides(client, layout.app_layout), layout_urls(layout.app_layout)


async def _overrides(client: Reader, layout: api_pb2.AppLayout) -> tuple[Override, ...]:
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
    client: Reader,
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
    client: Reader, name: str, env: str, required_keys: tuple[str, ...] = ()
) -> bool:
    """Whether the secret exists (and holds ``required_keys``, checked by Modal itself)."""
    return await _exists(
        client._stub.SecretGetOrCreate(
            api_pb2.SecretGetOrCreateRequest(
                deployment_name=name, environment_name=env, required_keys=list(required_keys)
            )
        )
    )


async def _volume_exists(client: Reader, name: str, env: str) -> bool:
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
