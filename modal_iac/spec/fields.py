"""The scalar types of the spec language: Modal's naming rules, GPU types and limits, and the
human spellings a spec may use (``5m``, ``32k``, ``12B``) resolved to canonical values.

Each type carries its own JSON schema, so ``schema.json`` accepts exactly what validation does.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, WithJsonSchema

from .address import unaddressable
from .images import DEFAULT_BASE_IMAGE

# Modal's naming rules (modal/_utils/name_utils.py, modal 1.6.4).
_OBJECT_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,64}$")
APP_ID = re.compile(r"^ap-[a-zA-Z0-9]{22}$")
ENVIRONMENT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$")
_TAG = re.compile(r"^[a-zA-Z0-9._-]{1,63}$")
# Hugging Face repository ids: each part at most 96 characters (huggingface_hub's own limit).
HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
# The model id `modaliac import --generate-spec` writes: Modal does not report the model.
IMPORT_PLACEHOLDER = "FILL-IN/model-id"
ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ARG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# pip release numbers as engines publish them: 0.33.0, 5.20.2, 0.9.0rc1, 0.8.5.post1.
ENGINE_VERSION = re.compile(r"^[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,6}[a-z0-9.+-]{0,32}$")
PYTHON_VERSION = re.compile(r"^3\.[0-9]{1,2}$")

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
# Spellings people use for the same GPU (cloud SKUs, memory suffixes), upper case -> canonical.
# "H100-80GB" is an H100 (Modal's H100 has 80 GB), not an A100-80GB, whatever the letters say.
GPU_ALIASES = {
    "A10G": "A10",
    "A10-24GB": "A10",
    "A100-40": "A100-40GB",
    "A100-40G": "A100-40GB",
    "A100-80": "A100-80GB",
    "A100-80G": "A100-80GB",
    "A100-SXM4-40GB": "A100-40GB",
    "A100-SXM4-80GB": "A100-80GB",
    "H100-80GB": "H100",
    "H100-80G": "H100",
    "H100-SXM": "H100",
    "H100-SXM5": "H100",
    "H200-141GB": "H200",
    "L4-24GB": "L4",
    "L40S-48GB": "L40S",
    "RTX-PRO6000": "RTX-PRO-6000",
    "RTX6000": "RTX-PRO-6000",
    "T4-16GB": "T4",
}

GPU_HELP = (
    "Modal GPU type, with a count for tensor parallelism (H100:2), or a fallback list tried in "
    "order ([H100, A100-80GB]; every entry the same count). Common aliases are accepted "
    "(A10G, H100-80GB, A100-80G) and written canonically."
)


def _any_case(name: str) -> str:
    """A regex for ``name`` in either case (JSON schema patterns take no flags)."""
    return "".join(
        f"[{c.upper()}{c.lower()}]" if c.isalpha() else "\\+" if c == "+" else c for c in name
    )


def gpu_choice_schema() -> dict[str, object]:
    """One GPU choice: an enum of Modal's names (what editors complete), or any accepted
    spelling (either case, aliases) with an optional count."""
    names = sorted({*GPU_TYPES, *GPU_ALIASES}, key=lambda n: (-len(n), n))
    spelling = "|".join(_any_case(name) for name in names)
    return {
        "anyOf": [
            {"type": "string", "enum": list(GPU_TYPES), "description": "One GPU of this type."},
            {
                "type": "string",
                "pattern": f"^({spelling})(:[1-8])?$",
                "description": "TYPE:COUNT (H100:2), or an alias (A10G, H100-80GB).",
            },
        ],
        "examples": ["L4", "A100-40GB", "H100:2"],
    }


# The variable huggingface_hub reads its token from (or the older HUGGING_FACE_HUB_TOKEN);
# HUGGINGFACE_TOKEN, a common guess, is ignored: gated downloads then fail with 401.
HF_TOKEN_KEY = "HF_TOKEN"
IGNORED_HF_TOKEN_KEY = "HUGGINGFACE_TOKEN"

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
#
# The spellings are ASCII: [0-9], never \d, which also matches other scripts' digits ("²",
# "٣"). Each kind has a bound past any sane setting, checked on the digits before they are
# converted: Python refuses to read an int of 4300 digits, and 400 digits make an infinite
# float.

_BLANK = r"[ \t]*"
_DECIMAL = r"[0-9]+(?:\.[0-9]+)?"
MAX_DURATION = 365 * 24 * 3600  # a year
MAX_TOKENS = 1000**3
MAX_PARAMETERS_B = 100_000.0  # 100 trillion parameters
MAX_MEMORY_MIB = 1024**3  # 1024 TiB


def _scaled(number: str, scale: float, limit: float) -> float | None:
    """``number`` (ASCII digits, perhaps with a fraction) times ``scale``, or None when that
    is past ``limit``; a long run of digits is refused unread."""
    if len(number.partition(".")[0].lstrip("0")) > 15:
        return None
    value = float(number) * scale
    return value if value <= limit else None


def _bounded(value: Any, limit: float, too_large: str) -> Any:
    """A number as YAML read it, refused past ``limit`` (YAML ints have up to 100 digits)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) > limit:
        raise ValueError(too_large)
    return value


_DURATION = re.compile(
    f"{_BLANK}(?:([0-9]+)h)?{_BLANK}(?:([0-9]+)m)?{_BLANK}(?:([0-9]+)s)?{_BLANK}"
)
_DURATION_HINT = 'expected a duration like "5m", "90s" or "1h"'
_DURATION_BOUND = (
    f'expected a duration of at most {MAX_DURATION // 3600}h (a year), like "5m", "90s" or "1h"'
)


def _parse_duration(value: Any) -> int:
    """``"90s"`` / ``"5m"`` / ``"1h30m"`` -> seconds. A bare number is refused: ``5`` meant
    five minutes as often as five seconds (seed 003's ``scaledown_window: 5``)."""
    if isinstance(value, bool):
        raise ValueError(_DURATION_HINT)
    if isinstance(value, int | float):
        raise ValueError(_bare_duration(value))
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match and any(match.groups()):
            total = 0.0
            for digits, unit in zip(match.groups(), (3600, 60, 1), strict=True):
                part = _scaled(digits or "0", unit, MAX_DURATION)
                if part is None:
                    raise ValueError(_DURATION_BOUND)
                total += part
            return int(_bounded(int(total), MAX_DURATION, _DURATION_BOUND))
    raise ValueError(_DURATION_HINT)


def _bare_duration(value: float) -> str:
    """Why a number without a unit is refused, with its two readings spelled out."""
    number = _bounded(value, MAX_DURATION, _DURATION_BOUND)
    if isinstance(number, float) or number < 0:
        return f'{number:g} has no unit; expected a duration like "5m", "90s" or "1h"'
    seconds = _reading(number, "s", number)
    if number * 60 > MAX_DURATION:
        return f"{number} has no unit: write {seconds} for seconds"
    minutes = _reading(number, "m", number * 60)
    return f"{number} has no unit: write {seconds} for seconds or {minutes} for minutes"


def _reading(number: int, unit: str, seconds: int) -> str:
    """``"90s" (1m30s)``: one reading of a bare number, and what it comes to."""
    written = f"{number}{unit}"
    canonical = _format_duration(seconds)
    return f'"{written}"' if canonical == written else f'"{written}" ({canonical})'


def _format_duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{seconds}s" if seconds or not text else "")


def shown_duration(seconds: int) -> str:
    return _format_duration(seconds) if seconds >= 0 else f"{seconds}s"


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": f"^{_DURATION.pattern}$"},
    ],
    "examples": ["5m", "90s", "1h30m"],
}

Duration = Annotated[
    int,
    BeforeValidator(_parse_duration),
    PlainSerializer(_format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]


MAX_MODEL_LEN_HELP = (
    'Context length in tokens; unset: the model\'s own. "32k" is 32000 (x1000) and "32K" is '
    "32768 (x1024), as vLLM reads --max-model-len; a model's native 32768 is 32K, not 32k."
)
_TOKEN_COUNT = re.compile(f"{_BLANK}({_DECIMAL}){_BLANK}([kKmM]?){_BLANK}")
_TOKEN_HINT = 'expected a token count like 8192 or "32k"'
_TOKEN_BOUND = f'expected a token count of at most {MAX_TOKENS // 1000**2}m, like 8192 or "32k"'


def _parse_token_count(value: Any) -> int:
    """``32768`` / ``"32k"`` (x1000) / ``"32K"`` (x1024), as vLLM reads --max-model-len."""
    if isinstance(value, bool):
        raise ValueError(_TOKEN_HINT)
    if isinstance(value, int):
        return int(_bounded(value, MAX_TOKENS, _TOKEN_BOUND))
    if isinstance(value, str):
        match = _TOKEN_COUNT.fullmatch(value)
        if match:
            number, unit = match.groups()
            scale = {"": 1, "k": 1000, "K": 1024, "m": 1000**2, "M": 1024**2}[unit]
            count = _scaled(number, scale, MAX_TOKENS)
            if count is None:
                raise ValueError(_TOKEN_BOUND)
            return int(count)
    raise ValueError(_TOKEN_HINT)


TokenCount = Annotated[
    int,
    BeforeValidator(_parse_token_count),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS},
                {"type": "string", "pattern": f"^{_TOKEN_COUNT.pattern}$"},
            ],
            "examples": [8192, "32k"],
        }
    ),
]


_PARAMETERS = re.compile(f"{_BLANK}({_DECIMAL}){_BLANK}([bBmM]?){_BLANK}")
_PARAMETERS_HINT = 'expected a parameter count like "12B" or "560M"'
_PARAMETERS_BOUND = (
    f'expected a parameter count of at most {MAX_PARAMETERS_B:g}B, like "12B" or "560M"'
)


def _parse_parameters(value: Any) -> float:
    """``11.76`` (billions) / ``"11.76B"`` / ``"560M"`` -> billions of parameters."""
    if isinstance(value, bool):
        raise ValueError(_PARAMETERS_HINT)
    if isinstance(value, int | float):
        billions = float(_bounded(value, MAX_PARAMETERS_B, _PARAMETERS_BOUND))
    elif isinstance(value, str) and (match := _PARAMETERS.fullmatch(value)):
        number, unit = match.groups()
        found = _scaled(number, 1 / 1000 if unit in ("m", "M") else 1, MAX_PARAMETERS_B)
        if found is None:
            raise ValueError(_PARAMETERS_BOUND)
        billions = found
    else:
        raise ValueError(_PARAMETERS_HINT)
    if billions <= 0:
        raise ValueError('expected a parameter count above 0, like "12B" or "560M"')
    return billions


Parameters = Annotated[
    float,
    BeforeValidator(_parse_parameters),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": MAX_PARAMETERS_B,
                    "description": "billions",
                },
                {"type": "string", "pattern": f"^{_PARAMETERS.pattern}$"},
            ],
            "examples": ["12B", "560M"],
        }
    ),
]


_MEMORY_UNITS = {"MiB": 1, "Mi": 1, "GiB": 1024, "Gi": 1024, "TiB": 1024**2, "Ti": 1024**2}
_MEMORY = re.compile(f"{_BLANK}({_DECIMAL}){_BLANK}(MiB|Mi|GiB|Gi|TiB|Ti){_BLANK}")
_MEMORY_HINT = 'expected a memory size like "64GiB" or "512MiB" (or MiB as a number)'
_MEMORY_BOUND = (
    f'expected a memory size of at most {MAX_MEMORY_MIB // 1024**2}TiB, like "64GiB" or "512MiB"'
)


# Decimal units, which Modal does not take; people writing "64GB" mean 64GiB.
_DECIMAL_MEMORY = re.compile(f"{_BLANK}({_DECIMAL}){_BLANK}([MGT])B?{_BLANK}", re.IGNORECASE)


def _decimal_memory_hint(value: str) -> str:
    match = _DECIMAL_MEMORY.fullmatch(value)
    if not match or len(match.group(1)) > 12:
        return ""
    number, unit = match.groups()
    return f'; did you mean "{number}{unit.upper()}iB"?'


def parse_memory(value: Any) -> int:
    """``65536`` (MiB, as Modal takes it) / ``"64GiB"`` / ``"64Gi"`` / ``"512MiB"`` -> MiB."""
    if isinstance(value, bool):
        raise ValueError(_MEMORY_HINT)
    if isinstance(value, int):
        return int(_bounded(value, MAX_MEMORY_MIB, _MEMORY_BOUND))
    if isinstance(value, str):
        match = _MEMORY.fullmatch(value)
        if match:
            number, unit = match.groups()
            mib = _scaled(number, _MEMORY_UNITS[unit], MAX_MEMORY_MIB)
            if mib is None:
                raise ValueError(_MEMORY_BOUND)
            return int(mib)
        raise ValueError(_MEMORY_HINT + _decimal_memory_hint(value))
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
                {
                    "type": "integer",
                    "minimum": MODAL_MIN_MEMORY_MIB,
                    "maximum": MAX_MEMORY_MIB,
                    "description": "MiB",
                },
                {"type": "string", "pattern": f"^{_MEMORY.pattern}$"},
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
        if isinstance(value, str) and not pattern.fullmatch(value):  # "$" passes a final "\n"
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


def _addressable(value: str) -> str:
    problem = unaddressable(value)
    if problem is not None:
        advice = "in letters or digits" if value in (".", "..") else "without .yaml or .yml"
        raise ValueError(f"{problem}; name the app {advice}")
    return value


# An app's name, which is also a path segment of its address and a command-line target: never
# "." or "..", and never ending in .yaml/.yml (a target so named is a spec file's path).
AppName = Annotated[ObjectName, AfterValidator(_addressable)]
EnvVarName = Annotated[
    str,
    Field(pattern=ENV_VAR.pattern),
    BeforeValidator(_check_pattern(ENV_VAR, "expected an environment variable name")),
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

# The app tags apply sets itself on every deploy (modal/tags.py): a label may not name one, or
# the deploy would quietly set another value than the spec's.
MANAGED_BY = "managed-by"
MODALIAC_TAG_PREFIX = "modaliac-"


def is_modaliac_tag(key: str) -> bool:
    return key.lower() == MANAGED_BY or key.lower().startswith(MODALIAC_TAG_PREFIX)


def _not_modaliacs_tag(key: str) -> str:
    if is_modaliac_tag(key):
        raise ValueError(
            f"{MANAGED_BY!r} and tags starting {MODALIAC_TAG_PREFIX!r} are the tags modaliac "
            "sets on every deploy; name the label otherwise"
        )
    return key


LabelKey = Annotated[TagText, AfterValidator(_not_modaliacs_tag)]
# Mappings whose keys follow a pattern: schema.json refuses the keys that do not.
ONLY_PATTERN_KEYS: dict[str, Any] = {"additionalProperties": False}


# ---------------------------------------------------------------------------------------
# Text that must stay one line: control characters (C0, DEL, C1) and the Unicode line and
# paragraph separators have no place in it. In what reaches the image build (the base image,
# pip requirements, environment variables) a line break would start a Dockerfile command of
# its own on Modal; in a revision or a mount path it is a typo that fails far from the spec.

_CONTROLS = "\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029"  # as regex escapes: Python, Rust and JSON schema
_CONTROL = re.compile(f"[{_CONTROLS}]")
ONE_LINE = f"^[^{_CONTROLS}]*$"
MOUNT_PATH = f"^/[^{_CONTROLS}]*$"
_CONTROL_NAMES = {
    "\n": "a line break",
    "\r": "a carriage return",
    "\t": "a tab",
    "\x00": "a NUL character",
    "\u2028": "a line separator",
    "\u2029": "a paragraph separator",
}
_ONE_LINE_WHY = "this setting is one line of printable text"
_TO_THE_IMAGE = "what reaches the image build is one line of printable text"


def _control_problem(value: str) -> str | None:
    """Which control character ``value`` holds, and where, in words; None when it holds none."""
    found = _CONTROL.search(value)
    if found is None:
        return None
    char = found.group()
    name = _CONTROL_NAMES.get(char, "a control character")
    return f"holds {name} (U+{ord(char):04X}) at character {found.start() + 1}; remove it"


def _one_line(why: str) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, str) and (problem := _control_problem(value)):
            raise ValueError(f"{problem}: {why}")
        return value

    return check


OneLine = Annotated[str, Field(pattern=ONE_LINE), BeforeValidator(_one_line(_ONE_LINE_WHY))]
ImageText = Annotated[str, Field(pattern=ONE_LINE), BeforeValidator(_one_line(_TO_THE_IMAGE))]
MountPath = Annotated[
    str,
    Field(pattern=MOUNT_PATH),
    BeforeValidator(_one_line(_ONE_LINE_WHY)),
]

# The container registry's reference grammar (github.com/distribution/reference, regexp.go):
# [registry[:port]/]name[:tag][@digest], the name's path components in lower case.
_PATH_COMPONENT = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
IMAGE_REFERENCE = re.compile(
    f"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
IMAGE_REFERENCE_HINT = (
    f'expected a container image like "{DEFAULT_BASE_IMAGE}": '
    "[registry[:port]/]name[:tag][@digest], the name in lower case"
)
ImageReference = Annotated[
    str,
    Field(pattern=IMAGE_REFERENCE.pattern, max_length=512),
    BeforeValidator(_one_line(_TO_THE_IMAGE)),
]
