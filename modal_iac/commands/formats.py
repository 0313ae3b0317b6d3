"""Machine-readable output of ``validate``: JSON and GitHub workflow annotations.

A problem is a dict with ``severity`` (``error`` or ``warning``), ``path``, ``line``,
``column`` (1-based, or null when the YAML gives no place), ``key_path``, ``message`` and
``code`` (a policy rule such as ``MDL001``, or empty). GitHub annotations follow
https://docs.github.com/actions/reference/workflow-commands-for-github-actions: ``%``,
``\\r`` and ``\\n`` are escaped in the message, and ``,`` and ``:`` too in properties.
"""

from __future__ import annotations

import json

from ..errors import ModaliacError, SpecError, SpecErrors


def problem(found: SpecError, severity: str) -> dict[str, object]:
    return {
        "severity": severity,
        "path": found.path,
        "line": found.line,
        "column": found.column,
        "key_path": found.key_path,
        "message": found.message,
        "code": found.code,
    }


def error_problems(exc: ModaliacError) -> list[dict[str, object]]:
    """Every problem ``exc`` reports; an error with no place in a file has an empty path."""
    if isinstance(exc, SpecErrors):
        return [problem(found, "error") for found in exc.errors]
    if isinstance(exc, SpecError):
        return [problem(exc, "error")]
    return [problem(SpecError("", str(exc)), "error")]


def as_json(files: list[dict[str, object]], problems: list[dict[str, object]]) -> str:
    ok = not any(item["severity"] == "error" for item in problems)
    return json.dumps({"ok": ok, "files": files, "problems": problems}, indent=2) + "\n"


def as_github(problems: list[dict[str, object]]) -> str:
    return "".join(_annotation(item) + "\n" for item in problems)


def _annotation(item: dict[str, object]) -> str:
    properties = [
        f"{name}={_escape_property(str(item[key]))}"
        for name, key in (("file", "path"), ("line", "line"), ("col", "column"))
        if item[key] not in (None, "")
    ]
    message = str(item["message"])
    if item["key_path"]:
        message = f"{item['key_path']}: {message}"
    command = str(item["severity"])
    if properties:
        command += " " + ",".join(properties)
    return f"::{command}::{_escape_data(message)}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
