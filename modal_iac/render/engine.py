"""vLLM arguments derived from a spec: the ``vllm serve`` argv and the ``LLM(...)`` keywords.

Pure functions with no vLLM import, so the renderer stays fast; the fidelity tests feed both
to the real vLLM 0.33.0 parser and ``EngineArgs``. Names follow vLLM 0.33 (FACTS.md):
``runner``/``convert`` instead of ``task``, ``pooler_config`` instead of
``override_pooler_config``, ``use_activation`` instead of ``normalize``.
"""

from __future__ import annotations

from typing import Any

from ..spec import vllm_args
from ..spec.service import Spec

# vLLM listens on the loopback interface only: the public endpoint is the authenticating proxy
# in the same container (templates/vllm_app.py.j2), so vLLM's unauthenticated routes (/sleep,
# /wake_up, /collective_rpc, /metrics, ...) are unreachable from outside.
SERVE_HOST = "127.0.0.1"


def engine_kwargs(spec: Spec) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` / ``EngineArgs``, sorted for stable output.

    Of ``engine.args`` only the ``EngineArgs`` fields: ``LLM(...)`` raises TypeError on the
    serve-only ones (vllm_args.py)."""
    model = spec.model
    kwargs: dict[str, Any] = {
        "model": model.id,
        "revision": model.revision,
        "dtype": model.dtype,
        "trust_remote_code": model.trust_remote_code,
        "gpu_memory_utilization": spec.engine.gpu_memory_utilization,
        "enforce_eager": spec.enforce_eager,
    }
    if model.max_model_len is not None:
        kwargs["max_model_len"] = model.max_model_len
    if spec.engine.max_num_seqs is not None:
        kwargs["max_num_seqs"] = spec.engine.max_num_seqs
    if spec.tensor_parallel_size > 1:
        kwargs["tensor_parallel_size"] = spec.tensor_parallel_size
    if spec.snapshot == "sleep":
        kwargs["enable_sleep_mode"] = True
    if model.multimodal is False:
        # No image or video inputs: vLLM skips the multimodal profiling at start-up.
        kwargs["limit_mm_per_prompt"] = {"image": 0, "video": 0}
    if model.task == "embed":
        kwargs["runner"] = "pooling"
        kwargs["convert"] = "embed"
        kwargs["pooler_config"] = pooler_config(spec)
        overrides = hf_overrides(spec)
        if overrides:
            kwargs["hf_overrides"] = overrides
    else:
        kwargs["runner"] = "generate"
    kwargs.update(vllm_args.split(spec.engine.args)[0])
    return dict(sorted(kwargs.items()))


def pooler_config(spec: Spec) -> dict[str, Any]:
    embedding = spec.embedding
    return {"pooling_type": embedding.pooling.upper(), "use_activation": embedding.normalize}


def hf_overrides(spec: Spec) -> dict[str, Any]:
    """Matryoshka widths are declared to vLLM through the model config."""
    widths = spec.embedding.matryoshka
    if not widths:
        return {}
    return {"is_matryoshka": True, "matryoshka_dimensions": list(widths)}


def served_names(spec: Spec) -> list[str]:
    return [spec.model.served_name or spec.model.id]


def serve_argv(spec: Spec, port: int) -> list[str]:
    """``vllm serve`` arguments (after the ``vllm serve`` words).

    With ``snapshot: sleep`` they include ``--enable-sleep-mode``: the server sleeps before its
    GPU snapshot. The API key is not here: it reaches vLLM through the environment. Each
    argument's words come from vLLM's table (vllm_args.argv_words): a value is never read as
    a flag of its own.
    """
    kwargs = engine_kwargs(spec)
    argv = [kwargs.pop("model")]
    kwargs.update(vllm_args.split(spec.engine.args)[1])
    kwargs["served_model_name"] = served_names(spec)
    kwargs["host"] = SERVE_HOST
    kwargs["port"] = port
    for key, value in sorted(kwargs.items()):
        argv.extend(vllm_args.argv_words(key, value))
    return argv
