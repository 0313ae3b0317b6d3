"""The entry points of a service's app: ``surfaces:`` (class, http, downloader)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from ..tokens import shown
from .fields import (
    DEFAULT_MAX_BODY_MIB,
    BodySize,
    Duration,
    EnvVarName,
    ObjectName,
    Problem,
)
from .reserved import clash
from .strict import AlsoAccepts, SharedFields, StrictModel


def _check_identifier(value: Any) -> Any:
    """A class or downloader name must not break or rebind a name of the generated file."""
    reason = clash(value, "service") if isinstance(value, str) else None
    if reason is not None:
        raise ValueError(f"{shown(value)} is {reason}; choose another name")
    return value


class ClassSurface(StrictModel):
    """The Python class callers reach with modal.Cls.from_name(app, name)."""

    name: Annotated[
        str,
        # CamelCase with a lower-case letter, so it can never shadow a generated CONSTANT.
        Field(pattern=r"^[A-Z][A-Za-z0-9_]*[a-z][A-Za-z0-9_]*$", max_length=64),
        BeforeValidator(_check_identifier),
    ] = Field("Model", description="Class name for modal.Cls.from_name (CamelCase).")


# A fully qualified domain name: lower-case labels of letters, digits and inner hyphens, a
# top-level label of letters, 253 characters at most.
DOMAIN_NAME = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _check_domain(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # the str type says what is wrong
    if DOMAIN_NAME.match(value):
        if value == "modal.run" or value.endswith(".modal.run"):
            raise ValueError("modal.run is Modal's own domain; name a domain of yours")
        return value
    if DOMAIN_NAME.match(value.lower()):
        raise ValueError(f"write the domain name in lower case: {shown(value.lower())}")
    if "://" in value or "/" in value:
        raise ValueError(
            f"{shown(value)} is not a domain name; give the host only, like api.example.com"
        )
    raise ValueError(f"{shown(value)} is not a domain name like api.example.com")


class Endpoint(SharedFields):
    """Who may call a public endpoint, and how large a request it reads: a service's HTTP
    surface and a gateway's router share these keys; each names its own API key name."""

    api_key_secret: ObjectName | None = Field(
        None,
        description="Modal secret holding the API key clients send as a Bearer token; "
        "required unless open is true.",
    )
    open: bool = Field(
        False,
        description="Serve without an API key: anyone who has the URL may call the endpoint. "
        "Only instead of api_key_secret (policy MDL007 warns).",
    )
    max_body: BodySize = Field(
        DEFAULT_MAX_BODY_MIB,
        description='Largest request body accepted, e.g. "32MiB" (1MiB to 1GiB); larger ones '
        "get 413 before they are read.",
    )


class HttpSurface(Endpoint):
    """The HTTP endpoint. vLLM: the OpenAI-compatible ``vllm serve`` on 127.0.0.1 behind an
    authenticating proxy (``@modal.asgi_app``) that forwards only /v1 and /health.
    transformers: a FastAPI app with /embed, /health and /. Every request but /health needs
    the API key from ``api_key_secret``, unless the spec says ``open: true``."""

    key_order = (
        "api_key_secret",
        "api_key_env",
        "open",
        "max_body",
        "port",
        "custom_domains",
        "proxy_auth",
        "primitive",
    )

    api_key_env: EnvVarName = Field(
        "VLLM_API_KEY", description="Key inside that secret that holds the API key."
    )
    port: int = Field(
        8000,
        ge=1024,
        le=65535,
        description="vLLM's port on 127.0.0.1 inside the container (the proxy is public).",
    )
    custom_domains: list[Annotated[str, BeforeValidator(_check_domain)]] | None = Field(
        None,
        description="Domain names the endpoint is also served on (Modal's custom_domains of "
        "@modal.asgi_app), e.g. api.example.com; each must be added and verified in the "
        "Modal workspace's settings first.",
        json_schema_extra={"items": {"type": "string", "pattern": DOMAIN_NAME.pattern}},
    )

    @field_validator("custom_domains")
    @classmethod
    def _unique_domains(cls, value: list[str] | None) -> list[str] | None:
        for index, name in enumerate(value or []):
            if name in (value or [])[:index]:
                raise Problem(f"{shown(name)} is listed twice", index)
        return value or None  # an empty list is no custom domain

    proxy_auth: bool = Field(
        False,
        description="Modal's proxy auth: Modal refuses requests without a workspace proxy "
        "token (Modal-Key and Modal-Secret headers) before they reach the container. Alone, "
        "instead of api_key_secret, or with it (both are checked).",
    )
    primitive: Literal["cls", "server"] = Field(
        "cls",
        description="cls: a Modal class with an ASGI web endpoint (Modal queues requests while "
        "containers start). server: Modal's @app.server, port-based low-latency routing with no "
        "request queue (503 when no container is ready).",
    )


def endpoint_key_problems(
    at: tuple[str, ...],
    api_key_secret: str | None,
    is_open: bool,
    proxy_auth: bool | None = None,
) -> list[tuple[tuple[str, ...], str]]:
    """A public endpoint names the secret of its API key, asks for Modal's proxy auth (where
    offered: ``proxy_auth`` not None), or says ``open: true``; open excludes the other two,
    so nothing is served open by accident (a service's HTTP surface, a gateway's router)."""
    if is_open and proxy_auth:
        return [
            (
                (*at, "open"),
                "open: true serves without auth, but proxy_auth: true asks for Modal's proxy "
                "tokens; keep one of the two",
            )
        ]
    if proxy_auth:
        return []
    if api_key_secret is None and not is_open and proxy_auth is not None:
        return [
            (
                at,
                "has no api_key_secret; name the Modal secret that holds the API key, set "
                "proxy_auth: true for Modal's proxy tokens, or set open: true to serve without "
                "either",
            )
        ]
    if api_key_secret is None and not is_open:
        return [
            (
                at,
                "has no api_key_secret; name the Modal secret that holds the API key, or set "
                "open: true to serve without one",
            )
        ]
    if api_key_secret is not None and is_open:
        return [
            (
                (*at, "open"),
                "open: true serves without an API key, but api_key_secret names one; keep one "
                "of the two",
            )
        ]
    return []


class DownloaderSurface(StrictModel):
    """A function that fills the weights volume ahead of the first cold start."""

    name: Annotated[
        str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64), BeforeValidator(_check_identifier)
    ] = Field("download_weights", description="Function name (snake_case).")
    timeout: Duration = Field(3600, description="Longest the download may take.")


def _surface_switch(value: Any) -> Any:
    if value is True:
        return {}
    if value is False:
        return None
    return value


class Surfaces(StrictModel):
    """Which entry points the generated app offers: exactly the ones listed (``true`` takes
    their defaults). A spec without ``surfaces`` offers the Python class only."""

    class_: Annotated[
        ClassSurface | None, BeforeValidator(_surface_switch), AlsoAccepts({"type": "boolean"})
    ] = Field(None, alias="class", description="The Python class (true: named Model).")
    # `http: true` would be an endpoint with neither a key nor open: true, so only false.
    http: Annotated[
        HttpSurface | None, BeforeValidator(_surface_switch), AlsoAccepts({"const": False})
    ] = Field(None, description="An HTTP endpoint: api_key_secret or open: true.")
    downloader: Annotated[
        DownloaderSurface | None, BeforeValidator(_surface_switch), AlsoAccepts({"type": "boolean"})
    ] = Field(None, description="A function that fills the weights volume (true: defaults).")

    model_config = ConfigDict(populate_by_name=True)


# The port Modal routes to on an @app.server surface; the guard listens there, vLLM on
# surfaces.http.port on the loopback.
SERVER_PUBLIC_PORT = 8080
