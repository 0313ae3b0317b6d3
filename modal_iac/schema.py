"""The JSON schema of the spec, generated from the pydantic models (never edited by hand)."""

from __future__ import annotations

import json
from typing import Any

from .spec import SPEC_VERSION, Spec

SCHEMA_ID = "https://modaliac.dev/schema/spec-v1.json"


def spec_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"modaliac spec, version {SPEC_VERSION}",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def schema_text() -> str:
    """``schema.json`` exactly as committed: sorted keys, two-space indent, final newline."""
    return json.dumps(spec_schema(), indent=2, sort_keys=True) + "\n"
