"""What applying one change came to: the outcome ``apply`` and the health gate report."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    address: str
    action: str
    status: str  # "ok", "failed", or "cancelled" (a halt stopped it, or it never started)
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"
