"""The ``modaliac`` command: the argument parser, ``main``, and the one error handler.

Each command group lives in its own module of ``commands/`` and registers its subcommands;
the stages are imported inside the command functions, so ``modaliac --help`` does not pay
for pydantic, Jinja or Modal. One handler turns every ModaliacError into one line per
problem on stderr and exit status 1; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from . import __version__
from .commands.console import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    Console,
    quotable,
    wants_color,
)
from .commands.options import (
    app_env_option,
    app_version,
    env_option,
    lifecycle_options,
    progress_options,
    seconds_value,
    state_option,
)
from .modal.halt import DEPLOY_TIMEOUT, EXIT_INTERRUPTED, NO_PROGRESS_TIMEOUT
from .plan.targets import UsageError

VERSION_TEXT = f"modaliac {__version__}"


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors quote arguments as every error line does."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {quotable(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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

    # Command groups in the order --help lists them; each module registers its subcommands
    # (and imports nothing heavy until one of them runs).
    from .commands import (
        bill,
        completion,
        environments,
        explain,
        export,
        fmt,
        init,
        offers,
        plan,
        probe,
        render,
        schema,
        status,
        validate,
    )

    for group in (validate, render, export, plan):
        group.register(commands)
    _operate_commands(commands)
    for group in (probe, fmt, explain, status, bill, offers, init, environments):
        group.register(commands)
    completion.register(commands, parser)  # the script completes this very parser
    schema.register(commands)

    _debug_after_subcommand(commands)
    return parser


def _operate_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    """The commands that change Modal or the state (run by ``commands/operate.py``, imported
    only when one of them runs)."""
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
        type=seconds_value,
        default=DEPLOY_TIMEOUT,
        metavar="SECONDS",
        help=f"fail an app whose deploy has not finished after this long (default "
        f"{DEPLOY_TIMEOUT:g}: time for a first image build)",
    )
    apply.add_argument(
        "--no-progress-timeout",
        type=seconds_value,
        default=NO_PROGRESS_TIMEOUT,
        metavar="SECONDS",
        help=f"stop the apply when Modal answers nothing for this long (default "
        f"{NO_PROGRESS_TIMEOUT:g}; the SDK heartbeats every 15 s)",
    )
    apply.add_argument(
        "--build-dir",
        help="where the deployed files are written (default: .modaliac/build at the project root)",
    )
    state_option(apply, lock=True)
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
    state_option(destroy, lock=True)
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
    state_option(adopt, lock=True)
    adopt.set_defaults(run="commands.operate:cmd_import")

    rollback = commands.add_parser(
        "rollback",
        help="roll an app back to an earlier deployment",
        description="Roll a managed app back on Modal (default: the previous version).",
    )
    rollback.add_argument("target", metavar="APP|SPEC")
    rollback.add_argument(
        "--to",
        type=app_version,
        default=-1,
        metavar="VERSION",
        help="the version as `state list` prints it (v2) or its number (2)",
    )
    rollback.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    app_env_option(rollback)
    state_option(rollback, lock=True)
    progress_options(rollback)
    rollback.set_defaults(run="commands.operate:cmd_rollback", confirm=True)

    state = commands.add_parser(
        "state", help="show the recorded state", description="List or show recorded apps."
    )
    state_commands = state.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    state_list = state_commands.add_parser("list", help="list recorded apps")
    state_list.add_argument("--format", choices=("text", "json"), default="text")
    state_option(state_list)
    state_show = state_commands.add_parser("show", help="show one recorded app")
    state_show.add_argument("target", metavar="APP|SPEC")
    app_env_option(state_show)
    state_show.add_argument("--source", action="store_true", help="include the deployed file")
    state_option(state_show)
    state_rm = state_commands.add_parser(
        "rm",
        help="forget apps without touching Modal",
        description="Remove apps from the state; Modal keeps running them (import adopts one "
        "again).",
    )
    state_rm.add_argument("targets", nargs="+", metavar="ADDRESS|SPEC")
    app_env_option(state_rm)
    state_option(state_rm, lock=True)
    state_mv = state_commands.add_parser(
        "mv",
        help="record an app under another address (a rename)",
        description="Move a recorded app to another address, for an app renamed in its spec. "
        "Modal cannot rename an app: the next apply deploys the new address and then stops "
        "the old one, instead of planning a delete and an unrelated create.",
    )
    state_mv.add_argument("source", metavar="OLD")
    state_mv.add_argument("destination", metavar="NEW")
    state_option(state_mv, lock=True)
    state_unlock = state_commands.add_parser(
        "unlock",
        help="remove a state lock on Modal whose holder is gone",
        description="Remove the lock of a state kept on Modal (--state modal:...) whose holder "
        "is gone or that no modaliac run wrote, as a refused run names it: only the lock with "
        "that id. A local state's lock is the OS's and is freed when its holder exits.",
    )
    state_unlock.add_argument("lock_id", metavar="LOCK_ID")
    state_option(state_unlock)
    state.set_defaults(run="commands.state:cmd_state")


def _debug_after_subcommand(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``modaliac plan --debug`` means ``modaliac --debug plan``: every subcommand (and
    sub-subcommand) takes ``--debug``; SUPPRESS leaves the top-level value when absent."""
    for sub in commands.choices.values():
        sub.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                _debug_after_subcommand(action)


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
    console.color = wants_color(sys.stdout, args.color)
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
