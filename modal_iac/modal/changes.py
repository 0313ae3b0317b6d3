"""Changing a deployed app other than deploying it: stop it, replace its tags, roll it back."""

from __future__ import annotations

import asyncio

from modal.client import _Client
from modal_proto import api_pb2

from .halt import Halt
from .lookups import deployed_id, required_id
from .sdk import run


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
        app_id = await deployed_id(client, app, environment)
        if not app_id:
            return False
        await client._stub.AppStop(api_pb2.AppStopRequest(app_id=app_id))
        return True

    return run(make, halt=halt)


def set_tags(
    app: str, environment: str | None, tags: dict[str, str], *, halt: Halt | None = None
) -> None:
    """Replace a deployed app's tags."""

    async def make(client: _Client) -> None:
        app_id = await required_id(client, app, environment)
        await publish_tags(client, app_id, tags)

    run(make, halt=halt)


def rollback(app: str, environment: str | None, version: int) -> int:
    """Roll an app back to ``version`` (-1: the previous one); returns the new version."""

    async def make(client: _Client) -> int:
        app_id = await required_id(client, app, environment)
        await client._stub.AppRollback(api_pb2.AppRollbackRequest(app_id=app_id, version=version))
        lifecycle = await client._stub.AppGetLifecycle(
            api_pb2.AppGetLifecycleRequest(app_id=app_id)
        )
        return int(lifecycle.lifecycle.version)

    return run(make)
