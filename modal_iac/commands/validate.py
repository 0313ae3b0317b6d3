"""``modaliac validate``: check spec files, as text or as problems for machines
(``--format json|github``, made by formats.py)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..spec.address import Project
from .console import EXIT_ERROR, EXIT_OK
from .options import env_option

if TYPE_CHECKING:
    from .console import Console


def register(commands: Any) -> None:
    """Add ``validate`` to the CLI's parser (lazy: nothing heavy imported)."""
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


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from ..loading.load import load_specs
    from ..loading.modeline import file_warning as modeline_warning
    from ..plan.targets import spec_files
    from ..review.policy import endpoint_warnings

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
    from . import formats

    files, problems = report(args.specs, args.env, Project.here())
    if args.format == "json":
        console.print(formats.as_json(files, problems), end="")
    else:
        console.print(formats.as_github(problems), end="")
    return EXIT_ERROR if any(p["severity"] == "error" for p in problems) else EXIT_OK


def report(
    targets: list[str], env: str | None, project: Project
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The files the targets name (path, apps) and every problem found in them, as the
    ``--format json`` document lists them: a spec's errors never raise."""
    from ..errors import ModaliacError, SpecError
    from ..loading.load import load_specs
    from ..loading.modeline import file_warning as modeline_warning
    from ..plan.targets import spec_files
    from ..review.policy import endpoint_warnings
    from . import formats

    files: list[dict[str, object]] = []
    problems: list[dict[str, object]] = []
    try:
        loaded = load_specs(spec_files(targets), env, project)
    except ModaliacError as exc:
        problems = formats.error_problems(exc)
        loaded = []
    for item in loaded:
        files.append({"path": item.path, "apps": list(item.spec.app_names())})
        found = [*item.warnings, modeline_warning(item.path)]
        problems += [formats.problem(w, "warning") for w in found if w is not None]
    for warning in endpoint_warnings([item.spec for item in loaded]):
        problems.append(formats.problem(SpecError("", warning, code="MDL009"), "warning"))
    return files, problems
