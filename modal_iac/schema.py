"""The JSON schema of the spec, generated from the pydantic models (never edited by hand).

Two kinds share one file: a document whose ``kind`` is ``gateway`` is a ``GatewaySpec``,
anything else a (service) ``Spec``, as ``load.py`` decides.
"""

from __future__ import annotations

import json
from typing import Any

from .gateway import GatewaySpec
from .spec import SPEC_VERSION, Spec

SCHEMA_ID = "https://modaliac.dev/schema/spec-v1.json"


def spec_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    for model in (Spec, GatewaySpec):
        schema = model.model_json_schema(by_alias=True, mode="validation")
        defs.update(schema.pop("$defs", {}))
        defs[model.__name__] = schema
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
