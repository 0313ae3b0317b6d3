"""``modaliac cost``: what each managed app actually cost, beside what its estimate predicted.

Modal's billing report (``Workspace.billing.report``) gives the cost of every object per day
(or hour), with the app tags modaliac sets at apply: ``managed-by: modaliac`` and
``modaliac-app`` (the app's name; the row carries its environment). Rows are summed per
recorded app. The estimate for the same period is what a plan prices from the recorded
settings: every pool's idle floor (its ``min_containers`` running the whole time), or, with
``--active-hours-per-day``, one container per pool busy that long a day, never below the floor.
Only whole intervals are compared: the period starts and ends on a day (or hour) boundary.
Rows tagged as modaliac's whose app is not in the state are listed apart; rows of anything
else are one total.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .options import cost_options, costing, environment_name, modal_costing, state_option

if TYPE_CHECKING:
    from ..modal.billing import BilledItem
    from ..review.cost import AppCost, Prices
    from ..state.records import AppRecord

_SINCE = re.compile(r"(?:([0-9]{1,4})d)?(?:([0-9]{1,5})h)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
SINCE_HINT = 'expected a duration like "30d", "12h" or "1d12h", or a date like "2026-11-01"'


def register(commands: Any) -> None:
    """Add ``cost`` to the CLI's parser (lazy: nothing heavy imported)."""
    cost = commands.add_parser(
        "cost",
        help="what each managed app cost on Modal, beside the plan's estimate",
        description=(
            "Read Modal's billing report for the period, sum it per app modaliac manages "
            "(by the app tags apply sets), and show it beside what the plan's estimate "
            "(idle floor, or the usage estimate) predicted for the same period."
        ),
    )
    cost.add_argument(
        "--since",
        default="30d",
        type=since_value,
        metavar="WHEN",
        help='the period to report: a duration back from now ("30d", "12h") or a UTC date '
        '("2026-11-01"); whole days (whole hours for a duration in hours). Default 30d',
    )
    cost.add_argument(
        "--env",
        metavar="NAME",
        type=environment_name,
        help="only the apps of this Modal environment",
    )
    cost.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    state_option(cost)
    cost_options(cost)
    cost.set_defaults(run=cmd_cost)


def since_value(text: str) -> str:
    """``--since``: checked here, turned into a period against the clock by ``period``."""
    match = _SINCE.fullmatch(text)
    if (match and any(match.groups())) or _DATE.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: {SINCE_HINT}")


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime
    resolution: str  # "d" or "h", as Modal's report takes it

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600


def period(since: str, now: datetime) -> Period:
    """The whole intervals from ``since`` to ``now``: a date or a duration in days runs from
    midnight to midnight (UTC), a duration with hours from hour to hour."""
    from ..plan.targets import UsageError

    now = now.astimezone(UTC)
    if _DATE.fullmatch(since):
        try:
            start = datetime.fromisoformat(since).replace(tzinfo=UTC)
        except ValueError:
            raise UsageError(f"--since {since}: not a date") from None
        resolution = "d"
    else:
        match = _SINCE.fullmatch(since)
        days, hours = (int(part or 0) for part in match.groups()) if match else (0, 0)
        start = now - timedelta(days=days, hours=hours)
        resolution = "h" if hours else "d"
    unit = "hour" if resolution == "h" else "day"
    start, end = _floor(start, resolution), _floor(now, resolution)
    if end <= start:
        raise UsageError(f"--since {since}: covers no whole {unit} before now")
    return Period(start, end, resolution)


def _floor(moment: datetime, resolution: str) -> datetime:
    moment = moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if resolution == "d" else moment


@dataclass(frozen=True)
class AppBill:
    """One recorded app: what Modal billed for the period, and what the estimate said."""

    address: str
    actual: Decimal
    estimate: float | None  # None: a GPU type or reserved resource without a price
    basis: str  # how the estimate was made

    @property
    def difference(self) -> float | None:
        return None if self.estimate is None else float(self.actual) - self.estimate


@dataclass(frozen=True)
class Bill:
    period: Period
    prices: Prices
    active_hours_per_day: float | None
    apps: list[AppBill]
    unrecorded: dict[str, Decimal] = field(default_factory=dict)  # tagged modaliac's, no record
    unmanaged: Decimal = Decimal(0)  # every other row of the report
    since: str = ""
    rows_used: frozenset[str] = frozenset()  # the price rows the estimates read


def make_bill(
    records: Iterable[AppRecord],
    items: Iterable[BilledItem],
    span: Period,
    prices: Prices,
    active_hours_per_day: float | None = None,
    environment: str | None = None,
) -> Bill:
    """Sum ``items`` per recorded app (``environment``: only that one's apps and rows)."""
    from ..modal.tags import APP_TAG, MANAGED_BY
    from ..review.cost import app_cost, rows_used

    chosen = [r for r in records if environment is None or r.environment == environment]
    by_key = {(r.environment, app_tag_of(r)): r.address for r in chosen}
    actual = {r.address: Decimal(0) for r in chosen}
    unrecorded: dict[str, Decimal] = {}
    unmanaged = Decimal(0)
    for item in items:
        if environment is not None and item.environment != environment:
            continue
        if item.tags.get(MANAGED_BY) != "modaliac":
            unmanaged += item.cost
            continue
        app = item.tags.get(APP_TAG) or item.description
        address = by_key.get((item.environment, app)) or by_key.get((None, app))
        if address is None:
            shown = f"{item.environment}/{app}" if item.environment else app
            unrecorded[shown] = unrecorded.get(shown, Decimal(0)) + item.cost
        else:
            actual[address] += item.cost
    apps = [
        AppBill(r.address, actual[r.address], *_estimate(r, span, prices, active_hours_per_day))
        for r in sorted(chosen, key=lambda r: r.address)
    ]
    used = rows_used(app_cost(r.settings, prices) for r in chosen)
    return Bill(
        span, prices, active_hours_per_day, apps, unrecorded, unmanaged, rows_used=frozenset(used)
    )


def app_tag_of(record: AppRecord) -> str:
    from ..modal.tags import app_tag

    return app_tag(record.app)


def _estimate(
    record: AppRecord, span: Period, prices: Prices, active_hours_per_day: float | None
) -> tuple[float | None, str]:
    """What the plan's estimate predicts for ``span``, and how it reads."""
    from ..review.cost import app_cost

    cost = app_cost(record.settings, prices)
    if cost is None or not cost.pools:
        return 0.0, "no GPU pool: nothing estimated"
    total = _period_total(cost, span.hours, active_hours_per_day)
    floors = ", ".join(f"{p.name} {p.min_containers}" for p in cost.pools)
    basis = f"idle floor (min_containers: {floors})"
    if active_hours_per_day is not None:
        basis = f"{active_hours_per_day:g} h/day, at least the " + basis
    return total, basis


def _period_total(cost: AppCost, hours: float, active_hours_per_day: float | None) -> float | None:
    total = 0.0
    for pool in cost.pools:
        if pool.hourly is None:
            return None
        floor = pool.hourly * pool.min_containers * hours
        busy = pool.hourly * (active_hours_per_day or 0) * hours / 24
        total += max(floor, busy)
    return total


# -- output ----------------------------------------------------------------------------------


def _span_text(bill: Bill) -> str:
    span = bill.period
    shown = "%Y-%m-%d" if span.resolution == "d" else "%Y-%m-%d %H:00"
    length = f"{span.hours / 24:g} days" if span.resolution == "d" else f"{span.hours:g} hours"
    return (
        f"{span.start.strftime(shown)} to {span.end.strftime(shown)} UTC ({length}, "
        "Modal's billing report)"
    )


def as_text(bill: Bill) -> str:
    from ..review.cost import money, prices_text

    lines = [f"Cost from {_span_text(bill)}", prices_text(bill.prices, bill.rows_used), ""]
    rows = [("app", "billed", "estimated", "difference", "estimate from")]
    rows += [
        (
            app.address,
            money(float(app.actual)),
            money(app.estimate),
            money(app.difference, signed=True),
            app.basis,
        )
        for app in bill.apps
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in (1, 2, 3)]
        lines.append("  " + "  ".join([*cells, row[4]]).rstrip())
    if not bill.apps:
        lines.append("  (no app recorded in the state)")
    for address, cost in sorted(bill.unrecorded.items()):
        lines.append(f"Billed as modaliac's but not in the state: {address} {money(float(cost))}")
    if bill.unmanaged:
        lines.append(f"Not managed by modaliac (not listed): {money(float(bill.unmanaged))}")
    return "\n".join(lines) + "\n"


def as_json(bill: Bill) -> str:
    from ..review.cost import json_text, prices_json

    document = {
        "format": "modaliac-cost",
        "version": 1,
        "currency": "USD",
        "since": bill.since,
        "start": bill.period.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": bill.period.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resolution": bill.period.resolution,
        "hours": bill.period.hours,
        "prices": prices_json(bill.prices),
        "active_hours_per_day": bill.active_hours_per_day,
        "apps": [
            {
                "address": app.address,
                "billed": str(app.actual),
                "estimated": _cents(app.estimate),
                "difference": _cents(app.difference),
                "basis": app.basis,
            }
            for app in bill.apps
        ],
        "unrecorded": [
            {"address": address, "billed": str(cost)}
            for address, cost in sorted(bill.unrecorded.items())
        ],
        "unmanaged": str(bill.unmanaged),
    }
    return json_text(document) + "\n"


def as_markdown(bill: Bill) -> str:
    from ..review.cost import money, prices_text

    lines = [
        f"### modaliac cost: {_span_text(bill)}",
        "",
        f"_{prices_text(bill.prices, bill.rows_used)}_",
        "",
        "| app | billed | estimated | difference | estimate from |",
        "|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| `{app.address}` | {money(float(app.actual))} | {money(app.estimate)} "
        f"| {money(app.difference, signed=True)} | {app.basis} |"
        for app in bill.apps
    ]
    if bill.unrecorded:
        lines += ["", "**Billed as modaliac's but not in the state:**", ""]
        lines += [
            f"- `{address}`: {money(float(cost))}"
            for address, cost in sorted(bill.unrecorded.items())
        ]
    if bill.unmanaged:
        lines += ["", f"Not managed by modaliac (not listed): {money(float(bill.unmanaged))}"]
    return "\n".join(lines) + "\n"


def _cents(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# -- the command -----------------------------------------------------------------------------


def cmd_cost(
    args: argparse.Namespace, console: Any, now: Callable[[], datetime] | None = None
) -> int:
    from dataclasses import replace

    from ..modal.billing import billing_report
    from ..modal.sdk import require_credentials
    from ..modal.tags import APP_TAG, MANAGED_BY
    from ..plan.targets import state_store
    from ..spec.address import Project

    project = Project.here()
    span = period(args.since, now() if now is not None else datetime.now(UTC))
    pricing = costing(args)
    state = state_store(args.state, project, console.error).read()
    require_credentials()  # one line without them: the bill is Modal's to tell
    pricing = modal_costing(pricing, args)
    items = billing_report(span.start, span.end, span.resolution, [MANAGED_BY, APP_TAG])
    bill = make_bill(
        state.apps.values(),
        items,
        span,
        pricing.prices,
        pricing.active_hours_per_day,
        args.env,
    )
    bill = replace(bill, since=args.since)
    render = {"json": as_json, "markdown": as_markdown}.get(args.format, as_text)
    console.print(render(bill), end="")
    return 0
