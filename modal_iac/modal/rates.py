"""Modal's own rates as a price table: ``Workspace.billing.rates()`` over the shipped one.

With credentials, a plan (and ``modaliac cost``) prices with what the workspace is charged.
Modal answers a mapping of rate names to Decimals, compute "per unit per hour"
(``modal_proto`` ``WorkspaceBillingRatesResponse``); the names are Modal's and may change, so
they are matched loosely: a GPU type by its name without case or punctuation (``h100``,
``gpu-a100-80gb``, ``A10G`` for the A10), the CPU by ``cpu`` / ``cpu_core``, memory by
``memory`` / ``memory_gib``. Names that match nothing are ignored; a GPU type Modal did not
price keeps the shipped table's row, and the table says so in a note. Region multipliers
always come from the table (Modal's rates carry none). A price file (``--prices``,
``$MODALIAC_PRICES``) is an explicit choice and is used as it is: Modal is not asked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..review.cost import HOST_ROWS, PRICES_ENV, AppCost, Prices

_ALIASES = {"a10g": "a10"}  # Modal's older name of the A10
_HOST = {
    "cpu_core": {"cpu", "cpucore", "cpucores", "core", "cores", "vcpu"},
    "memory_gib": {"memory", "memorygib", "memorygb", "mem", "ram"},
}
_SUFFIXES = ("perhour", "hourly", "hour")
ORIGINS = ("modal", "table", "file")


def _key(name: str) -> str:
    """``GPU-A100-80GB/hour`` -> ``a10080gb``: a name compared without case or punctuation."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    for suffix in _SUFFIXES:
        key = key.removesuffix(suffix)
    if key.startswith("gpu") and len(key) > 3:
        key = key[3:]
    return _ALIASES.get(key, key)


def from_rates(rates: Mapping[str, Decimal], table: Prices, read_at: str) -> Prices:
    """The prices Modal's ``rates`` give, with the table's rows for what they leave out."""
    hourly = {_key(name): value for name, value in rates.items()}
    per_second, missing = {}, []
    for gpu in sorted(table.per_second):
        rate = hourly.get(_key(gpu))
        if rate is None:
            per_second[gpu] = table.per_second[gpu]
            missing.append(gpu)
        else:
            per_second[gpu] = float(rate) / 3600
    host = dict(table.host)
    for row, names in _HOST.items():
        found = [value for key, value in hourly.items() if key in names]
        if found:
            host[row] = float(found[0]) / 3600
        else:
            missing.append(row)
    return Prices(
        per_second,
        read_at[:10],
        f"Modal's rates, read at {read_at}",
        host,
        dict(table.regions),
        origin="modal",
        read_at=read_at,
        from_table=tuple(missing),
        table_date=table.date,
    )


def now_text(clock: Callable[[], datetime] | None = None) -> str:
    """The time, UTC, to the second: ``2026-12-02T01:50:07Z``."""
    moment = clock() if clock is not None else datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def current_prices(table: Prices, user_file: str | None) -> Prices:
    """Modal's rates over ``table`` (the shipped one); ``table`` as it is when a price file
    was chosen, and with a note when Modal's rates cannot be read."""
    from .billing import billing_rates
    from .sdk import ModalApiError

    if user_file or os.environ.get(PRICES_ENV) or table.origin != "table":
        return table
    try:
        rates = billing_rates()
    except ModalApiError as exc:
        return replace(table, notes=(f"Modal's rates could not be read ({exc})",))
    return from_rates(rates, table, now_text())


def prices_text(prices: Prices, used: Iterable[str] | None = None) -> str:
    """Which prices a figure used: ``prices: Modal's rates read at 2026-12-02 01:50:07 UTC``,
    ``prices: shipped table dated 2026-07-01 (offline fallback)``, or the price file's; with
    the rows of ``used`` (GPU types, ``cpu_core``, ``memory_gib``) Modal's rates lack."""
    if prices.origin == "modal":
        shown = prices.read_at.replace("T", " ").removesuffix("Z")
        text = f"prices: Modal's rates read at {shown} UTC"
    elif prices.origin == "file":
        text = f"prices: {prices.source}"
    else:
        text = f"prices: shipped table dated {prices.date} (offline fallback)"
    return "; ".join((text, *prices.notes, *_table_note(prices, used)))


def _table_note(prices: Prices, used: Iterable[str] | None) -> list[str]:
    wanted = set(prices.from_table) if used is None else set(used)
    missing = [row for row in prices.from_table if row in wanted]
    if not missing:
        return []
    return [
        f"not in Modal's rates, priced from the shipped table of {prices.table_date}: "
        + ", ".join(missing)
    ]


def rows_used(costs: Iterable[AppCost | None]) -> set[str]:
    """The price rows these costs read: GPU types and the host rows."""
    used = set(HOST_ROWS)
    for cost in costs:
        if cost is not None:
            used.add(cost.gpu.partition(":")[0])
    return used


def prices_json(prices: Prices) -> dict[str, object]:
    """The ``cost.prices`` object of a JSON plan (docs/plan-format.md): which prices, and the
    rates themselves, so a saved plan reads back priced as it was reviewed."""
    return {
        "source": prices.origin,
        "date": prices.date,
        "read_at": prices.read_at or None,
        "notes": list(prices.notes),
        "from_table": list(prices.from_table),
        "table_date": prices.table_date,
        "description": prices.source,
        "per_second": dict(sorted(prices.per_second.items())),
        "host": dict(sorted(prices.host.items())),
        "regions": dict(sorted(prices.regions.items())),
    }


def prices_from_json(raw: Any, fail: Callable[[str, str], Exception]) -> Prices:
    """``prices_json`` read back; ``fail(key path, message)`` for a field of the wrong shape."""
    if not isinstance(raw, dict):
        raise fail("cost.prices", "expected a JSON object")

    def text(key: str, optional: bool = False) -> str:
        value = raw.get(key)
        if value is None and optional:
            return ""
        if not isinstance(value, str):
            raise fail(f"cost.prices.{key}", "expected a string")
        return value

    def texts(key: str) -> tuple[str, ...]:
        value = raw.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(f"cost.prices.{key}", "expected a list of strings")
        return tuple(value)

    def numbers(key: str) -> dict[str, float]:
        value = raw.get(key)
        if not isinstance(value, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
        ):
            raise fail(f"cost.prices.{key}", "expected an object of numbers")
        return {str(k): float(v) for k, v in value.items()}

    origin = text("source")
    if origin not in ORIGINS:
        raise fail("cost.prices.source", f"expected one of {', '.join(ORIGINS)}")
    return Prices(
        numbers("per_second"),
        text("date"),
        text("description"),
        numbers("host"),
        numbers("regions"),
        origin=origin,
        read_at=text("read_at", optional=True),
        notes=texts("notes"),
        from_table=texts("from_table"),
        table_date=text("table_date"),
    )
