"""Configurations for other tools, made from specs: ``modaliac export litellm``.

The LiteLLM proxy config routes ``<short name>-<gpu>`` to the router of each gateway app, and
the served model name of each vLLM service with ``surfaces.http`` to that endpoint's ``/v1``.
URLs come from Modal when the app is deployed; otherwise a placeholder that cannot resolve,
with a note saying so. API keys are referenced as ``os.environ/VAR``, never written out: VAR
is the endpoint's own ``api_key_env`` (a gateway's router's, a service's ``surfaces.http``).
LiteLLM balances the requests for one ``model_name`` between its entries, so one name is
allowed several entries only when they serve the same model.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import write_file
from ..plan.targets import UsageError
from ..spec.address import Project
from ..tokens import printable, shown
from .console import EXIT_OK
from .options import env_option, env_var_name

if TYPE_CHECKING:  # the rest is imported where it is used: `modaliac --help` imports this module
    from ..loading.load import LoadedSpec
    from ..spec.service import Spec
    from .console import Console

PLACEHOLDER = "https://{app}.modal.run.invalid"
# (the variable LiteLLM reads, the Modal secret holding the key, the key inside that secret)
Key = tuple[str, str, str]


@dataclass(frozen=True)
class Entry:
    """One ``model_list`` entry, and what the config's comments and checks need of it."""

    model_name: str
    params: dict[str, str]
    info: dict[str, str]
    deployed: bool
    key: Key | None  # None: an open endpoint, called with the literal key "open"
    app: str  # the app serving it
    path: str  # its spec, as the user named it
    loc: tuple[str | int, ...]  # the key of that spec that names model_name
    model: tuple[str, ...]  # what it serves; entries of one name must serve the same
    model_text: str  # that, in words


def _api_key(key: Key | None) -> str:
    # an open endpoint takes any key; the OpenAI client LiteLLM uses wants one
    return f"os.environ/{key[0]}" if key else "open"


def litellm_entries(
    loaded: list[LoadedSpec],
    urls: Mapping[tuple[str, str | None], str | None],
    key_env: str | None = None,
) -> list[Entry]:
    """One ``model_list`` entry per model of each gateway app, in spec order, keyed with the
    gateway router's own secret and ``api_key_env`` (``key_env``: another variable for it)."""
    from ..spec.gateway import GatewaySpec, gpu_short

    entries = []
    for item in loaded:
        spec = item.spec
        if not isinstance(spec, GatewaySpec):
            continue
        router = spec.router
        key = None
        if router.api_key_secret is not None:
            key = (key_env or router.api_key_env, router.api_key_secret, router.api_key_env)
        for app in spec.apps():
            url = urls.get((app.name, spec.environment))
            for model in app.models:
                entries.append(
                    Entry(
                        f"{model.name}-{gpu_short(app.gpu)}",
                        {
                            "model": f"openai/{model.id}",
                            "api_base": (url or PLACEHOLDER.format(app=app.name)) + "/v1",
                            "api_key": _api_key(key),
                        },
                        {"id": f"{app.name}/{model.name}"},
                        url is not None,
                        key,
                        app.name,
                        item.path,
                        ("models", spec.models.index(model), "name"),
                        (model.id, model.revision, "chat"),
                        f"{model.id} at revision {model.revision}, chat",
                    )
                )
    return entries


def http_services(loaded: list[LoadedSpec]) -> list[tuple[str, Spec]]:
    """The specs that serve an HTTP endpoint (``surfaces.http``), with their paths, in spec
    order."""
    from ..spec.service import Spec

    return [
        (item.path, item.spec)
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
    services: list[tuple[str, Spec]], urls: Mapping[tuple[str, str | None], str | None]
) -> tuple[list[Entry], list[str]]:
    """One ``model_list`` entry per vLLM HTTP service (its served name at the endpoint's
    ``/v1``, the key from ``os.environ/<api_key_env>``), and one line per service LiteLLM
    cannot call, saying why."""
    from ..render.engine import served_names

    entries, skipped = [], []
    for path, spec in services:
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
        key = None
        if http.api_key_secret:
            key = (http.api_key_env, http.api_key_secret, http.api_key_env)
        model = spec.model
        mode = "embedding" if model.task == "embed" else "chat"
        pooling = model.embedding
        served: tuple[str, ...] = (model.id, model.revision, mode)
        text = f"{model.id} at revision {model.revision}, {mode}"
        if pooling is not None:  # another pooling returns other vectors from the same weights
            served += (pooling.pooling, str(pooling.normalize))
            text += f" pooled {pooling.pooling}" + (", normalised" if pooling.normalize else "")
        entries.append(
            Entry(
                served_names(spec)[0],
                {
                    "model": f"openai/{served_names(spec)[0]}",
                    "api_base": (url or PLACEHOLDER.format(app=spec.app)) + "/v1",
                    "api_key": _api_key(key),
                },
                {"id": spec.app, "mode": mode},
                url is not None,
                key,
                spec.app,
                path,
                ("model", "served_name" if model.served_name else "id"),
                served,
                text,
            )
        )
    return entries, skipped


def balanced(entries: list[Entry]) -> list[str]:
    """One line per ``model_name`` several apps serve: LiteLLM balances the requests for a
    name between its entries, which is right only when they serve the same model. Different
    models under one name are a SpecError at the later one."""
    from ..loading.load import located_in_file

    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.model_name, []).append(entry)
    lines = []
    for name, group in groups.items():
        first = group[0]
        other = next((e for e in group[1:] if e.model != first.model), None)
        if other is not None:
            raise located_in_file(
                other.path,
                other.loc,
                f"apps {other.app} and {first.app} ({first.path}) would both be LiteLLM's "
                f"model_name {shown(name)}, serving different models ({other.model_text}; "
                f"{first.model_text}), and LiteLLM balances the requests for a name between "
                "its entries: give one of them another name (model.served_name of a service, "
                "models[].name of a gateway)",
            )
        if len(group) > 1:
            lines.append(
                f"{name}: LiteLLM balances requests between apps "
                f"{', '.join(e.app for e in group)}, which serve one model "
                f"({first.model_text})"
            )
    return lines


def _comment(text: str) -> str:
    """A comment line of the config: one printable line, whatever ``text`` holds."""
    return "# " + printable(text)


def yaml_string(value: str) -> str:
    """``value`` as a double-quoted YAML scalar that reads back as the same string: printable
    characters as they are, every other one escaped (a JSON string is not enough: YAML
    readers take its surrogate pair escapes as two characters, not the one they stand for)."""
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def litellm_config(entries: list[Entry], skipped: list[str] | None = None) -> str:
    """The LiteLLM proxy config as YAML text; raises a SpecError for one model_name that
    would stand for different models."""
    shared = balanced(entries)
    missing = sorted({e.app for e in entries if not e.deployed})
    lines = ["# LiteLLM proxy config generated by `modaliac export litellm`."]
    sources: dict[str, list[str]] = {}
    for env, secret, key in sorted({e.key for e in entries if e.key}):
        sources.setdefault(env, []).append(f"Modal secret {secret} (key {key})")
    for env, where in sources.items():
        if len(where) == 1:
            lines.append(_comment(f"Set {env} to the API key: the value in {where[0]}."))
        else:
            lines.append(
                _comment(
                    f"Set {env} to the API key of {', '.join(where)}: one variable, so they "
                    "must hold the same key (or give them different api_key_env)."
                )
            )
    lines += [_comment(line) for line in [*(skipped or []), *shared]]
    if missing:
        lines.append(
            _comment(
                "NOTE: not deployed (placeholder api_base; run `modaliac apply`, then export "
                f"again): {', '.join(missing)}"
            )
        )
    lines.append("model_list:")
    if not entries:
        lines[-1] += " []"
    for entry in entries:
        lines.append(f"  - model_name: {yaml_string(entry.model_name)}")
        for section, values in (("litellm_params", entry.params), ("model_info", entry.info)):
            lines.append(f"    {section}:")
            lines += [f"      {key}: {yaml_string(value)}" for key, value in values.items()]
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
        metavar="VAR",
        type=env_var_name,
        help="environment variable LiteLLM reads every gateway router's key from (default: "
        "each router's own router.api_key_env)",
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

    def exported(urls: dict[tuple[str, str | None], str | None]) -> tuple[list[Entry], list[str]]:
        found, skipped = service_entries(services, urls)
        return litellm_entries(loaded, urls, args.api_key_env) + found, skipped

    balanced(exported({})[0])  # one name for two models fails before Modal is asked anything
    urls: dict[tuple[str, str | None], str | None] = {}
    if not args.offline and credentials_configured():
        from ..modal.lookups import router_urls

        urls = router_urls(apps)
        urls.update(service_urls([spec for _, spec in services]))
    entries, skipped = exported(urls)
    for line in skipped:
        console.error(f"note: {printable(line)}")
    text = litellm_config(entries, skipped)
    if args.output is None:
        console.print(text, end="")
    else:
        write_file(Path(args.output), text, "LiteLLM config")
        console.error(f"wrote {args.output}")
    return EXIT_OK
