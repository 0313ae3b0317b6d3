"""The spec language, version 1: pydantic models that are the single source of truth.

``schema.json`` is generated from these models (``modaliac schema``), and every check a user
can fail lives here or in ``load.py``. Values are stored resolved (durations in seconds,
GPU names canonical) so the renderer and the planner never parse user text again.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from ..tokens import shown
from . import vllm_args
from .fields import (
    APP_ID,
    ARG_NAME,
    DEFAULT_MAX_BODY_MIB,
    ENGINE_VERSION,
    ENVIRONMENT_NAME,
    GPU_ALIASES,
    GPU_HELP,
    GPU_TYPES,
    HF_ID,
    HF_TOKEN_KEY,
    IMPORT_PLACEHOLDER,
    MAX_MODEL_LEN_HELP,
    MODAL_MAX_TIMEOUT,
    MODAL_MIN_MEMORY_MIB,
    MODAL_SCALEDOWN_RANGE,
    ONLY_PATTERN_KEYS,
    PYTHON_VERSION,
    BodySize,
    Duration,
    EnvVarName,
    ImageReference,
    ImageText,
    MemorySize,
    MountPath,
    ObjectName,
    OneLine,
    Parameters,
    Problem,
    TagText,
    TokenCount,
    gpu_choice_schema,
    shown_duration,
)
from .images import DEFAULT_BASE_IMAGE
from .placement import (
    BROAD_REGIONS,
    MAX_EPHEMERAL_DISK_MIB,
    MAX_RETRIES,
    NARROW_REGIONS,
    RETRY_BACKOFF_RANGE,
    RETRY_DELAY_RANGE,
    RETRY_MAX_DELAY_RANGE,
    region_kind,
)
from .reserved import clash

SPEC_VERSION = 1
# Requests a vLLM container takes at once unless the spec says: vLLM batches them (continuous
# batching), so one request per container would start a GPU container for every request.
DEFAULT_VLLM_CONCURRENCY = 32
MAX_CONCURRENCY = 1000  # Modal's @modal.concurrent(max_inputs=) limit
DEFAULT_VLLM_VERSION = "0.33.0"
# The transformers release vLLM 0.33.0 itself requires (>=5.16.1,<5.21), so both engines
# can share a cache of compiled kernels and a tokenizer behaviour.
DEFAULT_TRANSFORMERS_VERSION = "5.20.2"


class StrictModel(BaseModel):
    """Unknown keys are errors; YAML's own types are taken as they are (no "1" -> 1)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ---------------------------------------------------------------------------------------
# The spec.


class Embedding(StrictModel):
    """What an embedding model returns, and how vLLM pools and normalises it."""

    dimension: int | None = Field(None, gt=0, description="Native embedding width.")
    matryoshka: list[int] | None = Field(
        None,
        description="Matryoshka widths a request may ask for (vLLM hf_overrides).",
    )
    pooling: Literal["last", "mean", "cls"] = Field(
        "last", description="Pooling over token states (vLLM pooler_config.pooling_type)."
    )
    normalize: bool = Field(
        True, description="L2-normalise vectors (vLLM pooler_config.use_activation)."
    )

    @field_validator("matryoshka")
    @classmethod
    def _matryoshka_sane(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if not value or any(d <= 0 for d in value):
            raise ValueError("expected a non-empty list of positive widths")
        if len(set(value)) != len(value):
            raise ValueError("widths must not repeat")
        return sorted(value, reverse=True)

    @model_validator(mode="after")
    def _widths_fit(self) -> Embedding:
        if self.dimension and self.matryoshka and max(self.matryoshka) > self.dimension:
            raise Problem(
                f"width {max(self.matryoshka)} exceeds the dimension ({self.dimension})",
                "matryoshka",
            )
        return self


class LayerShapes(StrictModel):
    """The attention shapes of a model's config.json, for the GPU fit's context check."""

    layers: int = Field(gt=0, le=10_000, description="Transformer layers (num_hidden_layers).")
    kv_heads: int = Field(
        gt=0, le=10_000, description="Key/value heads per layer (num_key_value_heads)."
    )
    head_dim: int = Field(
        gt=0,
        le=100_000,
        description="Width of one attention head (head_dim, or hidden_size / num_attention_heads).",
    )


class Model(StrictModel):
    """The Hugging Face model served, pinned to a revision."""

    id: str = Field(pattern=HF_ID.pattern, description="Hugging Face repository id, e.g. org/name.")
    revision: OneLine = Field(
        "main",
        min_length=1,
        description="Branch, tag or commit. Pin a commit: a moving revision breaks snapshots.",
    )
    task: Literal["embed", "generate"] = Field(
        description="embed: an embedding model (vLLM's pooling runner); generate: a chat or "
        "completion model (OpenAI-compatible chat and completions)."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Weight and activation precision; auto takes the model's own."
    )
    max_model_len: TokenCount | None = Field(None, description=MAX_MODEL_LEN_HELP)
    trust_remote_code: bool = Field(
        False, description="Run the model repository's own Python code (review it first)."
    )
    parameters: Parameters | None = Field(None, description="Parameter count, for GPU fit.")
    architecture: LayerShapes | None = Field(
        None,
        description="Layer shapes from the model's config.json; without them (and no catalogue "
        "entry or cached config) the fit check cannot check the context.",
    )
    multimodal: bool | None = Field(
        None,
        description="Inputs may carry images. false tells vLLM to accept none "
        "(--limit-mm-per-prompt), which shrinks start-up; unset leaves vLLM's default.",
    )
    served_name: OneLine | None = Field(
        None, min_length=1, description="Name clients pass as `model`; defaults to the id."
    )
    embedding: Embedding | None = Field(
        None, description="Embedding output: dimension, matryoshka sizes, pooling (task: embed)."
    )

    @field_validator("id")
    @classmethod
    def _filled_in(cls, value: str) -> str:
        if value.lower().startswith(IMPORT_PLACEHOLDER.split("/")[0].lower() + "/"):
            raise Problem(
                f'"{value[:40]}" is the placeholder `modaliac import --generate-spec` writes '
                "(Modal does not report the model): put the Hugging Face id of the model the "
                "app serves, e.g. Qwen/Qwen3-8B"
            )
        return value

    @field_validator("max_model_len")
    @classmethod
    def _positive_len(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError("must be a positive token count")
        return value

    @model_validator(mode="after")
    def _embedding_only_for_embed(self) -> Model:
        if self.embedding is not None and self.task != "embed":
            raise ValueError("model.embedding applies to task: embed only")
        return self


ExtraArg = str | int | float | bool | list[Any] | dict[str, Any] | None

# Engine settings modaliac manages itself; setting them through engine.args would fork the
# source of truth, so validation points at the proper key instead.
MANAGED_ENGINE_ARGS = {
    "model": "model.id",
    "revision": "model.revision",
    "tokenizer_revision": "model.revision",
    "task": "model.task",
    "runner": "model.task",
    "convert": "model.task",
    "dtype": "model.dtype",
    "max_model_len": "model.max_model_len",
    "trust_remote_code": "model.trust_remote_code",
    "served_model_name": "model.served_name",
    "pooler_config": "model.embedding",
    "override_pooler_config": "model.embedding",
    "hf_overrides": "model.embedding.matryoshka",
    "gpu_memory_utilization": "engine.gpu_memory_utilization",
    "max_num_seqs": "engine.max_num_seqs",
    "enforce_eager": "engine.enforce_eager",
    "tensor_parallel_size": "gpu (the count sets tensor parallelism)",
    "enable_sleep_mode": "snapshot: sleep",
    "api_key": "surfaces.http.api_key_secret",
    "host": "surfaces.http",
    "port": "surfaces.http.port",
    "device": "gpu",
    "hf_token": "secrets (a Modal secret holding HF_TOKEN); a token is never a spec value",
}


class Engine(StrictModel):
    """The inference engine and its tuning."""

    name: Literal["vllm", "transformers"] = Field(
        "vllm",
        description="vllm (OpenAI-compatible server, Python class) or transformers "
        "(a FastAPI /embed server for embedding models vLLM cannot serve).",
    )
    version: str | None = Field(
        None,
        pattern=ENGINE_VERSION.pattern,
        description=f"Pinned engine version; default vllm {DEFAULT_VLLM_VERSION}, "
        f"transformers {DEFAULT_TRANSFORMERS_VERSION}.",
    )
    sleep_level: Literal[1, 2] = Field(
        1,
        description="vLLM sleep level for snapshot: sleep. 1 keeps weights in host RAM; "
        "2 drops them and reloads on wake.",
    )
    batch_size: int = Field(
        32, ge=1, le=4096, description="transformers: the most inputs one /embed request takes."
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Share of GPU memory vLLM may take (weights, then KV cache); 0.9 is vLLM's.",
    )
    max_num_seqs: int | None = Field(
        None, gt=0, description="Most sequences vLLM batches at once; unset: vLLM's default."
    )
    enforce_eager: bool | None = Field(
        None, description="Skip CUDA graphs. Default: true with snapshot gpu, else false."
    )
    args: dict[str, ExtraArg] = Field(
        default_factory=dict,
        description="Further vLLM arguments by their Python name (enable_prefix_caching: "
        "true), checked against vLLM's own table; serve-only ones reach vllm serve only.",
    )

    @field_validator("args")
    @classmethod
    def _args_not_managed(
        cls, value: dict[str, ExtraArg], info: ValidationInfo
    ) -> dict[str, ExtraArg]:
        for key in value:
            if not ARG_NAME.match(key):
                python_name = key.strip().lstrip("-").replace("-", "_").lower()
                raise Problem(
                    f"use the snake_case Python name, as in {shown(python_name)}", key, key=True
                )
            if key in MANAGED_ENGINE_ARGS:
                raise Problem(
                    f"modaliac sets this from {MANAGED_ENGINE_ARGS[key]}; set it there instead",
                    key,
                    key=True,
                )
        if info.data.get("name", "vllm") == "vllm":
            _check_vllm_args(value, info.data.get("version"))
        return dict(sorted(value.items()))


def _check_vllm_args(args: dict[str, ExtraArg], version: str | None) -> None:
    """Names and values against vLLM's own table (vllm_args.py), with no vLLM import."""
    for key, value in args.items():
        if vllm_args.applies_to(version) and vllm_args.lookup(key) is None:
            raise Problem(vllm_args.unknown_name(key, MANAGED_ENGINE_ARGS), key, key=True)
        try:
            vllm_args.check_value(key, value)
        except Problem as problem:
            raise Problem(str(problem), key, *problem.at) from None


def _engine_shorthand(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class Gpu(StrictModel):
    """One GPU choice: a Modal GPU type and how many per container."""

    type: str
    count: int = Field(1, ge=1)

    def __str__(self) -> str:
        return self.type if self.count == 1 else f"{self.type}:{self.count}"

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        return _gpu_type(value)

    @model_validator(mode="after")
    def _count_fits(self) -> Gpu:
        most = GPU_TYPES[self.type]
        if self.count > most:
            raise Problem(
                f"{self.type} takes 1 to {most} GPUs per container, got {self.count}", "count"
            )
        return self


def _gpu_type(name: str) -> str:
    """The canonical spelling of a GPU type (``a10g`` -> ``A10``), or a located refusal."""
    name = name.strip()
    # ASCII only: str.upper maps some other letters onto ASCII ones (U+017F to "S").
    upper = name.upper() if name.isascii() else name
    canonical = GPU_ALIASES.get(upper, upper)
    if canonical not in GPU_TYPES:
        close = _guess_gpu_type(canonical)
        hint = f"did you mean {close!r}? " if close else ""
        raise ValueError(
            f"unknown GPU type {shown(name)}; {hint}Modal offers {', '.join(GPU_TYPES)}"
        )
    return canonical


def _guess_gpu_type(upper: str) -> str | None:
    """The GPU type a misspelt name most likely meant: its family (``H100-NVL`` -> ``H100``,
    not the closer-spelt ``A100-80GB``), else the nearest name or alias."""
    family = upper.split("-")[0].rstrip("!+")
    if family in GPU_TYPES:
        return family
    spellings = {**{name: name for name in GPU_TYPES}, **GPU_ALIASES}
    close = difflib.get_close_matches(upper, list(spellings), n=1)
    return spellings[close[0]] if close else None


def _parse_gpu(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    name, _, count = value.partition(":")
    canonical = _gpu_type(name)
    digits = count.strip()
    if count and not re.fullmatch("[0-9]+", digits):
        raise ValueError(f"GPU count {shown(count)} is not a whole number, as in {canonical}:2")
    significant = digits.lstrip("0")
    if len(significant) > 3:  # read unconverted: Python refuses ints of 4300 digits
        raise ValueError(
            f"{canonical} takes 1 to {GPU_TYPES[canonical]} GPUs per container, got a "
            f"{len(significant)}-digit number"
        )
    number = int(significant or "0") if count else 1
    if not 1 <= number <= GPU_TYPES[canonical]:
        raise ValueError(
            f"{canonical} takes 1 to {GPU_TYPES[canonical]} GPUs per container, got {number}"
        )
    return {"type": canonical, "count": number}


_GPU_SCHEMA = gpu_choice_schema()
GpuChoice = Annotated[
    Gpu,
    BeforeValidator(_parse_gpu),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(_GPU_SCHEMA),
]


class AlsoAccepts:
    """JSON schema of a field whose BeforeValidator expands a shorthand: either spelling.

    Without it schema.json would refuse ``gpu: L4`` or ``class: true``, which specs write.
    """

    def __init__(self, shorthand: dict[str, Any]) -> None:
        self.shorthand = shorthand

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"anyOf": [self.shorthand, handler(core_schema)]}


class Scaling(StrictModel):
    """Autoscaling and time limits, in the user's units. They apply to EACH GPU pool of the
    app on its own: a service with both the Python class and the HTTP server runs two pools
    (two Modal classes, each with its own containers), so ``min_containers: 1`` keeps two
    GPUs warm; a gateway app runs one pool per model. Plans price every pool."""

    min_containers: int = Field(
        0,
        ge=0,
        le=1000,
        description="Containers kept running in each GPU pool (the class and the HTTP server "
        "each keep this many), billed while idle.",
    )
    max_containers: int | None = Field(
        None, ge=1, le=1000, description="Most containers of each GPU pool; no limit unset."
    )
    buffer_containers: int = Field(
        0, ge=0, le=1000, description="Extra idle containers per GPU pool while it is busy."
    )
    scaledown_window: Duration = Field(60, description="Idle time before a container stops.")
    timeout: Duration = Field(300, description="Longest a single request may run.")
    startup_timeout: Duration = Field(
        1200, description="Longest model loading (and snapshot capture) may take."
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        le=MAX_CONCURRENCY,
        description="Requests one HTTP server container (a gateway's model container) takes at "
        f"once; default for vLLM what it batches: engine max_num_seqs, else "
        f"{DEFAULT_VLLM_CONCURRENCY}; transformers 1.",
    )
    target_concurrency: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Inputs per container the autoscaler aims for (Modal's "
        "@modal.concurrent target_inputs): it adds containers above this, below the hard "
        "limit concurrency. Unset: concurrency.",
    )

    @field_validator("scaledown_window")
    @classmethod
    def _scaledown_in_range(cls, value: int) -> int:
        low, high = MODAL_SCALEDOWN_RANGE
        if not low <= value <= high:
            raise ValueError(
                f"Modal accepts a scaledown window from {low}s to 1h, got {shown_duration(value)}"
            )
        return value

    @field_validator("timeout", "startup_timeout")
    @classmethod
    def _timeout_in_range(cls, value: int) -> int:
        if not 1 <= value <= MODAL_MAX_TIMEOUT:
            raise ValueError(f"Modal accepts timeouts from 1s to 24h, got {shown_duration(value)}")
        return value

    @model_validator(mode="after")
    def _bounds_ordered(self) -> Scaling:
        if self.max_containers is not None and self.max_containers < self.min_containers:
            raise Problem(
                f"{self.max_containers} is below min_containers ({self.min_containers})",
                "max_containers",
            )
        return self

    @model_validator(mode="after")
    def _target_within_limit(self) -> Scaling:
        if (
            self.target_concurrency is not None
            and self.concurrency is not None
            and self.target_concurrency > self.concurrency
        ):
            raise Problem(
                f"{self.target_concurrency} is above concurrency ({self.concurrency}), the "
                "most inputs a container takes; lower it or raise concurrency",
                "target_concurrency",
            )
        return self


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


class HttpSurface(StrictModel):
    """The HTTP endpoint. vLLM: the OpenAI-compatible ``vllm serve`` on 127.0.0.1 behind an
    authenticating proxy (``@modal.asgi_app``) that forwards only /v1 and /health.
    transformers: a FastAPI app with /embed, /health and /. Every request but /health needs
    the API key from ``api_key_secret``, unless the spec says ``open: true``."""

    api_key_secret: ObjectName | None = Field(
        None,
        description="Modal secret holding the API key clients send as a Bearer token; "
        "required unless open is true.",
    )
    api_key_env: EnvVarName = Field(
        "VLLM_API_KEY", description="Key inside that secret that holds the API key."
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


class Image(StrictModel):
    """The container image: a registry base, Python, vLLM and any extra packages."""

    base: ImageReference = Field(
        DEFAULT_BASE_IMAGE,
        description="Registry image: [registry[:port]/]name[:tag][@digest]. The default "
        "carries the CUDA 13.0 toolkit the pinned engines' torch is built for.",
    )
    python: str = Field(
        "3.12", pattern=PYTHON_VERSION.pattern, description='Python version, e.g. "3.12".'
    )
    packages: list[Annotated[ImageText, Field(min_length=1)]] = Field(
        default_factory=list, description="Extra pip requirements."
    )
    env: dict[EnvVarName, ImageText] = Field(
        default_factory=dict,
        description="Extra environment variables (never secret values).",
        json_schema_extra=ONLY_PATTERN_KEYS,
    )


class Resources(StrictModel):
    """Host resources each container reserves (Modal's requests, billed whether used or not).

    Unset, Modal reserves its minimum (0.125 cores, 128 MiB) and a container may use more
    only while its worker has it free."""

    memory: MemorySize | None = Field(
        None, description='Host memory to reserve, e.g. "64GiB" (Modal\'s memory=, in MiB).'
    )
    cpu: float | None = Field(None, ge=0.125, description="CPU cores to reserve (Modal's cpu=).")
    ephemeral_disk: MemorySize | None = Field(
        None,
        description='Scratch disk each container gets, e.g. "100GiB" (Modal\'s ephemeral_disk=, '
        "in MiB, at most 3TiB); billed as at least 1/20 of it in memory.",
    )

    @field_validator("ephemeral_disk")
    @classmethod
    def _disk_in_range(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= MAX_EPHEMERAL_DISK_MIB:
            size = f"{value // 1024**2}TiB" if value and value % 1024**2 == 0 else f"{value} MiB"
            raise ValueError(f"Modal's ephemeral disk is from 1MiB to 3TiB, got {size}")
        return value

    @field_validator("memory")
    @classmethod
    def _at_least_modal_minimum(cls, value: int | None) -> int | None:
        if value is not None and value < MODAL_MIN_MEMORY_MIB:
            raise ValueError(
                f"Modal's smallest memory request is {MODAL_MIN_MEMORY_MIB} MiB, got {value}"
            )
        return value


def _check_region(value: Any) -> Any:
    if not isinstance(value, str) or region_kind(value):
        return value
    known = (*BROAD_REGIONS, *NARROW_REGIONS)
    close = difflib.get_close_matches(value.lower(), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    broad = ", ".join(BROAD_REGIONS)
    raise ValueError(
        f"{shown(value)} is not a Modal region; {hint}use a broad region ({broad}) or a "
        "narrow one (us-east, eu-west, ap-south, ...)"
    )


def _regions_shorthand(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if value is not None and not isinstance(value, list):
        raise ValueError('expected a region like "eu", or a list of regions')
    return value


class Placement(StrictModel):
    """Where containers run (Modal's region= and cloud=). A region costs more: Modal
    multiplies every rate of a pinned function (1.5x broad, 1.75x narrow), so pin only
    for data residency or latency."""

    region: Annotated[
        list[Annotated[str, BeforeValidator(_check_region)]] | None,
        BeforeValidator(_regions_shorthand),
        AlsoAccepts({"type": "string"}),
    ] = Field(
        None,
        description="Modal region or regions the containers may run in: us, eu, ap, uk, "
        "ca, me, sa, af, mx, or narrower ones like us-east, eu-west, ap-south, jp.",
    )
    cloud: Literal["aws", "gcp", "oci", "auto"] | None = Field(
        None, description="Cloud provider: aws, gcp, oci or auto (Modal chooses)."
    )
    routing_region: Literal["us-east", "us-west", "eu-west", "ap-south"] | None = Field(
        None,
        description="Region Modal routes inputs and outputs through (us-east unset). Fixed at "
        "the first deploy: changing it needs a new app.",
    )

    @field_validator("region")
    @classmethod
    def _regions_sane(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("name at least one region, or leave region out")
        for index, code in enumerate(value):
            if code in value[:index]:
                raise Problem(f"{shown(code)} is listed twice", index)
        return value


def _retries_shorthand(value: Any) -> Any:
    """``retries: 3`` is Modal's ``retries=3``: a fixed one-second delay between attempts."""
    if isinstance(value, int) and not isinstance(value, bool):
        return {"max_retries": value, "backoff_coefficient": 1.0, "initial_delay": "1s"}
    if value is not None and not isinstance(value, dict):
        raise ValueError("expected a retry count like 3, or a mapping with max_retries")
    return value


class Retries(StrictModel):
    """How Modal retries a failed call of the Python class (modal.Retries)."""

    max_retries: int = Field(
        ge=0, le=MAX_RETRIES, description="Attempts after the first failure (0 to 10)."
    )
    backoff_coefficient: float = Field(
        2.0,
        ge=RETRY_BACKOFF_RANGE[0],
        le=RETRY_BACKOFF_RANGE[1],
        description="Delay multiplier per attempt: 1 is a fixed delay, up to 10.",
    )
    initial_delay: Duration = Field(1, description="Wait before the first retry (0s to 60s).")
    max_delay: Duration = Field(60, description="Longest wait between retries (1s to 60s).")

    @field_validator("backoff_coefficient", mode="before")
    @classmethod
    def _whole_coefficient(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("initial_delay")
    @classmethod
    def _initial_in_range(cls, value: int) -> int:
        low, high = RETRY_DELAY_RANGE
        if not low <= value <= high:
            raise ValueError(f"Modal waits from 0s to 60s before a retry, got {value}s")
        return value

    @field_validator("max_delay")
    @classmethod
    def _max_in_range(cls, value: int) -> int:
        low, high = RETRY_MAX_DELAY_RANGE
        if not low <= value <= high:
            raise ValueError(f"Modal caps the delay between retries at 1s to 60s, got {value}s")
        return value

    @model_validator(mode="after")
    def _delays_ordered(self) -> Retries:
        if self.initial_delay > self.max_delay:
            raise Problem(
                f"{self.initial_delay}s is above max_delay ({self.max_delay}s)", "initial_delay"
            )
        return self


class Usage(StrictModel):
    """Expected traffic, for cost estimates in plan and explain only: nothing is deployed."""

    active_hours_per_day: float = Field(
        ge=0,
        le=24,
        description="Hours a day one container of each pool is busy (--active-hours-per-day "
        "overrides it).",
    )


class Deploy(StrictModel):
    """How ``apply`` deploys the app (not part of what is deployed: changing it changes
    nothing on Modal by itself)."""

    strategy: Literal["rolling", "recreate"] = Field(
        "rolling",
        description="rolling: new containers take traffic while old ones drain (Modal's "
        "default). recreate: the running containers are stopped as the new version is "
        "published, a short outage; the way out when the app sits at max_containers. "
        "apply --strategy overrides it for one run.",
    )


VERIFY_MAX_TIMEOUT = 3600  # the longest apply waits for a new version's first answer


class VerifyRequest(StrictModel):
    """What verification sends: one request of the kind the app serves (``modaliac test``'s)."""

    prompt: OneLine | None = Field(
        None, description="Text to send instead of the built-in one (modaliac test's)."
    )


class Verify(StrictModel):
    """Health-gated apply: after a deploy, one real request must be answered, else apply rolls
    the app back (not part of what is deployed)."""

    enabled: bool = Field(
        False,
        description="Verify every deploy of this app (apply --verify / --no-verify overrides).",
    )
    timeout: Duration = Field(
        600,
        description='How long the new version may take to answer, cold start included, e.g. "10m".',
    )
    request: VerifyRequest = Field(
        default_factory=VerifyRequest, description="The request verification sends."
    )

    @field_validator("timeout")
    @classmethod
    def _timeout_in_range(cls, value: int) -> int:
        if not 1 <= value <= VERIFY_MAX_TIMEOUT:
            raise ValueError(
                f"verification waits from 1s to {VERIFY_MAX_TIMEOUT // 3600}h, got "
                f"{shown_duration(value)}"
            )
        return value


VERIFY_HELP = (
    "Health-gated apply: true, or enabled, timeout and request. After a deploy one real "
    "request must be answered, else apply rolls the app back."
)


def verify_switch(value: Any) -> Any:
    """``verify: true`` / ``false``: on or off with the defaults."""
    if isinstance(value, bool):
        return {"enabled": value}
    if isinstance(value, str | int | float):
        raise ValueError(
            "expected true, false or a mapping (enabled, timeout, request), got "
            + shown(str(value))
        )
    return value


class Policy(StrictModel):
    """Policy checks (docs/policies.md): which rules this spec silences, and why."""

    suppress: dict[str, str] = Field(
        default_factory=dict,
        description="Rule id -> the reason it does not apply here (required, shown in review).",
        json_schema_extra={"propertyNames": {"pattern": r"^MDL[0-9]{3}$"}},
    )


HF_TOKEN_SECRET_HELP = (
    f"Modal secret holding the Hugging Face token as {HF_TOKEN_KEY} (gated or private "
    "models); attached to the model containers, and a secret without that key fails the "
    "deploy. Not also under secrets."
)


def hf_secret_problems(
    hf_token_secret: str | None, secrets: list[str], api_key_secret: str | None, api_key_at: str
) -> list[tuple[tuple[str, ...], str]]:
    """The Hugging Face token's secret is attached once, and never to the public endpoint."""
    if hf_token_secret is None:
        return []
    if hf_token_secret in secrets:
        return [
            (
                ("hf_token_secret",),
                f"{shown(hf_token_secret)} is also under secrets; hf_token_secret attaches it "
                "already, so remove it from secrets",
            )
        ]
    if hf_token_secret == api_key_secret:
        return [
            (
                ("hf_token_secret",),
                f"{shown(hf_token_secret)} is also {api_key_at}, which the public endpoint "
                "reads; keep the Hugging Face token in a secret of its own",
            )
        ]
    return []


# Keys an environment override may not set: they define which document this is.
NOT_OVERRIDABLE = ("version", "kind", "environments", "policy")

HF_CACHE = "/root/.cache/huggingface"
VLLM_CACHE = "/root/.cache/vllm"


class Spec(StrictModel):
    """One service: one Modal app serving one model."""

    version: Literal[1] = Field(1, description="Spec language version; 1.")
    kind: Literal["service"] = Field(
        "service", exclude=True, description="service (the default) or gateway."
    )
    app: ObjectName = Field(description="Modal app name.")
    environment: str | None = Field(
        None, pattern=ENVIRONMENT_NAME.pattern, description="Modal environment."
    )
    labels: dict[TagText, TagText] = Field(
        default_factory=dict,
        description="Become Modal app tags.",
        json_schema_extra=ONLY_PATTERN_KEYS,
    )
    model: Model = Field(description="The Hugging Face model served.")
    engine: Annotated[
        Engine,
        BeforeValidator(_engine_shorthand),
        AlsoAccepts({"type": "string", "enum": ["vllm"]}),
    ] = Field(default_factory=Engine, description="The serving engine and its settings.")
    gpu: Annotated[
        list[GpuChoice],
        BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
        AlsoAccepts(_GPU_SCHEMA),
    ] = Field(description=GPU_HELP)
    snapshot: Literal["none", "memory", "gpu", "sleep"] = Field(
        "none", description="Cold-start strategy: none, memory (CPU), gpu, sleep (vLLM)."
    )
    resources: Resources = Field(
        default_factory=Resources, description="CPU, memory and disk per container."
    )
    placement: Placement = Field(
        default_factory=Placement, description="Region, cloud and routing region."
    )
    retries: Annotated[
        Retries | None,
        BeforeValidator(_retries_shorthand),
        AlsoAccepts({"type": "integer", "minimum": 0, "maximum": MAX_RETRIES}),
    ] = Field(
        None,
        description="Retries of a failed call of the Python class: a count (Modal's "
        "retries=N, one second apart) or max_retries, backoff_coefficient, initial_delay, "
        "max_delay. HTTP requests are never retried.",
    )
    volumes: dict[MountPath, ObjectName] = Field(
        default_factory=lambda: {HF_CACHE: "huggingface-cache", VLLM_CACHE: "vllm-cache"},
        description="Mount path -> Modal volume name.",
        json_schema_extra=ONLY_PATTERN_KEYS,
    )
    secrets: list[ObjectName] = Field(
        default_factory=list, description="Modal secret NAMES (values stay in Modal)."
    )
    hf_token_secret: ObjectName | None = Field(None, description=HF_TOKEN_SECRET_HELP)
    scaling: Scaling = Field(
        default_factory=Scaling, description="Autoscaling and time limits, per GPU pool."
    )
    surfaces: Surfaces = Field(
        default_factory=lambda: Surfaces(class_=ClassSurface()),
        description="The entry points, only those listed; unset: the Python class only.",
    )
    image: Image = Field(
        default_factory=Image, description="The container image: base, Python, packages, env."
    )
    usage: Usage | None = Field(
        None, exclude=True, description="Expected traffic, for cost estimates only."
    )
    deploy: Deploy = Field(
        default_factory=Deploy, exclude=True, description="How a deploy replaces containers."
    )
    verify: Annotated[Verify, BeforeValidator(verify_switch), AlsoAccepts({"type": "boolean"})] = (
        Field(default_factory=Verify, exclude=True, description=VERIFY_HELP)
    )
    policy: Policy = Field(
        default_factory=Policy, exclude=True, description="Policy rules suppressed, with why."
    )
    environments: dict[Annotated[str, Field(pattern=ENVIRONMENT_NAME.pattern)], dict[str, Any]] = (
        Field(
            default_factory=dict,
            exclude=True,
            description="Per-environment overrides, deep-merged onto this spec with --env NAME "
            "(NAME is also the Modal environment unless the override sets environment).",
            json_schema_extra=ONLY_PATTERN_KEYS,
        )
    )

    @field_validator("environments")
    @classmethod
    def _overrides_sane(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, override in value.items():
            for key in NOT_OVERRIDABLE:
                if key in override:
                    raise Problem(f"{key} cannot be set per environment", name, key, key=True)
        return value

    @field_validator("app")
    @classmethod
    def _not_an_app_id(cls, value: str) -> str:
        if APP_ID.match(value):
            raise ValueError("this is the shape of a Modal app id; choose a name")
        return value

    @field_validator("gpu")
    @classmethod
    def _one_count(cls, value: list[Gpu]) -> list[Gpu]:
        if not value:
            raise ValueError("name at least one GPU type")
        if len({g.count for g in value}) > 1:
            raise ValueError("every GPU in a fallback list needs the same count")
        for index, gpu in enumerate(value):
            if str(gpu) in map(str, value[:index]):
                raise Problem(f"{str(gpu)!r} appears twice in the fallback list", index)
        return value

    @field_validator("secrets")
    @classmethod
    def _unique_secrets(cls, value: list[str]) -> list[str]:
        for index, name in enumerate(value):
            if name in value[:index]:
                raise Problem(f"{shown(name)} is listed twice", index)
        return value

    def problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Settings that are each valid but do not work together, as (key path, message)."""
        found: list[tuple[tuple[str, ...], str]] = []
        count = self.gpu[0].count
        if self.snapshot in ("gpu", "sleep") and count > 1:
            found.append(
                (
                    ("snapshot",),
                    f"snapshot {self.snapshot} with {count} GPUs per container (tensor parallel) "
                    "is not supported by GPU memory snapshots; use one GPU or snapshot: none "
                    "[MDL002]",
                )
            )
        if self.surfaces.downloader is not None and HF_CACHE not in self.volumes:
            found.append(
                (
                    ("volumes",),
                    f"the downloader fills the Hugging Face cache; mount a volume at {HF_CACHE}",
                )
            )
        surfaces = self.surfaces
        if surfaces.class_ is None and surfaces.http is None and surfaces.downloader is None:
            found.append(
                (
                    ("surfaces",),
                    "lists no entry point, so the app would serve nothing; list class, http or "
                    "downloader (a spec without surfaces gets the class)",
                )
            )
        elif self.snapshot != "none" and surfaces.class_ is None and surfaces.http is None:
            found.append(
                (
                    ("snapshot",),
                    f"snapshot {self.snapshot} applies to the Python class and the HTTP server, "
                    "and this spec has neither; turn one on or use snapshot: none",
                )
            )
        found.extend(self._engine_problems())
        found.extend(self._runtime_problems())
        if self.verify.enabled and self.surfaces.http is None:
            found.append(
                (
                    ("verify", "enabled"),
                    "verification sends a request to the HTTP endpoint, and this spec has none; "
                    "list surfaces.http or turn verify off",
                )
            )
        http = self.surfaces.http
        if http is None and self.scaling.concurrency not in (None, 1):
            found.append(
                (
                    ("scaling", "concurrency"),
                    "applies to the HTTP server, which this spec does not have; the Python "
                    "class takes one call at a time (pass lists to batch)",
                )
            )
        if http is not None:
            found += endpoint_key_problems(
                ("surfaces", "http"), http.api_key_secret, http.open, http.proxy_auth
            )
            found += _server_problems(self)
        found += hf_secret_problems(
            self.hf_token_secret,
            self.secrets,
            http.api_key_secret if http else None,
            "surfaces.http.api_key_secret",
        )
        if http is not None and http.api_key_secret in self.secrets:
            found.append(
                (
                    ("surfaces", "http", "api_key_secret"),
                    f"{shown(http.api_key_secret)} is also under secrets; the API key secret is "
                    "attached to the HTTP server only, so remove it from secrets",
                )
            )
        return found

    def _runtime_problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Runtime settings that need a surface this spec lacks."""
        found: list[tuple[tuple[str, ...], str]] = []
        if self.retries is not None and self.surfaces.class_ is None:
            found.append(
                (
                    ("retries",),
                    "applies to calls of the Python class, which this spec does not have "
                    "(surfaces.class: false); Modal never retries HTTP requests",
                )
            )
        target = self.scaling.target_concurrency
        if self.surfaces.http is None and target is not None:
            found.append(
                (
                    ("scaling", "target_concurrency"),
                    "applies to the HTTP server, which this spec does not have",
                )
            )
        elif target is not None and self.scaling.concurrency is None and target > self.concurrency:
            found.append(
                (
                    ("scaling", "target_concurrency"),
                    f"{target} is above the HTTP server's concurrency ({self.concurrency} by "
                    "default: what the engine batches), the most requests a container takes; "
                    "lower it or set scaling.concurrency",
                )
            )
        return found

    def _engine_problems(self) -> list[tuple[tuple[str, ...], str]]:
        found: list[tuple[tuple[str, ...], str]] = []
        engine = self.engine
        if engine.name == "vllm" and self.snapshot == "memory":
            found.append(
                (
                    ("snapshot",),
                    "snapshot memory loads weights into host memory before the snapshot, but "
                    "vLLM initialises CUDA while it loads; use gpu or sleep with vLLM, or "
                    "engine: transformers",
                )
            )
        if engine.name == "transformers":
            if self.snapshot == "sleep":
                found.append((("snapshot",), "sleep mode is a vLLM feature; use gpu or memory"))
            if self.model.task != "embed":
                found.append(
                    (("model", "task"), "engine transformers serves embedding models only")
                )
            vllm_only = {"gpu_memory_utilization", "max_num_seqs", "enforce_eager", "args"}
            for key in sorted(vllm_only & engine.model_fields_set):
                found.append((("engine", key), "applies to engine vllm only"))
            if self.gpu[0].count > 1:
                found.append((("gpu",), "engine transformers runs on one GPU per container"))
        elif "batch_size" in engine.model_fields_set:
            found.append((("engine", "batch_size"), "applies to engine transformers only"))
        if engine.name == "vllm":
            surfaces = self.surfaces
            found.extend(
                vllm_args.surface_problems(
                    engine.args, surfaces.class_ is not None, surfaces.http is not None
                )
            )
        return found

    def referenced_secrets(self) -> list[str]:
        """Every secret the app attaches: the spec's, the Hugging Face token's and the HTTP
        server's API key."""
        http = self.surfaces.http
        key = [http.api_key_secret] if http and http.api_key_secret else []
        return [*self.secrets, *_listed(self.hf_token_secret), *key]

    def secret_keys(self) -> dict[str, str]:
        """The key each secret must hold, where modaliac knows it: the Hugging Face token's
        and the API key's."""
        http = self.surfaces.http
        keys = {name: HF_TOKEN_KEY for name in _listed(self.hf_token_secret)}
        if http is not None and http.api_key_secret is not None:
            keys[http.api_key_secret] = http.api_key_env
        return keys

    def app_names(self) -> list[str]:
        return [self.app]

    @property
    def concurrency(self) -> int:
        """Requests one HTTP server container takes at once (the class takes one call)."""
        if self.surfaces.http is None:
            return 1
        if self.scaling.concurrency is not None:
            return self.scaling.concurrency
        if self.engine.name == "vllm":
            return batch_concurrency(self.engine.max_num_seqs)
        return 1

    @property
    def engine_version(self) -> str:
        if self.engine.version:
            return self.engine.version
        return DEFAULT_VLLM_VERSION if self.engine.name == "vllm" else DEFAULT_TRANSFORMERS_VERSION

    @property
    def tensor_parallel_size(self) -> int:
        return self.gpu[0].count

    @property
    def embedding(self) -> Embedding:
        """Embedding settings with their defaults filled in (for task: embed)."""
        return self.model.embedding or Embedding()

    @property
    def enforce_eager(self) -> bool:
        if self.engine.enforce_eager is not None:
            return self.engine.enforce_eager
        return self.snapshot == "gpu"


# The port Modal routes to on an @app.server surface; the guard listens there, vLLM on
# surfaces.http.port on the loopback.
SERVER_PUBLIC_PORT = 8080


def _server_problems(spec: Spec) -> list[tuple[tuple[str, ...], str]]:
    """What ``primitive: server`` (Modal's @app.server) cannot do."""
    http = spec.surfaces.http
    if http is None or http.primitive != "server":
        return []
    found: list[tuple[tuple[str, ...], str]] = []
    if spec.engine.name != "vllm":
        found.append(
            (
                ("surfaces", "http", "primitive"),
                "primitive server is rendered for engine vllm only; use primitive: cls",
            )
        )
    if http.port == SERVER_PUBLIC_PORT:
        found.append(
            (
                ("surfaces", "http", "port"),
                f"with primitive server the public guard listens on {SERVER_PUBLIC_PORT}; "
                "choose another port for vLLM",
            )
        )
    if spec.surfaces.class_ is None and "timeout" in spec.scaling.model_fields_set:
        found.append(
            (
                ("scaling", "timeout"),
                "Modal's @app.server (primitive server) has no request timeout, and this spec "
                "has no Python class it would apply to; remove it",
            )
        )
    return found


def _listed(name: str | None) -> list[str]:
    return [] if name is None else [name]


def batch_concurrency(max_num_seqs: int | None) -> int:
    """How many requests a vLLM container takes at once by default: what it batches."""
    if max_num_seqs is None:
        return DEFAULT_VLLM_CONCURRENCY
    return min(max_num_seqs, MAX_CONCURRENCY)


# Keys whose pydantic location differs from the YAML key (aliases).
YAML_KEY = {"class_": "class"}
