"""The scalar types of the spec language: Modal's naming rules, GPU types and limits, and the
human spellings a spec may use (``5m``, ``32k``, ``12B``) resolved to canonical values.

Each type carries its own JSON schema, so ``schema.json`` accepts exactly what validation does.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, WithJsonSchema

# Modal's naming rules (modal/_utils/name_utils.py, modal 1.6.4).
_OBJECT_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,64}$")
APP_ID = re.compile(r"^ap-[a-zA-Z0-9]{22}$")
ENVIRONMENT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$")
_TAG = re.compile(r"^[a-zA-Z0-9._-]{1,63}$")
HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ARG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# Modal GPU types (https://modal.com/docs/guide/gpu), canonical spelling -> max count.
GPU_TYPES: dict[str, int] = {
    "T4": 8,
    "L4": 8,
    "A10": 4,
    "L40S": 8,
    "A100": 8,
    "A100-40GB": 8,
    "A100-80GB": 8,
    "RTX-PRO-6000": 8,
    "H100": 8,
    "H100!": 8,
    "H200": 8,
    "B200": 8,
    "B200+": 8,
}
GPU_ALIASES = {"A10G": "A10"}

MODAL_MAX_TIMEOUT = 24 * 3600
MODAL_SCALEDOWN_RANGE = (2, 3600)
MODAL_MIN_MEMORY_MIB = 128  # Modal's default request: the smallest a spec may ask for
# Request bodies a public endpoint takes (surfaces.http.max_body, router.max_body), in MiB.
# Each body is held in memory while it is checked and forwarded, once per concurrent input,
# so the limit stays well below a container's memory.
DEFAULT_MAX_BODY_MIB = 32
MAX_BODY_RANGE_MIB = (1, 1024)


class Problem(ValueError):
    """A validation error about one part of the value being checked.

    ``at`` is the key path inside that value (a list index, a mapping key), so the loader
    can point at the offending line instead of the whole mapping; ``key`` points at the key
    rather than its value.
    """

    def __init__(self, message: str, *at: str | int, key: bool = False) -> None:
        super().__init__(message)
        self.at = at
        self.key = key


# ---------------------------------------------------------------------------------------
# Scalar types that accept human spellings and store a canonical value.


def _parse_duration(value: Any) -> int:
    """``90`` / ``"90s"`` / ``"5m"`` / ``"1h30m"`` -> seconds."""
    if isinstance(value, bool):
        raise ValueError('expected a duration like "5m", "90s" or "1h"')
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*", value)
        if match and any(match.groups()):
            hours, minutes, seconds = (int(g or 0) for g in match.groups())
            return hours * 3600 + minutes * 60 + seconds
    raise ValueError('expected a duration like "5m", "90s" or "1h"')


def _format_duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{seconds}s" if seconds or not text else "")


def shown_duration(seconds: int) -> str:
    return _format_duration(seconds) if seconds >= 0 else f"{seconds}s"


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "description": "seconds"},
        {"type": "string", "pattern": r"^\s*(\d+h)?\s*(\d+m)?\s*(\d+s)?\s*$"},
    ],
    "examples": ["5m", "90s", "1h30m"],
}

Duration = Annotated[
    int,
    BeforeValidator(_parse_duration),
    PlainSerializer(_format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]


def _parse_token_count(value: Any) -> int:
    """``32768`` / ``"32k"`` (x1000) / ``"32K"`` (x1024), as vLLM reads --max-model-len."""
    if isinstance(value, bool):
        raise ValueError('expected a token count like 8192 or "32k"')
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", value)
        if match:
            number, unit = match.groups()
            scale = {"": 1, "k": 1000, "K": 1024, "m": 1000**2, "M": 1024**2}[unit]
            return int(float(number) * scale)
    raise ValueError('expected a token count like 8192 or "32k"')


TokenCount = Annotated[
    int,
    BeforeValidator(_parse_token_count),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[kKmM]?\s*$"},
            ],
            "examples": [8192, "32k"],
        }
    ),
]


def _parse_parameters(value: Any) -> float:
    """``11.76`` (billions) / ``"11.76B"`` / ``"560M"`` -> billions of parameters."""
    if isinstance(value, bool):
        raise ValueError('expected a parameter count like "12B" or "560M"')
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bBmM]?)\s*", value)
        if match:
            number, unit = match.groups()
            return float(number) / (1000 if unit in "mM" and unit else 1)
    raise ValueError('expected a parameter count like "12B" or "560M"')


Parameters = Annotated[
    float,
    BeforeValidator(_parse_parameters),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "description": "billions"},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[bBmM]?\s*$"},
            ],
            "examples": ["12B", "560M"],
        }
    ),
]


_MEMORY_UNITS = {"MiB": 1, "Mi": 1, "GiB": 1024, "Gi": 1024, "TiB": 1024**2, "Ti": 1024**2}
_MEMORY_HINT = 'expected a memory size like "64GiB" or "512MiB" (or MiB as a number)'


def parse_memory(value: Any) -> int:
    """``65536`` (MiB, as Modal takes it) / ``"64GiB"`` / ``"64Gi"`` / ``"512MiB"`` -> MiB."""
    if isinstance(value, bool):
        raise ValueError(_MEMORY_HINT)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(MiB|Mi|GiB|Gi|TiB|Ti)\s*", value)
        if match:
            number, unit = match.groups()
            return int(float(number) * _MEMORY_UNITS[unit])
    raise ValueError(_MEMORY_HINT)


def _format_memory(mib: int) -> str:
    return f"{mib // 1024}GiB" if mib % 1024 == 0 else f"{mib}MiB"


MemorySize = Annotated[
    int,
    BeforeValidator(parse_memory),
    PlainSerializer(_format_memory, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": MODAL_MIN_MEMORY_MIB, "description": "MiB"},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(MiB|Mi|GiB|Gi|TiB|Ti)\s*$"},
            ],
            "examples": ["64GiB", "512MiB"],
        }
    ),
]


def _body_size_in_range(mib: int) -> int:
    low, high = MAX_BODY_RANGE_MIB
    if not low <= mib <= high:
        raise ValueError(
            f"expected a request body limit from {_format_memory(low)} to "
            f"{_format_memory(high)}, got {_format_memory(mib) if mib > 0 else mib}"
        )
    return mib


# The largest request body a public endpoint takes: a memory size (MiB), in a narrower range.
BodySize = Annotated[
    MemorySize,
    AfterValidator(_body_size_in_range),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "integer",
                    "minimum": MAX_BODY_RANGE_MIB[0],
                    "maximum": MAX_BODY_RANGE_MIB[1],
                    "description": "MiB",
                },
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(MiB|Mi|GiB|Gi)\s*$"},
            ],
            "examples": ["32MiB", "256MiB"],
        }
    ),
]


def _check_pattern(pattern: re.Pattern[str], what: str) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, str) and not pattern.match(value):
            raise ValueError(what)
        return value

    return check


# The pattern comes before the validator that words its message: the other order drops the
# pattern from schema.json.
ObjectName = Annotated[
    str,
    Field(pattern=_OBJECT_NAME.pattern),
    BeforeValidator(
        _check_pattern(
            _OBJECT_NAME,
            "Modal names use letters, digits, '-', '_' and '.', at most 64 characters",
        )
    ),
]
EnvVarName = Annotated[
    str,
    Field(pattern=_ENV_VAR.pattern),
    BeforeValidator(_check_pattern(_ENV_VAR, "expected an environment variable name")),
]
TagText = Annotated[
    str,
    Field(pattern=_TAG.pattern),
    BeforeValidator(
        _check_pattern(
            _TAG, "app tags use letters, digits, '-', '_' and '.', at most 63 characters"
        )
    ),
]
# Mappings whose keys follow a pattern: schema.json refuses the keys that do not.
ONLY_PATTERN_KEYS: dict[str, Any] = {"additionalProperties": False}
MountPath = Annotated[str, Field(pattern=r"^/[^\x00]*$")]
