"""The canonical order of a spec's keys: the order the pydantic models declare their fields,
recursively, as a ``Shape`` per YAML node. ``fmt`` reorders by it; canonical.py checks by it.

pydantic is imported where it is used: building the CLI's parser imports ``fmt``.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel


@dataclass
class Shape:
    """What the models say about one YAML node: a model's key order, or what a
    mapping's values or a list's items are."""

    fields: dict[str, Shape] | None = None
    values: Shape | None = None
    items: Shape | None = None

    def child(self, key: Any) -> Shape:
        """The shape of the value under ``key`` (a field's, or any value's of a mapping)."""
        found = (self.fields or {}).get(key) if self.fields is not None else self.values
        return found or Shape()

    def merge(self, other: Shape) -> None:
        if other.fields is not None:
            self.fields = {} if self.fields is None else self.fields
            for name, child in other.fields.items():
                self.fields.setdefault(name, Shape()).merge(child)
        for attr in ("values", "items"):
            theirs = getattr(other, attr)
            if theirs is not None:
                mine = getattr(self, attr)
                if mine is None:
                    setattr(self, attr, mine := Shape())
                mine.merge(theirs)


_SHAPES: dict[type[BaseModel], Shape] = {}


def model_shape(model: type[BaseModel]) -> Shape:
    """The canonical order of ``model``'s keys (aliases as written in YAML), recursively."""
    if model in _SHAPES:
        return _SHAPES[model]
    shape = _SHAPES[model] = Shape(fields={})
    assert shape.fields is not None
    for name, info in model.model_fields.items():
        shape.fields[info.alias or name] = _annotation_shape(info.annotation)
    return shape


def _annotation_shape(annotation: Any) -> Shape:
    from pydantic import BaseModel

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_shape(annotation)
    shape = Shape()
    if origin is typing.Annotated:
        return _annotation_shape(args[0])
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            shape.merge(_annotation_shape(arg))
    elif origin in (list, tuple, set, frozenset):
        shape.items = Shape()
        for arg in args:
            if arg is not Ellipsis:
                shape.items.merge(_annotation_shape(arg))
    elif origin is dict and len(args) == 2:
        shape.values = _annotation_shape(args[1])
    return shape


def document_shape(data: Any) -> Shape:
    """The shape of a whole spec: a service or a gateway, chosen by ``kind`` as load.py does."""
    from ..loading.load import _kind

    shape = model_shape(_kind(data))
    overrides = (shape.fields or {}).get("environments")
    if overrides is not None:  # each environment's overrides are a partial spec of this kind
        overrides.values = shape
    return shape


def canonical_keys(keys: list[Any], shape: Shape) -> list[Any]:
    """``keys`` in canonical order: the model's fields in its order, then the others as
    they stand. ``shape`` describes a model (its ``fields`` are not None)."""
    known = {name: index for index, name in enumerate(shape.fields or {})}
    unknown = len(known)
    return sorted(keys, key=lambda k: known.get(k, unknown))  # sorted() is stable
