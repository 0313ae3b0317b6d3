"""The base of every spec model (strict, closed, frozen), a base whose fields its subclasses
place among their own, and the schema of a shorthand."""

from __future__ import annotations

from copy import copy
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    GetJsonSchemaHandler,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


class StrictModel(BaseModel):
    """Unknown keys are errors; YAML's own types are taken as they are (no "1" -> 1)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SharedFields(StrictModel):
    """A base that declares fields once for several kinds of document, each of which lists its
    keys in an order of its own.

    Pydantic puts inherited fields first, but the order of a document's keys is what ``fmt``
    writes, what settings, plans and explain list, the order fields are validated in, and so
    which problem is reported first. A subclass names every field, its own and inherited, in
    ``key_order``, and may word an inherited field's help its own way in ``key_help``; the
    schema is built once, after that (``defer_build``)."""

    model_config = ConfigDict(defer_build=True)
    key_order: ClassVar[tuple[str, ...]] = ()
    key_help: ClassVar[dict[str, str]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "key_order" not in cls.__dict__:
            return  # a further shared base: its subclasses order the fields
        fields = cls.__pydantic_fields__
        if sorted(cls.key_order) != sorted(fields):
            raise TypeError(f"{cls.__name__}.key_order must name each of {sorted(fields)} once")
        ordered = {}
        for name in cls.key_order:
            field = fields[name]
            if name in cls.key_help:
                field = copy(field)
                field.description = cls.key_help[name]
            ordered[name] = field
        cls.__pydantic_fields__ = ordered


class AlsoAccepts:
    """JSON schema of a field whose BeforeValidator expands a shorthand: either spelling.

    Without it schema.json would refuse ``gpu: L4`` or ``class: true``, which specs write.
    """

    def __init__(self, shorthand: dict[str, Any]) -> None:
        self.shorthand = shorthand

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"anyOf": [self.shorthand, handler(core_schema)]}
