"""Plans as text for a terminal, JSON for machines (versioned) and Markdown for pull requests."""

from __future__ import annotations

import json
from typing import Any

from .plan import Change, Plan

_SYMBOL = {"create": "+", "update": "~", "replace": "-/+", "delete": "-", "no-op": " "}
_COLOR = {"create": "32", "update": "33", "replace": "35", "delete": "31", "no-op": "2"}


def summary_line(plan: Plan) -> str:
    c = plan.counts
    if not plan.has_changes:
        return "No changes. Modal matches the specs."
    return (
        f"Plan: {c['create']} to create, {c['update']} to update, "
        f"{c['replace']} to replace, {c['delete']} to delete."
    )


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def as_text(plan: Plan, *, color: bool = False) -> str:
    def paint(code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if color else text

    lines: list[str] = []
    for change in plan.changes:
        if change.action == "no-op":
            continue
        symbol = _SYMBOL[change.action]
        lines.append(
            paint(_COLOR[change.action], f"{symbol} {change.action} {change.address}")
            + f"  ({change.spec_path})"
        )
        width = max((len(f.path) for f in change.fields), default=0)
        for item in change.fields:
            if change.action == "create":
                lines.append(f"    {item.path.ljust(width)} = {_value(item.after)}")
            elif change.action == "delete":
                lines.append(f"    {item.path.ljust(width)} = {_value(item.before)}")
            else:
                lines.append(
                    f"    {item.path.ljust(width)} : {_value(item.before)} -> {_value(item.after)}"
                )
        lines.extend(paint("2", f"    # {note}") for note in change.notes)
        lines.append("")
    unchanged = [c.address for c in plan.changes if c.action == "no-op"]
    if unchanged:
        lines.append(f"Unchanged: {', '.join(unchanged)}")
    lines.extend(paint("33", f"Warning: {warning}") for warning in plan.warnings)
    lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


def as_json(plan: Plan) -> str:
    """The plan format documented in docs/plan-format.md (format_version 1)."""
    document = {
        "format_version": plan.format_version,
        "modaliac_version": plan.modaliac_version,
        "summary": dict(plan.counts),
        "has_changes": plan.has_changes,
        "changes": [_change_json(change) for change in plan.changes],
        "warnings": list(plan.warnings),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


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
    }


def as_markdown(plan: Plan) -> str:
    """A pull-request comment: the summary first, then one collapsible section per app."""
    lines = [f"### modaliac plan: {summary_line(plan)}", ""]
    if plan.changes:
        lines += ["| | app | action | spec |", "|---|---|---|---|"]
        for change in plan.changes:
            symbol = _SYMBOL[change.action].strip() or "·"
            lines.append(
                f"| `{symbol}` | `{_md(change.address)}` | {change.action} "
                f"| `{_md(change.spec_path)}` |"
            )
        lines.append("")
    for change in plan.changes:
        if change.action == "no-op":
            continue
        lines.append(
            f"<details><summary><code>{_html(change.address)}</code>: {change.action}"
            f" ({len(change.fields)} settings)</summary>"
        )
        lines += ["", "```diff"]
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
        lines += ["</details>", ""]
    lines += [f"> **Warning:** {_md(warning)}" for warning in plan.warnings]
    return "\n".join(lines).rstrip() + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
