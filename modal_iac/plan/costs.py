"""What a plan costs: each change's cost before and after, priced by ``review/cost.py``.

An update's delta needs nothing but the plan: the record holds the settings after, the changed
fields hold the values before.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..review.cost import AppCost, Prices, app_cost
from .changes import Change, Plan


def change_costs(change: Change, prices: Prices) -> tuple[AppCost | None, AppCost | None]:
    """(before, after) of one planned change, from its record and its changed fields."""
    after_settings = change.record.settings if change.record is not None else None
    before_values = {f.path: f.before for f in change.fields}
    if change.action == "create":
        before = None
    elif change.action == "delete":
        before = app_cost(before_values, prices)
    else:
        before = app_cost({**(after_settings or {}), **before_values}, prices)
    if change.action == "delete" or after_settings is None:
        return before, None
    return before, app_cost(after_settings, prices)


@dataclass(frozen=True)
class CostLine:
    address: str
    action: str
    before: AppCost | None
    after: AppCost | None
    active_hours_per_day: float | None = None  # the usage estimate, when one is given

    @property
    def idle_delta(self) -> float | None:
        old = self.before.idle_month if self.before else 0.0
        new = self.after.idle_month if self.after else 0.0
        return None if old is None or new is None else new - old

    @property
    def hourly_delta(self) -> float | None:
        old = self.before.hourly if self.before else 0.0
        new = self.after.hourly if self.after else 0.0
        return None if old is None or new is None else new - old

    @property
    def month_estimate(self) -> float | None:
        """The month at the usage estimate; None without an estimate or a price."""
        if self.after is None or self.active_hours_per_day is None:
            return None
        return self.after.month(self.active_hours_per_day)

    @property
    def month_delta(self) -> float | None:
        """The change of the month at the usage estimate against what is deployed (priced at
        the same estimate); None without an estimate or a price."""
        hours = self.active_hours_per_day
        if hours is None:
            return None
        old = self.before.month(hours) if self.before else 0.0
        new = self.after.month(hours) if self.after else 0.0
        return None if old is None or new is None else new - old


@dataclass(frozen=True)
class Costing:
    """How plans are priced: a price table, and a run's usage estimate over the specs' own."""

    prices: Prices
    active_hours_per_day: float | None = None

    def lines(self, plan: Plan) -> list[CostLine]:
        """One line per change of ``plan``."""
        return [
            CostLine(
                c.address,
                c.action,
                *change_costs(c, self.prices),
                self.hours(c.active_hours_per_day),
            )
            for c in plan.changes
        ]

    def hours(self, spec_estimate: float | None) -> float | None:
        """The usage estimate to price with: the run's, else the spec's."""
        if self.active_hours_per_day is not None:
            return self.active_hours_per_day
        return spec_estimate
