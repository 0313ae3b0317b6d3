"""Configurations for other tools, made from specs: ``modaliac export litellm``.

The LiteLLM proxy config routes ``<short name>-<gpu>`` to the router of each gateway app, and
the served model name of each vLLM service with ``surfaces.http`` to that endpoint's ``/v1``.
URLs come from Modal when the app is deployed; otherwise a placeholder that cannot resolve,
with a note saying so. API keys are referenced as ``os.environ/VAR``, never written out.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import write_file
from ..modal.endpoints import DEFAULT_KEY_ENV
from ..plan.targets import UsageError
from ..spec.address import Project
from .console import EXIT_OK
from .options import env_option, env_var_name

if TYPE_CHECKING:  # the rest is imported where it is used: `modaliac --help` imports this module
    from ..loading.load import LoadedSpec
    from ..spec.service import Spec
    from .console import Console

PLACEHOLDER = "https://{app}.modal.run.invalid"


def litellm_entries(
    loaded: list[LoadedSpec],
    urls: Mapping[tuple[str, str | None], str | None],
    key_env: str = DEFAULT_KEY_ENV,
) -> list[dict[str, Any]]:
    """One ``model_list`` entry per model of each gateway app, in spec order."""
    from ..spec.gateway import GatewaySpec, gpu_short

    entries = []
    for item in loaded:
        spec = item.spec
        if not isinstance(spec, GatewaySpec):
            continue
        for app in spec.apps():
            url = urls.get((app.name, spec.environment))
            for model in app.models:
                entries.append(
                    {
                        "model_name": f"{model.name}-{gpu_short(app.gpu)}",
                        "litellm_params": {
                            "model": f"openai/{model.id}",
                            "api_base": (url or PLACEHOLDER.format(app=app.name)) + "/v1",
                            "api_key": f"os.environ/{key_env}",
                        },
                        "model_info": {"id": f"{app.name}/{model.name}"},
                        "deployed": url is not None,
                    }
                )
    return entries


def http_services(loaded: list[LoadedSpec]) -> list[Spec]:
    """The specs that serve an HTTP endpoint (``surfaces.http``), in spec order."""
    from ..spec.service import Spec

    return [
        item.spec
        for item in loaded
        if isinstance(item.spec, Spec) and item.spec.surfaces.http is not None
    ]


def service_urls(services: list[Spec]) -> dict[tuple[str, str | None], str | None]:
    """The URL that serves requests of each deployed service, asked of Modal; None where the
    app is not deployed or has no web endpoint."""
    from ..modal.endpoints import served_url
    from ..modal.lookups import app_web_urls

    found = app_web_urls([(spec.app, spec.environment) for spec in services])
    return {key: served_url(urls) if urls else None for key, urls in found.items()}


def service_entries(
    services: list[Spec], urls: Mapping[tuple[str, str | None], str | None]
) -> tuple[list[dict[str, Any]], list[str]]:
    """One ``model_list`` entry per vLLM HTTP service (its served name at the endpoint's
    ``/v1``, the key from ``os.environ/<api_key_env>``), and one line per service LiteLLM
    cannot call, saying why."""
    from ..render.engine import served_names

    entries, skipped = [], []
    for spec in services:
        http = spec.surfaces.http
        assert http is not None
        if spec.engine.name != "vllm":
            skipped.append(
                f"{spec.app}: skipped: the {spec.engine.name} engine serves /embed, which is "
                "not OpenAI's API, so LiteLLM cannot call it (use engine: vllm for /v1)"
            )
            continue
        if http.proxy_auth:
            skipped.append(
                f"{spec.app}: skipped: proxy_auth needs the Modal-Key and Modal-Secret headers, "
                "and LiteLLM reads os.environ/ only in top-level litellm_params, not in headers"
            )
            continue
        url = urls.get((spec.app, spec.environment))
        params = {
            "model": f"openai/{served_names(spec)[0]}",
            "api_base": (url or PLACEHOLDER.format(app=spec.app)) + "/v1",
            # an open endpoint takes any key; the OpenAI client LiteLLM uses wants one
            "api_key": f"os.environ/{http.api_key_env}" if http.api_key_secret else "open",
        }
        info = {"id": spec.app, "mode": "embedding" if spec.model.task == "embed" else "chat"}
        entries.append(
            {
                "model_name": served_names(spec)[0],
                "litellm_params": params,
                "model_info": info,
                "deployed": url is not None,
                "key": (http.api_key_env, http.api_key_secret) if http.api_key_secret else None,
            }
        )
    return entries, skipped


def litellm_config(
    entries: list[dict[str, Any]],
    key_env: str = DEFAULT_KEY_ENV,
    skipped: list[str] | None = None,
) -> str:
    """The LiteLLM proxy config as YAML text (scalars as JSON strings, which YAML reads)."""
    missing = sorted({e["model_info"]["id"].split("/")[0] for e in entries if not e["deployed"]})
    lines = ["# LiteLLM proxy config generated by `modaliac export litellm`."]
    sources: dict[str, list[str]] = {}
    if any("key" not in e for e in entries):
        sources[key_env] = ["the gateway routers' secret"]
    for env, secret in sorted({e["key"] for e in entries if e.get("key")}):
        sources.setdefault(env, []).append(f"Modal secret {secret} (key {env})")
    for env, where in sources.items():
        if len(where) == 1:
            lines.append(f"# Set {env} to the API key: the value in {where[0]}.")
        else:
            lines.append(
                f"# Set {env} to the API key of {', '.join(where)}: one variable, so they must "
                "hold the same key (or give the services different surfaces.http.api_key_env)."
            )
    for line in skipped or []:
        lines.append(f"# {line}")
    if missing:
        lines.append(
            "# NOTE: not deployed (placeholder api_base; run `modaliac apply`, then export "
            f"again): {', '.join(missing)}"
        )
    lines.append("model_list:")
    if not entries:
        lines[-1] += " []"
    for entry in entries:
        lines.append(f"  - model_name: {json.dumps(entry['model_name'])}")
        lines.append("    litellm_params:")
        for key, value in entry["litellm_params"].items():
            lines.append(f"      {key}: {json.dumps(value)}")
        lines.append("    model_info:")
        for key, value in entry["model_info"].items():
            lines.append(f"      {key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


# -- the command ---------------------------------------------------------------------------


def register(commands: Any) -> None:
    """Add ``export`` to the CLI's parser (lazy: nothing heavy imported)."""
    export = commands.add_parser(
        "export",
        help="write a configuration for another tool (litellm)",
        description="Write a LiteLLM proxy config routing <model>-<gpu> to gateway endpoints "
        "and each vLLM HTTP service's served name to its /v1 (URLs read from Modal when "
        "deployed, placeholders otherwise).",
    )
    export.add_argument("tool", choices=["litellm"])
    export.add_argument("specs", nargs="*", metavar="SPEC|DIR", help="default: specs/")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    export.add_argument(
        "--api-key-env",
        default=DEFAULT_KEY_ENV,
        metavar="VAR",
        type=env_var_name,
        help="environment variable LiteLLM reads the gateway key from (default VLLM_API_KEY)",
    )
    export.add_argument(
        "--offline", action="store_true", help="do not ask Modal for URLs: placeholders only"
    )
    env_option(export)
    export.set_defaults(run=cmd_export)


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from ..loading.load import load_specs
    from ..plan.targets import spec_files, spec_targets
    from ..spec.gateway import GatewaySpec
    from .plan import credentials_configured

    project = Project.here()
    targets = spec_targets(args.specs, project, "export")
    loaded = load_specs(spec_files(targets), args.env, project)
    apps = [
        (app.name, item.spec.environment)
        for item in loaded
        if isinstance(item.spec, GatewaySpec)
        for app in item.spec.apps()
    ]
    services = http_services(loaded)
    if not apps and not services:
        raise UsageError(
            "export litellm: none of these specs is a gateway (kind: gateway) or serves HTTP "
            "(surfaces.http)"
        )
    urls: dict[tuple[str, str | None], str | None] = {}
    if not args.offline and credentials_configured():
        from ..modal.lookups import router_urls

        urls = router_urls(apps)
        urls.update(service_urls(services))
    entries, skipped = service_entries(services, urls)
    for line in skipped:
        console.error(f"note: {line}")
    entries = litellm_entries(loaded, urls, args.api_key_env) + entries
    text = litellm_config(entries, args.api_key_env, skipped)
    if args.output is None:
        console.print(text, end="")
    else:
        write_file(Path(args.output), text, "LiteLLM config")
        console.error(f"wrote {args.output}")
    return EXIT_OK
