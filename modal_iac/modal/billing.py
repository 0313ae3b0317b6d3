"""Modal's billing, through the workspace's billing API: its rates and its usage report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from modal.client import _Client

from .sdk import run


@dataclass(frozen=True)
class BilledItem:
    """One row of Modal's billing report: what one object cost in one interval."""

    object_id: str
    description: str
    environment: str
    start: datetime
    cost: Decimal
    tags: dict[str, str]


def billing_rates() -> dict[str, Decimal]:
    """The workspace's rates (``Workspace.billing.rates()``): name -> USD per unit per hour
    for compute, as Decimals. Deprecated names are left out, as the SDK's iteration does."""
    from modal._workspace import _Workspace

    async def make(client: _Client) -> dict[str, Decimal]:
        rates = await _Workspace.from_context(client=client).billing.rates()
        return {name: rates[name] for name in rates}

    return run(make)


def billing_report(
    start: datetime, end: datetime, resolution: str, tags: list[str]
) -> list[BilledItem]:
    """``Workspace.billing.report()`` from ``start`` (inclusive) to ``end`` (exclusive), each
    row carrying the ``tags`` named."""
    from modal._workspace import _Workspace

    async def make(client: _Client) -> list[BilledItem]:
        billing = _Workspace.from_context(client=client).billing
        items = await billing.report(start=start, end=end, resolution=resolution, tag_names=tags)
        return [
            BilledItem(
                item.object_id,
                item.description,
                item.environment_name,
                item.interval_start,
                item.cost,
                dict(item.tags),
            )
            for item in items
        ]

    return run(make)
