"""``modaliac render``: the Modal app files of specs, or with ``--explain`` every resolved
setting and what the engine will be given."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import check_writable, write_file
from ..plan.targets import UsageError
from ..spec.address import Address, Project
from .console import EXIT_OK
from .options import env_option

if TYPE_CHECKING:
    from ..loading.load import LoadedSpec
    from ..render.app import Rendered
    from ..spec.gateway import GatewaySpec
    from ..spec.service import Spec
    from .console import Console


def register(commands: Any) -> None:
    """Add ``render`` to the CLI's parser (lazy: nothing heavy imported)."""
    render = commands.add_parser(
        "render",
        help="write the Modal app files for specs",
        description="Render specs into Modal app files (stdout for one spec, or -o DIR).",
    )
    render.add_argument("specs", nargs="+", metavar="SPEC|DIR")
    render.add_argument("-o", "--output", metavar="DIR", help="write <app>.py files here")
    render.add_argument(
        "--explain", action="store_true", help="show every resolved setting and its default"
    )
    env_option(render)
    render.set_defaults(run=cmd_render)


def cmd_render(args: argparse.Namespace, console: Console) -> int:
    from ..loading.load import load_specs
    from ..plan.targets import spec_files
    from ..render.app import render_all

    loaded = load_specs(spec_files(args.specs), args.env, Project.here())
    if args.explain:
        for item in loaded:
            console.print(_explain(item))
        return EXIT_OK
    rendered = [(item, app) for item in loaded for app in render_all(item)]
    if args.output is None:
        if len(rendered) > 1:
            raise UsageError("render: several apps need -o DIR (one file per app)")
        console.print(rendered[0][1].source, end="")
        return EXIT_OK
    out_dir = Path(args.output)
    _refuse_shared_files(rendered, out_dir)
    _make_folder(out_dir)
    for _, app_file in rendered:
        check_writable(out_dir / app_file.filename, "app file")  # all, before writing any
    for _, app_file in rendered:
        target = out_dir / app_file.filename
        write_file(target, app_file.source, "app file")
        console.print(f"wrote {target}")
    return EXIT_OK


def _make_folder(folder: Path) -> None:
    from ..errors import ModaliacError

    if folder.exists() and not folder.is_dir():
        raise ModaliacError(f"{folder}: not a directory; -o names the folder the app files go to")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModaliacError(f"{folder}: cannot make the folder ({exc.strerror})") from None


def _refuse_shared_files(rendered: list[tuple[LoadedSpec, Rendered]], out_dir: Path) -> None:
    """Two apps whose files would have one name (the same app in two environments, or names
    that differ only in case, which case-insensitive disks such as macOS's take for one) are
    refused before anything is written: the second file would replace the first, and
    deploying it would deploy the other app's code."""
    from ..errors import ModaliacError

    first: dict[str, tuple[LoadedSpec, Rendered]] = {}
    for item, app_file in rendered:
        key = app_file.filename.casefold()
        if key not in first:
            first[key] = (item, app_file)
            continue
        other_item, other = first[key]
        where = f"would both be written to {out_dir / other.filename}"
        if other.filename != app_file.filename:
            where = (
                f"would be written to {out_dir / other.filename} and {app_file.filename}, one "
                "file on a case-insensitive disk (macOS, Windows)"
            )
        raise ModaliacError(
            f"{item.path}: render: {_address(item, app_file)} and {_address(other_item, other)}"
            f" ({other_item.path}) {where}; render them into separate -o folders (one "
            "environment at a time), or rename one app"
        )


def _address(item: LoadedSpec, app_file: Rendered) -> Address:
    return Address(item.spec.environment, app_file.app)


def _explain(item: LoadedSpec) -> str:
    """Every resolved setting, marking defaults, then what the engine will be given."""
    from ..render.engine import engine_kwargs, serve_argv
    from ..spec.gateway import GatewaySpec
    from ..spec.settings import explicit, settings

    spec = item.spec
    if isinstance(spec, GatewaySpec):
        return _explain_gateway(item, spec)
    values = settings(spec)
    chosen = explicit(spec)
    width = max(len(k) for k in values)
    lines = [f"# {item.path}: app {spec.app}", "# (default) marks values the spec does not set"]
    for key, value in values.items():
        mark = (
            "" if key in chosen or any(key.startswith(c + ".") for c in chosen) else "  (default)"
        )
        lines.append(f"{key.ljust(width)} = {_json(value)}{mark}")
    lines += _secret_lines(spec)
    lines.append("")
    lines += _explain_placement(spec)
    if spec.engine.name != "vllm":
        return "\n".join(lines) + "\n"
    lines.append(f"# vLLM engine arguments (the class): {_json(engine_kwargs(spec))}")
    if spec.surfaces.http is not None:
        argv = " ".join(serve_argv(spec, spec.surfaces.http.port))
        lines.append(f"# vllm serve {argv}")
    return "\n".join(lines) + "\n"


def _explain_placement(spec: Spec) -> list[str]:
    """What a region costs, and where custom domains must be set up first."""
    from ..review.cost import load_prices
    from ..spec.placement import region_multiplier

    lines = []
    regions = spec.placement.region
    if regions:
        multiplier = region_multiplier(regions, load_prices().regions)
        price = f"x{multiplier:g}" if multiplier is not None else "not in the price table"
        lines.append(
            f"# region {', '.join(regions)}: Modal multiplies GPU, CPU and memory rates "
            f"({price}, https://modal.com/docs/guide/region-selection)"
        )
    http = spec.surfaces.http
    domains = (http.custom_domains if http is not None else None) or []
    for domain in domains:
        lines.append(
            f"# custom domain {domain}: add and verify it in the Modal workspace's settings "
            "before deploying"
        )
    return lines


def _explain_gateway(item: LoadedSpec, spec: GatewaySpec) -> str:
    from ..spec.gateway import app_settings, serve_argv

    # What the spec leaves to modaliac's defaults that a gateway reader most needs to see.
    defaults = {
        f"models.{m.name}.concurrency"
        for m in spec.models
        if spec.scaling.concurrency is None and m.max_num_seqs is None
    }
    if spec.router.upstream_timeout is None:
        defaults.add("router.upstream_timeout")
    lines = []
    for app in spec.apps():
        lines.append(f"# {item.path}: app {app.name} (gateway, {app.gpu})")
        values = app_settings(spec, app.name)
        width = max(len(k) for k in values)
        lines += [
            f"{key.ljust(width)} = {_json(value)}" + ("  (default)" if key in defaults else "")
            for key, value in values.items()
        ]
        lines += _secret_lines(spec)
        lines += [f"# {m.name}: vllm serve {' '.join(serve_argv(m))}" for m in app.models]
        lines.append("")
    return "\n".join(lines)


def _secret_lines(spec: Spec | GatewaySpec) -> list[str]:
    """The keys the attached secrets must hold (the deploy checks them with required_keys)."""
    keys = spec.secret_keys()
    return [
        f"# secret {name}: " + (f"must hold {keys[name]}" if name in keys else "keys not checked")
        for name in spec.referenced_secrets()
    ]


def _json(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
