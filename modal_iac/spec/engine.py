"""The model a service serves and the engine that serves it: ``model:`` and ``engine:``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..tokens import shown
from . import vllm_args
from .fields import (
    ARG_NAME,
    ENGINE_VERSION,
    HF_ID,
    IMPORT_PLACEHOLDER,
    MAX_MODEL_LEN_HELP,
    OneLine,
    Parameters,
    Problem,
    TokenCount,
)
from .strict import SharedFields, StrictModel

DEFAULT_VLLM_VERSION = "0.33.0"
# The transformers release vLLM 0.33.0 itself requires (>=5.16.1,<5.21), so both engines
# can share a cache of compiled kernels and a tokenizer behaviour.
DEFAULT_TRANSFORMERS_VERSION = "5.20.2"


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


class HubModel(SharedFields):
    """A Hugging Face model pinned to a revision: what a service's model and each model of a
    gateway both say about the weights they load."""

    id: str = Field(pattern=HF_ID.pattern, description="Hugging Face repository id, e.g. org/name.")
    revision: OneLine = Field(
        "main",
        min_length=1,
        description="Branch, tag or commit. Pin a commit: a moving revision breaks snapshots.",
    )
    max_model_len: TokenCount | None = Field(None, description=MAX_MODEL_LEN_HELP)
    trust_remote_code: bool = Field(
        False, description="Run the model repository's own Python code (review it first)."
    )
    architecture: LayerShapes | None = Field(
        None,
        description="Layer shapes from the model's config.json; without them (and no catalogue "
        "entry or cached config) the fit check cannot check the context.",
    )


class Model(HubModel):
    """The Hugging Face model served, pinned to a revision."""

    key_order = (
        "id",
        "revision",
        "task",
        "dtype",
        "max_model_len",
        "trust_remote_code",
        "parameters",
        "architecture",
        "multimodal",
        "served_name",
        "embedding",
    )

    task: Literal["embed", "generate"] = Field(
        description="embed: an embedding model (vLLM's pooling runner); generate: a chat or "
        "completion model (OpenAI-compatible chat and completions)."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Weight and activation precision; auto takes the model's own."
    )
    parameters: Parameters | None = Field(None, description="Parameter count, for GPU fit.")
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


class VllmBatching(SharedFields):
    """How much of the GPU vLLM takes and how many sequences it batches: an engine's and
    each model's of a gateway."""

    gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Share of GPU memory vLLM may take (weights, then KV cache); 0.9 is vLLM's.",
    )
    max_num_seqs: int | None = Field(
        None, gt=0, description="Most sequences vLLM batches at once; unset: vLLM's default."
    )


class Engine(VllmBatching):
    """The inference engine and its tuning."""

    key_order = (
        "name",
        "version",
        "sleep_level",
        "batch_size",
        "gpu_memory_utilization",
        "max_num_seqs",
        "enforce_eager",
        "args",
    )

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
