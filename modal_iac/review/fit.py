"""GPU fit: will the model's weights and its KV cache fit the GPU the spec names?

vLLM takes ``gpu_memory_utilization`` of each GPU; the weights, an activation and CUDA-graph
reserve and the KV cache must share it. From the parameter count and dtype this module works
out the weights, the memory left for the KV cache and (when the layer shapes are known) the
context that fits, then turns a misfit into a validation problem naming the cheapest GPU (and
count) that fits. Without layer shapes the context is not checked, and the fit says so.
Sizes are decimal GB, GPU memory the nominal figure Modal advertises (the real cards hold as
much or a little more, so the estimate errs on the safe side).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ModaliacError
from ..files import joined, parse_json, read_text
from ..spec.engine import LayerShapes
from ..spec.fields import GPU_TYPES
from ..spec.gateway import GatewaySpec
from ..spec.gpu import Gpu
from ..spec.service import Spec

# Nominal memory of each Modal GPU type, GB (https://modal.com/docs/guide/gpu).
GPU_MEMORY_GB: dict[str, float] = {
    "T4": 16,
    "L4": 24,
    "A10": 24,
    "L40S": 48,
    "A100": 40,
    "A100-40GB": 40,
    "A100-80GB": 80,
    "RTX-PRO-6000": 96,
    "H100": 80,
    "H100!": 80,
    "H200": 141,
    "B200": 192,
    "B200+": 192,
}
# The types suggested as a fix: one spelling per card (A100 is the 40 GB one, H100! and B200+
# are H100 and B200 with different fallback rules).
_SUGGESTED = ["T4", "L4", "A10", "L40S", "A100-40GB", "A100-80GB", "H100", "RTX-PRO-6000"]
_SUGGESTED += ["H200", "B200"]
BYTES_PER_PARAM = {"bfloat16": 2, "float16": 2, "float32": 4}
# Per GPU: peak activations of the profiling run, CUDA graphs and the CUDA context, which vLLM
# counts inside its gpu_memory_utilization budget. An estimate, not a measurement.
RESERVE_GB = 1.5
TIGHT = 0.10  # a KV cache under this share of the budget is a warning


@dataclass(frozen=True)
class Architecture:
    """What sizing needs to know about a model. Layer shapes are optional."""

    parameters: float  # billions
    layers: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    sliding_window: int | None = None  # tokens a sliding-window layer keeps
    global_every: int | None = None  # every Nth layer attends to the whole context
    source: str = "catalogue"
    native_len: int | None = None  # max_position_embeddings: vLLM's default max_model_len

    @property
    def has_shapes(self) -> bool:
        """Whether the KV cache per token is known, so the context can be checked."""
        return self.kv_bytes_per_token_layer is not None and self.layers is not None

    @property
    def kv_bytes_per_token_layer(self) -> int | None:
        """K and V of one token in one layer, at 2 bytes (vLLM's KV dtype follows the model)."""
        if self.kv_heads is None or self.head_dim is None:
            return None
        return 2 * self.kv_heads * self.head_dim * 2

    def kv_bytes(self, tokens: int) -> float | None:
        """KV cache one sequence of ``tokens`` takes; sliding-window layers stop growing."""
        per = self.kv_bytes_per_token_layer
        if per is None or self.layers is None:
            return None
        full, local = self._split()
        window = self.sliding_window or tokens
        return float(per * (full * tokens + local * min(tokens, window)))

    def tokens_for(self, kv_gb: float) -> int | None:
        """The longest single sequence a KV cache of ``kv_gb`` holds."""
        per = self.kv_bytes_per_token_layer
        if per is None or self.layers is None or kv_gb <= 0:
            return None if per is None or self.layers is None else 0
        budget = kv_gb * 1e9 / per  # token-layers
        full, local = self._split()
        window = self.sliding_window
        if window is None or local == 0:
            return int(budget / self.layers)
        if budget <= window * self.layers:
            return int(budget / self.layers)
        return int((budget - local * window) / full) if full else 10**9

    def _split(self) -> tuple[int, int]:
        assert self.layers is not None
        if self.sliding_window and self.global_every:
            full = self.layers // self.global_every
            return full, self.layers - full
        return self.layers, 0


# The seeds' models. Parameter counts from the model cards; layer shapes from their config.json
# (Gemma 3: 5 sliding-window layers of 1024 tokens to each global one).


def _gemma3(parameters: float, layers: int, kv_heads: int, head_dim: int) -> Architecture:
    return Architecture(parameters, layers, kv_heads, head_dim, sliding_window=1024, global_every=6)


def _dense(
    parameters: float, layers: int, kv_heads: int, head_dim: int, native_len: int
) -> Architecture:
    return Architecture(parameters, layers, kv_heads, head_dim, native_len=native_len)


# Published config.json values (num_hidden_layers, num_key_value_heads, head_dim or
# hidden_size / num_attention_heads, max_position_embeddings) as collected in
# github.com/citsjtu2020/LLM-Prof sglang/Model_Config.md; parameter counts from the model cards.
_QWEN3 = {
    # github.com/Joinn99/GR config/modified_qwen3.py (torchtune's builder from the model's
    # config.json): 28 layers, 8 KV heads, head_dim 128, 40,960 positions.
    "qwen3-0.6b": _dense(0.6, 28, 8, 128, 40960),
    "qwen3-4b": _dense(4.02, 36, 8, 128, 40960),
    "qwen3-8b": _dense(8.19, 36, 8, 128, 40960),
    "qwen3-14b": _dense(14.8, 40, 8, 128, 40960),
    "qwen3-32b": _dense(32.8, 64, 8, 128, 40960),
    # A mixture of experts: all 30.5B weights are resident though 3.3B are active per token.
    "qwen3-30b-a3b": _dense(30.5, 48, 4, 128, 40960),
}
_QWEN25 = {  # hidden_size / num_attention_heads = 128 for each
    "qwen2.5-3b": _dense(3.09, 36, 2, 128, 32768),
    "qwen2.5-7b": _dense(7.62, 28, 4, 128, 131072),
    "qwen2.5-14b": _dense(14.8, 48, 8, 128, 131072),
    "qwen2.5-32b": _dense(32.8, 64, 8, 128, 131072),
}
_LLAMA = {
    "llama-3.1-8b": _dense(8.03, 32, 8, 128, 131072),  # hidden_size 4096 / 32 heads
    "llama-3.2-3b": _dense(3.21, 28, 8, 128, 131072),
    # github.com/vulkomilev/oumi configs/recipes/llama3_1/README.md: 80 layers, 8 KV heads,
    # hidden size 8192 / 64 heads, model max length 131,072.
    "llama-3.1-70b": _dense(70.6, 80, 8, 128, 131072),
}
CATALOGUE: dict[str, Architecture] = {
    **{f"qwen/{name}": arch for name, arch in _QWEN3.items()},
    **{f"qwen/{name}": arch for name, arch in _QWEN25.items()},
    **{f"qwen/{name}-instruct": arch for name, arch in _QWEN25.items()},
    **{f"meta-llama/{name}": arch for name, arch in _LLAMA.items()},
    **{f"meta-llama/{name}-instruct": arch for name, arch in _LLAMA.items()},
    # github.com/edadaltocg/mistral-src-finetune finetune/config.py (n_layers 32, n_kv_heads 8,
    # head_dim 128); 32k context from the v0.2 model card (no sliding window from v0.2 on).
    "mistralai/mistral-7b-instruct-v0.2": _dense(7.24, 32, 8, 128, 32768),
    # A BERT-large encoder: 24 layers, 16 heads of 1024 / 16 = 64, 512 tokens
    # (github.com/xorbitsai/inference doc/source/models/builtin/embedding/bge-large-en-v1.5.rst
    # for the 512 tokens and the 1024 width); 335M parameters from the model card.
    "baai/bge-large-en-v1.5": _dense(0.335, 24, 16, 64, 512),
    "tencent/kalm-embedding-gemma3-12b-2511": _gemma3(11.76, 48, 8, 256),
    "google/gemma-3-12b-it": _gemma3(12.19, 48, 8, 256),
    "google/gemma-3-27b-it": _gemma3(27.43, 62, 16, 128),
    # A mixture of experts: all 30B weights are resident though 3B are active per token.
    "qwen/qwen3-vl-30b-a3b-instruct": Architecture(31.07, layers=48, kv_heads=4, head_dim=128),
    # Seed 003 (Qwen3.5/3.6 27B): a hybrid of linear and full attention; shapes not recorded.
    "qwen/qwen3.5-27b": Architecture(27.0),
    "qwen/qwen3.6-27b": Architecture(27.0),
    "cognitive-lab/netraembed": Architecture(4.3, layers=34, kv_heads=4, head_dim=256),
    "baai/bge-m3": Architecture(0.568, layers=24, kv_heads=16, head_dim=64),
    # hidden_size 384 / 12 attention heads.
    "sentence-transformers/all-minilm-l6-v2": Architecture(0.0227, 6, 12, 32),
}


def architecture(
    model_id: str, parameters: float | None, given: LayerShapes | None = None
) -> Architecture | None:
    """The spec's parameter count first, then the catalogue, then a cached ``config.json``
    for the layer shapes; the spec's ``model.architecture`` over both (taken as full attention,
    the safe side). None when the parameter count is unknown: no check then."""
    known = CATALOGUE.get(model_id.lower())
    shapes = known or _cached_config(model_id)
    count = parameters if parameters is not None else (known.parameters if known else None)
    if count is None:
        return None
    if given is not None:
        native = shapes.native_len if shapes else None
        return Architecture(
            count, given.layers, given.kv_heads, given.head_dim, source="spec", native_len=native
        )
    if shapes is None:
        return Architecture(count, source="spec")
    source = "spec" if parameters is not None else shapes.source
    return replace(shapes, parameters=count, source=source)


def native_length(model_id: str) -> int | None:
    """The model's own context length (``max_position_embeddings``): the catalogue's, else a
    cached ``config.json``'s; None when neither knows it."""
    known = CATALOGUE.get(model_id.lower()) or _cached_config(model_id)
    return known.native_len if known else None


def _cached_config(model_id: str) -> Architecture | None:
    """Layer shapes from a ``config.json`` in the local Hugging Face cache, never the network."""
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
    )
    snapshots = Path(hub) / ("models--" + model_id.replace("/", "--")) / "snapshots"
    try:
        configs = sorted(snapshots.glob("*/config.json")) if snapshots.is_dir() else []
    except OSError:  # an unreadable cache is no cache
        configs = []
    for config in configs:
        # A cache is no source of truth: a file that is not a sane config is passed over.
        try:
            text = read_text(config, str(config), "model config", 2**20, joined(ModaliacError))
            data = parse_json(text or "", str(config), "model config", joined(ModaliacError))
        except ModaliacError:
            continue
        if isinstance(data, dict):
            return _from_config(data)
    return None


def _from_config(data: dict[str, Any]) -> Architecture:
    inner = data.get("text_config")
    data = inner if isinstance(inner, dict) else data
    heads = _count(data, "num_attention_heads")
    hidden = _count(data, "hidden_size")
    head_dim = _count(data, "head_dim") or (hidden // heads if hidden and heads else None)
    pattern = _count(data, "sliding_window_pattern")
    return Architecture(
        0.0,
        native_len=_count(data, "max_position_embeddings"),
        layers=_count(data, "num_hidden_layers"),
        kv_heads=_count(data, "num_key_value_heads") or heads,
        head_dim=head_dim,
        sliding_window=_count(data, "sliding_window") if pattern else None,
        global_every=pattern,
        source="config.json in the Hugging Face cache",
    )


def _count(data: dict[str, Any], key: str) -> int | None:
    """A positive whole number from a config, or None (a cache holds what anyone wrote)."""
    value = data.get(key)
    return value if type(value) is int and 0 < value < 2**31 else None


@dataclass(frozen=True)
class Fit:
    """The arithmetic for one model on one GPU choice."""

    model: str
    gpu: Gpu
    arch: Architecture
    dtype: str
    utilization: float  # 1.0 for engines without a KV cache
    max_model_len: int | None  # the spec's, else the model's native length (``native``)
    kv_cache: bool  # vLLM keeps one; the transformers engine does not
    native: bool = False  # max_model_len is the model's default, not the spec's

    @property
    def gpu_gb(self) -> float:
        return GPU_MEMORY_GB[self.gpu.type] * self.gpu.count

    @property
    def budget_gb(self) -> float:
        return self.gpu_gb * self.utilization

    @property
    def weights_gb(self) -> float:
        return self.arch.parameters * BYTES_PER_PARAM[self.dtype]

    @property
    def reserve_gb(self) -> float:
        return RESERVE_GB * self.gpu.count

    @property
    def kv_gb(self) -> float:
        return self.budget_gb - self.weights_gb - self.reserve_gb

    @property
    def context(self) -> int | None:
        return self.arch.tokens_for(self.kv_gb) if self.kv_cache else None

    @property
    def fits(self) -> bool:
        if self.kv_gb <= 0:
            return False
        context = self.context
        return context is None or self.max_model_len is None or context >= self.max_model_len

    @property
    def tight(self) -> bool:
        return self.fits and self.kv_gb < TIGHT * self.budget_gb

    @property
    def context_checked(self) -> bool:
        """False when vLLM keeps a KV cache but its size per token is unknown."""
        return not self.kv_cache or self.arch.has_shapes

    @property
    def verdict(self) -> str:
        """What explain and the gpus table say of this fit."""
        if not self.fits:
            return "does not fit"
        if self.tight:
            return "tight"
        return "fits" if self.context_checked else f"fits weights; {UNCHECKED}"

    def with_gpu(self, gpu: Gpu) -> Fit:
        return replace(self, gpu=gpu)

    def offers(self, tensor_parallel: bool, hourly: dict[str, float]) -> list[tuple[Fit, float]]:
        """Every GPU type and count (1, 2, 4, 8 as Modal allows; 1 without tensor parallelism)
        this model fits, with its price per running hour, cheapest first. Types without a
        price are left out."""
        found = []
        for name in _SUGGESTED:
            if name not in hourly:
                continue
            counts = (1, 2, 4, 8) if tensor_parallel else (1,)
            for count in (n for n in counts if n <= GPU_TYPES[name]):
                choice = self.with_gpu(Gpu(type=name, count=count))
                if choice.fits:
                    found.append((choice, hourly[name] * count))
        return sorted(found, key=lambda offer: (offer[1], offer[0].gpu_gb, str(offer[0].gpu)))

    def cheapest_fix(self, tensor_parallel: bool) -> str:
        """The cheapest GPU type and count that fits, priced from the price table."""
        offers = self.offers(tensor_parallel, _hourly())
        if not offers:
            return "no Modal GPU holds it" + ("" if tensor_parallel else " on one card")
        choice, price = offers[0]
        return f"use {choice.gpu} (the cheapest that fits, ${price:.2f} per running hour)"

    def describe(self) -> str:
        """One line of arithmetic: weights, budget, KV cache."""
        count = f"{self.gpu.count} x " if self.gpu.count > 1 else ""
        text = (
            f"{self.arch.parameters:g}B parameters x {BYTES_PER_PARAM[self.dtype]} bytes "
            f"({self.dtype}) = {self.weights_gb:.1f} GB of weights; {self.gpu} gives "
            f"{self.utilization:g} x {count}{GPU_MEMORY_GB[self.gpu.type]:g} GB = "
            f"{self.budget_gb:.1f} GB; less {self.reserve_gb:g} GB reserve leaves "
            f"{self.kv_gb:.1f} GB" + (" for the KV cache" if self.kv_cache else "")
        )
        context = self.context
        if context is not None and self.kv_gb > 0:
            text += f" (about {context:,} tokens of context)"
        return text


UNCHECKED = "context not checked: no layer shapes"


def _hourly() -> dict[str, float]:
    """USD per GPU per running hour from the price table (a broken user table: the shipped)."""
    from .cost import load_prices, shipped_prices  # read only when a price is asked for

    try:
        prices = load_prices()
    except ModaliacError:  # the cost commands report a broken price file; validate does not
        prices = shipped_prices()
    return {name: rate * 3600 for name, rate in prices.per_second.items()}


def _dtype(dtype: str) -> str:
    return "bfloat16" if dtype == "auto" else dtype


def spec_fits(spec: Spec | GatewaySpec) -> list[tuple[tuple[str | int, ...], Fit]]:
    """Every (model, GPU choice) of a spec whose parameter count is known, with its key path."""
    found: list[tuple[tuple[str | int, ...], Fit]] = []
    if isinstance(spec, GatewaySpec):
        for index, gpu in enumerate(spec.gpus):
            for model in spec.models:
                arch = architecture(model.id, None, model.architecture)
                if arch is not None:
                    # The gateway starts vLLM without tensor parallelism: one card per model.
                    one = Gpu(type=gpu.type)
                    length, native = _length(model.max_model_len, arch)
                    fit = Fit(
                        model.id, one, arch, "bfloat16", model.gpu_memory_utilization,
                        length, True, native,
                    )  # fmt: skip
                    found.append((("gpus", index), fit))
        return found
    arch = architecture(spec.model.id, spec.model.parameters, spec.model.architecture)
    if arch is None:
        return found
    vllm = spec.engine.name == "vllm"
    length, native = _length(spec.model.max_model_len, arch)
    for index, gpu in enumerate(spec.gpu):
        fit = Fit(
            spec.model.id,
            gpu,
            arch,
            _dtype(spec.model.dtype),
            spec.engine.gpu_memory_utilization if vllm else 1.0,
            length,
            vllm,
            native,
        )
        found.append((("gpu", index), fit))
    return found


def _length(max_model_len: int | None, arch: Architecture) -> tuple[int | None, bool]:
    """The context vLLM sizes the KV cache for: the spec's, else the model's native length."""
    if max_model_len is not None or arch.native_len is None:
        return max_model_len, False
    return arch.native_len, True


def _tensor_parallel(spec: Spec | GatewaySpec) -> bool:
    return isinstance(spec, Spec) and spec.engine.name == "vllm"


# Off while ``modaliac gpus`` loads a spec: a model that misfits its GPU is what it looks into.
_CHECKING: ContextVar[bool] = ContextVar("fit_checking", default=True)


@contextmanager
def misfits_allowed() -> Iterator[None]:
    """Load specs whose model does not fit the GPU they name (the gpus command)."""
    token = _CHECKING.set(False)
    try:
        yield
    finally:
        _CHECKING.reset(token)


def problems(
    spec: Spec | GatewaySpec, fits: list[tuple[tuple[str | int, ...], Fit]] | None = None
) -> list[tuple[tuple[str | int, ...], str]]:
    """Misfits as (key path, message), the shape ``Spec.problems()`` returns. ``fits``:
    ``spec_fits(spec)`` if the caller has it already (load asks for all three kinds)."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    if not _CHECKING.get():
        return found
    for loc, fit in spec_fits(spec) if fits is None else fits:
        if fit.fits:
            continue
        need = f"{fit.weights_gb:.1f} GB of weights"
        if fit.kv_gb > 0 and fit.max_model_len is not None:
            default = " (the model's default; set model.max_model_len)" if fit.native else ""
            need = (
                f"a KV cache for max_model_len {fit.max_model_len:,}{default} "
                f"(about {fit.context:,} fit)"
            )
        found.append(
            (
                loc,
                f"{fit.model} does not fit {fit.gpu}: it needs {need}, and {fit.gpu} gives vLLM "
                f"{fit.budget_gb:.1f} GB ({fit.utilization:g} of {fit.gpu_gb:g} GB, "
                f"{fit.reserve_gb:g} GB reserve); {fit.cheapest_fix(_tensor_parallel(spec))}",
            )
        )
    return found


def tight(
    spec: Spec | GatewaySpec, fits: list[tuple[tuple[str | int, ...], Fit]] | None = None
) -> list[tuple[tuple[str | int, ...], str]]:
    """Tight fits as (key path, message): a KV cache under 10% of vLLM's budget leaves
    little room for batches. Warnings, not errors."""
    return [
        (
            loc,
            f"{fit.model} fits {fit.gpu} tightly: {fit.kv_gb:.1f} GB left for the KV cache "
            f"({fit.kv_gb / fit.budget_gb:.0%} of {fit.budget_gb:.1f} GB); expect small batches",
        )
        for loc, fit in (spec_fits(spec) if fits is None else fits)
        if fit.tight
    ]


def unchecked(
    spec: Spec | GatewaySpec, fits: list[tuple[tuple[str | int, ...], Fit]] | None = None
) -> list[tuple[tuple[str | int, ...], str]]:
    """Fits whose context could not be checked (no layer shapes), as (key path, message):
    the weights fit, but whether the KV cache holds max_model_len is unknown. Warnings."""
    found = []
    seen = set()
    for loc, fit in spec_fits(spec) if fits is None else fits:
        if fit.fits and not fit.context_checked and (loc, fit.model) not in seen:
            seen.add((loc, fit.model))
            key = "model.architecture"
            if isinstance(spec, GatewaySpec):
                index = next(i for i, m in enumerate(spec.models) if m.id == fit.model)
                key = f"models[{index}].architecture"
            found.append(
                (
                    loc,
                    f"{fit.model} on {fit.gpu}: the weights fit, {UNCHECKED}; set {key} "
                    "{layers, kv_heads, head_dim} from its config.json to check it",
                )
            )
    return found


def warnings(spec: Spec | GatewaySpec) -> list[str]:
    """The tight fits and unchecked contexts as lines naming the spec."""
    name = spec.app if isinstance(spec, Spec) else spec.name
    return [f"{name}: {message}" for _, message in tight(spec) + unchecked(spec)]
