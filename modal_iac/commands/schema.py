"""``modaliac schema``: the JSON schema of specs (schema.py), printed, written or checked."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import write_file
from .console import EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from .console import Console


def register(commands: Any) -> None:
    """Add ``schema`` to the CLI's parser (lazy: nothing heavy imported)."""
    schema = commands.add_parser(
        "schema",
        help="print the JSON schema of specs",
        description="Print (or write, or check) the JSON schema generated from the spec models.",
    )
    schema.add_argument("-o", "--output", metavar="FILE", help="write the schema to FILE")
    schema.add_argument("--check", metavar="FILE", help="exit 1 if FILE is not up to date")
    schema.set_defaults(run=cmd_schema)


def cmd_schema(args: argparse.Namespace, console: Console) -> int:
    from ..spec.schema import schema_text

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
        write_file(Path(args.output), text, "schema")
        console.error(f"wrote {args.output}")
    else:
        console.print(text, end="")
    return EXIT_OK
