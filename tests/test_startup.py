"""Start-up: ``--version`` and ``--help`` answer without building more than they show.

No timing here (these machines are noisy): what is asserted is what each start imports,
in a fresh interpreter, which is what its time comes from.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from modal_iac import __version__
from modal_iac.cli import build_parser, main

HEAVY = ("pydantic", "ruamel", "jinja2", "modal", "rich", "jsonschema", "grpclib", "yaml", "vllm")
# Imported by the commands, never by --help: the state module pulls socket, uuid, getpass.
COMMAND_ONLY = (
    "modal_iac.state.store",
    "modal_iac.loading.load",
    "modal_iac.render.app",
    "modal_iac.plan.plan",
)


def started(*argv: str) -> tuple[str, set[str]]:
    """Run ``modaliac ARGV`` as the console script does, in a fresh interpreter: its stdout,
    and the top-level packages and modal_iac modules it imported."""
    code = (
        "import json, sys\n"
        "from modal_iac.cli import main\n"
        "try:\n"
        f"    code = main({list(argv)!r})\n"
        "except SystemExit as exc:  # argparse's --help\n"
        "    code = exc.code\n"
        "names = {m.split('.')[0] for m in sys.modules}\n"
        "names |= {m for m in sys.modules if m.startswith('modal_iac.')}\n"
        "sys.stderr.write('\\nIMPORTED=' + json.dumps(sorted(names)))\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stderr.rpartition("IMPORTED=")[2])
    return done.stdout, set(imported)


def test_version_prints_the_package_version_and_imports_no_command() -> None:
    out, imported = started("--version")
    assert out == f"modaliac {__version__}\n"
    assert sorted(imported & {*HEAVY, *COMMAND_ONLY}) == []
    assert "modal_iac.commands.fmt" not in imported  # the parser's command modules: never built


def test_version_after_an_option_still_goes_through_argparse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Only a lone ``--version`` is answered early; the parser's answer is the same text."""
    assert main(["--version"]) == 0
    early = capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--debug", "--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == early == f"modaliac {__version__}\n"


def test_help_lists_every_command_and_imports_nothing_heavy() -> None:
    out, imported = started("--help")
    subcommands = next(
        action for action in build_parser()._actions if action.dest == "command"
    ).choices
    assert subcommands  # the parser has commands to list
    missing = [name for name in subcommands if name not in out]
    assert not missing, f"--help does not list {missing}"
    assert sorted(imported & {*HEAVY, *COMMAND_ONLY}) == []
