"""How many containers of each GPU pool run and how many requests each takes: ``scaling:``."""

from __future__ import annotations

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from .fields import (
    MODAL_MAX_TIMEOUT,
    MODAL_SCALEDOWN_RANGE,
    Duration,
    Problem,
    shown_duration,
)
from .strict import StrictModel

# Requests a vLLM container takes at once unless the spec says: vLLM batches them (continuous
# batching), so one request per container would start a GPU container for every request.
DEFAULT_VLLM_CONCURRENCY = 32
MAX_CONCURRENCY = 1000  # Modal's @modal.concurrent(max_inputs=) limit


class Scaling(StrictModel):
    """Autoscaling and time limits, in the user's units. They apply to EACH GPU pool of the
    app on its own: a service with both the Python class and the HTTP server runs two pools
    (two Modal classes, each with its own containers), so ``min_containers: 1`` keeps two
    GPUs warm; a gateway app runs one pool per model. Plans price every pool."""

    min_containers: int = Field(
        0,
        ge=0,
        le=1000,
        description="Containers kept running in each GPU pool (the class and the HTTP server "
        "each keep this many), billed while idle.",
    )
    max_containers: int | None = Field(
        None, ge=1, le=1000, description="Most containers of each GPU pool; no limit unset."
    )
    buffer_containers: int = Field(
        0, ge=0, le=1000, description="Extra idle containers per GPU pool while it is busy."
    )
    scaledown_window: Duration = Field(60, description="Idle time before a container stops.")
    timeout: Duration = Field(300, description="Longest a single request may run.")
    startup_timeout: Duration = Field(
        1200, description="Longest model loading (and snapshot capture) may take."
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        le=MAX_CONCURRENCY,
        description="Requests one HTTP server container (a gateway's model container) takes at "
        f"once; default for vLLM what it batches: engine max_num_seqs, else "
        f"{DEFAULT_VLLM_CONCURRENCY}; transformers 1.",
    )
    target_concurrency: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Inputs per container the autoscaler aims for (Modal's "
        "@modal.concurrent target_inputs): it adds containers above this, below the hard "
        "limit concurrency. Unset: concurrency.",
    )

    @field_validator("scaledown_window")
    @classmethod
    def _scaledown_in_range(cls, value: int) -> int:
        low, high = MODAL_SCALEDOWN_RANGE
        if not low <= value <= high:
            raise ValueError(
                f"Modal accepts a scaledown window from {low}s to 1h, got {shown_duration(value)}"
            )
        return value

    @field_validator("timeout", "startup_timeout")
    @classmethod
    def _timeout_in_range(cls, value: int) -> int:
        if not 1 <= value <= MODAL_MAX_TIMEOUT:
            raise ValueError(f"Modal accepts timeouts from 1s to 24h, got {shown_duration(value)}")
        return value

    @model_validator(mode="after")
    def _bounds_ordered(self) -> Scaling:
        if self.max_containers is not None and self.max_containers < self.min_containers:
            raise Problem(
                f"{self.max_containers} is below min_containers ({self.min_containers})",
                "max_containers",
            )
        return self

    @model_validator(mode="after")
    def _target_within_limit(self) -> Scaling:
        if (
            self.target_concurrency is not None
            and self.concurrency is not None
            and self.target_concurrency > self.concurrency
        ):
            raise Problem(
                f"{self.target_concurrency} is above concurrency ({self.concurrency}), the "
                "most inputs a container takes; lower it or raise concurrency",
                "target_concurrency",
            )
        return self


def batch_concurrency(max_num_seqs: int | None) -> int:
    """How many requests a vLLM container takes at once by default: what it batches."""
    if max_num_seqs is None:
        return DEFAULT_VLLM_CONCURRENCY
    return min(max_num_seqs, MAX_CONCURRENCY)
