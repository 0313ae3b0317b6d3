"""``modaliac schema``: the JSON schema of specs (schema.py), printed, written or checked."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModaliacError
from ..files import joined, named, read_text, write_file
from .console import EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from .console import Console

MAX_SCHEMA_BYTES = 2**22  # the schema is some 100 KiB; a bigger file is no schema of ours
_FAIL = joined(ModaliacError)


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
        # Any name at all: a folder, a pipe, a NUL byte or a name too long for the file
        # system is one line, as is a file that is no schema (too big, not UTF-8).
        shown = named(args.check)
        current = read_text(Path(args.check), shown, "schema", MAX_SCHEMA_BYTES, _FAIL)
        if current != text:
            state = "does not exist" if current is None else "stale"
            console.error(f"{shown}: {state}; regenerate it with: modaliac schema -o {shown}")
            return EXIT_ERROR
        return EXIT_OK
    if args.output:
        write_file(Path(args.output), text, "schema")
        console.error(f"wrote {args.output}")
    else:
        console.print(text, end="")
    return EXIT_OK
