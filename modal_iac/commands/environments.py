"""``modaliac environments``: the ``--env`` values a full rollout of the specs plans, for a CI
matrix (``--format json`` is a list GitHub's ``fromJSON`` takes as it is)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..loading.load import LoadedSpec

BASE = ""  # no --env: the specs' base, in the workspace's default environment


def register(commands: Any) -> None:
    """Add this module's subcommand to the CLI's parser (lazy: nothing heavy imported)."""
    environments = commands.add_parser(
        "environments",
        help="list the environments the specs define (for a CI matrix)",
        description=(
            "List every name under the specs' environments: keys, in the order the specs first "
            "name them (files in path order): one `plan --env NAME` each covers every app (a "
            "spec without environments: deploys to NAME too). When no "
            "spec defines any, the one environment is the base (no --env), listed as an empty "
            "string in JSON and as '(base)' in text."
        ),
    )
    environments.add_argument("specs", nargs="*", metavar="SPEC|DIR", help="default: specs/")
    environments.add_argument("--format", choices=("text", "json"), default="text")
    environments.set_defaults(run=cmd_environments)


def cmd_environments(args: argparse.Namespace, console: Any) -> int:
    import json

    from ..loading.load import load_specs
    from ..plan.targets import spec_files, spec_targets
    from ..spec.address import Project

    project = Project.here()
    files = spec_files(spec_targets(args.specs, project, "environments"))
    names = environment_names(load_specs(files, None, project))
    if args.format == "json":
        console.print(json.dumps(names))
    else:
        console.print("\n".join(name or "(base)" for name in names))
    return 0


def environment_names(loaded: list[LoadedSpec]) -> list[str]:
    """The ``environments:`` names of ``loaded`` in the order they are first named (a rollout
    goes through them in that order: staging before prod), or ``[BASE]`` when there are none."""
    names = {name: None for item in loaded for name in getattr(item.spec, "environments", {})}
    return list(names) or [BASE]
