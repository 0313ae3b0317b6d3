"""The JSON schema of the spec, generated from the pydantic models (never edited by hand).

Two kinds share one file: a document whose ``kind`` is ``gateway`` is a ``GatewaySpec``,
anything else a (service) ``Spec``, as ``load.py`` decides.
"""

from __future__ import annotations

import json
from typing import Any

from .app import SPEC_VERSION
from .gateway import GatewaySpec
from .service import NOT_OVERRIDABLE, Spec

SCHEMA_ID = "https://modaliac.dev/schema/spec-v1.json"


def spec_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    for model in (Spec, GatewaySpec):
        schema = model.model_json_schema(by_alias=True, mode="validation")
        defs.update(schema.pop("$defs", {}))
        defs[model.__name__] = schema
    _override_schema(defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"modaliac spec, version {SPEC_VERSION}",
        "description": "A service (the default kind) or a gateway (kind: gateway).",
        "type": "object",
        "if": {"properties": {"kind": {"const": "gateway"}}, "required": ["kind"]},
        "then": {"$ref": "#/$defs/GatewaySpec"},
        "else": {"$ref": "#/$defs/Spec"},
        "$defs": defs,
    }


def schema_text() -> str:
    """``schema.json`` exactly as committed: sorted keys, two-space indent, final newline."""
    return json.dumps(spec_schema(), indent=2, sort_keys=True) + "\n"


def _override_schema(defs: dict[str, Any]) -> None:
    """Type each ``environments:`` entry as the spec with nothing required (``SpecOverride``),
    so editors check an override's keys and values as they check the base."""
    partial: dict[str, Any] = {}

    def optional(schema: Any) -> Any:
        if isinstance(schema, list):
            return [optional(item) for item in schema]
        if not isinstance(schema, dict):
            return schema
        out = {key: optional(value) for key, value in schema.items() if key != "required"}
        ref = out.get("$ref", "")
        if ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name not in partial:
                partial[name] = None  # a placeholder while it is built (recursive models)
                partial[name] = optional(defs[name])
            out["$ref"] = f"#/$defs/{name}Override"
        return out

    spec = defs["Spec"]
    properties = {
        key: optional(value)
        for key, value in spec["properties"].items()
        if key not in NOT_OVERRIDABLE
    }
    defs["SpecOverride"] = {
        "type": "object",
        "description": "Keys of a service spec, deep-merged onto the base (nothing required).",
        "properties": properties,
        "additionalProperties": False,
    }
    for name, schema in partial.items():
        defs[f"{name}Override"] = schema
    for pattern in spec["properties"]["environments"]["patternProperties"]:
        spec["properties"]["environments"]["patternProperties"][pattern] = {
            "$ref": "#/$defs/SpecOverride"
        }
