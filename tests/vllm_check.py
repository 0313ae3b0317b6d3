"""Check vLLM arguments against the real vLLM; run by the CPU-only vLLM env's python.

    VLLM_TARGET_DEVICE=cpu <vllm-env>/bin/python tests/vllm_check.py < cases.json

stdin: a JSON list of cases ``{"name", "serve_argv", "engine_kwargs", "model_dir", "fields",
"switches"}`` (all but ``name`` may be null or absent; ``"*"`` in ``fields`` asks for every
parsed field, ``"parse_only"`` stops after the parser). stdout: a JSON list of results, one
per case, in order: ``{"name", "serve", "kwargs", "model"}``, each part null when not asked
for, else ``{"ok": bool, "error": str | null, ...}``. Everything vLLM prints goes to stderr.

- serve: ``vllm serve``'s own parser, ``validate_parsed_serve_args`` and
  ``AsyncEngineArgs.from_cli_args``; ``values`` holds the parsed namespace fields.
- kwargs: ``EngineArgs(**engine_kwargs)`` (what ``vllm.LLM(**kwargs)`` builds); a dict
  ``pooler_config`` is also validated as a ``PoolerConfig``, as ``ModelConfig`` would.
- model: ``EngineArgs(model=model_dir, ...).create_model_config()`` with the hub offline,
  reporting how vLLM resolved runner, convert, pooling, context length and Matryoshka widths.
- switches: the engine arguments whose serve flag is a bare switch with no ``--no-`` form.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import io
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

FIELDS = (
    "model",
    "runner",
    "convert",
    "pooler_config",
    "hf_overrides",
    "max_model_len",
    "served_model_name",
    "enforce_eager",
    "trust_remote_code",
    "dtype",
    "revision",
    "gpu_memory_utilization",
    "max_num_seqs",
    "tensor_parallel_size",
    "enable_sleep_mode",
    "host",
    "port",
)
# Engine arguments a local model folder cannot take (or a CPU cannot honour).
NOT_FOR_LOCAL_MODEL = ("model", "revision", "enable_sleep_mode")
MISSING = object()
DEAD_ENDPOINT = "http://127.0.0.1:9"


def plain(value: Any) -> Any:
    """A JSON-able copy of a parsed value (dataclasses, enums and dtypes included)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def exit_message(code: object, stderr: str) -> str:
    """vLLM's own words for a SystemExit: the ``error:`` line and any hint after it."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if "error:" in line:
            return "\n".join(lines[i:]).strip()
    return stderr.strip() or f"SystemExit({code!r})"


def check_serve(argv: list[str], fields: list[str], parse_only: bool = False) -> dict[str, Any]:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.common.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
            ns = parser.parse_args(argv)
            if getattr(ns, "model_tag", None) is not None:
                ns.model = ns.model_tag  # what `vllm serve` does with the positional model
            if not parse_only:
                validate_parsed_serve_args(ns)
                AsyncEngineArgs.from_cli_args(ns)
    except SystemExit as exc:
        return {"ok": False, "error": exit_message(exc.code, stderr.getvalue()), "values": None}
    except Exception as exc:
        return {"ok": False, "error": describe(exc), "values": None}
    names = sorted(vars(ns)) if "*" in fields else fields
    values = {f: plain(getattr(ns, f)) for f in names if getattr(ns, f, MISSING) is not MISSING}
    return {"ok": True, "error": None, "values": values}


def check_kwargs(kwargs: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    from vllm.config.pooler import PoolerConfig
    from vllm.engine.arg_utils import EngineArgs

    try:
        args = EngineArgs(**kwargs)
        if isinstance(args.pooler_config, dict):
            args.pooler_config = PoolerConfig(**args.pooler_config)
    except Exception as exc:
        return {"ok": False, "error": describe(exc), "values": None}
    values = {
        f: plain(getattr(args, f)) for f in fields if getattr(args, f, MISSING) is not MISSING
    }
    return {"ok": True, "error": None, "values": values}


def check_model(model_dir: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    from vllm.engine.arg_utils import EngineArgs

    local = {k: v for k, v in kwargs.items() if k not in NOT_FOR_LOCAL_MODEL}
    try:
        with hub_offline():
            config = EngineArgs(model=model_dir, **local).create_model_config()
    except Exception as exc:
        return {"ok": False, "error": describe(exc)}
    pooler = config.pooler_config
    return {
        "ok": True,
        "error": None,
        "architectures": plain(config.architectures),
        "runner_type": config.runner_type,
        "convert_type": config.convert_type,
        "pooling_type": None if pooler is None else plain(pooler.pooling_type),
        "seq_pooling_type": None if pooler is None else plain(pooler.seq_pooling_type),
        "use_activation": None if pooler is None else pooler.use_activation,
        "max_model_len": config.max_model_len,
        "is_matryoshka": bool(config.is_matryoshka),
        "matryoshka_dimensions": plain(config.matryoshka_dimensions),
        "dtype": str(config.dtype),
    }


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 for one call.

    Not for the whole process: offline, ``EngineArgs`` swaps a hub id for its local cache
    path and fails when the model was never downloaded.
    """
    import huggingface_hub.constants

    before = huggingface_hub.constants.HF_HUB_OFFLINE
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = before


def switch_only_engine_args() -> list[str]:
    """Engine arguments whose ``vllm serve`` flag is a bare switch (no ``--no-`` form)."""
    import argparse

    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.common.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    fields = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
    return sorted(
        action.dest
        for action in parser._actions
        if isinstance(action, argparse._StoreTrueAction) and action.dest in fields
    )


def run(case: dict[str, Any]) -> dict[str, Any]:
    fields = list(dict.fromkeys([*FIELDS, *(case.get("fields") or [])]))
    argv, kwargs, model_dir = (
        case.get("serve_argv"),
        case.get("engine_kwargs"),
        case.get("model_dir"),
    )
    result = {
        "name": case["name"],
        "serve": None if argv is None else check_serve(argv, fields, bool(case.get("parse_only"))),
        "kwargs": None if kwargs is None else check_kwargs(kwargs, fields),
        "model": None if model_dir is None else check_model(model_dir, kwargs or {}),
    }
    if case.get("switches"):
        result["switches"] = switch_only_engine_args()
    return result


def main() -> int:
    cases = json.load(sys.stdin)
    # Keep stdout for the JSON answer: vLLM's logging and any C-level output go to stderr.
    sys.stdout.flush()
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    # No network: a hub look-up anyone attempts fails at once instead of waiting.
    os.environ["HF_ENDPOINT"] = DEAD_ENDPOINT
    results = [run(case) for case in cases]
    json.dump(results, answer)
    answer.write("\n")
    answer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
