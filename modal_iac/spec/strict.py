"""The base of every spec model: strict, closed, frozen; and the schema of a shorthand."""

from __future__ import annotations

from typing import Any

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
