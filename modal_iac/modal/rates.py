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
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from ..review.cost import PRICES_ENV, Prices

_ALIASES = {"a10g": "a10"}  # Modal's older name of the A10
_HOST = {
    "cpu_core": {"cpu", "cpucore", "cpucores", "core", "cores", "vcpu"},
    "memory_gib": {"memory", "memorygib", "memorygb", "mem", "ram"},
}
_SUFFIXES = ("perhour", "hourly", "hour")


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
