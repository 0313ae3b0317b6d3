"""``modaliac status``: one look at what runs.

Every app the specs deploy or the state records (for this run's ``--env``), with what Modal
reports of it (state, version, when and by whom it was deployed, from which commit, running
containers, URLs) and whether it matches its spec. The verdict is the plan's: status makes the
same plan ``plan`` makes, from the same one-pass observation, and shows each app's action
(``no-op`` matches; anything else differs). Reading only: nothing is locked or written.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import __version__
from .options import env_option, state_option

if TYPE_CHECKING:  # the rest is imported where it is used: `modaliac --help` imports this module
    from ..plan.changes import Change, Plan
    from ..plan.observed import Commit, Observed
    from ..spec.address import Project
    from ..state.records import State
    from .console import Console

STATUS_FORMAT_VERSION = 1
# The plan's action, said as the answer to "does Modal run what the spec says?".
VERDICTS = {
    "no-op": "yes",
    "create": "no: not deployed",
    "update": "no: update",
    "replace": "no: replace",
    "delete": "no: spec removed",
}


@dataclass(frozen=True)
class Row:
    """One app: what Modal reports, what the state records, and the plan's verdict."""

    address: str
    seen: Observed
    spec_path: str = ""  # relative to the project root; "" when no spec or record names one
    recorded_version: int | None = None  # None: the state does not record it
    change: Change | None = None  # None: this run does not plan it
    found_by_tag: bool = False  # tagged managed-by modaliac, unknown to the state and specs

    @property
    def matches(self) -> bool | None:
        return None if self.change is None else self.change.action == "no-op"

    @property
    def verdict(self) -> str:
        if self.change is None:
            return "-"
        return VERDICTS[self.change.action] + (" (drift)" if self.change.drift else "")


@dataclass(frozen=True)
class Status:
    rows: tuple[Row, ...]
    env: str | None = None
    hidden: tuple[str, ...] = ()  # recorded by runs of another --env


def register(commands: Any) -> None:
    """Add ``status`` to the CLI's parser (lazy: nothing heavy imported)."""
    status = commands.add_parser(
        "status",
        help="show every managed app as Modal runs it, and whether it matches its spec",
        description=(
            "One line per app the specs deploy or the state records: its state on Modal, "
            "version, when and by whom it was deployed, running containers, URLs, and whether "
            "it matches its spec (the plan's verdict). Needs Modal."
        ),
    )
    status.add_argument("specs", nargs="*", metavar="SPEC|DIR", help="default: specs/")
    state_option(status)
    status.add_argument("--format", choices=("text", "json"), default="text")
    env_option(status)
    status.set_defaults(run=cmd_status)


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    from ..modal.sdk import require_credentials
    from ..plan.changes import Inputs
    from ..plan.plan import make_plan
    from ..plan.targets import delete_scope, desired_apps, spec_files, spec_targets, state_store
    from ..spec.address import Project, profile_environment
    from .plan import observe_for

    require_credentials()
    project = Project.here()
    targets = spec_targets(args.specs, project, "status")
    state = state_store(args.state, project, console.error).read()
    desired = desired_apps(spec_files(targets), args.env, project)
    observed = observe_for(desired, state).apps
    inputs = Inputs(
        targets=tuple(project.recorded(t) for t in targets),
        env=args.env,
        profile_environment=None if args.env is not None else profile_environment(),
    )
    plan = make_plan(desired, state, delete_scope(targets, project), observed, inputs, project.root)
    found = status_of(plan, state, observed, _strays(observed))
    console.print(as_json(found) if args.format == "json" else as_text(found, project), end="")
    return 0


def _strays(
    observed: dict[tuple[str | None, str], Observed],
) -> dict[tuple[str | None, str], Observed]:
    """The apps of the observed environments that carry modaliac's ``managed-by`` tag but
    that neither the specs nor the state know (another state file, a lost one)."""
    from ..modal.observe import Query, apps_tagged, observe
    from ..modal.tags import MANAGED_BY

    environments = [env for env, _ in observed] or [None]
    found = [
        key for key in apps_tagged(environments, MANAGED_BY, "modaliac") if key not in observed
    ]
    return observe([Query(app, env) for env, app in found]).apps if found else {}


def status_of(
    plan: Plan,
    state: State,
    observed: dict[tuple[str | None, str], Observed],
    strays: dict[tuple[str | None, str], Observed] | None = None,
) -> Status:
    """A row per planned app, then per app the state records for this ``--env`` that the
    plan leaves out (its spec is outside the named specs), then per app only Modal's tags
    say modaliac manages (``strays``); records of other ``--env`` runs are only counted."""
    from ..plan.observed import Observed
    from ..spec.address import Address

    rows = []
    for change in plan.changes:
        record = state.apps.get(change.address)
        rows.append(
            Row(
                change.address,
                observed.get(
                    (change.environment, change.app), Observed(change.app, change.environment)
                ),
                change.spec_path or (record.spec_path if record else ""),
                record.deployed_version if record else None,
                change,
            )
        )
    planned = {row.address for row in rows}
    hidden = []
    for address, record in sorted(state.apps.items()):
        if address in planned:
            continue
        if record.env_option != plan.inputs.env:
            hidden.append(address)
            continue
        seen = observed.get(
            (record.environment, record.app), Observed(record.app, record.environment)
        )
        rows.append(Row(address, seen, record.spec_path, record.deployed_version))
    for (environment, app), seen in (strays or {}).items():
        rows.append(Row(str(Address(environment, app)), seen, found_by_tag=True))
    return Status(tuple(sorted(rows, key=lambda r: r.address)), plan.inputs.env, tuple(hidden))


# -- text ---------------------------------------------------------------------------------

COLUMNS = ("ADDRESS", "MODAL", "VERSION", "DEPLOYED", "BY", "CONTAINERS", "MATCHES SPEC")


def as_text(status: Status, project: Project | None = None) -> str:
    """Plain columns, one line per app; its URLs, commit and drift on indented lines below."""
    if not status.rows:
        lines = ["No apps: the specs deploy none and the state records none."]
        return "\n".join(lines + _footer(status)) + "\n"
    table = [COLUMNS, *(_cells(row) for row in status.rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = []
    for i, cells in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        if i:
            lines += [f"    {detail}" for detail in _details(status.rows[i - 1], project)]
    return "\n".join(lines + _footer(status)) + "\n"


def _cells(row: Row) -> tuple[str, ...]:
    from ..state.lock_owner import utc_time

    current = row.seen.current
    return (
        row.address,
        row.seen.state,
        f"v{current.version}" if current else "-",
        utc_time(current.deployed_at) if current and current.deployed_at else "-",
        (current.deployed_by or "?") if current else "-",
        str(row.seen.containers) if row.seen.state == "deployed" else "-",
        row.verdict,
    )


def _details(row: Row, project: Project | None) -> list[str]:
    lines = []
    for function, url in row.seen.urls.items():
        lines.append(f"url {function}: {url}")
    current = row.seen.current
    if current is not None and current.commit is not None:
        lines.append(f"commit {_commit_text(current.commit)}")
    if current is not None and current.deployment_type != "standard":
        lines.append(
            f"{current.deployment_type}"
            + (f" to v{current.rollback_version}" if current.rollback_version else "")
        )
    if row.found_by_tag:
        lines.append(
            f"tagged managed-by modaliac, but neither these specs nor this state know it "
            f"(another state file? modaliac import {row.address} adopts it)"
        )
    elif row.recorded_version is None and row.seen.state != "missing":
        lines.append("not recorded in the state")
    elif row.recorded_version is not None and row.seen.state != "deployed":
        lines.append(f"recorded as v{row.recorded_version}, but {row.seen.state} on Modal")
    if row.change is not None:
        lines += [f"drift: {notice.text()}" for notice in row.change.drift]
        lines += [f"blocked: {notice.text()}" for notice in row.change.blockers]
    elif not row.found_by_tag:
        where = project.shown(row.spec_path) if project and row.spec_path else row.spec_path
        lines.append(f"not planned: its spec ({where or 'none, imported'}) is not among these")
    return lines


def _commit_text(commit: Commit) -> str:
    text = commit.commit_hash[:12]
    if commit.branch:
        text = f"{commit.branch}@{text}"
    if commit.dirty:
        text += " (uncommitted changes)"
    return text + (f" by {commit.author}" if commit.author else "")


def _footer(status: Status) -> list[str]:
    planned = [row for row in status.rows if row.matches is not None]
    differing = sum(not row.matches for row in planned)
    lines = [""] if status.rows else []
    if status.rows:
        summary = f"{len(status.rows)} app(s): {len(planned) - differing} match their spec"
        summary += f", {differing} differ" if differing else ""
        lines.append(summary + (" (modaliac plan shows the changes)." if differing else "."))
    if status.hidden:
        lines.append(
            f"{len(status.hidden)} recorded app(s) of runs with another --env not shown: "
            + ", ".join(status.hidden)
        )
    return lines


# -- JSON ---------------------------------------------------------------------------------


def as_json(status: Status) -> str:
    """The shape docs/status.md documents."""
    document = {
        "format_version": STATUS_FORMAT_VERSION,
        "modaliac_version": __version__,
        "env": status.env,
        "apps": [_row_json(row) for row in status.rows],
        "not_shown": list(status.hidden),
    }
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def _row_json(row: Row) -> dict[str, Any]:
    current = row.seen.current
    commit = current.commit if current else None
    change = row.change
    return {
        "address": row.address,
        "app": row.seen.app,
        "environment": row.seen.environment,
        "spec": row.spec_path or None,
        "recorded_version": row.recorded_version,
        "found_by_tag": row.found_by_tag,
        "modal": {
            "state": row.seen.state,
            "version": current.version if current else None,
            "deployed_at": _iso(current.deployed_at) if current else None,
            "deployed_by": current.deployed_by if current else None,
            "deployment_type": current.deployment_type if current else None,
            "tag": current.tag if current else None,
            "client_version": current.client_version if current else None,
            "commit": None
            if commit is None
            else {
                "hash": commit.commit_hash,
                "branch": commit.branch,
                "dirty": commit.dirty,
                "author": commit.author,
                "repo_url": commit.repo_url,
            },
            "containers": row.seen.containers,
            "urls": dict(row.seen.urls),
        },
        "matches_spec": row.matches,
        "plan": None
        if change is None
        else {
            "action": change.action,
            "drift": [{"code": n.code, "message": n.text()} for n in change.drift],
            "blockers": [{"code": n.code, "message": n.text()} for n in change.blockers],
        },
    }


def _iso(seconds: float) -> str | None:
    if not seconds:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")
