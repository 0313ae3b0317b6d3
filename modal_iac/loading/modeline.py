"""The ``# yaml-language-server: $schema=PATH`` line that gives editors the spec's schema.

PATH is relative to the spec, so a spec moved into a sub-directory (``specs/chat/``) keeps a
``../schema.json`` that no longer finds anything, and the editor silently stops completing.
``validate`` warns about such a line; ``fmt`` points it at the project's schema.json.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SpecError

SCHEMA_LINE = "# yaml-language-server: $schema="
SCHEMA_FILE = "schema.json"


def reference(spec: Path, schema: Path) -> str:
    """The modeline's PATH for ``spec``: ``schema`` relative to the spec's directory."""
    parent = Path(os.path.abspath(spec)).parent
    return Path(os.path.relpath(os.path.abspath(schema), parent)).as_posix()


def modeline(spec: Path, schema: Path) -> str:
    return f"{SCHEMA_LINE}{reference(spec, schema)}"


def project_schema(spec: Path) -> Path | None:
    """The nearest schema.json in the spec's directory or above it, if any."""
    for directory in Path(os.path.abspath(spec)).parents:
        candidate = directory / SCHEMA_FILE
        if os.path.isfile(candidate):  # never raises: a name the system refuses is no file
            return candidate
    return None


def first_line(text: str) -> tuple[str, str]:
    """``text``'s first line, and the rest from its line end on. A line ends at LF, CRLF or
    a lone CR, as YAML reads it: a file with CR line ends is not all one line."""
    end = len(text)
    for mark in ("\r", "\n"):
        found = text.find(mark)
        if found != -1:
            end = min(end, found)
    return text[:end], text[end:]


def _target(line: str) -> str | None:
    """The PATH a modeline names, or None for another line or a URL."""
    if not line.startswith(SCHEMA_LINE):
        return None
    target = line.removeprefix(SCHEMA_LINE).strip()
    return None if "://" in target or not target else target


def broken(spec: Path, text: str) -> str | None:
    """The PATH of ``text``'s modeline when it names no existing file, else None."""
    target = _target(first_line(text)[0])
    if target is None or os.path.isfile(Path(os.path.abspath(spec)).parent.joinpath(target)):
        return None
    return target


def warning(shown: str, spec: Path, text: str) -> SpecError | None:
    """``validate``'s warning about a modeline that points at nothing, with the fix."""
    target = broken(spec, text)
    if target is None:
        return None
    found = project_schema(spec)
    fix = (
        f"run modaliac fmt to point it at {reference(spec, found)}"
        if found is not None
        else "write the schema with modaliac schema -o schema.json at the project root"
    )
    column = len(SCHEMA_LINE) + 1
    message = f"the schema line names {target}, which does not exist: editors check nothing"
    return SpecError(shown, f"{message}; {fix}", line=1, column=column, code="modeline", fix=fix)


def fixed(spec: Path, text: str) -> str:
    """``text`` with a modeline that points at nothing pointed at the project's schema."""
    if broken(spec, text) is None:
        return text
    found = project_schema(spec)
    if found is None:
        return text
    return modeline(spec, found) + first_line(text)[1]


def file_warning(path: str) -> SpecError | None:
    """``warning`` for the spec file at ``path`` (as the user named it)."""
    from .parse import decode, read

    spec = Path(path)
    return warning(path, spec, decode(read(spec, path), path))
