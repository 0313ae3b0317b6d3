"""``modaliac gpus SPEC``: every GPU type and count the spec's model fits, cheapest first.

Like dstack's offers table: for each choice the memory left for the KV cache, the context that
fits, the price per running hour and the idle floor a month (``min_containers``). The spec is
loaded with the fit check off (``fit.misfits_allowed``): a model too big for the GPU it names
is the case this table helps with. The arithmetic is fit.py's, the prices cost.py's.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from .options import env_option

if TYPE_CHECKING:
    from ..review.cost import Prices
    from ..review.fit import Fit

HEADER = ("GPU", "KV cache", "context", "per hour", "idle floor/month")


def register(commands: Any) -> None:
    """Add ``gpus`` to the CLI's parser (lazy: nothing heavy imported)."""
    gpus = commands.add_parser(
        "gpus",
        help="list every GPU type and count the spec's model fits, cheapest first",
        description=(
            "For each model of the spec, every Modal GPU type and count (1, 2, 4, 8 as Modal "
            "allows; one card for engines without tensor parallelism) on which it fits: the "
            "memory left for the KV cache, the context that fits, the price per running hour "
            "and the idle floor a month from min_containers. Cheapest first."
        ),
    )
    gpus.add_argument("specs", nargs="+", metavar="SPEC")
    gpus.add_argument(
        "--prices",
        metavar="FILE",
        help="a JSON price table whose rows replace the bundled ones (or $MODALIAC_PRICES)",
    )
    gpus.add_argument("--format", choices=("text", "json"), default="text")
    env_option(gpus)
    gpus.set_defaults(run=cmd_gpus)


def cmd_gpus(args: argparse.Namespace, console: Any) -> int:
    from ..loading.load import load_specs
    from ..plan.targets import spec_files
    from ..review.cost import load_prices
    from ..review.fit import misfits_allowed
    from ..spec.address import Project

    with misfits_allowed():
        loaded = load_specs(spec_files(args.specs), args.env, Project.here())
    prices = load_prices(args.prices)
    tables = [(item.path, model_offers(item.spec, prices)) for item in loaded]
    if args.format == "json":
        document = {
            "prices": {"date": prices.date, "source": prices.source},
            "specs": [{"path": path, "models": models} for path, models in tables],
        }
        console.print(json.dumps(document, indent=2))
        return 0
    for path, models in tables:
        console.print(render(path, models))
    console.print(f"Prices: {prices.date}, {prices.source}")
    return 0


def model_offers(spec: Any, prices: Prices) -> list[dict[str, Any]]:
    """Per model of ``spec``: the offers it fits (JSON-ready rows), cheapest first."""
    from ..review.fit import UNCHECKED, spec_fits
    from ..spec.gateway import GatewaySpec

    hourly = {name: rate * 3600 for name, rate in prices.per_second.items()}
    tensor_parallel = not isinstance(spec, GatewaySpec) and spec.engine.name == "vllm"
    found: dict[str, dict[str, Any]] = {}
    for _, fit in spec_fits(spec):
        if fit.model in found:  # one table per model: the GPU choices are the table
            continue
        rows = [
            _row(choice, price, _idle_month(spec, choice, prices))
            for choice, price in fit.offers(tensor_parallel, hourly)
        ]
        found[fit.model] = {
            "model": fit.model,
            "parameters_billion": fit.arch.parameters,
            "max_model_len": fit.max_model_len,
            "context_checked": fit.context_checked,
            "note": None if fit.context_checked else UNCHECKED,
            "offers": rows,
        }
    return list(found.values())


def _row(fit: Fit, hourly: float, idle: float | None) -> dict[str, Any]:
    """One offer; ``context`` is what one sequence may use (the KV cache's tokens, at most the
    model's native length), ``kv_cache_tokens`` what the cache holds across sequences."""
    tokens = fit.context
    native = fit.arch.native_len
    return {
        "gpu": str(fit.gpu),
        "type": fit.gpu.type,
        "count": fit.gpu.count,
        "kv_cache_gb": round(fit.kv_gb, 1),
        "kv_cache_tokens": tokens,
        "context": tokens if tokens is None or native is None else min(tokens, native),
        "per_hour": round(hourly, 4),
        "idle_floor_month": None if idle is None else round(idle, 2),
    }


def _idle_month(spec: Any, fit: Fit, prices: Prices) -> float | None:
    """The app's idle floor a month on this GPU choice: every pool's min_containers (the
    cost module's arithmetic over the spec's settings with the GPU replaced). None for a
    gateway, whose pools are priced per app by ``explain``."""
    from ..review.cost import app_cost
    from ..spec.gateway import GatewaySpec
    from ..spec.settings import settings

    if isinstance(spec, GatewaySpec):
        return None
    flat = settings(spec)
    flat["gpu"] = fit.gpu.type if fit.gpu.count == 1 else f"{fit.gpu.type}:{fit.gpu.count}"
    cost = app_cost(flat, prices)
    return None if cost is None else cost.idle_month


def render(path: str, models: list[dict[str, Any]]) -> str:
    """The text table of one spec."""
    lines = [f"{path}:"]
    if not models:
        lines.append("  unknown parameter count: set model.parameters to size the GPUs")
    for model in models:
        length = model["max_model_len"]
        wanted = f", max_model_len {length:,}" if length else ""
        lines.append(f"  {model['model']} ({model['parameters_billion']:g}B{wanted}):")
        if model["note"]:
            lines.append(f"    {model['note']}: set model.architecture to size the KV cache")
        if not model["offers"]:
            lines.append("    no Modal GPU holds it")
            continue
        cells = [HEADER] + [_cells(row) for row in model["offers"]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
        for row in cells:
            text = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            lines.append("    " + text.rstrip())
    return "\n".join(lines)


def _cells(row: dict[str, Any]) -> tuple[str, ...]:
    context = "not checked" if row["context"] is None else f"{row['context']:,} tokens"
    idle = row["idle_floor_month"]
    return (
        row["gpu"],
        f"{row['kv_cache_gb']:.1f} GB",
        context,
        f"${row['per_hour']:.2f}",
        "-" if idle is None else f"${idle:,.2f}",
    )
