"""A spec flattened to ``key.path -> value``: what plans compare and explain prints.

Every resolved value is listed, defaults included, so a reviewer sees exactly what will be
deployed. ``explicit`` tells which of them the spec file itself sets.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from .messages import key_path
from .service import Spec

VLLM_ONLY = ("gpu_memory_utilization", "max_num_seqs", "enforce_eager", "args", "sleep_level")
TRANSFORMERS_ONLY = ("batch_size",)


def settings(spec: Spec) -> dict[str, Any]:
    """Flat, JSON-ready view of a resolved spec, in schema order, defaults resolved."""
    data = spec.model_dump(mode="json", by_alias=True)
    data["engine"]["enforce_eager"] = spec.enforce_eager
    data["engine"]["version"] = spec.engine_version
    # Each engine's settings only: the other engine's defaults would be noise in a plan.
    other = VLLM_ONLY if spec.engine.name == "transformers" else TRANSFORMERS_ONLY
    for key in other:
        data["engine"].pop(key, None)
    data["model"]["served_name"] = spec.model.served_name or spec.model.id
    data["scaling"]["concurrency"] = spec.concurrency
    if spec.model.task == "embed":
        data["model"]["embedding"] = spec.embedding.model_dump(mode="json")
    return dict(_flatten(data, ()))


def flatten(data: dict[str, Any]) -> list[tuple[str, Any]]:
    return _flatten(data, ())


def explicit(spec: Spec) -> set[str]:
    """Key paths the spec file sets (everything else in ``settings`` is a default)."""
    found: set[str] = set()
    _explicit(spec, (), found)
    return found


def _flatten(value: Any, loc: tuple[Any, ...]) -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value and not _is_leaf_mapping(loc):
        items = []
        for key, item in value.items():
            items.extend(_flatten(item, (*loc, key)))
        return items
    return [(_key_path(loc), value)]


# Every spec has the same schema keys: one string each, shared by every app's settings (a plan
# over thousands of specs holds them all), and made once rather than once a spec.
_key_path = lru_cache(maxsize=4096)(key_path)


def _is_leaf_mapping(loc: tuple[Any, ...]) -> bool:
    """Mappings shown whole: their keys are user data, not schema fields."""
    return loc in {("labels",), ("engine", "args"), ("image", "env")}


def _explicit(model: BaseModel, loc: tuple[Any, ...], found: set[str]) -> None:
    for name in model.model_fields_set:
        field = type(model).model_fields[name]
        here = (*loc, field.alias or name)
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _explicit(value, here, found)
            if not value.model_fields_set:
                found.add(key_path(here))
        elif isinstance(value, dict) and value and not _is_leaf_mapping(here):
            found.update(key_path((*here, key)) for key in value)
        else:
            found.add(key_path(here))
