"""Looking deployed apps up by name: their ids (for ``observe`` and ``changes``), and the web
URLs of their functions (``test``, ``export``, a gateway's routes, a health-gated apply's check)."""

from __future__ import annotations

import asyncio

from modal.client import _Client
from modal_proto import api_pb2

from ..spec.address import Address
from .sdk import ModalApiError, Reader, run


async def list_apps(client: Reader, environments: list[str]) -> list[api_pb2.AppListResponse]:
    """One AppList per environment, at once: each app's id, name, state and running tasks."""
    found: list[api_pb2.AppListResponse] = await asyncio.gather(
        *(
            client._stub.AppList(api_pb2.AppListRequest(environment_name=env))
            for env in environments
        )
    )
    return found


async def deployed_id(client: Reader, app: str, environment: str | None) -> str:
    """The id of the app deployed under this name, "" when none is."""
    found = await client._stub.AppGetByDeploymentName(
        api_pb2.AppGetByDeploymentNameRequest(name=app, environment_name=environment or "")
    )
    return str(found.app_id)


async def required_id(client: Reader, app: str, environment: str | None) -> str:
    """The id of the app deployed under this name; an error when none is."""
    app_id = await deployed_id(client, app, environment)
    if not app_id:
        raise ModalApiError(f"app {str(Address(environment, app))!r} is not deployed")
    return app_id


def layout_urls(layout: api_pb2.AppLayout) -> dict[str, str]:
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


def web_urls(app: str, environment: str | None) -> dict[str, str]:
    """The public URL of each web function of a deployed app (``layout_urls``)."""

    async def make(client: _Client) -> dict[str, str]:
        app_id = await required_id(client, app, environment)
        layout = await client._stub.AppGetLayout(api_pb2.AppGetLayoutRequest(app_id=app_id))
        return layout_urls(layout.app_layout)

    return run(make)


def router_urls(
    apps: list[tuple[str, str | None]], function: str = "router"
) -> dict[tuple[str, str | None], str | None]:
    """The web URL of one function (a gateway's ``router``) of each app, None where the app is
    not deployed or has no such web function: one client, all apps concurrently."""

    def url(layout: api_pb2.AppLayout) -> str | None:
        for item in layout.objects:
            meta = item.function_handle_metadata
            if meta.function_name == function and meta.web_url:
                return str(meta.web_url)
        return None

    return {key: None if found is None else url(found) for key, found in _layouts(apps).items()}


def app_web_urls(
    apps: list[tuple[str, str | None]],
) -> dict[tuple[str, str | None], dict[str, str] | None]:
    """The web URLs of each app (``layout_urls``), None where the app is not deployed: one
    client, all apps concurrently."""
    return {
        key: None if found is None else layout_urls(found) for key, found in _layouts(apps).items()
    }


def _layouts(
    apps: list[tuple[str, str | None]],
) -> dict[tuple[str, str | None], api_pb2.AppLayout | None]:
    """The layout of each app deployed under its name, None where none is: all at once."""

    async def one(client: _Client, app: str, environment: str | None) -> api_pb2.AppLayout | None:
        app_id = await deployed_id(client, app, environment)
        if not app_id:
            return None
        layout = await client._stub.AppGetLayout(api_pb2.AppGetLayoutRequest(app_id=app_id))
        return layout.app_layout

    async def make(client: _Client) -> dict[tuple[str, str | None], api_pb2.AppLayout | None]:
        found = await asyncio.gather(*(one(client, app, env) for app, env in apps))
        return dict(zip(apps, found, strict=True))

    return run(make)
