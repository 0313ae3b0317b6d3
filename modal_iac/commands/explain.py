"""``modaliac explain SPEC``: the GPU fit arithmetic and the cost of each app, for a reviewer."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .options import cost_options, costing, env_option

if TYPE_CHECKING:
    from ..plan.costs import Costing


def register(commands: Any) -> None:
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
    explain.add_argument("--format", choices=("text", "json"), default="text")
    cost_options(explain)
    env_option(explain)
    explain.set_defaults(run=cmd_explain)


def cmd_explain(args: argparse.Namespace, console: Any) -> int:
    from ..loading.load import load_specs
    from ..plan.targets import spec_files
    from ..spec.address import Project

    loaded = load_specs(spec_files(args.specs), args.env, Project.here())
    pricing = costing(args)
    if args.format == "json":
        console.print(explain_json(loaded, pricing))
        return 0
    for item in loaded:
        console.print(explain(item.spec, item.path, pricing))
    console.print(f"Prices: {pricing.prices.date}, {pricing.prices.source}")
    return 0


def explain(spec: Any, path: str, pricing: Costing) -> str:
    """The fit arithmetic and the cost of every app of ``spec``."""
    from ..review.cost import HOURS_PER_MONTH, app_cost, describe, usage_text
    from ..review.fit import spec_fits, warnings
    from ..spec.gateway import GatewaySpec, app_settings
    from ..spec.settings import settings

    lines = [f"{path}:", "  GPU fit:"]
    fits = spec_fits(spec)
    if not fits:
        lines.append("    unknown parameter count: set model.parameters to check the fit")
    for _, fit in fits:
        lines.append(f"    {fit.model} on {fit.gpu}: {fit.verdict}")
        lines.append(f"      {fit.describe()}")
    lines += [f"    warning: {text}" for text in warnings(spec)]
    lines.append(f"  Cost (GPUs and reserved CPU/memory, {HOURS_PER_MONTH} h a month):")
    hours = pricing.hours(spec.usage.active_hours_per_day if spec.usage else None)
    for app in spec.app_names():
        flat = app_settings(spec, app) if isinstance(spec, GatewaySpec) else settings(spec)
        cost = app_cost(flat, pricing.prices)
        lines.append(f"    {app}: {describe(cost)}{usage_text(cost, hours)}")
    lines += endpoint_lines(spec)
    return "\n".join(lines + serving(spec))


def explain_json(loaded: Any, pricing: Costing) -> str:
    """``explain --format json``: the fit and the cost of every app, per spec (docs/formats.md)."""
    from ..review.cost import app_cost, json_text
    from ..review.fit import spec_fits, warnings
    from ..spec.gateway import GatewaySpec, app_settings
    from ..spec.settings import settings

    hours = pricing.hours
    specs = []
    for item in loaded:
        spec = item.spec
        fits = [
            {
                "model": fit.model,
                "gpu": str(fit.gpu),
                "fits": fit.fits,
                "context_checked": fit.context_checked,
                "context": fit.context,
                "weights_gb": round(fit.weights_gb, 2),
                "kv_cache_gb": round(fit.kv_gb, 2),
                "verdict": fit.verdict,
            }
            for _, fit in spec_fits(spec)
        ]
        apps = []
        estimate = hours(spec.usage.active_hours_per_day if spec.usage else None)
        for app in spec.app_names():
            flat = app_settings(spec, app) if isinstance(spec, GatewaySpec) else settings(spec)
            cost = app_cost(flat, pricing.prices)
            apps.append(
                {
                    "app": app,
                    "gpu": cost.gpu if cost else None,
                    "gpu_fallback": list(cost.fallback) if cost else [],
                    "hourly_usd": _usd(cost.hourly if cost else None),
                    "hourly_low_usd": _usd(cost.low_hourly if cost else None),
                    "idle_month_usd": _usd(cost.idle_month if cost else None),
                    "active_hours_per_day": estimate,
                    "month_usd": _usd(
                        cost.month(estimate) if cost and estimate is not None else None
                    ),
                }
            )
        specs.append(
            {"path": item.path, "fits": fits, "warnings": list(warnings(spec)), "apps": apps}
        )
    prices = {"date": str(pricing.prices.date), "source": pricing.prices.source}
    return json_text({"specs": specs, "prices": prices})


def _usd(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def endpoint_lines(spec: Any) -> list[str]:
    """How the HTTP endpoint is served and guarded, and how apply deploys: the trade-offs a
    reviewer weighs (a gateway's router is always the class-based kind)."""
    from ..spec.gateway import GatewaySpec

    lines = []
    http = None if isinstance(spec, GatewaySpec) else spec.surfaces.http
    if http is not None:
        lines.append("  HTTP endpoint:")
        if http.primitive == "server":
            lines.append(
                "    primitive server: Modal's @app.server, port-based low-latency routing; no "
                "request queue: while no container is ready (a cold start, all at "
                "max_containers) requests get 503; min_containers >= 1 avoids the cold case"
            )
        else:
            lines.append(
                "    primitive cls: a Modal class with an ASGI web endpoint; requests wait in "
                "Modal's queue while containers start"
            )
        guards = []
        if http.api_key_secret is not None:
            guards.append(f"a Bearer key from secret {http.api_key_secret!r} ({http.api_key_env})")
        if http.proxy_auth:
            guards.append("Modal's proxy auth (Modal-Key and Modal-Secret of a workspace token)")
        lines.append(
            "    auth: "
            + (" and ".join(guards) if guards else "none (open: true): anyone with the URL")
        )
    strategy = spec.deploy.strategy
    what = (
        "the running containers are stopped as the new version is published"
        if strategy == "recreate"
        else "new containers take traffic while the old ones drain"
    )
    lines.append(f"  Deploy: strategy {strategy}: {what} (apply --strategy overrides)")
    return lines


def serving(spec: Any) -> list[str]:
    """How many requests each GPU pool takes at once, how long the router waits, and the key
    each secret must hold (what the deploy checks with required_keys)."""
    from ..spec.fields import shown_duration
    from ..spec.gateway import GatewaySpec

    lines = ["  Serving:"]
    unset = spec.scaling.concurrency is None
    if isinstance(spec, GatewaySpec):
        for model in spec.models:
            mark = " (default)" if unset and model.max_num_seqs is None else ""
            per = spec.pool_concurrency(model)
            lines.append(f"    {model.name}: {per} requests at once per container{mark}")
        mark = " (default: scaling.timeout)" if spec.router.upstream_timeout is None else ""
        wait = shown_duration(spec.upstream_timeout)
        lines.append(f"    router: waits {wait} for a model, then 504{mark}")
    elif spec.surfaces.http is not None:
        mark = " (default)" if unset else ""
        lines.append(f"    HTTP server: {spec.concurrency} requests at once per container{mark}")
    keys = spec.secret_keys()
    for name in spec.referenced_secrets():
        held = f"must hold {keys[name]}" if name in keys else "keys not checked"
        lines.append(f"    secret {name}: {held}")
    return lines if len(lines) > 1 else []
