"""libyaml's events to round-trip data, in one pass: the fast way ``parse`` reads a spec.

``fast_parse`` builds what ruamel's round-trip loader builds, positions and all, and declines
(None) whatever only the round-trip path in ``parse`` may judge. What both paths refuse alike,
nesting past MAX_DEPTH and more than MAX_EXPANDED_NODES values, it refuses itself, with the
round-trip path's own line: a hostile file is read once, by libyaml, not again in Python.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.events import (
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from ..errors import SpecError
from .parse import MAX_DEPTH, MAX_EXPANDED_NODES, number_problem, too_deep, too_many

_NULL, _BOOL, _INT, _FLOAT = (
    "tag:yaml.org,2002:" + name for name in ("null", "bool", "int", "float")
)
_RESOLVERS = VersionedResolver(version=(1, 2)).versioned_resolver  # first character -> rules
_CONSTRUCT = YAML(typ="rt").constructor  # builds numbers exactly as the round-trip loader does
# ":" between word characters (``H100:2``), which libyaml refuses inside flow lists, and the
# one-character stand-in it is parsed as (a private-use character, so columns stay put).
_TIGHT_COLON = re.compile(r"(?<=\w):(?=\w)")
COLON_STAND_IN = "\ue000"
_ESCAPED_STAND_IN = re.compile(r"\\(?:u[eE]000|U0000[eE]000)")
try:
    from _ruamel_yaml import CParser as _CParser  # ruamel.yaml.clib: libyaml's parser
except ImportError:  # pragma: no cover - the pure-Python install takes the round-trip path
    _CParser = None


def fast_parse(text: str, shown: str) -> CommentedMap | None:
    """The document as the round-trip loader builds it (mappings, lists and scalars of the same
    types, every key's and item's line and column), from one pass over libyaml's events; or
    None whenever the text holds anything the round-trip path must judge (tags, anchors,
    aliases, merge keys, duplicate or non-text keys, dates, odd numbers, directives, several
    documents, YAML that libyaml refuses). libyaml refuses ``[H100:2]`` (a ":" inside a flow
    value), which YAML 1.2 allows: such colons are parsed as a same-width placeholder and put
    back. A text nested past MAX_DEPTH or holding more than MAX_EXPANDED_NODES values, with
    nothing of the round-trip path's to judge before that, raises the SpecError that path
    raises, word for word and at the same place: in one pass of libyaml, not two of Python."""
    if _CParser is None:
        return None
    swapped = (
        COLON_STAND_IN not in text
        and _ESCAPED_STAND_IN.search(text) is None  # "\ue000" in quotes decodes to it
        and _TIGHT_COLON.search(text) is not None
    )
    parsed = _TIGHT_COLON.sub(COLON_STAND_IN, text) if swapped else text
    try:
        return _build(_CParser(parsed), swapped, shown)
    except SpecError:
        raise
    except Exception:  # any refusal is re-diagnosed, with positions, by the round-trip path
        return None


class _Unusual(Exception):
    """Something only the round-trip path may judge."""


class _Open:
    """A mapping or list the pass is inside."""

    __slots__ = ("key", "keys", "mark", "number", "size", "step", "value")

    def __init__(self, value: Any, mark: Any, step: Any, number: int, mapping: bool) -> None:
        self.value = value  # the CommentedMap or CommentedSeq, or None: only counted
        self.mark = mark
        self.step = step  # its key or index in the mapping or list above (None: the root)
        self.number = number  # its own number in the count of values
        self.size = 0  # the items, or keys and values, read in it so far
        self.key: tuple[str, Any] | None = None  # a mapping's pending key and its mark
        self.keys: set[str] | None = set() if mapping else None


def _build(parser: Any, swapped: bool, shown: str) -> CommentedMap | None:
    """Round-trip data from ``parser``'s events, with an explicit stack (no recursion).

    Past MAX_EXPANDED_NODES values the spec is refused: the pass builds no more and counts
    on to the end of the document, as ``_check_nodes`` counts the composed graph (an odd value
    also stops the building, not the count), so the first mapping or list to close holding too
    many values is the one both paths name. Nesting past MAX_DEPTH is what ruamel's composer
    reports before any count: it is raised where it starts."""
    root: Any = None
    stack: list[_Open] = []
    count = 0
    building = True
    full: tuple[Any, tuple[Any, ...]] | None = None  # where too many values were found
    parser.get_event()  # the stream's start
    start = parser.get_event()
    if not isinstance(start, DocumentStartEvent) or start.version or start.tags:
        raise _Unusual
    while True:
        event = parser.get_event()
        kind = type(event)
        if kind is MappingEndEvent or kind is SequenceEndEvent:
            done = stack.pop()
            if full is None and count - done.number >= MAX_EXPANDED_NODES:
                path = [*stack, done]
                full = done.mark, tuple(f.step for f in path if f.step is not None)
            continue
        if kind is DocumentEndEvent:
            break
        count += 1
        mark = event.start_mark
        top = stack[-1] if stack else None
        is_key = top is not None and top.keys is not None and top.size % 2 == 0
        step = None if top is None or is_key else _step(top)
        if len(stack) > MAX_DEPTH:
            loc = (*(f.step for f in stack[1:]), step)
            raise too_deep(shown, mark.line + 1, mark.column + 1, loc)
        if kind not in _NODE_EVENTS or event.anchor is not None or event.tag is not None:
            raise _Unusual  # an alias, an anchor or a tag
        if top is not None:
            top.size += 1
        if top is not None and is_key:
            _take_key(top, event, swapped, counts=full is None)
            continue
        value: Any = None
        building = building and count <= MAX_EXPANDED_NODES
        if building:
            try:
                value = _value(event, swapped)
            except _Unusual:  # an odd value: for the round-trip path, though one to count
                building = False
        if building and top is None:
            root = value
        elif building and top is not None:
            _attach(top, value, mark)
        if kind is not ScalarEvent:
            stack.append(_Open(value, mark, step, count, kind is MappingStartEvent))
    if not isinstance(parser.get_event(), StreamEndEvent):
        raise _Unusual  # a second document
    if full is not None:
        at, loc = full
        raise too_many(shown, at.line + 1, at.column + 1, loc)
    if not building:
        raise _Unusual
    return root if type(root) is CommentedMap else None


_NODE_EVENTS = (ScalarEvent, MappingStartEvent, SequenceStartEvent)


def _step(top: _Open) -> Any:
    """The key or index of the value about to be read in ``top``."""
    return top.size if top.key is None else top.key[0]  # a list's index, or the pending key


def _take_key(top: _Open, event: Any, swapped: bool, *, counts: bool) -> None:
    """Note the key ``event`` in mapping ``top``. While the count may still name a mapping
    or list, the key must be new text: ``_check_nodes`` counts no other key."""
    if type(event) is not ScalarEvent:
        raise _Unusual  # a mapping or a list as a key
    if counts:
        key = _scalar(event, swapped)
        if type(key) is not str or top.keys is None or key in top.keys:
            raise _Unusual
        top.keys.add(key)
    else:
        key = event.value.replace(COLON_STAND_IN, ":") if swapped else event.value
    top.key = (key, event.start_mark)


def _value(event: Any, swapped: bool) -> Any:
    """The round-trip value of a scalar, or the empty mapping or list an event opens."""
    if type(event) is ScalarEvent:
        return _scalar(event, swapped)
    mark = event.start_mark
    value = CommentedMap() if type(event) is MappingStartEvent else CommentedSeq()
    value._yaml_set_line_col(mark.line, mark.column)
    return value


def _attach(top: _Open, value: Any, mark: Any) -> None:
    """Put ``value`` in the mapping or list ``top``, with its position."""
    position = [mark.line, mark.column]
    if top.key is None:  # a list (a mapping's value follows its key)
        top.value._yaml_set_idx_line_col(top.size - 1, position)
        top.value.append(value)
    else:
        key, at = top.key
        top.value._yaml_set_kv_line_col(key, [at.line, at.column, *position])
        top.value[key] = value


def _scalar(event: Any, swapped: bool) -> Any:
    """A scalar as the round-trip loader constructs it (YAML 1.2 core schema)."""
    value: str = event.value
    if not value and not event.style:
        raise _Unusual  # an empty value: ruamel's position for it depends on what follows
    if swapped:
        value = value.replace(COLON_STAND_IN, ":")
    style = event.style
    if style:  # quoted, literal or folded: always text
        if style == "|":
            return LiteralScalarString(value)
        return FoldedScalarString(value) if style == ">" else value
    tag = _resolve(value)
    if tag is None:
        return value
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return value in ("true", "True", "TRUE")
    if tag in (_INT, _FLOAT) and number_problem(value, tag == _FLOAT) is None:
        build = _CONSTRUCT.construct_yaml_float if tag == _FLOAT else _CONSTRUCT.construct_yaml_int
        number = build(ScalarNode(tag, value))
        if tag == _INT or math.isfinite(number):
            return number
    raise _Unusual  # a date, a merge key, "=", an odd number


def _resolve(value: str) -> str | None:
    """The YAML 1.2 tag the round-trip loader gives a plain scalar (None: text)."""
    for tag, pattern in _RESOLVERS.get(value[:1], ()):
        if pattern.match(value):
            return str(tag)
    return None
