"""``modaliac plan`` and ``modaliac diff``: what applying the specs would change, shown
(text, JSON, Markdown, or the generated files' diff) and never done; and ``build_plan``, the
one way ``plan``, ``apply`` and the re-check of a saved plan make a plan."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModaliacError
from ..files import check_writable, write_file
from ..spec.address import Project, profile_environment
from .console import EXIT_CHANGES, EXIT_ERROR, EXIT_OK
from .options import (
    cost_options,
    costing,
    env_option,
    lifecycle_options,
    modal_costing,
    state_option,
)

if TYPE_CHECKING:  # the rest is imported where it is used: `modaliac --help` imports this module
    from ..modal.observe import Observation
    from ..plan.changes import Inputs, Plan
    from ..plan.plan import Desired
    from ..state.records import State
    from .console import Console


def register(commands: Any) -> None:
    """Add ``plan`` and ``diff`` to the CLI's parser (lazy: nothing heavy imported)."""
    plan = commands.add_parser(
        "plan",
        help="show what applying the specs would change",
        description=(
            "Compare specs with the recorded state and show the changes. With a directory "
            "(default: specs/), apps whose spec was removed from it are planned for deletion."
        ),
    )
    plan.add_argument("specs", nargs="*", metavar="SPEC|DIR")
    state_option(plan)
    plan.add_argument(
        "--offline",
        action="store_true",
        help=(
            "do not consult Modal: compare the specs with the recorded state only (without "
            "Modal credentials a plan is offline anyway and says so, and --detailed-exitcode "
            "refuses to run unless --offline is given)"
        ),
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
    state_option(diff)
    env_option(diff)
    diff.set_defaults(run=cmd_diff)


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    from ..plan.present import as_json, as_markdown, as_text, text_chunks
    from ..plan.targets import spec_targets, state_store

    project = Project.here()
    if args.out:
        check_writable(Path(args.out), "plan")  # before the work, not after it
    online = not args.offline and credentials_configured()
    unasked = not online and not args.offline  # offline only for want of credentials
    if unasked and args.detailed_exitcode:  # Terraform's plan too fails when it cannot refresh
        raise ModaliacError(
            "plan --detailed-exitcode: no Modal credentials, so the plan cannot tell whether "
            f"Modal matches the specs; {CREDENTIALS_HINT}, or pass --offline to compare the "
            "specs with the recorded state only"
        )
    targets = spec_targets(args.specs, project, "plan")
    pricing = costing(args)  # a broken price file fails before Modal is consulted
    inputs = plan_inputs(args, targets, project)
    state = state_store(args.state, project, console.error).read()
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
        write_file(Path(args.out), shown(saving, color=False), "plan")
        console.error(f"wrote {args.out}")
    if not args.quiet and (args.out is None or saving != args.format):
        if args.format == "text":  # a change at a time: the whole text is never held
            for chunk in text_chunks(plan, color=console.color, costing=pricing, project=project):
                console.print(chunk, end="")
        else:
            console.print(shown(args.format, console.color), end="")
    if unasked:  # the plan says it is offline in every format; this says why, even with -q
        console.error(
            "note: no Modal credentials, so this plan compares the specs with the recorded "
            f"state only, not with Modal; {CREDENTIALS_HINT}, or pass --offline to plan so on "
            "purpose"
        )
    if args.detailed_exitcode and plan.status == "blocked":
        return EXIT_ERROR  # apply would refuse it: not a plan to apply
    if args.detailed_exitcode and plan.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


CREDENTIALS_HINT = "set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (or run `modal token new`)"


def credentials_configured() -> bool:
    """Whether Modal credentials exist, checked without importing ``modal`` (it is slow)."""
    if os.environ.get("MODAL_TOKEN_ID") and os.environ.get("MODAL_TOKEN_SECRET"):
        return True
    from ..spec.address import read_modal_config

    return any("token_id" in values for values in read_modal_config().values())


def observe_for(desired: list[Desired], state: State) -> Observation:
    """What Modal reports for every desired or recorded app, in one concurrent pass."""
    from ..modal.observe import Query, observe

    queries = {}
    for item in desired:  # what the plan kept of each spec: observing loads none again
        queries[(item.environment, item.app)] = Query(
            item.app, item.environment, item.secrets, item.volumes, item.secret_keys
        )
    for record in state.apps.values():
        queries.setdefault((record.environment, record.app), Query(record.app, record.environment))
    return observe(list(queries.values()))


def plan_inputs(args: argparse.Namespace, targets: list[str], project: Project) -> Inputs:
    """What ``plan`` or ``apply`` was asked for, as a plan records it."""
    from ..plan.changes import Inputs
    from ..plan.targets import parse_address

    return Inputs(
        targets=tuple(project.recorded(t) for t in targets),
        env=args.env,
        profile_environment=run_profile(args.env),
        replace=tuple(sorted({str(parse_address(a, args.env)) for a in args.replace or ()})),
        refresh_only=bool(args.refresh_only),
        strategy=args.strategy,
        verify=args.verify,
    )


def run_profile(env: str | None) -> str | None:
    """Without ``--env``: the environment ``MODAL_ENVIRONMENT`` or the Modal profile names for
    specs that name none (None: none, the workspace's default)."""
    return None if env is not None else profile_environment()


def desired_for(
    inputs: Inputs, project: Project, *, online: bool, targets: list[str] | None = None
) -> list[Desired]:
    """The apps the specs ``inputs`` name yield, each spec loaded and checked, and the inputs
    checked against them: what needs no state, so ``apply`` does it before taking the lock.
    ``targets``: the inputs' targets as the user typed them (errors name them so)."""
    from ..plan.targets import desired_apps, spec_files

    desired = desired_apps(spec_files(targets or _typed(inputs, project)), inputs.env, project)
    planned = {item.address for item in desired}
    for address in inputs.replace:
        if address not in planned:
            listed = ", ".join(sorted(planned)) or "nothing"
            raise ModaliacError(f"--replace {address}: not an app these specs deploy ({listed})")
    if inputs.refresh_only and not online:
        raise ModaliacError(
            "--refresh-only records what Modal runs, so it needs Modal: configure credentials "
            "(modal token new) and leave out --offline"
        )
    return desired


def _typed(inputs: Inputs, project: Project) -> list[str]:
    return [project.shown(t) or "." for t in inputs.targets]


def build_plan(
    inputs: Inputs,
    state: State,
    project: Project,
    *,
    online: bool,
    targets: list[str] | None = None,
    desired: list[Desired] | None = None,
) -> Plan:
    """The plan ``inputs`` ask for, against ``state`` and (``online``) what Modal reports:
    the one function ``plan``, ``apply`` and the re-check of a saved plan go through.
    ``targets``: the inputs' targets as the user typed them (errors name them so);
    ``desired``: what ``desired_for`` gave for them, if it ran already."""
    from ..plan.plan import make_plan
    from ..plan.refresh import refreshes
    from ..plan.targets import delete_scope

    if targets is None:
        targets = _typed(inputs, project)
    if desired is None:
        desired = desired_for(inputs, project, online=online, targets=targets)
    scope = delete_scope(targets, project)
    observation = observe_for(desired, state) if online else None
    observed = observation.apps if observation else None
    plan = make_plan(desired, state, scope, observed, inputs, project.root)
    if observation is not None:
        plan = replace(plan, workspace=observation.workspace)
    if not inputs.refresh_only or observed is None:
        return plan
    covered = [change.address for change in plan.changes]
    found = refreshes(covered, desired, state, observed)
    return replace(plan, changes=(), refreshes=tuple(found))


def cmd_diff(args: argparse.Namespace, console: Console) -> int:
    from ..plan.changes import Inputs
    from ..plan.diff import diff_git, diff_recorded, format_diff
    from ..plan.targets import delete_scope, desired_apps, spec_files, spec_targets, state_store

    project = Project.here()
    targets = spec_targets(args.specs, project, "diff")
    if args.base:
        diffs = diff_git(args.base, [project.recorded(t) for t in targets], project.root)
    else:
        diffs = diff_recorded(
            desired_apps(spec_files(targets), args.env, project),
            state_store(args.state, project, console.error).read(),
            delete_scope(targets, project),
            Inputs(env=args.env, profile_environment=run_profile(args.env)),
            project.root,
        )
    text, differs = format_diff(diffs, color=console.color, project=project)
    console.print(text, end="")
    return EXIT_CHANGES if args.exit_code and differs else EXIT_OK
