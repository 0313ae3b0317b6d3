"""GPU fit: will the model's weights and its KV cache fit the GPU the spec names?

vLLM takes ``gpu_memory_utilization`` of each GPU; the weights, an activation and CUDA-graph
reserve and the KV cache must share it. From the parameter count and dtype this module works
out the weights, the memory left for the KV cache and (when the layer shapes are known) the
context that fits, then turns a misfit into a validation problem naming the smallest GPU (or
count) that fits. Sizes are decimal GB, GPU memory the nominal figure Modal advertises (the
real cards hold as much or a little more, so the estimate errs on the safe side).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModaliacError
from .fields import GPU_TYPES
from .files import joined, parse_json, read_text
from .gateway import GatewaySpec
from .spec import Gpu, Spec

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


CATALOGUE: dict[str, Architecture] = {
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
    "sentence-transformers/all-minilm-l6-v2": Architecture(0.0227, layers=6, kv_heads=12),
}


def architecture(model_id: str, parameters: float | None) -> Architecture | None:
    """The spec's parameter count first, then the catalogue, then a cached ``config.json``
    for the layer shapes. None when the parameter count is unknown: no check then."""
    known = CATALOGUE.get(model_id.lower())
    shapes = known or _cached_config(model_id)
    count = parameters if parameters is not None else (known.parameters if known else None)
    if count is None:
        return None
    if shapes is None:
        return Architecture(count, source="spec")
    source = "spec" if parameters is not None else shapes.source
    return Architecture(
        count,
        shapes.layers,
        shapes.kv_heads,
        shapes.head_dim,
        shapes.sliding_window,
        shapes.global_every,
        source,
    )


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
    max_model_len: int | None
    kv_cache: bool  # vLLM keeps one; the transformers engine does not

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

    def with_gpu(self, gpu: Gpu) -> Fit:
        return Fit(
            self.model,
            gpu,
            self.arch,
            self.dtype,
            self.utilization,
            self.max_model_len,
            self.kv_cache,
        )

    def smallest_fix(self, tensor_parallel: bool) -> str:
        """The smallest single GPU that fits, and the fewest of this type when allowed."""
        options = []
        singles = sorted(_SUGGESTED, key=lambda name: GPU_MEMORY_GB[name])
        single = next((n for n in singles if self.with_gpu(Gpu(type=n)).fits), None)
        if single is not None:
            options.append(single)
        if tensor_parallel:
            for count in (n for n in (2, 4, 8) if n <= GPU_TYPES[self.gpu.type]):
                choice = Gpu(type=self.gpu.type, count=count)
                if count > self.gpu.count and self.with_gpu(choice).fits:
                    options.append(str(choice))
                    break
        if not options:
            return "no Modal GPU holds it" + ("" if tensor_parallel else " on one card")
        return "use " + " or ".join(options)

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


def _dtype(dtype: str) -> str:
    return "bfloat16" if dtype == "auto" else dtype


def spec_fits(spec: Spec | GatewaySpec) -> list[tuple[tuple[str | int, ...], Fit]]:
    """Every (model, GPU choice) of a spec whose parameter count is known, with its key path."""
    found: list[tuple[tuple[str | int, ...], Fit]] = []
    if isinstance(spec, GatewaySpec):
        for index, gpu in enumerate(spec.gpus):
            for model in spec.models:
                arch = architecture(model.id, None)
                if arch is not None:
                    # The gateway starts vLLM without tensor parallelism: one card per model.
                    one = Gpu(type=gpu.type)
                    fit = Fit(
                        model.id, one, arch, "bfloat16", model.gpu_memory_utilization,
                        model.max_model_len, True,
                    )  # fmt: skip
                    found.append((("gpus", index), fit))
        return found
    arch = architecture(spec.model.id, spec.model.parameters)
    if arch is None:
        return found
    vllm = spec.engine.name == "vllm"
    for index, gpu in enumerate(spec.gpu):
        fit = Fit(
            spec.model.id,
            gpu,
            arch,
            _dtype(spec.model.dtype),
            spec.engine.gpu_memory_utilization if vllm else 1.0,
            spec.model.max_model_len,
            vllm,
        )
        found.append((("gpu", index), fit))
    return found


def _tensor_parallel(spec: Spec | GatewaySpec) -> bool:
    return isinstance(spec, Spec) and spec.engine.name == "vllm"


def problems(spec: Spec | GatewaySpec) -> list[tuple[tuple[str | int, ...], str]]:
    """Misfits as (key path, message), the shape ``Spec.problems()`` returns."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    for loc, fit in spec_fits(spec):
        if fit.fits:
            continue
        need = f"{fit.weights_gb:.1f} GB of weights"
        if fit.kv_gb > 0 and fit.max_model_len is not None:
            need = f"a KV cache for max_model_len {fit.max_model_len:,} (about {fit.context:,} fit)"
        found.append(
            (
                loc,
                f"{fit.model} does not fit {fit.gpu}: it needs {need}, and {fit.gpu} gives vLLM "
                f"{fit.budget_gb:.1f} GB ({fit.utilization:g} of {fit.gpu_gb:g} GB, "
                f"{fit.reserve_gb:g} GB reserve); {fit.smallest_fix(_tensor_parallel(spec))}",
            )
        )
    return found


def tight(spec: Spec | GatewaySpec) -> list[tuple[tuple[str | int, ...], str]]:
    """Tight fits as (key path, message): a KV cache under 10% of vLLM's budget leaves
    little room for batches. Warnings, not errors."""
    return [
        (
            loc,
            f"{fit.model} fits {fit.gpu} tightly: {fit.kv_gb:.1f} GB left for the KV cache "
            f"({fit.kv_gb / fit.budget_gb:.0%} of {fit.budget_gb:.1f} GB); expect small batches",
        )
        for loc, fit in spec_fits(spec)
        if fit.tight
    ]


def warnings(spec: Spec | GatewaySpec) -> list[str]:
    """The tight fits as lines naming the spec."""
    name = spec.app if isinstance(spec, Spec) else spec.name
    return [f"{name}: {message}" for _, message in tight(spec)]
