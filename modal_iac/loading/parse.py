"""YAML text to data, hostile until checked: with ``fast``, the one place modaliac parses specs.

Two ways, one result. ``fast.fast_parse`` drives libyaml's parser (ruamel.yaml.clib) and
builds the round-trip loader's data, positions and all, in one pass; it declines whenever the
text holds anything it cannot vouch for (anchors, aliases, tags, odd keys or numbers).
``round_trip``, here, parses with ruamel's own loader: it walks the composed node graph before
anything is constructed, refusing explicit tags, odd keys and scalars, duplicate keys and alias
bombs, and turns every ruamel failure into one located line. The limits both paths refuse
(MAX_DEPTH, MAX_EXPANDED_NODES) and their lines (``too_deep``, ``too_many``) are here.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, StreamMark, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from ..errors import SpecError, SpecErrors
from ..files import read_bytes
from ..spec.messages import describe, key_path, quote
from ..tokens import printable, scrub, token_kind

MAX_SPEC_BYTES = 256 * 1024
MAX_EXPANDED_NODES = 20_000
MAX_DEPTH = 64  # levels of mappings and lists; a spec needs about five
_YAML_TAG = "tag:yaml.org,2002:"
_STR = _YAML_TAG + "str"
_PLAIN_TAGS = {_YAML_TAG + name for name in ("str", "int", "float", "bool", "null", "map", "seq")}
_SPECIAL_FLOAT = re.compile(r"^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$")
MAX_NUMBER_CHARS = 100  # beyond this no setting makes sense, and Python refuses huge ints
# A number in the one spelling every YAML reader agrees on: 010 is 8 to YAML 1.1 readers and 10
# to 1.2 ones; 0x10, 0o7, 0b11 and 1_000 are numbers to some readers and text to others.
_DECIMAL = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_DECIMAL_FLOAT = re.compile(r"[-+]?(0|[1-9][0-9]*)?(\.[0-9]*)?([eE][-+]?[0-9]+)?")
# -- reading -------------------------------------------------------------------------------


def read(path: Path, shown: str) -> bytes:
    # Plans, generated headers, JSON reports and PR comments print the path as it is.
    if not shown.isprintable():
        raise SpecError(
            printable(shown),
            "the file's name holds a control character; rename the file",
        )
    if token_kind(shown, within_words=True) is not None:
        raise SpecError(scrub(shown), "the file's path holds what looks like a secret; rename it")
    raw = read_bytes(path, shown, "spec file", MAX_SPEC_BYTES, SpecError)
    if raw is None:
        raise SpecError(shown, "no such file")
    return raw


def decode(raw: bytes, shown: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        column = len(raw[line_start : exc.start].decode("utf-8")) + 1
        raise SpecError(
            shown,
            f"byte 0x{raw[exc.start]:02x} is not UTF-8; save the file as UTF-8",
            line=line,
            column=column,
        ) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise SpecError(shown, "the file is empty; a spec is a mapping with app, model and gpu")
    if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        raise SpecError(
            shown, "the file holds only comments; a spec is a mapping with app, model and gpu"
        )
    return text


def round_trip(text: str, shown: str) -> CommentedMap:
    """The document as round-trip data, which knows the line and column of every key and
    value. Raises SpecError / SpecErrors, located, for anything a spec may not hold."""
    root = checked_nodes(text, shown)
    try:
        data = round_trip_yaml().load(text)
    except YAMLError as exc:
        raise _translated(exc, text, shown) from None
    if not isinstance(data, CommentedMap):
        raise not_a_mapping(data, root, shown)
    return data


def not_a_mapping(data: Any, root: Node | None, shown: str) -> SpecError:
    """The error for a document that is a list or a scalar, at its start."""
    found = "a list" if isinstance(data, CommentedSeq | list) else describe(data)
    mark = root.start_mark if root is not None else None
    return SpecError(
        shown,
        f"expected a mapping of keys (app, model, gpu, ...), found {found}",
        line=mark.line + 1 if mark else None,
        column=mark.column + 1 if mark else None,
    )


def checked_nodes(text: str, shown: str) -> Node | None:
    """The composed node graph of ``text`` (None when it is empty), once nothing in it is what
    no spec may hold: explicit tags, odd keys or scalars, duplicate keys, alias bombs, nesting
    past MAX_DEPTH. What constructs data from the text (``round_trip``, ``fmt``) asks here
    first, so an alias bomb is never expanded. Raises SpecError / SpecErrors."""
    yaml = round_trip_yaml()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a reused anchor: valid YAML, and stderr is ours
            root: Node | None = yaml.compose(text)
    except YAMLError as exc:
        raise _translated(exc, text, shown) from None
    except (AssertionError, NotImplementedError):  # ruamel's comment bookkeeping gives up
        mark = yaml.composer.mark
        raise SpecError(
            shown,
            "the YAML library cannot place a comment near here; put each comment on a line of "
            "its own, or after a value",
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    problems = _check_nodes(root, shown) if root is not None else []
    if problems:
        raise SpecErrors(problems)
    return root


def _translated(exc: YAMLError, text: str, shown: str) -> SpecError:
    if isinstance(exc, MarkedYAMLError):
        return yaml_error(exc, shown)
    if isinstance(exc, ReaderError):
        return _reader_error(exc, text, shown)
    return SpecError(shown, scrub(f"not valid YAML: {_one_line(str(exc))}"))


def round_trip_yaml() -> YAML:
    """ruamel's round-trip loader, stopped at MAX_DEPTH levels: its composer recurses once
    per level and would otherwise end in a RecursionError a few hundred levels down."""
    yaml = YAML(typ="rt")
    yaml.Composer = _Composer
    return yaml


class TooDeep(MarkedYAMLError):
    """A value nested more than MAX_DEPTH levels deep, at ``loc`` (its key path)."""

    def __init__(self, mark: StreamMark, loc: tuple[Any, ...]) -> None:
        super().__init__(problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=mark)
        self.loc = loc


class _Composer(Composer):
    """ruamel's composer, counting the levels it descends (with the key path to them)."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self._path: list[Any] = []
        self.mark: StreamMark | None = None  # how far the reader got when ruamel gave up

    def get_single_node(self) -> Any:
        try:
            return super().get_single_node()
        except (AssertionError, NotImplementedError):  # ruamel's comment bookkeeping gives up
            self.mark = self.loader.reader.get_mark()
            raise

    def compose_node(self, parent: Any, index: Any) -> Any:
        # ``index``: a list position, the key node of a mapping value, None for a key or the root.
        self._path.append(index.value if isinstance(index, ScalarNode) else index)
        try:
            if len(self._path) > MAX_DEPTH + 1:  # the root is a level of its own
                loc = tuple(step for step in self._path[1:] if step is not None)
                raise TooDeep(self.parser.peek_event().start_mark, loc)
            return super().compose_node(parent, index)
        finally:
            self._path.pop()


def too_deep(shown: str, line: int, column: int, loc: tuple[Any, ...]) -> SpecError:
    """The one line for a value nested too deeply (1-based ``line`` and ``column``); the key
    path is the named part of ``loc``, which says which setting it is without repeating
    every level."""
    named: list[Any] = []
    for step in loc:
        if not isinstance(step, str) or len(named) == 5:
            break
        named.append(step)
    return SpecError(
        shown,
        f"nested more than {MAX_DEPTH} levels deep; flatten this value (no setting needs that "
        "many levels)",
        line=line,
        column=column,
        key_path=key_path(tuple(named)),
    )


def too_many(shown: str, line: int, column: int, loc: tuple[Any, ...]) -> SpecError:
    """The one line for a mapping or list of more than MAX_EXPANDED_NODES values (no anchors
    involved), at its start (1-based ``line`` and ``column``) and key path ``loc``."""
    return SpecError(
        shown,
        f"holds more than {MAX_EXPANDED_NODES} keys and values; no spec needs that many, so "
        "remove what this one does not use",
        line=line,
        column=column,
        key_path=key_path(loc),
    )


# -- YAML errors ---------------------------------------------------------------------------

_TOKEN_NAMES = {
    "'<stream end>'": "the end of the file",
    "'<block end>'": "the end of the block",
    "'<block mapping start>'": "a new key",
    "'<block sequence start>'": "a new list",
    "'<document start>'": '"---"',
    "<block end>": "the end of the block",
    "<stream end>": "the end of the file",
}


def yaml_error(exc: MarkedYAMLError, shown: str) -> SpecError:
    """ruamel's parser messages, in words a spec author acts on, at the offending spot."""
    if isinstance(exc, TooDeep) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return too_deep(shown, mark.line + 1, mark.column + 1, exc.loc)
    problem = _one_line(exc.problem or "")
    context = _one_line(exc.context or "")
    mark, opened = exc.problem_mark or exc.context_mark, exc.context_mark
    where = f" at line {opened.line + 1}, column {opened.column + 1}" if opened else ""
    message = ""
    if problem == "but found another document":
        message = "a second YAML document starts here; put one spec in each file"
    elif problem.startswith("found character '\\t'"):
        message = "a tab character; indent YAML with spaces"
    elif match := re.match(r"found character (.*) that cannot start any token", problem):
        message = f"{match.group(1)} cannot start a plain value; put the value in quotes"
    elif problem == "mapping values are not allowed here":
        message = 'unexpected ":"; quote text that holds ": ", or fix the indentation'
    elif match := re.match(r"found undefined alias '(.*)'", problem):
        message = f"alias *{match.group(1)} has no anchor &{match.group(1)} before it"
    elif problem.startswith("found unexpected end of stream") and "quoted scalar" in context:
        message, mark = "this quoted text is never closed", opened
    elif match := re.match(r"expected ',' or '([\]}])', but got (.*)", problem):
        bracket = {"]": "[", "}": "{"}[match.group(1)]
        if "stream end" in match.group(2):
            message, mark = f'this "{bracket}" is never closed with "{match.group(1)}"', opened
        else:
            message = f'expected "," or "{match.group(1)}" (the "{bracket}" opens{where})'
    elif problem.startswith("expected <block end>"):
        message = "this line's indentation does not match the lines above it"
    elif "could not find expected ':'" in problem:
        message = 'expected "key: value"; this line has no ":" after its key'
    if not message:
        problem = re.sub(r"\(('<[\w ]+>'),\)", r"\1", problem)
        for token, words in _TOKEN_NAMES.items():
            problem = problem.replace(token, words)
        message = f"not valid YAML: {problem or 'cannot be parsed'}"
        if context:
            message += f" ({context}{where})"
    return SpecError(
        shown,
        scrub(message),  # ruamel's words quote the file: an alias, a stray value
        line=mark.line + 1 if mark else None,
        column=mark.column + 1 if mark else None,
    )


def _reader_error(exc: ReaderError, text: str, shown: str) -> SpecError:
    position = exc.position if isinstance(exc.position, int) else 0
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    character = exc.character if isinstance(exc.character, int) else 0
    return SpecError(
        shown,
        f"control character U+{character:04X} is not allowed in YAML; remove it",
        line=line,
        column=column,
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_nodes(root: Node, shown: str) -> list[SpecError]:
    """Refuse explicit tags, odd keys and scalars, duplicates, and alias bombs."""
    sizes: dict[int, int] = {}
    heights: dict[int, int] = {}  # levels below each node: an alias adds them where it stands
    aliased: list[Node] = []  # the nodes met again through an alias
    inside: set[int] = set()  # the mappings and lists being walked, to catch recursive aliases
    errors: list[SpecError] = []

    def error(node: Node, loc: tuple[Any, ...], message: str) -> SpecError:
        mark = node.start_mark
        return SpecError(
            shown, message, line=mark.line + 1, column=mark.column + 1, key_path=key_path(loc)
        )

    def size(node: Node, loc: tuple[Any, ...]) -> int:
        if id(node) in inside:
            raise error(node, loc, "an alias here refers to a mapping or list that holds it")
        if len(loc) + heights.get(id(node), 0) > MAX_DEPTH:  # the composer stops deeper text
            mark = node.start_mark  # an alias's node is its anchor's: the line points there
            raise too_deep(shown, mark.line + 1, mark.column + 1, loc)
        if id(node) in sizes:
            aliased.append(node)
            return sizes[id(node)]
        tag = str(node.tag)
        if _explicit_tag(node) or tag not in _PLAIN_TAGS:
            errors.append(error(node, loc, _tag_message(node)))
            return 1
        total = 1
        inside.add(id(node))
        if isinstance(node, MappingNode):
            seen: dict[str, Node] = {}
            for key, value in node.value:
                if not isinstance(key, ScalarNode) or _explicit_tag(key) or key.tag != _STR:
                    errors.append(error(key, loc, _key_message(key)))
                    continue
                if key.value in seen:
                    first = seen[key.value].start_mark
                    errors.append(
                        error(
                            key,
                            (*loc, key.value),
                            f"duplicate key (first at line {first.line + 1}); each key may "
                            "appear once",
                        )
                    )
                    continue
                seen[key.value] = key
                total += 1 + size(value, (*loc, key.value))
        elif isinstance(node, SequenceNode):
            total += sum(size(item, (*loc, index)) for index, item in enumerate(node.value))
        if isinstance(node, MappingNode | SequenceNode):
            values = node.value if isinstance(node, SequenceNode) else [v for _, v in node.value]
            heights[id(node)] = 1 + max((heights.get(id(v), 0) for v in values), default=0)
        elif tag in (_YAML_TAG + "int", _YAML_TAG + "float"):
            problem = number_problem(str(node.value), tag == _YAML_TAG + "float")
            if problem:
                errors.append(error(node, loc, problem))
        inside.discard(id(node))
        sizes[id(node)] = total
        if total > MAX_EXPANDED_NODES and aliased:
            raise error(
                node,
                loc,
                f"anchors and aliases expand to more than {MAX_EXPANDED_NODES} values; "
                "write the values out",
            )
        if total > MAX_EXPANDED_NODES:
            raise too_many(shown, node.start_mark.line + 1, node.start_mark.column + 1, loc)
        return total

    size(root, ())
    return errors


def number_problem(text: str, is_float: bool) -> str | None:
    if len(text) > MAX_NUMBER_CHARS:
        return f"this number is longer than {MAX_NUMBER_CHARS} characters"
    if is_float and _SPECIAL_FLOAT.match(text):
        return "infinity and NaN are not allowed; write a number"
    if is_float and not _finite(text):
        return "this number is too large for a float"
    if not (_DECIMAL_FLOAT if is_float else _DECIMAL).fullmatch(text):
        return (
            "write this number in plain decimal digits (YAML readers disagree on 010, 0x10, "
            "0o7 and 1_000), or quote it if it is text"
        )
    return None


def _finite(text: str) -> bool:
    try:
        return math.isfinite(float(text.replace("_", "")))
    except ValueError:
        return True  # a YAML spelling Python does not read; the loader decides


def _explicit_tag(node: Node) -> bool:
    """Whether the file writes a tag here (``!!str x``), rather than YAML inferring one."""
    return getattr(node.ctag, "handle", None) is not None


def _tag_message(node: Node) -> str:
    tag = str(node.tag)
    if _explicit_tag(node):
        short = quote(tag.replace(_YAML_TAG, "!!"))
        return f"YAML tag {short} is not allowed in specs; write plain values (quote text)"
    if tag == _YAML_TAG + "timestamp":
        return f"{quote(str(node.value))} reads as a date; put it in quotes to keep it as text"
    return f"{quote(str(node.value))} has a special meaning in YAML; put it in quotes"


def _key_message(key: Node) -> str:
    tag = str(key.tag)
    if tag == _YAML_TAG + "merge":
        return "merge keys (<<) are not supported; write the keys out"
    if _explicit_tag(key) or tag not in _PLAIN_TAGS:
        return _tag_message(key)
    if not isinstance(key, ScalarNode):
        return "keys must be plain text, not lists or mappings"
    return f"key {quote(str(key.value))} must be text; put it in quotes"
