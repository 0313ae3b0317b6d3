"""``modaliac explain SPEC``: the GPU fit arithmetic and the cost of each app, for a reviewer."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def register(commands: Any, state_option: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add this module's subcommands to the CLI's parser (lazy: nothing heavy imported)."""
    explain = commands.add_parser(
        "explain",
        help="show the GPU fit arithmetic and the cost of each app",
        description=(
            "For each model and GPU choice: weights, vLLM's memory budget, what is left for "
            "the KV cache and the context that fits. For each app: GPU cost per running hour, "
            "the idle floor per month from min_containers, and an optional usage estimate."
        ),
    )
    explain.add_argument("specs", nargs="+", metavar="SPEC")
    explain.add_argument(
        "--prices", help="a JSON price table over the bundled one (or $MODALIAC_PRICES)"
    )
    explain.add_argument(
        "--active-hours-per-day",
        type=_hours,
        help="estimate a month with one container per pool busy this many hours a day",
    )
    explain.set_defaults(run=cmd_explain)


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected hours, got {text!r}") from None
    if not 0 <= value <= 24:
        raise argparse.ArgumentTypeError(f"expected 0 to 24 hours, got {text!r}")
    return value


def cmd_explain(args: argparse.Namespace, console: Any) -> int:
    from .cli import spec_files
    from .cost import load_prices
    from .load import load_specs

    loaded = load_specs(spec_files(args.specs))
    prices = load_prices(args.prices)
    for item in loaded:
        console.print(explain(item.spec, item.path, prices, args.active_hours_per_day))
    console.print(f"Prices: {prices.date}, {prices.source}")
    return 0


def explain(spec: Any, path: str, prices: Any, active_hours: float | None = None) -> str:
    from .cost import HOURS_PER_MONTH, app_cost, describe, money
    from .fit import spec_fits, warnings
    from .gateway import GatewaySpec, app_settings
    from .settings import settings

    lines = [f"{path}:", "  GPU fit:"]
    fits = spec_fits(spec)
    if not fits:
        lines.append("    unknown parameter count: set model.parameters to check the fit")
    for _, fit in fits:
        verdict = "tight" if fit.tight else "fits"
        lines.append(f"    {fit.model} on {fit.gpu}: {verdict}")
        lines.append(f"      {fit.describe()}")
    lines += [f"    warning: {text}" for text in warnings(spec)]
    lines.append(f"  Cost (GPU only, {HOURS_PER_MONTH} h a month):")
    for app in spec.app_names():
        flat = app_settings(spec, app) if isinstance(spec, GatewaySpec) else settings(spec)
        cost = app_cost(flat, prices)
        text = f"    {app}: {describe(cost)}"
        if active_hours is not None and cost is not None:
            text += f"; at {active_hours:g} h/day about {money(cost.month(active_hours))}/month"
        lines.append(text)
    return "\n".join(lines)
