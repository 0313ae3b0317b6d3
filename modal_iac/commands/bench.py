"""``modaliac bench``: seed 002's cold-start measurement (cold, warm percentiles, cold again
after the scaledown window), throughput with concurrency, JSON results and a PNG chart."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import write_file
from ..modal import endpoints
from ..modal.endpoints import (
    ITEMS,
    SCALEDOWN_MARGIN,
    Clock,
    Http,
    ProbeError,
    Service,
    api_key,
    payload,
    proxy_token,
    send,
)
from ..tokens import url_shown
from .probe import _usage, resolve

if TYPE_CHECKING:
    from .console import Console

# -- the benchmark ------------------------------------------------------------------------


@dataclass
class Bench:
    """What ``bench`` measured; latencies in milliseconds."""

    url: str
    kind: str
    model: str | None
    concurrency: int
    cold_start_ms: float
    warm_ms: list[float]
    warm_seconds: float
    warm_items: int | None
    post_scaledown_cold_start_ms: float | None = None
    scaledown_wait_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        ordered = sorted(self.warm_ms)
        return {
            "url": self.url,
            "kind": self.kind,
            "model": self.model,
            "cold_start_ms": _ms(self.cold_start_ms),
            "warm_requests": len(self.warm_ms),
            "concurrency": self.concurrency,
            "warm_mean_ms": _ms(sum(ordered) / len(ordered)),
            "warm_p50_ms": _ms(percentile(ordered, 50)),
            "warm_p95_ms": _ms(percentile(ordered, 95)),
            "warm_p99_ms": _ms(percentile(ordered, 99)),
            "warm_min_ms": _ms(ordered[0]),
            "warm_max_ms": _ms(ordered[-1]),
            "requests_per_s": round(len(ordered) / self.warm_seconds, 2),
            "item": ITEMS[self.kind],
            "items_per_s": (
                round(self.warm_items / self.warm_seconds, 2)
                if self.warm_items is not None
                else None
            ),
            "post_scaledown_cold_start_ms": (
                _ms(self.post_scaledown_cold_start_ms)
                if self.post_scaledown_cold_start_ms is not None
                else None
            ),
            "scaledown_wait_s": self.scaledown_wait_s,
            "warm_latencies_ms": [_ms(v) for v in self.warm_ms],
        }


def _ms(value: float) -> float:
    return round(value, 1)


def percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) of sorted values."""
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def measure(
    service: Service,
    key: str | None,
    body: dict[str, Any],
    *,
    warm: int,
    concurrency: int,
    timeout: float,
    wait: float | None,
    clock: Clock,
    progress: Callable[[str], None],
) -> Bench:
    """Cold request on a new connection, warm requests over kept-alive ones, then (with
    ``wait``) the wait and one more request on a new connection."""
    from concurrent.futures import ThreadPoolExecutor

    cold = send(Http(service.url, key, timeout, proxy_token(service)), service, body)
    progress(f"cold start: {cold.seconds * 1000:.0f} ms; {warm} warm requests ...")
    client = Http(service.url, key, timeout, proxy_token(service))
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        replies = list(pool.map(lambda _: send(client, service, body), range(warm)))
    elapsed = time.perf_counter() - start
    counts = [r.items for r in replies]
    result = Bench(
        url=url_shown(service.url),
        kind=service.kind,
        model=service.model,
        concurrency=concurrency,
        cold_start_ms=cold.seconds * 1000,
        warm_ms=[r.seconds * 1000 for r in replies],
        warm_seconds=elapsed,
        warm_items=None if None in counts else sum(c or 0 for c in counts),
    )
    if wait is not None:
        countdown(wait, clock, progress)
        again = send(Http(service.url, key, timeout, proxy_token(service)), service, body)
        result.post_scaledown_cold_start_ms = again.seconds * 1000
        result.scaledown_wait_s = wait
    return result


def countdown(
    seconds: float, clock: Clock, progress: Callable[[str], None], step: float = 30.0
) -> None:
    """Wait ``seconds``, reporting the time left every ``step`` seconds."""
    end = clock.now() + seconds
    while (left := end - clock.now()) > 0:
        progress(f"waiting for the scaledown window: {left:.0f}s left")
        clock.sleep(min(step, left))
    progress("waited; measuring the cold start of a new container ...")


def cmd_bench(args: argparse.Namespace, console: Console) -> int:
    service = resolve(args)
    for notice in service.notices:
        console.error(f"note: {notice}")
    wait = args.wait_scaledown
    if wait is not None and wait < 0:
        if service.scaledown is None:
            raise _usage(
                f"{args.target}: no spec says the scaledown window; give --wait-scaledown SECONDS"
            )
        wait = float(service.scaledown + SCALEDOWN_MARGIN)
    if args.png:
        _require_matplotlib()
    key = api_key(service)
    result = measure(
        service,
        key,
        payload(service, args.prompt),
        warm=args.warm,
        concurrency=args.concurrency,
        timeout=args.timeout,
        wait=wait,
        clock=endpoints.CLOCK,  # looked up now: tests replace it
        progress=console.error,
    )
    data = result.as_dict()
    console.print(_report(data))
    if args.json:
        write_file(Path(args.json), json.dumps(data, indent=2) + "\n", "benchmark report")
        console.error(f"wrote {args.json}")
    if args.png:
        chart(result, Path(args.png))
        console.error(f"wrote {args.png}")
    return 0


def _report(data: dict[str, Any]) -> str:
    model = f" ({data['model']})" if data["model"] else ""
    items = f", {data['items_per_s']} {data['item']}/s" if data["items_per_s"] is not None else ""
    lines = [
        f"{data['url']} {data['kind']}{model}",
        f"  cold start       {data['cold_start_ms']:>9.1f} ms",
        f"  warm p50         {data['warm_p50_ms']:>9.1f} ms  "
        f"({data['warm_requests']} requests, concurrency {data['concurrency']})",
        f"  warm p95         {data['warm_p95_ms']:>9.1f} ms",
        f"  warm p99         {data['warm_p99_ms']:>9.1f} ms",
        f"  throughput       {data['requests_per_s']} requests/s{items}",
    ]
    if data["post_scaledown_cold_start_ms"] is not None:
        lines.append(
            f"  after scaledown  {data['post_scaledown_cold_start_ms']:>9.1f} ms  "
            f"(waited {data['scaledown_wait_s']:g}s)"
        )
    return "\n".join(lines)


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ProbeError(
            "--png needs matplotlib: pip install 'modaliac[bench]' (or drop --png)"
        ) from None


@dataclass(frozen=True)
class Distribution:
    """What ``--png`` draws: the warm latencies as a histogram (one fixed-size figure at any
    ``-n``), each cold start as a marked line, and the warm percentiles."""

    warm_ms: list[float]
    bins: list[float]
    log: bool
    cold_marks: list[tuple[str, float]]
    percentiles: list[tuple[str, float]]


def distribution(result: Bench, bins: int = 40) -> Distribution:
    """The histogram's bins span every latency (cold starts included), log-spaced when the
    slowest is over 20 times the fastest."""
    marks = [(f"cold start {result.cold_start_ms:.0f} ms", result.cold_start_ms)]
    if result.post_scaledown_cold_start_ms is not None:
        value = result.post_scaledown_cold_start_ms
        marks.append((f"after scaledown {value:.0f} ms", value))
    values = [*result.warm_ms, *(v for _, v in marks)]
    low, high = max(min(values), 1e-3), max(values)
    log = high > 20 * low
    if high <= low:
        high = low * 1.01 + 1e-3
    if log:
        ratio = (high / low) ** (1 / bins)
        edges = [low * ratio**i for i in range(bins + 1)]
    else:
        edges = [low + (high - low) * i / bins for i in range(bins + 1)]
    edges[0], edges[-1] = low, high  # exactly: rounding must not leave the extremes out
    ordered = sorted(result.warm_ms)
    quantiles = [
        (f"warm p{q} {percentile(ordered, q):.0f} ms", percentile(ordered, q)) for q in (50, 95)
    ]
    return Distribution(list(result.warm_ms), edges, log, marks, quantiles)


def chart(result: Bench, path: Path) -> Any:
    """The latency distribution: a histogram of the warm requests, the cold starts as marked
    lines. The figure is 600x400 px whatever the number of requests; returns it."""
    from matplotlib.figure import Figure

    data = distribution(result)
    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.subplots()
    axes.hist(
        data.warm_ms,
        bins=data.bins,
        color="#2e86c1",
        label=f"warm requests ({len(data.warm_ms)})",
    )
    if data.log:
        axes.set_xscale("log")
    for (label, value), color in zip(data.cold_marks, ("#c0392b", "#e67e22"), strict=False):
        axes.axvline(value, color=color, linewidth=2, label=label)
    for (label, value), style in zip(data.percentiles, ("--", ":"), strict=True):
        axes.axvline(value, color="#555555", linestyle=style, label=label)
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("requests")
    axes.set_title(f"{result.kind}: {result.url}", fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return figure
