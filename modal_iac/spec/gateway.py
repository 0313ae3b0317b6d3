"""The gateway spec kind: several models on several GPU types, one public endpoint per app.

A gateway spec (``kind: gateway``) expands into apps: with ``layout: gateway`` one app per GPU
type, each holding a router (the one web endpoint) and one class per model, so models never
share GPU memory; with ``layout: per-model`` one app per model and GPU type (seed 004's legacy
layout), each with its own router in front of its one model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from ..tokens import shown, token_kind
from .address import unaddressable
from .app import (
    AppSpec,
)
from .engine import DEFAULT_VLLM_VERSION, HubModel, VllmBatching
from .fields import (
    ENGINE_VERSION,
    MODAL_MAX_TIMEOUT,
    Duration,
    EnvVarName,
    ObjectName,
    OneLine,
    Problem,
    shown_duration,
)
from .gpu import Gpu, GpuChoices
from .reserved import clash
from .scaling import batch_concurrency
from .surfaces import Endpoint, endpoint_key_problems

# Modal's free tier allows this many web endpoints per workspace.
FREE_TIER_WEB_ENDPOINTS = 8
SERVE_PORT = 8000
# What the router's Modal timeout adds to its wait for a model, to answer after the wait.
ROUTER_GRACE = 30
_SHORT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
# Seed 004's short names; every other GPU type is its name in lower case.
_GPU_SHORT = {"A100-80GB": "a100", "A100-40GB": "a100-40gb"}


class GatewayModel(HubModel, VllmBatching):
    """One model every app of the gateway serves, in its own container pool."""

    key_order = (
        "id",
        "name",
        "revision",
        "tool_call_parser",
        "max_model_len",
        "architecture",
        "gpu_memory_utilization",
        "max_num_seqs",
        "enforce_eager",
        "trust_remote_code",
    )
    key_help: ClassVar[dict[str, str]] = {
        "revision": "Branch, tag or commit.",
        "architecture": "Layer shapes from the model's config.json, for the GPU fit.",
        "gpu_memory_utilization": "Share of GPU memory this model's vLLM may take.",
    }

    name: str = Field(
        pattern=_SHORT_NAME.pattern,
        description="Short name clients may send as `model` (and the LiteLLM name prefix).",
    )
    tool_call_parser: str | None = Field(
        None, pattern=r"^[a-z0-9_]+$", description="vLLM tool-call parser; enables auto tools."
    )
    enforce_eager: bool = Field(True, description="Skip CUDA graphs: faster cold starts.")

    @field_validator("name")
    @classmethod
    def _names_a_free_class(cls, value: str) -> str:
        class_name = model_class_name(value)
        reason = clash(class_name, "gateway")
        if reason is not None:
            raise ValueError(
                f"{shown(value)} would name its model class {class_name}, {reason}; "
                "choose another short name"
            )
        return value

    @property
    def class_name(self) -> str:
        """The Modal class serving this model: the short name in CamelCase."""
        return model_class_name(self.name)


def _same_request_name(model: GatewayModel, earlier: GatewayModel) -> str | None:
    """Why the router could not tell two models apart: it matches the ``model`` a request
    names against ids and short names case-insensitively, as Hugging Face matches ids."""
    names = {"id": model.id, "name": model.name}
    taken = {"id": earlier.id, "name": earlier.name}
    for key, mine in names.items():
        for other_key, theirs in taken.items():
            if mine.casefold() == theirs.casefold():
                return (
                    f"{key} {shown(mine)} and the {other_key} {shown(theirs)} of "
                    f"{shown(earlier.name)} differ only in case; the router matches model ids "
                    "case-insensitively, so rename one"
                )
    return None


def model_class_name(short_name: str) -> str:
    """``qwen3-8b`` -> ``Qwen38b``; a name that starts with a digit gets a ``Model`` prefix."""
    parts = re.split(r"[^A-Za-z0-9]+", short_name)
    name = "".join(part[:1].upper() + part[1:] for part in parts if part)
    return name if name[:1].isalpha() else "Model" + name


class Router(Endpoint):
    """The public endpoint of each app. Every request but /health needs the API key from
    ``api_key_secret``, unless the spec says ``open: true``."""

    key_order = ("api_key_secret", "api_key_env", "open", "max_body", "upstream_timeout")
    key_help: ClassVar[dict[str, str]] = {
        "api_key_secret": "Modal secret holding the Bearer key clients must send; required "
        "unless open is true.",
        "open": "Serve without an API key: anyone who has a router's URL may call it. Only "
        "instead of api_key_secret (policy MDL007 warns).",
    }

    api_key_env: EnvVarName = Field("API_KEY", description="Key name inside that secret.")
    upstream_timeout: Duration | None = Field(
        None,
        description="Longest the router waits for a model's answer or its next chunk (504 "
        "after); default scaling.timeout, the longest Modal lets a model call run.",
    )


@dataclass(frozen=True)
class GatewayApp:
    """One Modal app a gateway spec yields."""

    name: str
    gpu: Gpu
    models: tuple[GatewayModel, ...]


def gpu_short(gpu: Gpu) -> str:
    short = _GPU_SHORT.get(gpu.type, gpu.type.lower())
    return short if gpu.count == 1 else f"{short}x{gpu.count}"


class GatewaySpec(AppSpec):
    """Several models behind one endpoint per GPU type (``kind: gateway``)."""

    key_order = (
        "version",
        "kind",
        "name",
        "layout",
        "app_name",
        "environment",
        "labels",
        "models",
        "gpus",
        "engine_version",
        "volumes",
        "secrets",
        "hf_token_secret",
        "router",
        "scaling",
        "placement",
        "image",
        "usage",
        "deploy",
        "verify",
        "policy",
    )
    key_help: ClassVar[dict[str, str]] = {
        "secrets": "Modal secret NAMES for the model containers.",
        "placement": "Where the model containers and the router run (Modal's region= and "
        "cloud=); a region multiplies the price.",
    }

    kind: Literal["gateway"] = Field(description="gateway: several models behind one endpoint.")
    name: ObjectName = Field(description="Gateway name: the {name} of the app names.")
    layout: Literal["gateway", "per-model"] = Field(
        "gateway",
        description="gateway: one app (one endpoint) per GPU type; per-model: one app per "
        "model and GPU type.",
    )
    app_name: OneLine | None = Field(
        None,
        description='App name pattern; default "{name}-{gpu}", or "{name}-{model}-{gpu}" '
        "with layout per-model.",
    )
    models: list[GatewayModel] = Field(
        description="The models every app serves.", json_schema_extra={"minItems": 1}
    )
    gpus: GpuChoices = Field(
        description="GPU types; one app each (per model with layout per-model)."
    )
    engine_version: str = Field(
        DEFAULT_VLLM_VERSION, pattern=ENGINE_VERSION.pattern, description="vLLM release."
    )
    router: Router = Field(default_factory=Router, description="The routing front end.")

    @field_validator("models")
    @classmethod
    def _unique_models(cls, value: list[GatewayModel]) -> list[GatewayModel]:
        if not value:
            raise ValueError("list at least one model")
        for index, model in enumerate(value):
            for earlier in value[:index]:
                if model.name == earlier.name or model.id == earlier.id:
                    raise Problem(f"{shown(model.name)} ({shown(model.id)}) is listed twice", index)
                twin = _same_request_name(model, earlier)
                if twin is not None:
                    raise Problem(twin, index)
                if model.class_name == earlier.class_name:
                    raise Problem(
                        f"{shown(model.name)} and {shown(earlier.name)} name the same class", index
                    )
        return value

    @field_validator("gpus")
    @classmethod
    def _unique_gpus(cls, value: list[Gpu]) -> list[Gpu]:
        if not value:
            raise ValueError("name at least one GPU type")
        for index, gpu in enumerate(value):
            if gpu_short(gpu) in [gpu_short(g) for g in value[:index]]:
                raise Problem(f"{str(gpu)!r} is listed twice", index)
        return value

    @field_validator("app_name")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        unknown = set(_PLACEHOLDER.findall(value)) - {"name", "model", "gpu"}
        if unknown:
            placeholder = sorted(unknown)[0]
            hide = token_kind(placeholder, within_words=True)
            written = shown(placeholder) if hide else "{" + placeholder + "}"
            raise ValueError(f"unknown placeholder {written}; use {{name}}, {{model}}, {{gpu}}")
        return value

    def problems(self) -> list[tuple[tuple[str, ...], str]]:
        found: list[tuple[tuple[str, ...], str]] = []
        pattern = self.pattern
        needed = ["{gpu}"] + (["{model}"] if self.layout == "per-model" else [])
        for placeholder in needed:
            if placeholder not in pattern:
                found.append(
                    (
                        ("app_name",),
                        f"needs {placeholder}: every app of the gateway needs its own name",
                    )
                )
        if not found:
            for app in self.apps():
                if not re.fullmatch(r"[a-zA-Z0-9._-]{1,64}", app.name):
                    message = f"{shown(app.name)} is not a valid Modal app name"
                    found.append((("app_name",), message))
                    break
                problem = unaddressable(app.name)
                if problem is not None:
                    found.append((("app_name",), f"{problem}; change the pattern"))
                    break
        router = self.router
        if "router" not in self.model_fields_set:
            found.append(
                (
                    ("router",),
                    'missing key "router": name the Modal secret that holds the API key in '
                    "router.api_key_secret, or set router.open: true to serve without one",
                )
            )
        else:
            found.extend(endpoint_key_problems(("router",), router.api_key_secret, router.open))
        found += self._secret_problems(("router",), "router")
        target = self.scaling.target_concurrency
        if target is not None and self.scaling.concurrency is None:
            for model in self.models:
                if target > self.pool_concurrency(model):
                    found.append(
                        (
                            ("scaling", "target_concurrency"),
                            f"{target} is above model {model.name}'s concurrency "
                            f"({self.pool_concurrency(model)} by default: what vLLM batches); "
                            "lower it or set scaling.concurrency",
                        )
                    )
                    break
        return found

    def pool_concurrency(self, model: GatewayModel) -> int:
        """Requests one container of a model's pool takes at once: the spec's, else what
        vLLM batches for that model."""
        if self.scaling.concurrency is not None:
            return self.scaling.concurrency
        return batch_concurrency(model.max_num_seqs)

    @property
    def upstream_timeout(self) -> int:
        """How long the router waits for a model: the spec's, else what Modal allows a call."""
        if self.router.upstream_timeout is not None:
            return self.router.upstream_timeout
        return self.scaling.timeout

    @property
    def router_timeout(self) -> int:
        """The router function's own Modal timeout: past its wait for a model, so the 504 it
        answers reaches the client instead of a connection Modal cut."""
        return min(self.upstream_timeout + ROUTER_GRACE, MODAL_MAX_TIMEOUT)

    @property
    def pattern(self) -> str:
        if self.app_name is not None:
            return self.app_name
        return "{name}-{model}-{gpu}" if self.layout == "per-model" else "{name}-{gpu}"

    def apps(self) -> list[GatewayApp]:
        """The apps this spec yields, in spec order (GPU, then model)."""
        found = []
        for gpu in self.gpus:
            groups = (
                [(m,) for m in self.models] if self.layout == "per-model" else [tuple(self.models)]
            )
            for group in groups:
                values = {"name": self.name, "gpu": gpu_short(gpu), "model": group[0].name}
                name = self.pattern
                for key, value in values.items():
                    name = name.replace("{" + key + "}", value)
                found.append(GatewayApp(name, gpu, group))
        return found

    def app(self, name: str) -> GatewayApp:
        return next(app for app in self.apps() if app.name == name)

    def app_names(self) -> list[str]:
        return [app.name for app in self.apps()]

    def _api_key(self) -> tuple[str, str] | None:
        if self.router.api_key_secret is None:
            return None
        return self.router.api_key_secret, self.router.api_key_env


def serve_argv(model: GatewayModel, port: int = SERVE_PORT) -> list[str]:
    """``vllm serve`` arguments (after the two words) for one model of a gateway, vLLM 0.33
    names, each argument's words from vLLM's table as for a service (engine.serve_argv): a
    value is never read as a flag of its own. The API key reaches vLLM through the
    environment, never the command line."""
    from . import vllm_args

    options: dict[str, Any] = {
        "revision": model.revision,
        "served_model_name": [model.id],
        "host": "127.0.0.1",
        "port": port,
        "gpu_memory_utilization": model.gpu_memory_utilization,
        "max_model_len": model.max_model_len,
        "max_num_seqs": model.max_num_seqs,
        "enforce_eager": model.enforce_eager or None,
        "trust_remote_code": model.trust_remote_code or None,
    }
    if model.tool_call_parser:
        options["enable_auto_tool_choice"] = True
        options["tool_call_parser"] = model.tool_call_parser
    argv = [model.id]
    for name, value in options.items():
        argv += vllm_args.argv_words(name, value)
    return argv


def app_settings(spec: GatewaySpec, app: str) -> dict[str, Any]:
    """Flat ``key.path -> value`` of one app of the gateway: what plans compare."""
    from .settings import flatten

    chosen = spec.app(app)
    data = spec.model_dump(mode="json", by_alias=True, exclude={"models", "gpus", "app_name"})
    data["app"] = chosen.name
    data["gpu"] = str(chosen.gpu)
    data["router"]["upstream_timeout"] = shown_duration(spec.upstream_timeout)
    data["scaling"].pop("concurrency")  # each model's pool has its own
    for model in chosen.models:
        values = model.model_dump(mode="json", exclude={"name"})
        values["concurrency"] = spec.pool_concurrency(model)
        data.setdefault("models", {})[model.name] = values
    return dict(flatten(data))


def endpoints_other_layout(spec: GatewaySpec) -> tuple[str, int]:
    other: Literal["gateway", "per-model"] = (
        "gateway" if spec.layout == "per-model" else "per-model"
    )
    return other, len(spec.model_copy(update={"layout": other, "app_name": None}).apps())
