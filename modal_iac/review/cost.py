"""What an app costs on Modal: per running hour and the idle floor per month; the prices.

Costs are computed from flat settings (``settings.py``), the same values a plan compares (a
plan's deltas: ``plan/costs.py``). Prices come from the dated table shipped in
``data/gpu_prices.json``; a user file (``MODALIAC_PRICES`` or ``--prices``) overrides rows.
GPU time, and the CPU and memory a spec reserves (``resources``): Modal bills at least a
request. Use above the reservations (or, beside a GPU, Modal's small default request) is left
out; a pool without a GPU (a gateway's router) is priced at that default request.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeGuard

from ..errors import ModaliacError
from ..files import joined, parse_json, read_text
from ..spec.fields import parse_memory
from ..spec.placement import billed_memory_mib, placement_text, region_multiplier

HOURS_PER_MONTH = 730
# A gateway model's settings: models.<name>.<key>, or models["<odd name>"].<key> (key_path).
_MODEL = re.compile(r'^models(?:\.([A-Za-z_][A-Za-z0-9_-]*)|\[("(?:[^"\\]|\\.)*")\])\.')
SERVER_CLASS = "Server"  # the class of the generated HTTP server (templates/vllm_server.py.j2)
HOST_ROWS = ("cpu_core", "memory_gib")
# Modal's default request (modal.com/docs/guide/resources): what a container that asks for no
# CPU or memory is billed at least. A gateway's router asks for neither (render/gateway.py).
DEFAULT_CPU_CORES = 0.125
DEFAULT_MEMORY_MIB = 128
ROUTER_POOL = "router"  # a gateway app's router function (templates/gateway_app.py.j2)
REGION_ROWS = ("broad", "narrow")  # Modal's region multipliers (placement.py)
PRICES_ENV = "MODALIAC_PRICES"
ORIGINS = ("modal", "table", "file")  # where a table's prices come from (Prices.origin)
MAX_PRICE_FILE_BYTES = 2**20
RATE_FORMS = ("per_second", "per_hour")


@dataclass(frozen=True)
class Prices:
    """USD per GPU per second by Modal GPU type, with where the figures came from; ``host``
    prices reserved resources: ``cpu_core`` per core and ``memory_gib`` per GiB, per second."""

    per_second: dict[str, float]
    date: str
    source: str
    host: dict[str, float] = field(default_factory=dict)
    regions: dict[str, float] = field(default_factory=dict)  # broad / narrow -> multiplier
    origin: str = "table"  # "table" (shipped), "file" (a user's over it), "modal" (rates.py)
    read_at: str = ""  # when Modal's rates were read (ISO 8601, UTC)
    notes: tuple[str, ...] = ()  # why Modal's rates are not used, when they could not be read
    from_table: tuple[str, ...] = ()  # rows Modal's rates lack, priced from the shipped table
    table_date: str = ""  # the date of that table

    def hourly(self, gpu_type: str) -> float | None:
        price = self.per_second.get(gpu_type)
        return None if price is None else price * 3600


def shipped_prices() -> Prices:
    """The bundled table alone: what a fit check prices with when a user's table is broken."""
    bundled = resources.files("modal_iac").joinpath("data/gpu_prices.json").read_text("utf-8")
    return _parse(json.loads(bundled), "the bundled price table")


def load_prices(path: str | None = None) -> Prices:
    """The bundled table, with the rows of ``path`` (or ``$MODALIAC_PRICES``) over it."""
    bundled = resources.files("modal_iac").joinpath("data/gpu_prices.json").read_text("utf-8")
    prices = _parse(json.loads(bundled), "the bundled price table")
    user = path or os.environ.get(PRICES_ENV)
    if not user:
        return prices
    fail = joined(ModaliacError)
    text = read_text(Path(user), user, "price file", MAX_PRICE_FILE_BYTES, fail)
    if text is None:
        raise ModaliacError(f"{user}: no such price file")
    override = _parse(parse_json(text, user, "price file", fail), user)
    return Prices(
        {**prices.per_second, **override.per_second},
        override.date or prices.date,
        f"{user} over the bundled table of {prices.date}",
        {**prices.host, **override.host},
        {**prices.regions, **override.regions},
        origin="file",
    )


def _parse(document: Any, shown: str) -> Prices:
    """``{"date": ..., "prices": {"H100": {"per_second": x} | {"per_hour": x}}}``."""
    rows = document.get("prices", {}) if isinstance(document, dict) else None
    host = document.get("host", {}) if isinstance(document, dict) else None
    regions = document.get("regions") if isinstance(document, dict) else None
    if not isinstance(rows, dict) or not isinstance(host, dict) or not (rows or host or regions):
        raise ModaliacError(f'{shown}: expected {{"prices": {{"H100": {{"per_hour": 3.95}}}}}}')
    unknown = sorted(set(host) - set(HOST_ROWS))
    if unknown:
        raise ModaliacError(f"{shown}: host.{unknown[0]}: expected one of {', '.join(HOST_ROWS)}")
    return Prices(
        {gpu: _rate(row, f"{shown}: prices.{gpu}") for gpu, row in rows.items()},
        str(document.get("date", "")),
        str(document.get("source", shown)),
        {name: _rate(row, f"{shown}: host.{name}", free=True) for name, row in host.items()},
        _multipliers(document.get("regions", {}), shown),
    )


def _multipliers(rows: Any, shown: str) -> dict[str, float]:
    """``{"broad": {"multiplier": 1.5}, "narrow": {"multiplier": 1.75}}``."""
    if not isinstance(rows, dict):
        raise ModaliacError(f'{shown}: regions: expected {{"broad": {{"multiplier": 1.5}}}}')
    found = {}
    for name, row in rows.items():
        if name == "source":
            continue
        if name not in REGION_ROWS:
            raise ModaliacError(
                f"{shown}: regions.{name}: expected one of {', '.join(REGION_ROWS)}"
            )
        value = row.get("multiplier") if isinstance(row, dict) else None
        if not is_number(value) or not math.isfinite(value) or value < 1:
            raise ModaliacError(f"{shown}: regions.{name}: expected a multiplier of at least 1")
        found[name] = float(value)
    return found


def _rate(row: Any, shown: str, free: bool = False) -> float:
    """USD per second from ``x``, ``{"per_second": x}`` or ``{"per_hour": x}``: a finite
    number, above 0 (``free``: a host row, 0 or more); one of the two forms, never both."""
    forms = [key for key in RATE_FORMS if isinstance(row, dict) and key in row]
    if isinstance(row, dict) and len(forms) != 1:
        if len(forms) == 2:
            raise ModaliacError(f"{shown}: give per_second or per_hour, not both")
        raise ModaliacError(f"{shown}: expected per_second or per_hour in USD")
    value = row[forms[0]] if forms else row
    if not is_number(value):
        raise ModaliacError(f"{shown}: expected per_second or per_hour in USD")
    if not math.isfinite(value) or value < 0 or (value == 0 and not free):
        least = "0 or more" if free else "above 0"
        raise ModaliacError(f"{shown}: expected a finite rate {least} in USD")
    return float(value) / (3600 if forms == ["per_hour"] else 1)


def is_number(value: Any) -> TypeGuard[int | float]:
    """A JSON number: an int or a float, never a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_text(document: Any, ensure_ascii: bool = True) -> str:
    """A JSON document as modaliac writes one: never NaN or Infinity (strict JSON readers
    refuse them), an error instead of a file a plan reader cannot load."""
    try:
        return json.dumps(document, indent=2, ensure_ascii=ensure_ascii, allow_nan=False)
    except ValueError as exc:
        raise ModaliacError(f"not written: a figure is not a finite number ({exc})") from None


@dataclass(frozen=True)
class PoolCost:
    """One container pool of an app: a Modal class or function with its own containers and
    its own ``min_containers`` (a service's Python class and its HTTP server are two GPU
    pools; a gateway app has one per model, and its router, a CPU pool)."""

    name: str  # the Modal class: "VLLMEmbeddingSnapshot", "Server", a gateway model's class
    min_containers: int
    hourly: float | None  # one container of this pool running
    buffer_containers: int = 0  # extra idle containers Modal keeps while the pool is busy
    cpu_request: tuple[float, int] | None = None  # a CPU pool's (cores, MiB); None: a GPU pool

    @property
    def kind(self) -> str:
        return "gpu" if self.cpu_request is None else "cpu"

    @property
    def text(self) -> str:
        """``Server $2.10/h, min_containers 0``; a CPU pool says what it is priced at."""
        where = ""
        if self.cpu_request is not None:
            cores, mib = self.cpu_request
            where = f" on CPU at Modal's default request ({cores:g} cores, {mib} MiB)"
        return f"{self.name} {money(self.hourly)}/h{where}, {self.scaling_text}"

    @property
    def scaling_text(self) -> str:
        """``min_containers 1``, with ``, buffer_containers 2 while busy`` when it keeps any."""
        text = f"min_containers {self.min_containers}"
        if self.buffer_containers:
            text += f", buffer_containers {self.buffer_containers} while busy"
        return text

    @property
    def idle_month(self) -> float | None:
        return None if self.hourly is None else self.hourly * self.min_containers * HOURS_PER_MONTH


@dataclass(frozen=True)
class AppCost:
    """One app's cost, the sum of its pools. ``hourly`` is None when the GPU type (or a
    reserved resource) has no price."""

    gpu: str
    pools: tuple[PoolCost, ...]
    reserved: str = ""  # "64 GiB, 4 cores": the host resources a container reserves
    multiplier: float | None = 1.0  # Modal's region multiplier, already in every pool's rate
    placement: str = ""  # " in eu-west on aws"
    fallback: tuple[str, ...] = ()  # a GPU fallback list, in order; ``gpu`` is its dearest
    low_hourly: float | None = None  # every pool running on the list's cheapest GPU

    @property
    def gpu_text(self) -> str:
        """``A100-80GB`` or ``A100-80GB or H100 (priced at the dearest, H100)``."""
        if not self.fallback:
            return self.gpu
        return f"{' or '.join(self.fallback)} (priced at the dearest, {self.gpu})"

    @property
    def hourly(self) -> float | None:
        """One container of every pool running."""
        return _total(p.hourly for p in self.pools)

    @property
    def idle_month(self) -> float | None:
        """What every pool's min_containers costs with no traffic at all."""
        return _total(p.idle_month for p in self.pools)

    def month(self, active_hours_per_day: float) -> float | None:
        """One container per pool busy that many hours a day, never below a pool's floor."""
        return _total(_pool_month(p, active_hours_per_day) for p in self.pools)


def _pool_month(pool: PoolCost, active_hours_per_day: float) -> float | None:
    if pool.hourly is None or pool.idle_month is None:
        return None
    busy_hours = active_hours_per_day * HOURS_PER_MONTH / 24
    # Busy, the pool runs at least one container, and Modal keeps its buffer warm beside it.
    busy = max(pool.min_containers, 1) + pool.buffer_containers
    idle = pool.idle_month * (1 - busy_hours / HOURS_PER_MONTH)
    return idle + pool.hourly * busy * busy_hours


def _total(values: Iterable[float | None]) -> float | None:
    found = list(values)
    return None if None in found else sum(v for v in found if v is not None)


def app_cost(settings: dict[str, Any], prices: Prices) -> AppCost | None:
    """The cost of the app these settings describe, pool by pool: each pool's
    ``min_containers`` is the spec's, or a value changed by hand on Modal when the settings
    carry one (``scaling.min_containers[Server]``). A fallback list (``gpu: [H100, A100]``,
    tried in order) is priced at its dearest GPU, an upper bound: Modal may start any of
    them; ``low_hourly`` is the running hour at the cheapest."""
    gpu = settings.get("gpu")
    listed = tuple(gpu) if isinstance(gpu, list) else (gpu,)
    if not listed or not all(isinstance(item, str) for item in listed):
        return None
    host, reserved = _reserved(settings, prices)
    multiplier = region_multiplier(settings.get("placement.region") or [], prices.regions)
    rates = {item: _gpu_hourly(item, host, multiplier, prices) for item in listed}
    known = sorted((rate, item) for item, rate in rates.items() if rate is not None)
    unpriced = None in rates.values() or not known
    dearest = listed[0] if unpriced else known[-1][1]
    hourly = rates[dearest]
    floor = int(settings.get("scaling.min_containers") or 0)
    buffer = int(settings.get("scaling.buffer_containers") or 0)
    pools = tuple(
        PoolCost(
            pool,
            int(settings.get(f"scaling.min_containers[{pool}]", floor) or 0),
            hourly,
            int(settings.get(f"scaling.buffer_containers[{pool}]", buffer) or 0),
        )
        for pool in gpu_pools(settings)
    )
    cpu = (_router_pool(settings, prices, multiplier),) if settings.get("kind") == "gateway" else ()
    fallback = listed if len(listed) > 1 else ()
    # every GPU pool on the list's cheapest (or the one GPU), beside the CPU pools
    low = None if unpriced else _total([known[0][0] * len(pools), *(p.hourly for p in cpu)])
    return AppCost(
        dearest, pools + cpu, reserved, multiplier, placement_text(settings), fallback, low
    )


def _router_pool(settings: dict[str, Any], prices: Prices, multiplier: float | None) -> PoolCost:
    """A gateway app's router: a function on CPU that asks for no CPU or memory, so it is
    billed Modal's default request (in the region's multiplier, as the router is placed with
    the app). It has no min_containers of its own: 0, unless changed by hand on Modal."""
    cores, mib = DEFAULT_CPU_CORES, DEFAULT_MEMORY_MIB
    cpu_rate, memory_rate = prices.host.get("cpu_core"), prices.host.get("memory_gib")
    hourly = None
    if cpu_rate is not None and memory_rate is not None and multiplier is not None:
        hourly = (cores * cpu_rate + mib / 1024 * memory_rate) * 3600 * multiplier
    return PoolCost(
        ROUTER_POOL,
        int(settings.get(f"scaling.min_containers[{ROUTER_POOL}]") or 0),
        hourly,
        int(settings.get(f"scaling.buffer_containers[{ROUTER_POOL}]") or 0),
        (cores, mib),
    )


def _gpu_hourly(
    gpu: str, host: float | None, multiplier: float | None, prices: Prices
) -> float | None:
    """One container's running hour on ``gpu`` (``H100:2``), its reserved host resources and
    the region's multiplier included; None when one of them has no price."""
    name, _, count = gpu.partition(":")
    price = prices.hourly(name)
    if price is None or host is None or multiplier is None:
        return None
    return (price * int(count or 1) + host) * multiplier


def gpu_pools(settings: dict[str, Any]) -> list[str]:
    """The Modal classes of an app that run on its GPU, each with its own containers:
    a gateway's model classes; a vLLM service's Python class and HTTP ``Server``; the one
    class of a transformers service. A downloader runs on a CPU only when called."""
    from ..spec.gateway import model_class_name

    models = sorted(
        {match[1] or json.loads(match[2]) for key in settings if (match := _MODEL.match(key))}
    )
    if models:
        return [model_class_name(model) for model in models]
    class_name = settings.get("surfaces.class.name")
    http = "surfaces.http.port" in settings
    if settings.get("engine.name") == "transformers":
        return [class_name or SERVER_CLASS] if class_name or http else []
    return [*([class_name] if class_name else []), *([SERVER_CLASS] if http else [])]


def _reserved(settings: dict[str, Any], prices: Prices) -> tuple[float | None, str]:
    """USD per hour of the CPU and memory one container reserves, and how they read."""
    memory, cpu = settings.get("resources.memory"), settings.get("resources.cpu")
    disk = settings.get("resources.ephemeral_disk")
    billed = billed_memory_mib(
        None if memory is None else parse_memory(memory),
        None if disk is None else parse_memory(disk),
    )
    hourly: float | None = 0.0
    shown = []
    if billed is not None:
        gib = billed / 1024
        rate = prices.host.get("memory_gib")
        hourly = None if rate is None or hourly is None else hourly + gib * rate * 3600
        raised = memory is None or billed > parse_memory(memory)
        shown.append(f"{gib:g} GiB" + (" (1/20 of the disk)" if raised else ""))
    if disk is not None:
        shown.append(f"{parse_memory(disk) / 1024:g} GiB disk")
    if cpu is not None:
        rate = prices.host.get("cpu_core")
        hourly = None if rate is None or hourly is None else hourly + float(cpu) * rate * 3600
        shown.append(f"{float(cpu):g} cores")
    return hourly, ", ".join(shown)


def money(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    if round(value, 2) == 0:
        return "$0.00"  # no sign: a change that rounds to nothing is no change
    if signed:
        return f"{'+' if value > 0 else '-'}${abs(value):,.2f}"
    return f"${value:,.2f}"


def usage_text(cost: AppCost | None, active_hours_per_day: float | None) -> str:
    """``; at 8 h/day about $194.40/month``, or nothing without an estimate or a price."""
    if cost is None or active_hours_per_day is None:
        return ""
    month = cost.month(active_hours_per_day)
    if month is None:
        return ""
    return f"; at {active_hours_per_day:g} h/day about {money(month)}/month"


def region_note(cost: AppCost) -> str:
    """`` in eu-west on aws (region price x1.75)``, or nothing for an unpinned app."""
    if not cost.placement:
        return ""
    if cost.multiplier is None:
        return f"{cost.placement} (region multiplier not in the price table)"
    if cost.multiplier == 1:
        return cost.placement
    return f"{cost.placement} (region price x{cost.multiplier:g})"


def describe(cost: AppCost | None) -> str:
    """``A100-40GB: $2.10 per running hour, idle floor $0.00/month (min_containers 0)``, with
    the pools named and priced when there are several."""
    if cost is None:
        return "no GPU"
    reserved = f" + {cost.reserved} reserved" if cost.reserved else ""
    text = f"{cost.gpu_text}{reserved}{region_note(cost)}: "
    if cost.fallback:  # an upper bound: Modal may start the list's cheapest GPU instead
        text += f"{money(cost.low_hourly)} to {money(cost.hourly)} per running hour, "
        text += f"idle floor up to {money(cost.idle_month)}/month"
    else:
        text += f"{money(cost.hourly)} per running hour, idle floor {money(cost.idle_month)}/month"
    if len(cost.pools) <= 1:
        return text + f" ({cost.pools[0].scaling_text if cost.pools else 'min_containers 0'})"
    each = ", ".join(pool.text for pool in cost.pools)
    return text + f" over {_counted(cost.pools)} ({each})"


def _counted(pools: tuple[PoolCost, ...]) -> str:
    """``2 GPU pools``, ``3 GPU pools and 1 CPU pool``."""
    counts = [(kind, sum(p.kind == kind for p in pools)) for kind in ("gpu", "cpu")]
    return " and ".join(
        f"{n} {kind.upper()} pool{'s' if n != 1 else ''}" for kind, n in counts if n
    )


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
            used.update(gpu.partition(":")[0] for gpu in (cost.gpu, *cost.fallback))
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
            is_number(v) and math.isfinite(v) and v >= 0 for v in value.values()
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
