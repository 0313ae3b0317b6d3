"""Write modal_iac/data/vllm_args.json from vLLM's own ``vllm serve`` parser and ``EngineArgs``.

Run it with the CPU-only vLLM env's python (scripts/vllm_cpu_env.py builds it):

    VLLM_TARGET_DEVICE=cpu ~/.cache/modaliac/vllm-0.33.0-cpu/bin/python scripts/vllm_arg_table.py
    ... scripts/vllm_arg_table.py --check   # exit 1 when the shipped file is stale

The table lets ``modaliac validate`` check ``engine.args`` with no vLLM installed: one entry per
long option of ``vllm serve``, by its Python name (the argparse ``dest``), with how the flag
takes its value and whether ``EngineArgs`` (what ``vllm.LLM(...)`` builds) has the field.
A value type this script does not know stops it: a new vLLM pin needs a decision, not a guess.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "modal_iac" / "data" / "vllm_args.json"
# argparse options that are not engine settings: help text, and a file of further arguments.
SKIPPED = {"help", "config"}
# Lambdas vLLM builds inline, by dest: what the lambda accepts.
LAMBDA_TYPES = {
    "device_ids": "str",  # "2,3,5,7", split by vLLM
    "moe_backend": "str",  # lower-cased, checked against choices
    "linear_backend": "str",
    "sparse_indexer_topk_backend": "str",
}


def value_type(action: argparse.Action) -> str:
    """What one value of the flag is: int, float, str, human_int, human_int_or_auto, json
    (a JSON object or list) or json_or_str (a JSON object, else plain text)."""
    import vllm.engine.arg_utils as arg_utils
    import vllm.utils.argparse_utils as argparse_utils

    kind = action.type
    # optional_type(...) and parse_type(...) wrap the real converter in a closure.
    while callable(kind) and getattr(kind, "__name__", "") in ("_optional_type", "_parse_type"):
        kind = kind.__closure__[0].cell_contents  # type: ignore[index]
    if kind is None or kind is str or kind is arg_utils.parse_reasoning_parser:
        return "str"
    if kind is int:
        return "int"
    if kind is float:
        return "float"
    if kind is argparse_utils.human_readable_int:
        return "human_int"
    if kind is argparse_utils.human_readable_int_or_auto:
        return "human_int_or_auto"
    if kind is json.loads or getattr(kind, "__name__", "") == "parse_dataclass":
        return "json"
    if kind is arg_utils.union_dict_and_str:
        return "json_or_str"
    if getattr(kind, "__name__", "") == "<lambda>" and action.dest in LAMBDA_TYPES:
        return LAMBDA_TYPES[action.dest]
    raise SystemExit(f"vllm_arg_table: --{action.dest}: unknown value type {kind!r}; add it")


def plain(value: Any) -> Any:
    """A JSON value for a default or choice, or None when it has no JSON form."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple) and all(
        v is None or isinstance(v, bool | int | float | str) for v in value
    ):
        return list(value)
    if isinstance(value, dict):
        try:
            return json.loads(json.dumps(value))
        except (TypeError, ValueError):
            return None
    return None


def entry(action: argparse.Action, engine_fields: set[str]) -> dict[str, Any]:
    from vllm.utils.argparse_utils import EnableDisableAction

    flags = sorted(o for o in action.option_strings if o.startswith("--"))
    found: dict[str, Any] = {"engine_field": action.dest in engine_fields}
    if isinstance(action, argparse._StoreTrueAction):
        found.update(kind="switch", on=flags[0])
    elif isinstance(action, EnableDisableAction):
        negative = action.negative_option_strings
        found.update(
            kind="boolean",
            on=next(o for o in flags if o not in negative),
            off=next(o for o in flags if o in negative),
        )
    elif isinstance(action, argparse.BooleanOptionalAction):
        raise SystemExit(f"vllm_arg_table: --{action.dest}: plain BooleanOptionalAction")
    else:
        main = "--" + action.dest.replace("_", "-")
        found.update(
            kind="value",
            on=main if main in flags else flags[0],
            type=value_type(action),
            list=isinstance(action, argparse._AppendAction) or action.nargs in ("+", "*"),
            nargs=action.nargs,
            repeat=isinstance(action, argparse._AppendAction),
        )
        if action.choices is not None:
            found["choices"] = sorted(
                (plain(c) for c in action.choices if c is not None),
                key=lambda c: (type(c).__name__, c),
            )
    default = plain(action.default)
    if default is not None and action.default is not argparse.SUPPRESS:
        found["default"] = default
    found["flags"] = flags
    return found


def build() -> dict[str, Any]:
    import vllm
    from vllm.engine.arg_utils import EngineArgs
    from vllm.entrypoints.common.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    engine_fields = {f.name for f in dataclasses.fields(EngineArgs)}
    args = {
        action.dest: entry(action, engine_fields)
        for action in parser._actions
        if action.option_strings and action.dest not in SKIPPED
    }
    return {
        "vllm": vllm.__version__,
        "source": "scripts/vllm_arg_table.py: vllm serve's parser and EngineArgs' fields",
        "args": dict(sorted(args.items())),
    }


def text(table: dict[str, Any]) -> str:
    return json.dumps(table, indent=1, sort_keys=True) + "\n"


def differences(current: str, wanted: str) -> str:
    """What a stale file gets wrong, in a few words."""
    try:
        old = json.loads(current)
    except ValueError:
        return "unreadable or missing"
    new = json.loads(wanted)
    found = [f"written for vLLM {old.get('vllm')}"] if old.get("vllm") != new["vllm"] else []
    args, old_args = new["args"], old.get("args", {})
    changed = sorted(n for n in args.keys() | old_args.keys() if args.get(n) != old_args.get(n))
    if changed:
        shown = ", ".join(changed[:5]) + (
            f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        )
        found.append(f"arguments that differ: {shown}")
    return "; ".join(found) or "formatting"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--output", type=Path, default=TABLE)
    options = parser.parse_args()
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    wanted = text(build())
    if options.check:
        current = options.output.read_text("utf-8") if options.output.exists() else ""
        if current != wanted:
            print(
                f"{options.output} is stale for this vLLM ({differences(current, wanted)}): "
                "regenerate it with scripts/vllm_arg_table.py (in the CPU vLLM env)",
                file=sys.stderr,
            )
            return 1
        print(f"{options.output} is current")
        return 0
    options.output.write_text(wanted, "utf-8")
    print(f"wrote {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
