"""The ``modaliac`` command. Parses arguments, calls the stages, prints, and sets the exit code.

Imports of the stages happen inside the command functions: ``modaliac --help`` must not
pay for pydantic, Jinja or Modal. One handler turns every ModaliacError into one line per
problem on stderr and exit status 1; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from . import __version__

if TYPE_CHECKING:
    from .load import LoadedSpec
    from .plan import Desired

DEFAULT_SPEC_DIR = Path("specs")
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CHANGES = 0, 1, 2, 2


class Console:
    """Where output goes, and whether it may be coloured. Passed in, never global."""

    def __init__(self, out: TextIO, err: TextIO, *, color: bool) -> None:
        self.out, self.err, self.color = out, err, color

    def print(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)

    def error(self, text: str) -> None:
        self.err.write(text + "\n")


def _wants_color(stream: TextIO, choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


# -- commands ---------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from .load import load_specs

    loaded = load_specs(_spec_files(args.specs))
    for item in loaded:
        console.print(f"{item.path}: ok ({item.spec.app})")
    return EXIT_OK


def cmd_render(args: argparse.Namespace, console: Console) -> int:
    from .load import load_specs
    from .render import render

    loaded = load_specs(_spec_files(args.specs))
    if args.explain:
        for item in loaded:
            console.print(_explain(item))
        return EXIT_OK
    rendered = [render(item) for item in loaded]
    if args.output is None:
        if len(rendered) > 1:
            raise _Usage("render: several specs need -o DIR (one file per app)")
        console.print(rendered[0].source, end="")
        return EXIT_OK
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    for app_file in rendered:
        target = out_dir / app_file.filename
        target.write_text(app_file.source, encoding="utf-8")
        console.print(f"wrote {target}")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    from .plan import make_plan
    from .present import as_json, as_markdown, as_text
    from .state import read_state

    if not args.specs and not DEFAULT_SPEC_DIR.is_dir():
        raise _Usage(f"plan: no {DEFAULT_SPEC_DIR}/ directory here; name spec files or a directory")
    targets = args.specs or [str(DEFAULT_SPEC_DIR)]
    desired = _desired(_spec_files(targets))
    scope = [Path(t) for t in targets if Path(t).is_dir()]
    plan = make_plan(desired, read_state(Path(args.state)), scope)
    if args.format == "json":
        text = as_json(plan)
    elif args.format == "markdown":
        text = as_markdown(plan)
    else:
        text = as_text(plan, color=console.color and args.out is None)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        console.error(f"wrote {args.out}")
    else:
        console.print(text, end="")
    if args.detailed_exitcode and plan.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


def cmd_schema(args: argparse.Namespace, console: Console) -> int:
    from .schema import schema_text

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


class _Usage(Exception):
    """A command used wrongly (exit status 2), found after argument parsing."""


def _spec_files(targets: Sequence[str]) -> list[str | Path]:
    from .errors import SpecError
    from .load import find_spec_files

    files: list[str | Path] = []
    for target in targets:
        found = find_spec_files(target)
        if not found:
            raise SpecError(target, "holds no *.yaml spec files")
        files.extend(found)
    return files


def _desired(files: list[str | Path]) -> list[Desired]:
    from .load import load_specs
    from .plan import Desired
    from .render import render

    return [Desired(item, render(item)) for item in load_specs(files)]


def _explain(item: LoadedSpec) -> str:
    """Every resolved setting, marking defaults, then what the engine will be given."""
    from .engine import engine_kwargs, serve_argv
    from .settings import explicit, settings

    spec = item.spec
    values = settings(spec)
    chosen = explicit(spec)
    width = max(len(k) for k in values)
    lines = [f"# {item.path}: app {spec.app}", "# (default) marks values the spec does not set"]
    for key, value in values.items():
        mark = (
            "" if key in chosen or any(key.startswith(c + ".") for c in chosen) else "  (default)"
        )
        lines.append(f"{key.ljust(width)} = {_json(value)}{mark}")
    lines.append("")
    lines.append(f"# vLLM engine arguments (the class): {_json(engine_kwargs(spec))}")
    if spec.surfaces.http is not None:
        argv = " ".join(serve_argv(spec, spec.surfaces.http.port))
        lines.append(f"# vllm serve {argv}")
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--version", action="version", version=f"modaliac {__version__}")
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
    render.set_defaults(run=cmd_render)

    plan = commands.add_parser(
        "plan",
        help="show what applying the specs would change",
        description=(
            "Compare specs with the recorded state and show the changes. With a directory "
            "(default: specs/), apps whose spec was removed from it are planned for deletion."
        ),
    )
    plan.add_argument("specs", nargs="*", metavar="SPEC|DIR")
    plan.add_argument(
        "--state",
        default=os.environ.get("MODALIAC_STATE", ".modaliac/state.json"),
        help="state file (default: .modaliac/state.json, or $MODALIAC_STATE)",
    )
    plan.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    plan.add_argument("-o", "--out", metavar="FILE", help="write the plan to FILE")
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 for no changes, 1 for errors, 2 when there are changes",
    )
    plan.set_defaults(run=cmd_plan)

    schema = commands.add_parser(
        "schema",
        help="print the JSON schema of specs",
        description="Print (or write, or check) the JSON schema generated from the spec models.",
    )
    schema.add_argument("-o", "--output", metavar="FILE", help="write the schema to FILE")
    schema.add_argument("--check", metavar="FILE", help="exit 1 if FILE is not up to date")
    schema.set_defaults(run=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(sys.stdout, sys.stderr, color=_wants_color(sys.stdout, args.color))
    run: Callable[[argparse.Namespace, Console], int] = args.run
    try:
        return run(args, console)
    except _Usage as exc:
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
        if isinstance(exc, KeyboardInterrupt):
            return 130
        console.error(f"modaliac: internal error: {type(exc).__name__}: {exc} (rerun with --debug)")
        return EXIT_ERROR
    except KeyboardInterrupt:
        console.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
