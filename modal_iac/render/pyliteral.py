"""The one escaping path from spec values to Python source.

Every value a template prints goes through ``literal``: strings, numbers, booleans, None,
and lists/dicts of those. The output is what ``ascii`` would give (every character outside
printable ASCII escaped, so a generated file holds no look-alike or invisible characters and
its line widths are plain character counts), in the layout ``ruff format`` keeps: double
quotes unless that needs more escapes, ``1e16`` rather than ``1e+16``, non-empty containers
exploded one item per line with a trailing comma. Generated files therefore pass
``ruff format --check`` without running ruff at render time.
"""

from __future__ import annotations

import math
from typing import Any

INDENT = "    "
LINE_LENGTH = 88  # ruff's default, which generated files are formatted for


def literal(value: Any, depth: int = 0) -> str:
    """Python source for ``value``; ``depth`` is the indentation level of the line it starts on."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return int.__repr__(value)  # YAML's int subclasses (HexInt, ...) keep their spelling
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no Python literal")
        return float.__repr__(value).replace("e+", "e")  # 1e16, as ruff format writes it
    if isinstance(value, str):
        return string(value)
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        inner = INDENT * (depth + 1)
        items = "".join(f"{inner}{literal(item, depth + 1)},\n" for item in value)
        return f"[\n{items}{INDENT * depth}]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = INDENT * (depth + 1)
        items = "".join(
            f"{inner}{string(key)}: {literal(item, depth + 1)},\n" for key, item in value.items()
        )
        return f"{{\n{items}{INDENT * depth}}}"
    raise TypeError(f"no literal for {type(value).__name__}")


def assignment(name: str, value: Any) -> str:
    """``NAME = <literal>`` at module level, as ruff format lays it out.

    ruff wraps a right-hand side that overflows the line in parentheses when that makes it
    fit, so a long string's layout depends on the name it is assigned to.
    """
    text = literal(value)
    head = f"{name} = "
    overflows = len(head) + len(text) > LINE_LENGTH
    if "\n" not in text and overflows and len(INDENT) + len(text) <= LINE_LENGTH:
        return f"{head}(\n{INDENT}{text}\n)"
    return head + text


def string(text: Any) -> str:
    if not isinstance(text, str):
        raise TypeError(f"dict keys must be strings, not {type(text).__name__}")
    quote = "'" if text.count('"') > text.count("'") else '"'
    escaped = text.translate(_ASCII_ESCAPES[quote])
    if not escaped.isascii():
        # What is left outside ASCII is escaped as ``ascii`` writes it: \xNN, \uNNNN or
        # \UNNNNNNNN in lower-case hex, lone surrogates included.
        escaped = escaped.encode("ascii", "backslashreplace").decode("ascii")
    return quote + escaped + quote


def _ascii_escapes(quote: str) -> dict[int, str]:
    """``str.translate`` table: each ASCII character that ``ascii`` escapes inside a
    ``quote``-delimited string, to its escape (characters outside ASCII are left alone)."""
    table = {code: f"\\x{code:02x}" for code in range(0x80) if not chr(code).isprintable()}
    table.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
    table.update({ord("\\"): "\\\\", ord(quote): "\\" + quote})
    return table


_ASCII_ESCAPES = {quote: _ascii_escapes(quote) for quote in ('"', "'")}
