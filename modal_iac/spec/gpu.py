"""One GPU choice (``gpu: H100:2``): a Modal GPU type, canonical, and a count."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from ..tokens import shown
from .fields import (
    GPU_ALIASES,
    GPU_TYPES,
    Problem,
    gpu_choice_schema,
)
from .strict import AlsoAccepts, StrictModel


class Gpu(StrictModel):
    """One GPU choice: a Modal GPU type and how many per container."""

    type: str
    count: int = Field(1, ge=1)

    def __str__(self) -> str:
        return self.type if self.count == 1 else f"{self.type}:{self.count}"

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        return _gpu_type(value)

    @model_validator(mode="after")
    def _count_fits(self) -> Gpu:
        most = GPU_TYPES[self.type]
        if self.count > most:
            raise Problem(
                f"{self.type} takes 1 to {most} GPUs per container, got {self.count}", "count"
            )
        return self


def _gpu_type(name: str) -> str:
    """The canonical spelling of a GPU type (``a10g`` -> ``A10``), or a located refusal."""
    name = name.strip()
    # ASCII only: str.upper maps some other letters onto ASCII ones (U+017F to "S").
    upper = name.upper() if name.isascii() else name
    canonical = GPU_ALIASES.get(upper, upper)
    if canonical not in GPU_TYPES:
        close = _guess_gpu_type(canonical)
        hint = f"did you mean {close!r}? " if close else ""
        raise ValueError(
            f"unknown GPU type {shown(name)}; {hint}Modal offers {', '.join(GPU_TYPES)}"
        )
    return canonical


def _guess_gpu_type(upper: str) -> str | None:
    """The GPU type a misspelt name most likely meant: its family (``H100-NVL`` -> ``H100``,
    not the closer-spelt ``A100-80GB``), else the nearest name or alias."""
    family = upper.split("-")[0].rstrip("!+")
    if family in GPU_TYPES:
        return family
    spellings = {**{name: name for name in GPU_TYPES}, **GPU_ALIASES}
    close = difflib.get_close_matches(upper, list(spellings), n=1)
    return spellings[close[0]] if close else None


def _parse_gpu(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    name, _, count = value.partition(":")
    canonical = _gpu_type(name)
    digits = count.strip()
    if count and not re.fullmatch("[0-9]+", digits):
        raise ValueError(f"GPU count {shown(count)} is not a whole number, as in {canonical}:2")
    significant = digits.lstrip("0")
    if len(significant) > 3:  # read unconverted: Python refuses ints of 4300 digits
        raise ValueError(
            f"{canonical} takes 1 to {GPU_TYPES[canonical]} GPUs per container, got a "
            f"{len(significant)}-digit number"
        )
    number = int(significant or "0") if count else 1
    if not 1 <= number <= GPU_TYPES[canonical]:
        raise ValueError(
            f"{canonical} takes 1 to {GPU_TYPES[canonical]} GPUs per container, got {number}"
        )
    return {"type": canonical, "count": number}


_GPU_SCHEMA = gpu_choice_schema()
GpuChoice = Annotated[
    Gpu,
    BeforeValidator(_parse_gpu),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(_GPU_SCHEMA),
]
# A GPU type, or a fallback list of them in the order Modal should try: ``gpu: L4``,
# ``gpu: [H100, A100-80GB]``.
GpuChoices = Annotated[
    list[GpuChoice],
    BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
    AlsoAccepts(_GPU_SCHEMA),
]
