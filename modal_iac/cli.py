"""The ``modaliac`` command. Parses arguments, calls the stages, prints, and sets the exit code.

Imports of the stages happen inside the command functions: ``modaliac --help`` must not
pay for pydantic, Jinja or Modal. One handler turns every ModaliacError into one line per
problem on stderr and exit status 1; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from . import __version__
from .modal.halt import DEPLOY_TIMEOUT, EXIT_INTERRUPTED, NO_PROGRESS_TIMEOUT
from .plan.targets import UsageError
from .spec.address import Project

if TYPE_CHECKING:
    from .loading.load import LoadedSpec
    from .review.cost import Costing
    from .spec.gateway import GatewaySpec
    from .spec.models import Spec

REGISTERED_COMMAND_MODULES = (
    "probe",
    "fmt",
    "explain",
    "status",
    "bill",
    "offers",
    "init",
    "environments",
)
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CHANGES = 0, 1, 2, 2
VERSION_TEXT = f"modaliac {__version__}"
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader left


class Console:
    """Where output goes, and whether it may be coloured. Passed in, never global.

    A reader that goes away (``modaliac plan | head -1``) is not an error: the rest of the
    output is dropped and the command carries on (an apply never stops half way because
    nobody reads its progress); ``lost`` says it happened.
    """

    def __init__(self, out: TextIO, err: TextIO, *, color: bool) -> None:
        self.out, self.err, self.color = out, err, color
        self.lost = False

    def print(self, text: str = "", end: str = "\n") -> None:
        self._write(self.out, text + end)

    def error(self, text: str) -> None:
        self._write(self.err, text + "\n")

    def flush(self) -> None:
        for stream in (self.out, self.err):
            try:
                stream.flush()
            except BrokenPipeError:
                self.drop(stream)

    def _write(self, stream: TextIO, text: str) -> None:
        try:
            stream.write(text)
        except BrokenPipeError:
            self.drop(stream)

    def drop(self, stream: TextIO) -> None:
        """Send what ``stream`` still holds, and everything after, nowhere: its reader left,
        and the interpreter's last flush must not fail with a traceback either."""
        self.lost = True
        try:
            fd = stream.fileno()
        except (OSError, ValueError):  # not a file (a test's buffer): nothing to redirect
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)


def _wants_color(stream: TextIO, choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


# -- commands ---------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from .loading.load import load_specs
    from .loading.modeline import file_warning as modeline_warning
    from .plan.targets import spec_files
    from .review.policy import endpoint_warnings

    if args.format != "text":
        return _validate_report(args, console)
    loaded = load_specs(spec_files(args.specs), args.env, Project.here())
    for item in loaded:
        console.print(f"{item.path}: ok ({', '.join(item.spec.app_names())})")
        for found in item.warnings:
            console.error(f"warning: {found}")
        if (broken := modeline_warning(item.path)) is not None:
            console.error(f"warning: {broken}")
    for warning in endpoint_warnings([item.spec for item in loaded]):
        console.error(f"warning: {warning}")
    return EXIT_OK


def _validate_report(args: argparse.Namespace, console: Console) -> int:
    """``validate --format json|github``: every problem on stdout, errors still exit 1."""
    from .commands import formats
    from .errors import ModaliacError, SpecError
    from .loading.load import load_specs
    from .loading.modeline import file_warning as modeline_warning
    from .plan.targets import spec_files
    from .review.policy import endpoint_warnings

    files: list[dict[str, object]] = []
    problems: list[dict[str, object]] = []
    try:
        loaded = load_specs(spec_files(args.specs), args.env, Project.here())
    except ModaliacError as exc:
        problems = formats.error_problems(exc)
        loaded = []
    for item in loaded:
        files.append({"path": item.path, "apps": list(item.spec.app_names())})
        found = [*item.warnings, modeline_warning(item.path)]
        problems += [formats.problem(w, "warning") for w in found if w is not None]
    for warning in endpoint_warnings([item.spec for item in loaded]):
        problems.append(formats.problem(SpecError("", warning, code="MDL009"), "warning"))
    if args.format == "json":
        console.print(formats.as_json(files, problems), end="")
    else:
        console.print(formats.as_github(problems), end="")
    return EXIT_ERROR if any(p["severity"] == "error" for p in problems) else EXIT_OK


def cmd_completion(args: argparse.Namespace, console: Console) -> int:
    """A static completion script, generated by shtab from this parser (imported only here)."""
    import shtab

    console.print(shtab.complete(build_parser(), shell=args.shell), end="")
    return EXIT_OK


def cmd_render(args: argparse.Namespace, console: Console) -> int:
    from .loading.load import load_specs
    from .plan.targets import spec_files
    from .render.app import render_all

    loaded = load_specs(spec_files(args.specs), args.env, Project.here())
    if args.explain:
        for item in loaded:
            console.print(_explain(item))
        return EXIT_OK
    rendered = [app for item in loaded for app in render_all(item)]
    if args.output is None:
        if len(rendered) > 1:
            raise UsageError("render: several apps need -o DIR (one file per app)")
        console.print(rendered[0].source, end="")
        return EXIT_OK
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    for app_file in rendered:
        target = out_dir / app_file.filename
        target.write_text(app_file.source, encoding="utf-8")
        console.print(f"wrote {target}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from .commands.export import (
        http_services,
        litellm_config,
        litellm_entries,
        service_entries,
        service_urls,
    )
    from .commands.operate import credentials_configured
    from .loading.load import load_specs
    from .plan.targets import spec_files, spec_targets
    from .spec.gateway import GatewaySpec

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
        from .modal.lookups import router_urls

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
        Path(args.output).write_text(text, encoding="utf-8")
        console.error(f"wrote {args.output}")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    from .commands.operate import build_plan, credentials_configured, plan_inputs
    from .plan.present import as_json, as_markdown, as_text, text_chunks
    from .plan.targets import spec_targets, state_store

    project = Project.here()
    targets = spec_targets(args.specs, project, "plan")
    pricing = costing(args)  # a broken price file fails before Modal is consulted
    inputs = plan_inputs(args, targets, project)
    state = state_store(args.state, project, console.error).read()
    online = not args.offline and credentials_configured()
    if online:
        pricing = modal_costing(pricing, args)
    plan = build_plan(inputs, state, project, online=online, targets=targets)

    def shown(form: str, color: bool) -> str:
        if form == "json":
            return as_json(plan, pricing)
        if form == "markdown":
            return as_markdown(plan, costing=pricing)
        return as_text(plan, color=color, costing=pricing, project=project)

    # -o FILE.json saves the plan for `apply FILE.json` and still prints --format (as
    # Terraform's plan -out does); -o with another name writes --format there instead.
    saving = "json" if args.out and args.out.endswith(".json") else args.format
    if args.out:
        Path(args.out).write_text(shown(saving, color=False), encoding="utf-8")
        console.error(f"wrote {args.out}")
    if not args.quiet and (args.out is None or saving != args.format):
        if args.format == "text":  # a change at a time: the whole text is never held
            for chunk in text_chunks(plan, color=console.color, costing=pricing, project=project):
                console.print(chunk, end="")
        else:
            console.print(shown(args.format, console.color), end="")
    if args.detailed_exitcode and plan.status == "blocked":
        return EXIT_ERROR  # apply would refuse it: not a plan to apply
    if args.detailed_exitcode and plan.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


def cmd_diff(args: argparse.Namespace, console: Console) -> int:
    from .plan.diff import diff_git, diff_recorded, format_diff
    from .plan.targets import delete_scope, desired_apps, spec_files, spec_targets, state_store

    project = Project.here()
    targets = spec_targets(args.specs, project, "diff")
    if args.base:
        diffs = diff_git(args.base, [project.recorded(t) for t in targets], project.root)
    else:
        diffs = diff_recorded(
            desired_apps(spec_files(targets), args.env, project),
            state_store(args.state, project, console.error).read(),
            delete_scope(targets, project),
            args.env,
        )
    text, differs = format_diff(diffs, color=console.color, project=project)
    console.print(text, end="")
    return EXIT_CHANGES if args.exit_code and differs else EXIT_OK


def cmd_schema(args: argparse.Namespace, console: Console) -> int:
    from .spec.schema import schema_text

    text = schema_text()
    if args.check:
        current = Path(args.check).read_text(encoding="utf-8") if Path(args.check).exists() else ""
        if current != text:
            console.error(
                f"{args.check}: stale; regenerate it with: modaliac schema -o {args.check}"
            )
            return EXIT_ERROR
        return EXIT_OK
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        console.error(f"wrote {args.output}")
    else:
        console.print(text, end="")
    return EXIT_OK


# -- helpers ----------------------------------------------------------------------------


def _explain(item: LoadedSpec) -> str:
    """Every resolved setting, marking defaults, then what the engine will be given."""
    from .render.engine import engine_kwargs, serve_argv
    from .spec.gateway import GatewaySpec
    from .spec.settings import explicit, settings

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
    from .review.cost import load_prices
    from .spec.placement import region_multiplier

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
    from .spec.gateway import app_settings, serve_argv

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


# -- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modaliac",
        description="Infrastructure as code for model serving on Modal.",
        epilog="Specs are YAML files; see examples/ and schema.json.",
    )
    parser.add_argument("--version", action="version", version=VERSION_TEXT)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour output (auto: on a terminal, unless NO_COLOR is set)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    validate = commands.add_parser(
        "validate", help="check specs against the schema", description="Check spec files."
    )
    validate.add_argument("specs", nargs="+", metavar="SPEC|DIR")
    validate.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="json: one document on stdout; github: workflow annotations (::error file=...::)",
    )
    env_option(validate)
    validate.set_defaults(run=cmd_validate)

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
        default="VLLM_API_KEY",
        metavar="VAR",
        help="environment variable LiteLLM reads the gateway key from (default VLLM_API_KEY)",
    )
    export.add_argument(
        "--offline", action="store_true", help="do not ask Modal for URLs: placeholders only"
    )
    env_option(export)
    export.set_defaults(run=cmd_export)

    plan = commands.add_parser(
        "plan",
        help="show what applying the specs would change",
        description=(
            "Compare specs with the recorded state and show the changes. With a directory "
            "(default: specs/), apps whose spec was removed from it are planned for deletion."
        ),
    )
    plan.add_argument("specs", nargs="*", metavar="SPEC|DIR")
    _state_option(plan)
    plan.add_argument(
        "--offline",
        action="store_true",
        help="do not consult Modal (the default when no Modal credentials are configured)",
    )
    plan.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    plan.add_argument(
        "-o",
        "--output",
        dest="out",
        metavar="FILE",
        help=(
            "write the plan to FILE: FILE.json is the saved plan for `apply FILE.json`, and the "
            "plan in --format (text unless json) is printed too; another name gets the --format"
        ),
    )
    plan.add_argument("--out", dest="out", help=argparse.SUPPRESS)  # the old spelling
    plan.add_argument("-q", "--quiet", action="store_true", help="print nothing on stdout")
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 for no changes, 1 for errors or a blocked plan, 2 when there are changes",
    )
    lifecycle_options(plan)
    cost_options(plan)
    env_option(plan)
    plan.set_defaults(run=cmd_plan)

    diff = commands.add_parser(
        "diff",
        help="diff the generated files against the state or a git revision",
        description=(
            "Unified diff of the generated Modal files, plus the settings diff: between what "
            "is recorded as applied and what the specs render now, or with --base between a "
            "git revision of the specs and the working tree (no Modal credentials needed)."
        ),
    )
    diff.add_argument("specs", nargs="*", metavar="SPEC|DIR")
    diff.add_argument("--base", metavar="GITREF", help="compare with the specs at this revision")
    diff.add_argument(
        "--exit-code", action="store_true", help="exit 2 when something differs (0 otherwise)"
    )
    _state_option(diff)
    env_option(diff)
    diff.set_defaults(run=cmd_diff)

    apply = commands.add_parser(
        "apply",
        help="deploy the specs to Modal",
        description=(
            "Plan against Modal, ask, then deploy in parallel and record each app in the state. "
            "With a JSON plan file (plan -o plan.json), apply exactly that plan, refusing it if "
            "the recorded or observed state changed since."
        ),
    )
    apply.add_argument("targets", nargs="*", metavar="PLANFILE|SPEC|DIR")
    apply.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    apply.add_argument("--parallel", type=int, default=16, help="apps deployed at once (16)")
    apply.add_argument(
        "--deploy-timeout",
        type=_seconds,
        default=DEPLOY_TIMEOUT,
        metavar="SECONDS",
        help=f"fail an app whose deploy has not finished after this long (default "
        f"{DEPLOY_TIMEOUT:g}: time for a first image build)",
    )
    apply.add_argument(
        "--no-progress-timeout",
        type=_seconds,
        default=NO_PROGRESS_TIMEOUT,
        metavar="SECONDS",
        help=f"stop the apply when Modal answers nothing for this long (default "
        f"{NO_PROGRESS_TIMEOUT:g}; the SDK heartbeats every 15 s)",
    )
    apply.add_argument(
        "--build-dir",
        help="where the deployed files are written (default: .modaliac/build at the project root)",
    )
    _state_option(apply, lock=True)
    env_option(apply)
    lifecycle_options(apply)
    progress_options(apply, logs=True)
    apply.add_argument(
        "--keep-failed",
        action="store_true",
        help="leave a new app that fails verification running (and recorded) instead of "
        "stopping it",
    )
    apply.set_defaults(run="commands.operate:cmd_apply", confirm=True)

    destroy = commands.add_parser(
        "destroy", help="stop a managed app", description="Stop an app and forget it."
    )
    destroy.add_argument("target", metavar="APP|SPEC")
    app_env_option(destroy)
    destroy.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    _state_option(destroy, lock=True)
    progress_options(destroy)
    destroy.set_defaults(run="commands.operate:cmd_destroy", confirm=True)

    adopt = commands.add_parser(
        "import",
        help="adopt an app deployed by hand",
        description="Record an app already deployed on Modal, so specs can manage it.",
    )
    adopt.add_argument("app", metavar="APP")
    adopt.add_argument(
        "--generate-spec",
        metavar="FILE",
        help="also write a spec from what Modal reports about the app (never overwrites FILE)",
    )
    app_env_option(adopt)
    _state_option(adopt, lock=True)
    adopt.set_defaults(run="commands.operate:cmd_import")

    rollback = commands.add_parser(
        "rollback",
        help="roll an app back to an earlier deployment",
        description="Roll a managed app back on Modal (default: the previous version).",
    )
    rollback.add_argument("target", metavar="APP|SPEC")
    rollback.add_argument(
        "--to",
        type=_app_version,
        default=-1,
        metavar="VERSION",
        help="the version as `state list` prints it (v2) or its number (2)",
    )
    rollback.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    app_env_option(rollback)
    _state_option(rollback, lock=True)
    progress_options(rollback)
    rollback.set_defaults(run="commands.operate:cmd_rollback", confirm=True)

    state = commands.add_parser(
        "state", help="show the recorded state", description="List or show recorded apps."
    )
    state_commands = state.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    state_list = state_commands.add_parser("list", help="list recorded apps")
    state_list.add_argument("--format", choices=("text", "json"), default="text")
    _state_option(state_list)
    state_show = state_commands.add_parser("show", help="show one recorded app")
    state_show.add_argument("target", metavar="APP|SPEC")
    app_env_option(state_show)
    state_show.add_argument("--source", action="store_true", help="include the deployed file")
    _state_option(state_show)
    state_rm = state_commands.add_parser(
        "rm",
        help="forget apps without touching Modal",
        description="Remove apps from the state; Modal keeps running them (import adopts one "
        "again).",
    )
    state_rm.add_argument("targets", nargs="+", metavar="ADDRESS|SPEC")
    app_env_option(state_rm)
    _state_option(state_rm, lock=True)
    state_mv = state_commands.add_parser(
        "mv",
        help="record an app under another address (a rename)",
        description="Move a recorded app to another address, for an app renamed in its spec. "
        "Modal cannot rename an app: the next apply deploys the new address and then stops "
        "the old one, instead of planning a delete and an unrelated create.",
    )
    state_mv.add_argument("source", metavar="OLD")
    state_mv.add_argument("destination", metavar="NEW")
    _state_option(state_mv, lock=True)
    state.set_defaults(run="commands.operate:cmd_state")

    # Command groups kept in their own modules; each registers its subcommands (and
    # imports nothing heavy until one of them runs).
    for module in REGISTERED_COMMAND_MODULES:
        importlib.import_module(f"{__package__}.commands.{module}").register(
            commands, _state_option
        )

    completion = commands.add_parser(
        "completion",
        help="print a shell completion script",
        description=(
            "Print a completion script for SHELL. bash: "
            "`modaliac completion bash > ~/.local/share/bash-completion/completions/modaliac`; "
            'zsh: `modaliac completion zsh > "${fpath[1]}/_modaliac"`; fish: '
            "`modaliac completion fish > ~/.config/fish/completions/modaliac.fish`."
        ),
    )
    completion.add_argument("shell", choices=("bash", "zsh", "fish"), metavar="SHELL")
    completion.set_defaults(run=cmd_completion)

    schema = commands.add_parser(
        "schema",
        help="print the JSON schema of specs",
        description="Print (or write, or check) the JSON schema generated from the spec models.",
    )
    schema.add_argument("-o", "--output", metavar="FILE", help="write the schema to FILE")
    schema.add_argument("--check", metavar="FILE", help="exit 1 if FILE is not up to date")
    schema.set_defaults(run=cmd_schema)
    _debug_after_subcommand(commands)
    return parser


def _app_version(text: str) -> int:
    """``v2`` or ``2``: a deployed version of an app, as Modal numbers them (from 1)."""
    number = text[1:] if text[:1] in ("v", "V") else text
    if not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version: write it as v2 or 2")
    return int(number)


def _debug_after_subcommand(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``modaliac plan --debug`` means ``modaliac --debug plan``: every subcommand (and
    sub-subcommand) takes ``--debug``; SUPPRESS leaves the top-level value when absent."""
    for sub in commands.choices.values():
        sub.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                _debug_after_subcommand(action)


def lifecycle_options(parser: argparse.ArgumentParser) -> None:
    """``--replace`` and ``--refresh-only``, shared by plan and apply (Terraform's names)."""
    parser.add_argument(
        "--replace",
        action="append",
        metavar="ADDRESS",
        help="redeploy this app even if nothing changed, so Modal takes a new snapshot (after "
        "a moving revision changed, say); repeat for several",
    )
    parser.add_argument(
        "--refresh-only",
        action="store_true",
        help="deploy nothing: record what Modal runs (hand-made changes, a hotfix, a stopped "
        "app) into the state",
    )
    parser.add_argument(
        "--strategy",
        choices=("rolling", "recreate"),
        help="how every app of this run is deployed, over each spec's deploy.strategy: "
        "rolling (new containers take over as old ones drain) or recreate (the running "
        "containers are stopped as the new version is published; the way out at max_containers)",
    )
    parser.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after each deploy, send one real request and roll the app back unless it is "
        "answered (over each spec's verify.enabled; --no-verify turns it off)",
    )


def cost_options(parser: argparse.ArgumentParser) -> None:
    """``--prices`` and ``--active-hours-per-day``, shared by plan and explain."""
    parser.add_argument(
        "--prices",
        metavar="FILE",
        help="a JSON price table whose rows replace the bundled ones (or $MODALIAC_PRICES)",
    )
    parser.add_argument(
        "--active-hours-per-day",
        type=_hours,
        metavar="HOURS",
        help="estimate each app's month with one container per pool busy this many hours a "
        "day (overrides the specs' usage.active_hours_per_day)",
    )


def costing(args: argparse.Namespace) -> Costing:
    """The pricing the cost options ask for."""
    from .review.cost import Costing, load_prices

    return Costing(load_prices(args.prices), args.active_hours_per_day)


def modal_costing(pricing: Costing, args: argparse.Namespace) -> Costing:
    """``pricing`` with Modal's own rates over the shipped table (``rates.py``)."""
    from dataclasses import replace

    from .modal.rates import current_prices

    return replace(pricing, prices=current_prices(pricing.prices, args.prices))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected hours, got {text!r}") from None
    if not 0 <= value <= 24:
        raise argparse.ArgumentTypeError(f"expected 0 to 24 hours, got {text!r}")
    return value


def progress_options(parser: argparse.ArgumentParser, *, logs: bool = False) -> None:
    """How a command that changes Modal shows its progress (see progress.py)."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per event per line on stdout (app, phase, elapsed, status), for "
        "CI; everything else goes to stderr (needs --yes where the command asks)",
    )
    if logs:
        parser.add_argument(
            "--logs",
            action="store_true",
            help="stream Modal's image build output (it is always kept in "
            ".modaliac/logs/ADDRESS.log)",
        )


def env_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        metavar="NAME",
        type=environment_name,
        help="apply the spec's environments: NAME overrides (NAME is also the Modal "
        "environment unless the override sets one; a spec without environments: deploys to "
        "NAME); without it, specs load their base",
    )


def app_env_option(parser: argparse.ArgumentParser) -> None:
    """``--env`` of the commands that name one app: its Modal environment (a spec path
    target: that spec's environments: entry, as ``env_option``)."""
    parser.add_argument(
        "--env",
        metavar="NAME",
        type=environment_name,
        help="Modal environment of the app (for a spec: its environments: entry); default: "
        "the Modal profile's environment",
    )


def environment_name(text: str) -> str:
    from .spec.address import AddressError, check_environment

    try:
        return check_environment(text, "--env")
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--env: ")) from None


def _state_option(parser: argparse.ArgumentParser, *, lock: bool = False) -> None:
    parser.add_argument(
        "--state",
        help="state file, or modal:VOLUME for state kept on Modal (default: $MODALIAC_STATE, "
        "else .modaliac/state.json at the project root)",
    )
    if lock:
        parser.add_argument(
            "--lock-timeout",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="wait this long for another apply to release the state (default: fail at once)",
        )


def _ask(question: str) -> bool:
    """Ask on the terminal; without one, refuse (use --yes in scripts and CI)."""
    if not sys.stdin.isatty():
        raise UsageError("not a terminal: pass --yes to go ahead without confirmation")
    return input(f"{question} Only 'yes' is accepted: ").strip() == "yes"


def main(argv: Sequence[str] | None = None, confirm: Callable[[str], bool] = _ask) -> int:
    console = Console(sys.stdout, sys.stderr, color=False)
    code = _main(argv, confirm, console)
    console.flush()
    return code if code or not console.lost else EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None, confirm: Callable[[str], bool], console: Console) -> int:
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:
        # What argparse's version action prints, without building the parser (and importing
        # every command module) first: scripts call `--version` to probe the tool.
        console.print(VERSION_TEXT)
        return EXIT_OK
    parser = build_parser()
    args = parser.parse_args(argv)
    console.color = _wants_color(sys.stdout, args.color)
    try:
        if isinstance(args.run, str):
            module, name = args.run.split(":")
            command = getattr(importlib.import_module(f"{__package__}.{module}"), name)
            if getattr(args, "confirm", False):
                return int(command(args, console, confirm))
            return int(command(args, console))
        run: Callable[[argparse.Namespace, Console], int] = args.run
        return run(args, console)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        console.error(f"modaliac: error: {exc}")
        return EXIT_USAGE
    except Exception as exc:
        from .errors import ModaliacError

        if args.debug:
            raise
        if isinstance(exc, ModaliacError):
            console.error(str(exc))
            return EXIT_ERROR
        console.error(f"modaliac: internal error: {type(exc).__name__}: {exc} (rerun with --debug)")
        return EXIT_ERROR
    except KeyboardInterrupt:
        console.error("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
