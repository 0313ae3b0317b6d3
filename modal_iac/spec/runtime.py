"""How each container runs: host resources, where it runs, and how a call is retried."""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from ..tokens import shown
from .fields import (
    MODAL_MIN_MEMORY_MIB,
    Duration,
    MemorySize,
    Problem,
)
from .placement import (
    BROAD_REGIONS,
    MAX_EPHEMERAL_DISK_MIB,
    MAX_RETRIES,
    NARROW_REGIONS,
    RETRY_BACKOFF_RANGE,
    RETRY_DELAY_RANGE,
    RETRY_MAX_DELAY_RANGE,
    region_kind,
)
from .strict import AlsoAccepts, StrictModel


class Resources(StrictModel):
    """Host resources each container reserves (Modal's requests, billed whether used or not).

    Unset, Modal reserves its minimum (0.125 cores, 128 MiB) and a container may use more
    only while its worker has it free."""

    memory: MemorySize | None = Field(
        None, description='Host memory to reserve, e.g. "64GiB" (Modal\'s memory=, in MiB).'
    )
    cpu: float | None = Field(None, ge=0.125, description="CPU cores to reserve (Modal's cpu=).")
    ephemeral_disk: MemorySize | None = Field(
        None,
        description='Scratch disk each container gets, e.g. "100GiB" (Modal\'s ephemeral_disk=, '
        "in MiB, at most 3TiB); billed as at least 1/20 of it in memory.",
    )

    @field_validator("ephemeral_disk")
    @classmethod
    def _disk_in_range(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= MAX_EPHEMERAL_DISK_MIB:
            size = f"{value // 1024**2}TiB" if value and value % 1024**2 == 0 else f"{value} MiB"
            raise ValueError(f"Modal's ephemeral disk is from 1MiB to 3TiB, got {size}")
        return value

    @field_validator("memory")
    @classmethod
    def _at_least_modal_minimum(cls, value: int | None) -> int | None:
        if value is not None and value < MODAL_MIN_MEMORY_MIB:
            raise ValueError(
                f"Modal's smallest memory request is {MODAL_MIN_MEMORY_MIB} MiB, got {value}"
            )
        return value


def _check_region(value: Any) -> Any:
    if not isinstance(value, str) or region_kind(value):
        return value
    known = (*BROAD_REGIONS, *NARROW_REGIONS)
    close = difflib.get_close_matches(value.lower(), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    broad = ", ".join(BROAD_REGIONS)
    raise ValueError(
        f"{shown(value)} is not a Modal region; {hint}use a broad region ({broad}) or a "
        "narrow one (us-east, eu-west, ap-south, ...)"
    )


def _regions_shorthand(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if value is not None and not isinstance(value, list):
        raise ValueError('expected a region like "eu", or a list of regions')
    return value


class Placement(StrictModel):
    """Where containers run (Modal's region= and cloud=). A region costs more: Modal
    multiplies every rate of a pinned function (1.5x broad, 1.75x narrow), so pin only
    for data residency or latency."""

    region: Annotated[
        list[Annotated[str, BeforeValidator(_check_region)]] | None,
        BeforeValidator(_regions_shorthand),
        AlsoAccepts({"type": "string"}),
    ] = Field(
        None,
        description="Modal region or regions the containers may run in: us, eu, ap, uk, "
        "ca, me, sa, af, mx, or narrower ones like us-east, eu-west, ap-south, jp.",
    )
    cloud: Literal["aws", "gcp", "oci", "auto"] | None = Field(
        None, description="Cloud provider: aws, gcp, oci or auto (Modal chooses)."
    )
    routing_region: Literal["us-east", "us-west", "eu-west", "ap-south"] | None = Field(
        None,
        description="Region Modal routes inputs and outputs through (us-east unset). Fixed at "
        "the first deploy: changing it needs a new app.",
    )

    @field_validator("region")
    @classmethod
    def _regions_sane(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("name at least one region, or leave region out")
        for index, code in enumerate(value):
            if code in value[:index]:
                raise Problem(f"{shown(code)} is listed twice", index)
        return value


def _retries_shorthand(value: Any) -> Any:
    """``retries: 3`` is Modal's ``retries=3``: a fixed one-second delay between attempts."""
    if isinstance(value, int) and not isinstance(value, bool):
        return {"max_retries": value, "backoff_coefficient": 1.0, "initial_delay": "1s"}
    if value is not None and not isinstance(value, dict):
        raise ValueError("expected a retry count like 3, or a mapping with max_retries")
    return value


class Retries(StrictModel):
    """How Modal retries a failed call of the Python class (modal.Retries)."""

    max_retries: int = Field(
        ge=0, le=MAX_RETRIES, description="Attempts after the first failure (0 to 10)."
    )
    backoff_coefficient: float = Field(
        2.0,
        ge=RETRY_BACKOFF_RANGE[0],
        le=RETRY_BACKOFF_RANGE[1],
        description="Delay multiplier per attempt: 1 is a fixed delay, up to 10.",
    )
    initial_delay: Duration = Field(1, description="Wait before the first retry (0s to 60s).")
    max_delay: Duration = Field(60, description="Longest wait between retries (1s to 60s).")

    @field_validator("backoff_coefficient", mode="before")
    @classmethod
    def _whole_coefficient(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("initial_delay")
    @classmethod
    def _initial_in_range(cls, value: int) -> int:
        low, high = RETRY_DELAY_RANGE
        if not low <= value <= high:
            raise ValueError(f"Modal waits from 0s to 60s before a retry, got {value}s")
        return value

    @field_validator("max_delay")
    @classmethod
    def _max_in_range(cls, value: int) -> int:
        low, high = RETRY_MAX_DELAY_RANGE
        if not low <= value <= high:
            raise ValueError(f"Modal caps the delay between retries at 1s to 60s, got {value}s")
        return value

    @model_validator(mode="after")
    def _delays_ordered(self) -> Retries:
        if self.initial_delay > self.max_delay:
            raise Problem(
                f"{self.initial_delay}s is above max_delay ({self.max_delay}s)", "initial_delay"
            )
        return self
