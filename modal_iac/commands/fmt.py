"""``modaliac fmt``: one canonical layout for spec files, comments kept, like ``terraform fmt``.

Keys are put in the order the pydantic models declare their fields (key_order.py; recursively:
``model``, ``engine`` and ``scaling`` inside a spec, each gateway model inside ``models``); keys
the models do not know keep their relative order after the known ones, and the keys of user mappings
(``labels``, ``volumes``, ``image.env``) are data and keep theirs. The layout is ruamel's
round-trip output with 2-space indents, sequences indented under their key, no trailing
spaces, one final newline and the ``# yaml-language-server: $schema=`` line first.

ruamel attaches the comment lines that follow a value to that value, so the comments and
blank lines above a key belong, in ruamel's terms, to the key before it. Before keys move,
those lines are taken off the previous key and handed to the key they stand above; after the
move they are put back in front of it, re-indented to its column. A formatted file is checked
to hold exactly the same data as before: formatting never changes what a spec says.

Most files fmt reads are already canonical; canonical.py recognises them from the C parser's
nodes, and only the others take the round-trip path here.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SpecError, SpecErrors
from ..files import write_file
from ..loading.modeline import SCHEMA_LINE
from .key_order import Shape, canonical_keys, document_shape

if TYPE_CHECKING:
    from ruamel.yaml import YAML

    from .console import Console

# ruamel is imported where it is used, so that building the CLI's parser
# (which registers this module) stays light. ruamel's round-trip mappings and sequences are
# dict and list subclasses: the checks below use those.

INDENT = 2


# -- comments -----------------------------------------------------------------------------


def _is_map(node: Any) -> bool:
    """A mapping (ruamel's round-trip mappings subclass dict; a bool keeps mypy from
    narrowing them to plain dicts, which lack ``.ca`` and ``move_to_end``)."""
    return isinstance(node, dict)


def _is_seq(node: Any) -> bool:
    return isinstance(node, list)


def _block(node: Any) -> bool:
    """A non-empty block-style mapping or sequence (its comments live inside it)."""
    return (_is_map(node) or _is_seq(node)) and len(node) > 0 and not node.fa.flow_style()


def _tail_slot(node: Any) -> tuple[Any, Any]:
    """The (container, key) whose comment token holds the lines after ``node``'s last line."""
    while True:
        last = next(reversed(node)) if _is_map(node) else len(node) - 1
        child = node[last]
        if not _block(child):
            return node, last
        node = child


def _get_token(container: Any, key: Any) -> str:
    entry = container.ca.items.get(key)
    index = 2 if _is_map(container) else 0
    if entry and entry[index] is not None:
        return str(entry[index].value)
    return "\n"


def _set_token(container: Any, key: Any, text: str) -> None:
    """Store ``text`` (a line ending or an end-of-line comment, then whole lines) after the
    value of ``container[key]``; a flow collection keeps a copy of it, which must agree."""
    from ruamel.yaml.tokens import CommentToken

    index = 2 if _is_map(container) else 0
    entry = container.ca.items.get(key)
    token = None if text == "\n" else CommentToken(text, _Mark(0), None)
    if entry is None:
        if token is None:
            return
        entry = container.ca.items[key] = [None, None, None, None]
    old = entry[index]
    if token is not None and old is not None:
        token.start_mark = old.start_mark
    entry[index] = token
    value = container[key]
    if (_is_map(value) or _is_seq(value)) and value.ca.comment:
        value.ca.comment[0] = token


@dataclass
class _Mark:
    column: int
    line: int = 0


def _take_tail(node: Any) -> str:
    """Remove and return the whole lines that follow ``node`` (comments, blank lines)."""
    container, key = _tail_slot(node)
    text = _get_token(container, key)
    eol, _, rest = text.partition("\n")
    _set_token(container, key, eol + "\n")
    return rest


def _put_tail(node: Any, lines: str) -> None:
    if lines:
        container, key = _tail_slot(node)
        _set_token(container, key, _get_token(container, key) + lines)


def _reindent(lines: str, column: int) -> str:
    """Comment lines moved to ``column``; blank lines stay blank."""
    out = []
    for line in lines.splitlines():
        stripped = line.strip()
        out.append(" " * column + stripped if stripped else "")
    return "".join(f"{line}\n" for line in out)


# -- reordering ---------------------------------------------------------------------------


def _order(node: Any, shape: Shape, column: int, above_first: _Sink | None = None) -> None:
    """Put ``node``'s keys in canonical order, recursively, moving comments with them.

    ``above_first`` stores lines above the mapping's first key (they live with its parent).
    """
    if _is_seq(node):
        for item in node:
            _order(item, shape.items or Shape(), column + INDENT * 2)  # "  - key: ..."
        return
    if not _is_map(node) or not node:
        return
    if node.merge:  # a `<<` merge key: its source lines do not map onto keys; leave it be
        return
    keys = list(node)
    for key in keys:
        nested = column if _is_seq(node[key]) else column + INDENT
        _order(node[key], shape.child(key), nested, _after_key(node, key))
    if shape.fields is None:
        return
    wanted = canonical_keys(keys, shape)
    if wanted == keys:
        return
    if not _block(node):  # a flow mapping holds no comments between its keys
        for key in wanted:
            node.move_to_end(key)
        return
    above: dict[Any, str] = {}  # the lines above each key but the first
    for before, key in itertools.pairwise(keys):
        above[key] = (
            _take_tail(node[before]) if _block(node[before]) else _take_scalar(node, before)
        )
    after = _take_tail(node)  # the lines below the last key belong to whatever follows
    for key in wanted:
        node.move_to_end(key)
    first = _reindent(above.get(wanted[0], ""), column)
    if first and above_first is not None:
        above_first(first)
    elif first:  # no place above the first key (a list item's): keep the lines below it
        above[wanted[1]] = first + above.get(wanted[1], "")
    for before, key in itertools.pairwise(wanted):
        lines = _reindent(above.get(key, ""), column)
        if _block(node[before]):
            _put_tail(node[before], lines)
        else:
            _set_token(node, before, _get_token(node, before) + lines)
    _put_tail(node, after)


_Sink = Callable[[str], None]


def _after_key(node: Any, key: Any) -> _Sink:
    """Where lines go that stand between ``key:`` and the first key of its mapping value."""

    def add(lines: str) -> None:
        _set_token(node, key, _get_token(node, key) + lines)

    return add


def _above_document(root: Any) -> _Sink:
    from ruamel.yaml.tokens import CommentToken

    def add(lines: str) -> None:
        if not root.ca.comment:
            root.ca.comment = [None, []]
        if root.ca.comment[1] is None:
            root.ca.comment[1] = []
        root.ca.comment[1].append(CommentToken(lines, _Mark(0), None))

    return add


def _take_scalar(node: Any, key: Any) -> str:
    eol, _, rest = _get_token(node, key).partition("\n")
    _set_token(node, key, eol + "\n")
    return rest


# -- whole files ----------------------------------------------------------------------------


class FormatError(SpecError):
    """A file that cannot be formatted (it is left as it was)."""


def _yaml() -> YAML:
    from ..loading.parse import round_trip_yaml

    yaml = round_trip_yaml()
    yaml.indent(mapping=INDENT, sequence=INDENT * 2, offset=INDENT)
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long value
    return yaml


def _plain(node: Any) -> Any:
    """The data a node holds, without ruamel's wrappers (for the same-meaning check)."""
    if _is_map(node):
        return [(_plain(k), _plain(v)) for k, v in sorted(node.items(), key=lambda kv: str(kv[0]))]
    if _is_seq(node):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def formatted(text: str, shown: str = "<spec>") -> str:
    """``format_text(text)``, answered without parsing twice when ``text`` is already in
    canonical form (most files ``fmt --check`` reads)."""
    from .canonical import already_canonical

    return text if already_canonical(text) else format_text(text, shown)


def format_text(text: str, shown: str = "<spec>") -> str:
    """The canonical form of one spec's text. Raises SpecError on text that is not YAML, or
    holds what no spec may (tags, alias bombs, nesting past 64 levels: parse.py's checks).

    The text is parsed once: the checked node graph is constructed into round-trip data.
    The result is parsed again (with the C loader when it can) to prove it means the same."""
    from ..loading.parse import checked_nodes, not_a_mapping

    root = checked_nodes(text, shown)
    if root is None:
        return _layout(text)
    yaml = _yaml()
    data = yaml.constructor.construct_document(root)
    if not _is_map(data):  # no spec; and ruamel cannot dump every document it reads
        raise not_a_mapping(data, root, shown)
    before = _plain(data)
    _order(data, document_shape(data), 0, _above_document(data))
    out = StringIO()
    yaml.dump(data, out)
    for squeeze in (True, False):  # blank lines inside a block scalar are its text
        result = _layout(out.getvalue(), squeeze=squeeze)
        if _plain(_meaning(result, shown)) == before:
            return result
    raise FormatError(shown, "formatting would change what it says; left as it is")


def _meaning(text: str, shown: str) -> Any:
    """The data ``text`` holds, as the loader reads it (its C path first)."""
    from ruamel.yaml.error import YAMLError

    from ..loading.fast import fast_parse

    data = fast_parse(text, shown)
    if data is not None:
        return data
    try:
        return _yaml().load(text)
    except YAMLError:  # ruamel wrote what it cannot read back: not the same meaning
        return _UNREADABLE


_UNREADABLE = object()


def _layout(text: str, *, squeeze: bool = True) -> str:
    """No trailing spaces, the schema line first, no blank line at either end and (when
    ``squeeze``) never two blank lines in a row."""
    lines = [line.rstrip() for line in text.splitlines()]
    schema = [i for i, line in enumerate(lines) if line.startswith(SCHEMA_LINE)]
    if schema and schema[0] != 0:
        lines.insert(0, lines.pop(schema[0]))
    if squeeze:
        lines = [line for i, line in enumerate(lines) if line or (i > 0 and lines[i - 1])]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines) + "\n" if lines else ""


@dataclass
class Outcome:
    path: Path
    before: str
    after: str = field(default="")

    @property
    def changed(self) -> bool:
        return self.before != self.after


def format_file(path: Path) -> Outcome:
    from ..loading.parse import decode, read

    shown = str(path)
    text = decode(read(path, shown), shown)
    from ..loading.modeline import fixed

    return Outcome(path, text, fixed(path, formatted(text, shown)))


def unified_diff(outcome: Outcome) -> str:
    name = str(outcome.path)
    return "".join(
        difflib.unified_diff(
            outcome.before.splitlines(keepends=True),
            outcome.after.splitlines(keepends=True),
            fromfile=f"a/{name}",
            tofile=f"b/{name}",
        )
    )


# -- the command ---------------------------------------------------------------------------


def register(commands: Any) -> None:
    """Add ``fmt`` to the CLI's parser."""
    fmt = commands.add_parser(
        "fmt",
        help="rewrite specs in the canonical key order and layout",
        description=(
            "Rewrite spec files in place in the canonical key order (that of the schema) and "
            "layout, keeping comments. With --check nothing is written and the exit status is "
            "1 when a file would change."
        ),
    )
    fmt.add_argument("specs", nargs="*", default=["."], metavar="SPEC|DIR")
    fmt.add_argument(
        "--check", action="store_true", help="write nothing; list unformatted files, exit 1"
    )
    fmt.add_argument("--diff", action="store_true", help="print a unified diff of each change")
    fmt.set_defaults(run=cmd_fmt)


def cmd_fmt(args: argparse.Namespace, console: Console) -> int:
    from ..plan.targets import spec_files

    outcomes, errors = [], []
    for path in spec_files(args.specs):  # every broken file is reported; none is written
        try:
            outcomes.append(format_file(Path(path)))
        except SpecErrors as exc:
            errors.extend(exc.errors)
        except SpecError as exc:
            errors.append(exc)
    if errors:
        raise SpecErrors(errors)
    changed = [outcome for outcome in outcomes if outcome.changed]
    for outcome in changed:
        if args.diff:
            console.print(unified_diff(outcome), end="")
        if not args.check:
            write_file(outcome.path, outcome.after, "spec")
        if args.check or not args.diff:
            console.print(str(outcome.path))
    return 1 if args.check and changed else 0
