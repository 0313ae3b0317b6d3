"""Validation errors in words: each pydantic error becomes one located ``SpecError``.

The loader hands over pydantic's raw errors and the round-trip YAML document; this module
finds the line and column of the offending key or value, names the key path as the user
wrote it, and says what to write instead, without pydantic's wording or union noise.
"""

from __future__ import annotations

import difflib
import json
import re
import typing
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ..errors import SpecError
from ..tokens import hidden, token_kind
from .fields import (
    ENGINE_VERSION,
    HF_ID,
    IMAGE_REFERENCE,
    IMAGE_REFERENCE_HINT,
    MOUNT_PATH,
    PYTHON_VERSION,
    Problem,
)
from .service import Spec

# The model errors are explained against: Spec, or GatewaySpec for ``kind: gateway``.
_ROOT: ContextVar[Any] = ContextVar("root_model", default=Spec)

_TYPE_NAMES = {
    "string_type": "text",
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "list_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "greater_than": ("gt", "must be more than {}"),
    "less_than": ("lt", "must be less than {}"),
    "string_too_long": ("max_length", "must be at most {} characters"),
    "too_short": ("min_length", "needs at least {} items"),
    "too_long": ("max_length", "takes at most {} items"),
}
_MISSING_HINTS = {
    ("app",): "the Modal app name",
    ("model",): "the model to serve, with id and task",
    ("gpu",): 'a Modal GPU type, as in "L4" or "H100:2"',
    ("model", "id"): 'the Hugging Face repository id, as in "BAAI/bge-m3"',
}
# Choices people write that are not misspellings: what each means, by location and value.
_GENERATE = 'chat and completion models use "generate"'
_EMBED = 'embedding and retrieval models use "embed"'
_CHOICE_GUESSES = {
    ("model", "task"): {
        "chat": _GENERATE,
        "completion": _GENERATE,
        "completions": _GENERATE,
        "text-generation": _GENERATE,
        "instruct": _GENERATE,
        "llm": _GENERATE,
        "embedding": _EMBED,
        "embeddings": _EMBED,
        "feature-extraction": _EMBED,
        "retrieval": _EMBED,
        "sentence-similarity": _EMBED,
    },
}
# Field patterns (the spec models') in words.
_PATTERN_HINTS = {
    HF_ID.pattern: 'expected a Hugging Face repository id like "org/name", each part at most 96 '
    "characters",
    r"^[A-Z][A-Za-z0-9_]*[a-z][A-Za-z0-9_]*$": (
        'expected a CamelCase Python class name with a lower-case letter, like "Embedder"'
    ),
    r"^[a-z][a-z0-9_]*$": 'expected a snake_case Python name, like "download_weights"',
    ENGINE_VERSION.pattern: 'expected a version like "0.33.0"',
    PYTHON_VERSION.pattern: 'expected a Python version like "3.12", in quotes',
    r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$": (
        "Modal environment names start with a letter or digit, then use letters, digits, "
        "'-' and '_', at most 64 characters"
    ),
    MOUNT_PATH: ('expected an absolute path in the container, like "/root/.cache/huggingface"'),
    IMAGE_REFERENCE.pattern: IMAGE_REFERENCE_HINT,
}


def from_pydantic(
    shown: str, data: CommentedMap, raw_errors: list[Any], model: Any = Spec
) -> list[SpecError]:
    token = _ROOT.set(model)
    try:
        return _from_pydantic(shown, data, raw_errors)
    finally:
        _ROOT.reset(token)


def _from_pydantic(shown: str, data: CommentedMap, raw_errors: list[Any]) -> list[SpecError]:
    """One located line per problem, without pydantic's wording or union noise."""
    suggested = set()
    for err in raw_errors:
        if err["type"] == "extra_forbidden":
            hint = _did_you_mean(str(err["loc"][-1]), _known_keys(tuple(err["loc"][:-1])))
            suggested.add((*err["loc"][:-1], hint))
    found: dict[str, SpecError] = {}
    for err in raw_errors:
        if err["type"] == "missing" and tuple(err["loc"]) in suggested:
            continue  # the misspelt key next to it already says "did you mean"
        error = _one_error(shown, data, err)
        found.setdefault(str(error), error)
    return list(found.values())


def _one_error(shown: str, data: CommentedMap, err: Any) -> SpecError:
    loc = tuple(err["loc"])
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    on_key = "[key]" in loc
    if kind == "missing":
        hint = _MISSING_HINTS.get(loc) or _choices_hint(_field_at(loc))
        message = f"missing required key {quote(str(loc[-1]))}" + (f" ({hint})" if hint else "")
        return located(shown, data, loc[:-1], message, key=True)
    if kind == "extra_forbidden":
        close = _did_you_mean(str(loc[-1]), _known_keys(loc[:-1]))
        message = f"unknown key {quote(str(loc[-1]))}{_suggest(close)}"
        return located(shown, data, loc, message, key=True)
    if kind == "literal_error":
        choices = _literal_choices(_field_at(loc)) or re.findall(r"'([^']*)'", ctx["expected"])
        guess = _CHOICE_GUESSES.get(loc, {}).get(str(value).strip().lower())
        return located(shown, data, loc, expected_one_of(choices, value, guess))
    if kind == "value_error":
        error = ctx.get("error")
        if isinstance(error, Problem):
            return located(shown, data, (*loc, *error.at), str(error), key=error.key)
        return located(shown, data, loc, str(error))
    if kind in _TYPE_NAMES:
        what = _TYPE_NAMES[kind]
        if on_key:
            return located(shown, data, loc, f"key {describe(loc[-2])} must be {what}")
        message = f"expected {what}, got {describe(value)}" + _type_hint(kind, value)
        return located(shown, data, loc, message)
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        message = _PATTERN_HINTS.get(pattern, f"does not have the expected form {pattern}")
        subject = loc[-2] if on_key else value
        return located(shown, data, loc, f"{message}, got {describe(subject)}")
    if kind == "string_unicode":
        return located(
            shown, data, loc, "holds a lone surrogate escape (\\ud800-\\udfff); remove it"
        )
    if kind == "string_too_short" or (kind == "too_short" and isinstance(value, str)):
        return located(shown, data, loc, "must not be empty")  # pydantic's "too_short" past a
        # BeforeValidator counts characters as items
    if kind in _BOUNDS:
        name, template = _BOUNDS[kind]
        message = template.format(ctx.get(name))
        if not isinstance(value, list | dict | str):
            message += f", got {describe(value)}"
        return located(shown, data, loc, message)
    message = str(err["msg"]).replace("Input should be", "must be")
    return located(shown, data, loc, message[:1].lower() + message[1:])


def expected_one_of(choices: list[Any], value: Any, guess: str | None = None) -> str:
    """``expected one of "embed", "generate", got "embedd"; did you mean "embed"?``, or
    ``guess`` (what the value means in modaliac's words) in place of the spelling match."""
    shown_choices = ", ".join(quote(c) if isinstance(c, str) else str(c) for c in choices)
    message = (
        f"expected one of {shown_choices}" if len(choices) > 1 else f"expected {shown_choices}"
    )
    if guess is not None:
        return f"{message}, got {describe(value)}; {guess}"
    close = _did_you_mean(value, [c for c in choices if isinstance(c, str)])
    return f"{message}, got {describe(value)}{_suggest(close)}"


def _type_hint(kind: str, value: Any) -> str:
    """What to write instead, for the mistakes YAML makes easy."""
    number = isinstance(value, str) and re.fullmatch(r" *[-+]?[0-9]+(\.[0-9]+)? *", value)
    if number and kind in ("int_type", "float_type"):
        return "; remove the quotes"
    if isinstance(value, str) and kind == "bool_type":
        return "; write true or false"
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        return f'; put it in quotes: "{value}"'
    one = isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.:/=<>-]{1,80}", value)
    if kind == "list_type" and one and not _hides_token(value):
        return f"; write [{value}] for a list of one"
    return ""


def describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return quote(value, 40)
    return str(value)


def quote(text: str, limit: int = 80) -> str:
    """Double-quoted, on one line and at most ``limit`` characters long, whatever ``text``
    holds, and never a value shaped like a credential: every user value an error line shows
    goes through here (or tokens.shown)."""
    kind = token_kind(text, within_words=True)  # before it is cut short, hiding the shape
    if kind is not None:
        return hidden(kind)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    quoted = json.dumps(text, ensure_ascii=False)
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in quoted)


def _suggest(close: str | None) -> str:
    return f"; did you mean {quote(close)}?" if close else ""


def _did_you_mean(word: Any, choices: list[str]) -> str | None:
    if not isinstance(word, str):
        return None
    by_lower = {c.lower(): c for c in choices}
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[matches[0]] if matches else None


def _field_at(loc: tuple[Any, ...]) -> FieldInfo | None:
    """The model field a location names (YAML spelling), or None inside free mappings."""
    model: Any = _ROOT.get()
    field = None
    for step in loc:
        if isinstance(step, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = next(
            (f for name, f in model.model_fields.items() if (f.alias or name) == step), None
        )
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return field


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names (YAML spelling) of the model found at ``loc``."""
    field = _field_at(loc)
    model = (
        _ROOT.get() if not loc else _inner_model(field.annotation) if field is not None else None
    )
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or name for name, f in model.model_fields.items()]
    return []


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _literal_choices(field: FieldInfo | None) -> list[Any]:
    def find(annotation: Any) -> list[Any]:
        if typing.get_origin(annotation) is typing.Literal:
            return list(typing.get_args(annotation))
        for arg in typing.get_args(annotation):
            if found := find(arg):
                return found
        return []

    return find(field.annotation) if field is not None else []


def _choices_hint(field: FieldInfo | None) -> str:
    choices = [str(c) for c in _literal_choices(field)]
    return " or ".join([", ".join(choices[:-1]), choices[-1]] if len(choices) > 2 else choices)


def located(
    shown: str,
    data: CommentedMap,
    loc: tuple[Any, ...],
    message: str,
    *,
    key: bool | None = None,
    code: str = "",
    fix: str = "",
) -> SpecError:
    """A SpecError at the deepest node of ``loc`` that the document holds (``code`` and
    ``fix``: a warning's rule, carried along).

    Mappings and lists are pointed at by their key, scalars by their value; ``key`` forces
    one or the other for the last step. Steps the document does not hold (pydantic's
    ``[key]`` and union member tags, a list index on a scalar) are left out of the key path.
    """
    if "[key]" in loc:
        loc, key = loc[: loc.index("[key]")], True
    line, column = data.lc.line, data.lc.col
    node: Any = data
    shown_loc: list[Any] = []
    for index, step in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, CommentedMap) and isinstance(step, str) and step in node:
            child = node[step]
            # A null has no text of its own: ruamel places it where the next token starts.
            at_key = (
                key if last and key is not None else child is None or isinstance(child, dict | list)
            )
            line, column = node.lc.key(step) if at_key else node.lc.value(step)
            node = child
            shown_loc.append(step)
        elif isinstance(node, CommentedSeq) and isinstance(step, int) and 0 <= step < len(node):
            line, column = node.lc.item(step)
            node = node[step]
            shown_loc.append(step)
    return SpecError(
        shown,
        message,
        line=line + 1,
        column=column + 1,
        key_path=key_path(tuple(shown_loc)),
        code=code,
        fix=fix,
    )


def _hides_token(text: Any) -> bool:
    return token_kind(str(text), within_words=True) is not None


def key_path(loc: tuple[Any, ...]) -> str:
    """``("scaling", "timeout")`` -> ``scaling.timeout``; odd keys are bracketed and quoted."""
    text = ""
    for step in loc:
        if isinstance(step, int):
            text += f"[{step}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", str(step)) and not _hides_token(step):
            text += f".{step}" if text else str(step)
        else:
            text += f"[{quote(str(step))}]"
    return text
