"""A service spec (``kind: service``, the default): ``Spec``, one Modal app serving one
model, and the checks across its parts.

The spec language, version 1, is pydantic models that are the single source of truth, one
module a part: ``app`` (what a service and a gateway share), ``engine`` (model and engine),
``gpu``, ``scaling``, ``runtime`` (resources, placement, retries), ``surfaces``, and
``gateway`` for the other kind. ``schema.json`` is generated from them (``modaliac
schema``), and every check a user can fail lives in them or in ``loading/load.py``. Values
are stored resolved (durations in seconds, GPU names canonical) so the renderer and the
planner never parse user text again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
)

from ..tokens import shown
from . import vllm_args
from .app import (
    HF_CACHE,
    AppSpec,
)
from .engine import (
    DEFAULT_TRANSFORMERS_VERSION,
    DEFAULT_VLLM_VERSION,
    Embedding,
    Engine,
    Model,
    _engine_shorthand,
)
from .fields import (
    APP_ID,
    ENVIRONMENT_NAME,
    GPU_HELP,
    ONLY_PATTERN_KEYS,
    AppName,
    Problem,
)
from .gpu import Gpu, GpuChoices
from .placement import (
    MAX_RETRIES,
)
from .runtime import Resources, Retries, _retries_shorthand
from .scaling import batch_concurrency
from .strict import AlsoAccepts
from .surfaces import SERVER_PUBLIC_PORT, ClassSurface, Surfaces, endpoint_key_problems

# Keys an environment override may not set: they define which document this is.
NOT_OVERRIDABLE = ("version", "kind", "environments", "policy")


class Spec(AppSpec):
    """One service: one Modal app serving one model."""

    key_order = (
        "version",
        "kind",
        "app",
        "environment",
        "labels",
        "model",
        "engine",
        "gpu",
        "snapshot",
        "resources",
        "placement",
        "retries",
        "volumes",
        "secrets",
        "hf_token_secret",
        "scaling",
        "surfaces",
        "image",
        "usage",
        "deploy",
        "verify",
        "policy",
        "environments",
    )

    kind: Literal["service"] = Field(
        "service", exclude=True, description="service (the default) or gateway."
    )
    app: AppName = Field(description="Modal app name.")
    model: Model = Field(description="The Hugging Face model served.")
    engine: Annotated[
        Engine,
        BeforeValidator(_engine_shorthand),
        AlsoAccepts({"type": "string", "enum": ["vllm"]}),
    ] = Field(default_factory=Engine, description="The serving engine and its settings.")
    gpu: GpuChoices = Field(description=GPU_HELP)
    snapshot: Literal["none", "memory", "gpu", "sleep"] = Field(
        "none", description="Cold-start strategy: none, memory (CPU), gpu, sleep (vLLM)."
    )
    resources: Resources = Field(
        default_factory=Resources, description="CPU, memory and disk per container."
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
    surfaces: Surfaces = Field(
        default_factory=lambda: Surfaces(class_=ClassSurface()),
        description="The entry points, only those listed; unset: the Python class only.",
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
        found += self._secret_problems(("surfaces", "http"), "HTTP server")
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

    def _api_key(self) -> tuple[str, str] | None:
        http = self.surfaces.http
        if http is None or http.api_key_secret is None:
            return None
        return http.api_key_secret, http.api_key_env

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
