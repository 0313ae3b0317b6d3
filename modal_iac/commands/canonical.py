"""Whether a spec's text is already in ``fmt``'s canonical form, decided without the
round-trip loader.

fmt's full path (ruamel's pure-Python round-trip parser, reordering, dumping, a same-meaning
check) costs some twenty C parses of the file, and most files ``fmt --check`` sees are already
formatted. ``already_canonical`` answers from the nodes of ruamel's C composer (their styles and
positions) and a scan of the lines. It answers True only inside a subset of YAML whose round
trip through fmt is the identity: block mappings and lists at fmt's indents, one-line plain and
quoted scalars, one-line flow collections, comments, single blank lines, keys in canonical
order. Anything else answers False, which means "maybe not": fmt then takes its full path, so
the decision fmt makes is exactly ``format_text(text) == text`` (tests/test_fmt_canonical.py
checks that over generated and mutated specs).

libyaml refuses a ``:`` inside a flow value (``gpu: [H100:2, A100:2]``), which ruamel's own
parser reads as text. Before the C parse every ``:`` not followed by a space becomes a private
character of the same width; such a value is accepted only when the original text still
resolves to a string.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..loading.fast import COLON_STAND_IN  # a glued ":" is parsed as it, as the loader does
from ..loading.modeline import SCHEMA_LINE
from .key_order import Shape, canonical_keys, document_shape

if TYPE_CHECKING:  # this module is imported by fmt when it runs, never to build the CLI
    from ruamel.yaml import YAML

_GLUED_COLON = re.compile(r":(?=[^\s])")
_TAG = "tag:yaml.org,2002:"
# The plain spellings whose round trip is known to be exact (ruamel keeps what they say but
# may respell others: ``0x1F``, ``1e3``, ``True``, ``~``).
_EXACT = {
    _TAG + "int": re.compile(r"-?(0|[1-9][0-9]{0,17})"),
    _TAG + "float": re.compile(r"-?(0|[1-9][0-9]{0,17})\.[0-9]{1,17}"),
    _TAG + "bool": re.compile(r"true|false"),
}
# Plain text ruamel writes back as it reads: no indicator first, no ":", "#" or flow
# indicator anywhere (a glued ":" is the stand-in by now), single spaces between words.
_SAFE_PLAIN = re.compile(r"[^-?:,\[\]{}#&*!|>'\"%@`\s]([^:,\[\]{}#\s]| (?=[^\s#]))*")
# Characters that can open a level (a key's ":", "- ", "? ", "[", "{"): the C composer recurses
# on the C stack without a limit (a few 10,000 levels crash the interpreter), so it only sees
# texts with fewer of them than this; deeper ones take fmt's round-trip path, which stops at 64.
_MAX_INDICATORS = 1000
_MAX_LINE = 1000  # far below the dump's width, past which it would re-wrap a value
_END_OF_LINE = re.compile(r"( +#.*)?")  # what may follow a value on its line


class _NotCanonical(Exception):
    """Raised deep in the walk: the text is outside the subset (not necessarily unformatted)."""


def already_canonical(text: str) -> bool:
    """True when ``format_text(text)`` would return ``text`` unchanged, decided cheaply; False
    when that is not certain. Never raises."""
    try:
        return _Check(text).run()
    except _NotCanonical:
        return False
    except Exception:  # anything the C parser refuses is the full path's to report
        return False


class _Check:
    def __init__(self, text: str) -> None:
        self.text = text
        self.parsed = _GLUED_COLON.sub(COLON_STAND_IN, text)  # what the C parser reads
        self.lines = self.parsed.split("\n")[:-1]  # the text ends with one line ending (checked)
        self.owned: set[int] = set()  # the lines a key or a list item starts

    def run(self) -> bool:
        if not self._lines_are_tidy():
            return False
        root = _compose(self.parsed)
        if root is None or not _is_block_map(root) or root.start_mark.column != 0:
            return False
        from ..loading.parse import _check_nodes

        if _check_nodes(root, "<spec>"):  # refused: the full path says why, with positions
            return False
        kind = next((v.value for k, v in root.value if k.value == "kind"), None)
        self._block_map(root, 0, document_shape({"kind": kind}))
        content = {i for i, line in enumerate(self.lines) if line and not _comment(line)}
        return content == self.owned

    def _lines_are_tidy(self) -> bool:
        """What fmt's layout pass would change: trailing spaces, a schema line not first,
        blank lines at either end or two in a row; and what is outside the subset."""
        text, lines = self.text, self.lines
        if not text.endswith("\n") or not lines or not lines[0] or not lines[-1]:
            return False
        if any(ch in text for ch in "\r\t\ufeff" + COLON_STAND_IN):
            return False
        if sum(text.count(ch) for ch in "[{-:?") > _MAX_INDICATORS:
            return False  # the C composer recurses without limit: deep texts are refused there
        previous = "x"
        for number, line in enumerate(lines):
            if line != line.rstrip() or len(line) > _MAX_LINE or not (line or previous):
                return False
            if number and line.startswith(SCHEMA_LINE):
                return False
            previous = line
        return True

    # -- the walk ---------------------------------------------------------------------------

    def _block_map(self, node: Any, column: int, shape: Shape) -> None:
        keys = [key.value for key, _ in node.value]
        if shape.fields is not None and canonical_keys(keys, shape) != keys:
            raise _NotCanonical
        for key, value in node.value:
            if not _plain_key(key) or key.start_mark.column != column:
                raise _NotCanonical
            self._own(key)
            child = shape.child(key.value)
            line, end = key.end_mark.line, key.end_mark.column
            rest = self.lines[line][end:]
            if _is_block_map(value):
                self._after(line, end + 1, rest[:1] == ":")
                if value.start_mark.line <= line:
                    raise _NotCanonical
                self._block_map(value, column + 2, child)
            elif _is_block_seq(value):
                self._after(line, end + 1, rest[:1] == ":")
                self._block_seq(value, column + 2, child)
            else:
                if not rest.startswith(": ") or value.start_mark.line != line:
                    raise _NotCanonical
                if value.start_mark.column != end + 2:
                    raise _NotCanonical
                self._inline(value, child)

    def _block_seq(self, node: Any, column: int, shape: Shape) -> None:
        items = shape.items or Shape()
        for item in node.value:
            line, start = item.start_mark.line, item.start_mark.column
            if start != column + 2 or self.lines[line][column:start] != "- ":
                raise _NotCanonical
            if self.lines[line][:column].strip():
                raise _NotCanonical
            if _is_block_map(item):
                self._block_map(item, column + 2, items)
            elif _is_block_seq(item):
                raise _NotCanonical
            else:
                self.owned.add(line)
                self._inline(item, items)

    def _inline(self, node: Any, shape: Shape) -> None:
        """A scalar or flow collection on one line, then at most a comment."""
        if not _one_line(node):
            raise _NotCanonical
        line, start, end = node.start_mark.line, node.start_mark.column, node.end_mark.column
        if self.lines[line][start:end] != self._flow(node, shape):
            raise _NotCanonical
        self._after(line, end, True)

    def _flow(self, node: Any, shape: Shape) -> str:
        """The text fmt writes for a flow value; the walk compares it with the file's."""
        if _is_map(node):
            keys = [key.value for key, _ in node.value]
            if shape.fields is not None and canonical_keys(keys, shape) != keys:
                raise _NotCanonical
            parts = []
            for key, value in node.value:
                if not _plain_key(key) or not _is_scalar(value):
                    raise _NotCanonical  # ruamel may respell nested flow mappings
                parts.append(f"{key.value}: {self._scalar(value)}")
            return "{" + ", ".join(parts) + "}"
        if _is_seq(node):
            items = shape.items or Shape()
            return "[" + ", ".join(self._flow(item, items) for item in node.value) + "]"
        return self._scalar(node)

    def _scalar(self, node: Any) -> str:
        value, style, tag = node.value, node.style, str(node.tag)
        written = value.replace(COLON_STAND_IN, ":")  # what the file says
        if style == "'" and tag == _TAG + "str":
            return "'" + str(value).replace("'", "''") + "'"
        if style == '"' and tag == _TAG + "str" and _printable(written):
            return f'"{value}"'
        if style or not value:
            raise _NotCanonical  # block scalars, empty values, nulls
        if tag == _TAG + "str":
            if not _SAFE_PLAIN.fullmatch(value) or COLON_STAND_IN in (value[0], value[-1]):
                raise _NotCanonical  # a glued ":" stands between two characters of a word
            if COLON_STAND_IN in value and _resolve(written) != tag:
                raise _NotCanonical
            return str(value)
        exact = _EXACT.get(tag)
        if exact is None or not exact.fullmatch(value):
            raise _NotCanonical
        return str(value)

    def _after(self, line: int, column: int, ok: bool) -> None:
        """Nothing but a comment may follow on the line."""
        if not ok or not _END_OF_LINE.fullmatch(self.lines[line][column:]):
            raise _NotCanonical

    def _own(self, node: Any) -> None:
        if node.start_mark.line in self.owned:
            raise _NotCanonical
        self.owned.add(node.start_mark.line)


# -- the C composer ---------------------------------------------------------------------------

_YAMLS: dict[str, YAML] = {}


def _c_yaml() -> YAML:
    if "c" not in _YAMLS:
        from ruamel.yaml import YAML

        _YAMLS["c"] = YAML(typ="safe", pure=False)
    return _YAMLS["c"]


def _compose(text: str) -> Node | None:
    from ruamel.yaml.clib._ruamel_yaml import CParser  # noqa: F401 - no C parser, no fast path

    yaml = _c_yaml()
    node: Node | None = yaml.compose(text)
    return node


def _resolve(value: str) -> str:
    return str(_c_yaml().resolver.resolve(ScalarNode, value, (True, False)))


def _is_map(node: Any) -> bool:
    return isinstance(node, MappingNode)


def _is_seq(node: Any) -> bool:
    return isinstance(node, SequenceNode)


def _is_scalar(node: Any) -> bool:
    return isinstance(node, ScalarNode)


def _is_block_map(node: Any) -> bool:
    return _is_map(node) and bool(node.value) and not node.flow_style


def _is_block_seq(node: Any) -> bool:
    return _is_seq(node) and bool(node.value) and not node.flow_style


def _plain_key(key: Any) -> bool:
    return bool(
        not key.style
        and COLON_STAND_IN not in key.value
        and _SAFE_PLAIN.fullmatch(key.value)
        and _one_line(key)
    )


def _one_line(node: Any) -> bool:
    return bool(node.start_mark.line == node.end_mark.line)


def _comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _printable(value: str) -> bool:
    """Text a double-quoted scalar holds with no escapes, as ruamel writes it back."""
    return value.isprintable() and value.isascii() and not set('"\\') & set(value)
