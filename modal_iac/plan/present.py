"""Plans as text for a terminal, JSON for machines (versioned) and Markdown for pull requests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..review.cost import (
    AppCost,
    PoolCost,
    Prices,
    describe,
    json_text,
    load_prices,
    money,
    prices_json,
    prices_text,
    region_note,
    rows_used,
    usage_text,
)
from ..spec.address import Project
from ..tokens import hidden, token_kind
from .changes import Change, Notice, Plan, verify_text
from .costs import Costing, CostLine

if TYPE_CHECKING:
    from .changes import Refresh

_SYMBOL = {"create": "+", "update": "~", "replace": "-/+", "delete": "-", "no-op": " "}
OFFLINE_NOTE = (
    "(Modal was not consulted: the plan compares the specs with the recorded state only; "
    "drift and blockers are unknown)"
)
_COLOR = {"create": "32", "update": "33", "replace": "35", "delete": "31", "no-op": "2"}


def _counts(plan: Plan) -> str:
    c = plan.counts
    return (
        f"{c['create']} to create, {c['update']} to update, "
        f"{c['replace']} to replace, {c['delete']} to delete"
    )


def summary_line(plan: Plan) -> str:
    """The last line: what the plan does, ``blocked`` when apply would refuse it (the text plan
    lists its blockers just above this line)."""
    counts = _counts(plan)
    if plan.status == "blocked":
        count = len(plan.blockers)
        return (
            f"Plan blocked: {counts}; apply refuses until the {count} "
            f"blocker{'s' if count > 1 else ''} above {'are' if count > 1 else 'is'} fixed."
        )
    if not plan.has_changes:
        if not plan.online:
            return "No changes. The specs match the recorded state (Modal was not consulted)."
        return "No changes. Modal matches the specs."
    return f"Plan: {counts}."


def _value(value: Any) -> str:
    """A setting's value as JSON, any text in it shaped like a credential named instead: a
    loaded spec holds none, but a state recorded by an older modaliac may."""
    if isinstance(value, str):  # checked once here; _masked is for what holds strings
        kind = token_kind(value, within_words=True)
        return hidden(kind) if kind is not None else json.dumps(value, ensure_ascii=False)
    return json.dumps(_masked(value), ensure_ascii=False)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        kind = token_kind(value, within_words=True)
        return value if kind is None else hidden(kind)
    if isinstance(value, list):
        return [_masked(item) for item in value]
    if isinstance(value, dict):
        return {_masked(key): _masked(item) for key, item in value.items()}
    return value


def as_text(
    plan: Plan,
    *,
    color: bool = False,
    costing: Costing | None = None,
    project: Project | None = None,
) -> str:
    """The plan for a terminal, as one string (``text_chunks`` joined)."""
    return "".join(text_chunks(plan, color=color, costing=costing, project=project))


def text_chunks(
    plan: Plan,
    *,
    color: bool = False,
    costing: Costing | None = None,
    project: Project | None = None,
) -> Iterator[str]:
    """The plan for a terminal, a change at a time, so that printing a plan over thousands of
    apps never holds its whole text (a create lists ~120 settings); spec paths as the user
    standing in ``project.cwd`` types them (the JSON and Markdown plans keep the
    project-relative paths the state records)."""

    def paint(code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if color else text

    def shown(path: str) -> str:
        return project.shown(path) if project is not None and path else path

    if plan.inputs.refresh_only:
        yield _refresh_text(plan, paint)
        return
    pricing = _costing(costing, plan)
    costs = {line.address: line for line in pricing.lines(plan)}
    for change in plan.changes:
        if change.action != "no-op":
            yield _change_text(change, paint, shown, costs[change.address]) + "\n"
    lines: list[str] = []
    unchanged = [c.address for c in plan.changes if c.action == "no-op"]
    if unchanged:
        lines.append(f"Unchanged: {', '.join(unchanged)}")
        lines.extend(
            paint("2", f"    # {c.address}: {note}")
            for c in plan.changes
            if c.action == "no-op"
            for note in c.notes
        )
    drift = [d for c in plan.changes for d in c.drift]
    if drift:
        lines.append(paint("33", "Drift: changed on Modal outside modaliac:"))
        lines.extend(f"  {d.address}: {d.text()}" for d in drift)
    if plan.blockers:
        lines.append(paint("31", "Blocked: apply refuses until these are fixed:"))
        lines.extend(f"  {b.address}: {b.text()}" for b in plan.blockers)
    lines.extend(paint("33", f"Warning: {_warning(w)}") for w in plan.warnings)
    if not plan.online:
        lines.append(paint("2", OFFLINE_NOTE))
    if plan.changes:
        lines.append(paint("2", prices_text(pricing.prices, _rows_used(costs.values()))))
    lines.append(summary_line(plan))
    yield "".join(line + "\n" for line in lines)


def _change_text(
    change: Change,
    paint: Callable[[str, str], str],
    shown: Callable[[str], str],
    cost: CostLine,
) -> str:
    """One change's block: its heading, each setting, its notes and cost, a blank line."""
    block = [
        paint(_COLOR[change.action], f"{_SYMBOL[change.action]} {change.action} {change.address}")
        + f"  ({shown(change.spec_path)})"
    ]
    width = max((len(f.path) for f in change.fields), default=0)
    for item in change.fields:
        if change.action == "create":
            block.append(f"    {item.path.ljust(width)} = {_value(item.after)}")
        elif change.action == "delete":
            block.append(f"    {item.path.ljust(width)} = {_value(item.before)}")
        else:
            block.append(
                f"    {item.path.ljust(width)} : {_value(item.before)} -> {_value(item.after)}"
            )
    block.extend(paint("2", f"    # {note}") for note in change.notes)
    if change.verify is not None:
        block.append(paint("2", f"    # {verify_text(change)}"))
    block.append(paint("2", f"    # cost: {_cost_text(cost)}"))
    block.append("")
    return "\n".join(block)


def _refresh_text(plan: Plan, paint: Callable[[str, str], str]) -> str:
    """A refresh-only plan: the records the state would take from Modal, and why."""
    lines = [
        paint(
            "1", "Refresh only: the state records what Modal runs; nothing is deployed or stopped."
        ),
        "",
    ]
    for item in plan.refreshes:
        symbol, code = ("~", "33") if item.action == "record" else ("-", "31")
        lines.append(paint(code, f"{symbol} {item.action} {item.address}"))
        lines.extend(paint("2", f"    # {reason}") for reason in item.reasons)
        lines.append("")
    recorded = sum(item.action == "record" for item in plan.refreshes)
    forgotten = len(plan.refreshes) - recorded
    if plan.refreshes:
        lines.append(f"Refresh: {recorded} to record, {forgotten} to forget.")
    else:
        lines.append("No changes. The state records what Modal runs.")
    return "\n".join(lines) + "\n"


def _refresh_json(item: Refresh) -> dict[str, Any]:
    return {
        "address": item.address,
        "action": item.action,
        "reasons": list(item.reasons),
        "before": asdict(item.before),
        "record": asdict(item.after) if item.after is not None else None,
    }


def _costing(costing: Costing | None, plan: Plan) -> Costing:
    """The given pricing, else a saved plan's own prices, else the bundled table (with
    ``$MODALIAC_PRICES`` over it)."""
    if costing is not None:
        return costing
    return Costing(plan.prices if plan.prices is not None else load_prices())


def as_json(plan: Plan, costing: Costing | None = None) -> str:
    """The plan format documented in docs/plan-format.md (format_version 2)."""
    document = {
        "format_version": plan.format_version,
        "modaliac_version": plan.modaliac_version,
        "status": plan.status,
        "summary": dict(plan.counts),
        "has_changes": plan.has_changes,
        "online": plan.online,
        "workspace": plan.workspace,
        "inputs": {
            "targets": list(plan.inputs.targets),
            "env": plan.inputs.env,
            "profile_environment": plan.inputs.profile_environment,
            "replace": list(plan.inputs.replace),
            "refresh_only": plan.inputs.refresh_only,
            "strategy": plan.inputs.strategy,
            "verify": plan.inputs.verify,
        },
        "changes": [_change_json(change) for change in plan.changes],
        "refresh": [_refresh_json(item) for item in plan.refreshes],
        "warnings": [_notice_json(w) for w in plan.warnings],
        "blockers": [_notice_json(b) for b in plan.blockers],
        "cost": _cost_json(plan, _costing(costing, plan)),
    }
    return json_text(document, ensure_ascii=False) + "\n"


def _notice_json(notice: Notice) -> dict[str, Any]:
    return asdict(notice)


def _warning(notice: Notice) -> str:
    """A warning as one line: the spec's located line, or ``[MDL009] ...`` across specs."""
    return f"{notice.address}: {notice.message}" if notice.address else notice.message


def _cost_json(plan: Plan, costing: Costing) -> dict[str, Any]:
    lines = costing.lines(plan)
    floors = [line.after.idle_month if line.after else 0.0 for line in lines]
    deltas = [line.idle_delta for line in lines]
    return {
        "currency": "USD",
        "prices_date": costing.prices.date,
        "prices": prices_json(costing.prices),
        "idle_floor_month": None if None in floors else _cents(sum(filter(None, floors))),
        "idle_floor_delta_month": None if None in deltas else _cents(sum(filter(None, deltas))),
        "month_estimate": _cents(_estimate_total(lines)),
        "apps": [
            {
                "address": line.address,
                "gpu": _gpu(line.after or line.before),
                "gpu_fallback": list((line.after or line.before or _NO_COST).fallback),
                "hourly_low": _cents(line.after.low_hourly) if line.after else None,
                "region_multiplier": (line.after or line.before or _NO_COST).multiplier,
                "hourly": _cents(line.after.hourly) if line.after else None,
                "idle_month": _cents(line.after.idle_month) if line.after else None,
                "hourly_delta": _cents(line.hourly_delta),
                "idle_month_delta": _cents(line.idle_delta),
                "active_hours_per_day": line.active_hours_per_day,
                "month_estimate": _cents(line.month_estimate),
                "month_delta": _cents(line.month_delta),
                "pools": [
                    {
                        "name": pool.name,
                        "kind": pool.kind,
                        "min_containers": pool.min_containers,
                        "buffer_containers": pool.buffer_containers,
                        "hourly": _cents(pool.hourly),
                        "idle_month": _cents(pool.idle_month),
                        **_request_json(pool),
                    }
                    for pool in (line.after or line.before or _NO_COST).pools
                ],
            }
            for line in lines
        ],
    }


def _estimate_total(lines: list[CostLine]) -> float | None:
    """The month of the apps that have a usage estimate; None when none has one."""
    estimates = [line.month_estimate for line in lines if line.month_estimate is not None]
    return sum(estimates) if estimates else None


_NO_COST = AppCost("", ())


def _request_json(pool: PoolCost) -> dict[str, Any]:
    """What a CPU pool is priced at: Modal's default request (a GPU pool's reservation is
    the app's, in ``gpu`` and the hourly figures)."""
    if pool.cpu_request is None:
        return {}
    cores, mib = pool.cpu_request
    return {"request": {"cpu": cores, "memory_mib": mib, "modal_default": True}}


def _gpu(cost: AppCost | None) -> str | None:
    return cost.gpu if cost is not None else None


def _cents(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _change_json(change: Change) -> dict[str, Any]:
    return {
        "action": change.action,
        "address": change.address,
        "app": change.app,
        "environment": change.environment,
        "spec": {"path": change.spec_path, "sha256": change.spec_digest},
        "source_sha256": {"before": change.source_hash_before, "after": change.source_hash_after},
        "fields": [{"path": f.path, "before": f.before, "after": f.after} for f in change.fields],
        "notes": list(change.notes),
        "drift": [_notice_json(d) for d in change.drift],
        "blockers": [_notice_json(b) for b in change.blockers],
        "renamed_from": change.renamed_from,
        "strategy": change.strategy,
        "verify": asdict(change.verify) if change.verify else None,
        "recorded": {"version": change.recorded_version},
        "observed": {"state": change.observed_state, "version": change.observed_version},
        "record": asdict(change.record) if change.record else None,
        "usage": {"active_hours_per_day": change.active_hours_per_day},
    }


# GitHub refuses comments over 65,536 characters; keep room for what a workflow wraps around.
MARKDOWN_BUDGET = 60_000


def as_markdown(plan: Plan, budget: int = MARKDOWN_BUDGET, costing: Costing | None = None) -> str:
    """A pull-request comment: the summary and drift first, then one collapsible section per
    app, dropping sections (and saying so) once the comment would pass ``budget`` characters."""
    head = []
    if not plan.online:
        head += [
            "> **Offline plan**: Modal was not consulted. It compares the specs with the "
            "recorded state only, so drift and blockers are unknown; `modaliac apply` plans "
            "again against Modal before it changes anything.",
            "",
        ]
    if plan.inputs.refresh_only:
        text = _refresh_text(plan, lambda code, text: text)
        return "\n".join(head) + "\n### modaliac plan (refresh only)\n\n```\n" + text + "```\n"
    if plan.status == "blocked":  # the comment lists its blockers below the title
        title = f"modaliac plan (blocked): {_counts(plan)}"
    else:
        title = "modaliac plan: " + summary_line(plan).removeprefix("Plan: ")
    head += [f"### {title}", ""]
    costing = _costing(costing, plan)
    lines = costing.lines(plan)
    head += _md_costs(lines, _md_prices(costing.prices, _rows_used(lines)))
    if plan.changes:
        head += ["| | app | action | spec |", "|---|---|---|---|"]
        for change in plan.changes:
            symbol = _SYMBOL[change.action].strip() or "·"
            head.append(
                f"| `{symbol}` | `{_md(change.address)}` | {change.action} "
                f"| `{_md(change.spec_path)}` |"
            )
        head.append("")
    drift = [d for c in plan.changes for d in c.drift]
    if drift:
        head += ["**Drift** (changed on Modal outside modaliac):", ""]
        head += [f"- `{_md(d.address or '')}`: {_md(d.text())}" for d in drift]
        head.append("")
    if plan.blockers:
        head += ["**Blocked**: apply refuses until these are fixed:", ""]
        head += [f"- `{_md(b.address or '')}`: {_md(b.text())}" for b in plan.blockers]
        head.append("")
    if plan.warnings:
        head += [f"**Warnings** ({len(plan.warnings)}):", ""]
        head += [f"- {_md(_warning(w))}" for w in plan.warnings]
    text = "\n".join(head).rstrip() + "\n"
    sections = [_md_section(c) for c in plan.changes if c.action != "no-op"]
    for index, section in enumerate(sections):
        rest = len(sections) - index
        if len(text) + len(section) + 200 > budget:
            text += (
                f"\n_{rest} more app sections left out to fit a comment: run "
                "`modaliac plan --format text` for every setting._\n"
            )
            break
        text += "\n" + section
    return text


def _cost_text(line: CostLine) -> str:
    if line.action == "delete":
        saved = line.before.idle_month if line.before else None
        return f"was {describe(line.before)}; saves {money(saved)}/month idle"
    text = describe(line.after)
    if line.action != "create" and line.before != line.after:
        text += (
            f" ({money(line.hourly_delta, signed=True)}/h, "
            f"{money(line.idle_delta, signed=True)}/month idle vs deployed)"
        )
    return text + usage_text(line.after, line.active_hours_per_day)


def _md_prices(prices: Prices, used: set[str]) -> str:
    """``2026-07-01 prices`` (a table), or ``Modal's rates of 2026-12-02 01:50:07 UTC``."""
    if prices.origin != "modal":
        return f"{prices.date} prices"
    return prices_text(prices, used).removeprefix("prices: ").replace("read at", "of", 1)


def _rows_used(lines: Iterable[CostLine]) -> set[str]:
    return rows_used(cost for line in lines for cost in (line.before, line.after))


def _md_costs(lines: list[CostLine], prices_label: str) -> list[str]:
    """The cost summary that opens the comment: monthly idle floor, then one row per app
    (with a column for the usage estimate when any app has one)."""
    if not lines:
        return []
    deltas = [line.idle_delta for line in lines]
    floors = [line.after.idle_month if line.after else 0.0 for line in lines]
    total = None if None in floors else sum(f for f in floors if f is not None)
    delta = None if None in deltas else sum(d for d in deltas if d is not None)
    estimated = _estimate_total(lines)
    summary = (
        f"**Cost** (GPUs and reserved CPU/memory, {prices_label}): idle floor "
        f"{money(total)}/month "
        f"({money(delta, signed=True)} vs deployed)"
    )
    if estimated is not None:
        summary += f"; about {money(estimated)}/month at the usage estimates"
    header = "| app | GPU | per running hour | idle floor / month | change / month |"
    if estimated is not None:
        header += " estimate / month |"
    money_columns = header.count(" | ") - 1  # every column after app and GPU is money
    out = [summary, "", header, "|---|---|" + "---:|" * money_columns]
    for line in lines:
        cost = line.after or line.before
        gpu = (
            "-"
            if cost is None
            else _md(
                cost.gpu_text + (f" + {cost.reserved}" if cost.reserved else "") + region_note(cost)
            )
        )
        hourly = money(line.after.hourly) if line.after else "-"
        if line.after and line.before and round(line.hourly_delta or 0, 2) != 0:
            hourly += f" ({money(line.hourly_delta, signed=True)})"
        idle = money(line.after.idle_month) if line.after else "-"
        row = f"| `{_md(line.address)}` | {gpu} | {hourly} | {idle} | {_md_change(line)} |"
        if estimated is not None:
            row += f" {_md_estimate(line)} |"
        out.append(row)
        pools = line.after.pools if line.after else ()
        if len(pools) > 1:  # each pool keeps its own containers: price it on its own row
            for pool in pools:
                on = " (CPU, Modal's default request)" if pool.kind == "cpu" else ""
                row = f"| ↳ pool `{_md(pool.name)}`{on} | | {money(pool.hourly)} "
                row += f"| {money(pool.idle_month)} | |"
                out.append(row + (" |" if estimated is not None else ""))
    return [*out, ""]


def _md_change(line: CostLine) -> str:
    """The monthly change: at the usage estimate where there is one, else of the idle floor;
    the cell says which."""
    if line.month_delta is not None and line.active_hours_per_day is not None:
        return f"{money(line.month_delta, signed=True)} (at {line.active_hours_per_day:g} h/day)"
    return f"{money(line.idle_delta, signed=True)} (idle)"


def _md_estimate(line: CostLine) -> str:
    if line.month_estimate is None or line.active_hours_per_day is None:
        return "-"
    return f"{money(line.month_estimate)} ({line.active_hours_per_day:g} h/day)"


def _md_section(change: Change) -> str:
    lines = [
        f"<details><summary><code>{_html(change.address)}</code>: {change.action}"
        f" ({len(change.fields)} settings)</summary>",
        "",
        "```diff",
    ]
    for item in change.fields:
        if change.action in ("update", "replace"):
            lines.append(f"- {item.path} = {_value(item.before)}")
            lines.append(f"+ {item.path} = {_value(item.after)}")
        elif change.action == "create":
            lines.append(f"+ {item.path} = {_value(item.after)}")
        else:
            lines.append(f"- {item.path} = {_value(item.before)}")
    lines += ["```", ""]
    lines += [f"> {_md(note)}" for note in change.notes]
    if change.verify is not None:
        lines.append(f"> {_md(verify_text(change))}")
    lines += ["</details>", ""]
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
