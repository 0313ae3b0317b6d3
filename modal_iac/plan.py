"""The plan is a value: a pure function of the desired apps and the recorded state.

Printing, saving and (later) applying a plan are separate steps over this value.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from . import __version__
from .address import Address
from .gateway import FREE_TIER_WEB_ENDPOINTS, GatewaySpec, app_settings, endpoints_other_layout
from .load import LoadedSpec
from .observed import Observed
from .policy import suppressed
from .render import Rendered
from .settings import settings
from .spec import Spec
from .state import AppRecord, State

PLAN_FORMAT_VERSION = 1
Action = Literal["create", "update", "replace", "delete", "no-op"]
ACTIONS: tuple[Action, ...] = ("create", "update", "replace", "delete", "no-op")
# Changing only these never rebuilds a container or a snapshot.
_METADATA_PREFIXES = ("labels",)


@dataclass(frozen=True)
class Desired:
    """One app as the specs want it. ``env_option`` is the run's ``--env`` (None: none)."""

    loaded: LoadedSpec
    rendered: Rendered
    env_option: str | None = None

    @property
    def app(self) -> str:
        return self.rendered.app

    @property
    def environment(self) -> str | None:
        return self.loaded.spec.environment

    @property
    def address(self) -> str:
        return str(Address(self.environment, self.app))

    @property
    def active_hours_per_day(self) -> float | None:
        usage = self.loaded.spec.usage
        return usage.active_hours_per_day if usage is not None else None

    def settings(self) -> dict[str, Any]:
        """The flat settings of this app (one app of a gateway: its GPU and its models)."""
        spec = self.loaded.spec
        if isinstance(spec, GatewaySpec):
            return app_settings(spec, self.app)
        return settings(spec)

    def record(self) -> AppRecord:
        """What the state will hold once this app is applied."""
        return AppRecord(
            app=self.app,
            environment=self.environment,
            spec_path=self.loaded.recorded_path,
            spec_digest=self.loaded.digest,
            source_hash=self.rendered.body_hash,
            settings=self.settings(),
            source=self.rendered.source,
            deployment_tag=deployment_tag(self.rendered.body_hash),
            env_option=self.env_option,
        )


@dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Change:
    action: Action
    address: str
    app: str
    environment: str | None
    spec_path: str
    spec_digest: str | None
    source_hash_before: str | None
    source_hash_after: str | None
    fields: tuple[FieldChange, ...] = ()
    notes: tuple[str, ...] = ()
    drift: tuple[str, ...] = ()  # changed on Modal outside modaliac
    blockers: tuple[str, ...] = ()  # apply refuses while any remain
    recorded_version: int | None = None
    observed_version: int | None = None
    observed_state: str | None = None  # None: planned offline
    record: AppRecord | None = None  # what the state holds once applied (None for delete)
    active_hours_per_day: float | None = None  # the spec's usage estimate, for cost only


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    warnings: tuple[str, ...] = ()
    online: bool = False
    modaliac_version: str = __version__
    format_version: int = PLAN_FORMAT_VERSION
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        found = Counter(change.action for change in self.changes)
        object.__setattr__(self, "counts", {action: found[action] for action in ACTIONS})

    @property
    def has_changes(self) -> bool:
        return any(change.action != "no-op" for change in self.changes)

    @property
    def blockers(self) -> list[str]:
        return [f"{c.address}: {b}" for c in self.changes for b in c.blockers]


def deployment_tag(source_hash: str) -> str:
    """The tag modaliac deploys with; it names the generated code, so drift is detectable."""
    return f"modaliac-{source_hash[:12]}"


def make_plan(
    desired: list[Desired],
    recorded: State,
    delete_scope: list[str] | None = None,
    observed: dict[tuple[str | None, str], Observed] | None = None,
    env_option: str | None = None,
) -> Plan:
    """Compare desired apps with the recorded state and, when given, what Modal reports.

    ``delete_scope``: the planned spec directories, relative to the project root (as the
    state records spec paths). Recorded apps that ``deletions`` finds are planned for
    deletion; planning single files (no scope) never deletes: other specs are out of view.
    ``observed``: None plans offline (recorded state only); otherwise drift is reported and
    the actions converge Modal back to the specs. ``env_option``: the run's ``--env``.
    """
    changes = []
    wanted = {item.address: item for item in desired}
    for address, item in sorted(wanted.items()):
        before = recorded.apps.get(address)
        seen = None
        if observed is not None:
            key = (item.environment, item.app)
            seen = observed.get(key, Observed(item.app, item.environment))
        changes.append(_compare(item, before, seen))
    for record in deletions(desired, recorded, delete_scope, env_option):
        notes = ["its spec was removed: the Modal app will be stopped"]
        seen_state: str | None = None
        seen_version: int | None = None
        if observed is not None:
            seen = observed.get((record.environment, record.app))
            seen_state = seen.state if seen else "missing"
            seen_version = seen.current.version if seen and seen.current else None
            if seen is None or seen.state != "deployed":
                notes = [
                    "its spec was removed and the app is already gone from Modal: "
                    "only the state entry is removed"
                ]
        changes.append(
            Change(
                action="delete",
                address=record.address,
                app=record.app,
                environment=record.environment,
                spec_path=record.spec_path,
                spec_digest=None,
                source_hash_before=record.source_hash,
                source_hash_after=None,
                fields=tuple(FieldChange(k, v, None) for k, v in record.settings.items()),
                notes=tuple(notes),
                recorded_version=record.deployed_version,
                observed_state=seen_state,
                observed_version=seen_version,
            )
        )
    return Plan(
        changes=tuple(changes), warnings=tuple(_warnings(desired)), online=observed is not None
    )


def deletions(
    desired: list[Desired],
    recorded: State,
    scope: list[str] | None,
    env_option: str | None = None,
) -> list[AppRecord]:
    """The recorded apps a run over ``scope`` removes, in address order; plan and diff agree.

    A run never removes an app of an environment it does not plan. A recorded app goes when
    its spec lived in a planned directory and the run no longer yields its address, and
    - its spec is still loaded, in the environment that spec resolves to in this run (the
      app was renamed, or a gateway lost a GPU): records of the same spec in other
      environments belong to the runs of those environments;
    - its spec is gone, and the record was applied with this run's ``--env`` (or, like this
      run, without one).
    """
    wanted = {item.address for item in desired}
    resolved: dict[str, set[str | None]] = {}
    for item in desired:
        resolved.setdefault(item.loaded.recorded_path, set()).add(item.environment)
    found = []
    for address, record in sorted(recorded.apps.items()):
        if address in wanted or not in_scope(record.spec_path, scope):
            continue
        environments = resolved.get(record.spec_path)
        if environments is not None and record.environment not in environments:
            continue
        if environments is None and record.env_option != env_option:
            continue
        found.append(record)
    return found


def _compare(item: Desired, before: AppRecord | None, seen: Observed | None) -> Change:
    after = item.record()
    fields: tuple[FieldChange, ...] = ()
    notes: list[str] = []
    if before is None:
        action: Action = "create"
        fields = tuple(FieldChange(k, None, v) for k, v in after.settings.items())
    else:
        fields = field_changes(before.settings, after.settings)
        action = "no-op"
        if fields or before.source_hash != after.source_hash:
            action = "update"
            if not fields:
                notes.append("the generated code changed (a new modaliac version or template)")
            snapshots = {before.settings.get("snapshot"), after.settings.get("snapshot")} - {"none"}
            metadata_only = fields and all(f.path.startswith(_METADATA_PREFIXES) for f in fields)
            if snapshots and not metadata_only:
                action = "replace"
                notes.append(
                    "a new memory snapshot is taken: the first cold starts after deploy load "
                    "the model"
                )
    drift: list[str] = []
    blockers: list[str] = []
    if seen is not None:
        action = _observe(after, before, seen, action, notes, drift, blockers)
    return Change(
        action=action,
        address=item.address,
        app=after.app,
        environment=after.environment,
        spec_path=after.spec_path,
        spec_digest=after.spec_digest,
        source_hash_before=before.source_hash if before else None,
        source_hash_after=after.source_hash,
        fields=fields,
        notes=tuple(notes),
        drift=tuple(drift),
        blockers=tuple(blockers),
        recorded_version=before.deployed_version if before else None,
        observed_version=seen.current.version if seen and seen.current else None,
        observed_state=seen.state if seen else None,
        record=after,
        active_hours_per_day=item.active_hours_per_day,
    )


def _observe(
    after: AppRecord,
    before: AppRecord | None,
    seen: Observed,
    action: Action,
    notes: list[str],
    drift: list[str],
    blockers: list[str],
) -> Action:
    """Fold what Modal reports into the action; fill notes, drift and blockers in place."""
    env_flag = f" --env {after.environment}" if after.environment else ""
    for name in seen.missing_secrets:
        blockers.append(
            f"secret {name!r} does not exist on Modal: create it with "
            f"`modal secret create {name} KEY=VALUE{env_flag}` (modaliac never handles values)"
        )
    notes.extend(
        f"volume {name!r} does not exist yet and will be created" for name in seen.missing_volumes
    )
    current = seen.current
    ours = current is not None and current.tag == after.deployment_tag
    if before is None:
        if seen.state == "deployed" and ours:
            notes.append("Modal already runs exactly this version: apply only records it")
            return "no-op"
        if seen.state == "deployed":
            blockers.append(
                f"an app named {after.app!r} is already deployed on Modal and modaliac does not "
                f"manage it: adopt it with `modaliac import {after.app}`, or rename the spec's app"
            )
        return action
    for override in seen.overrides:
        drift.append(
            f"{override.function}: {override.setting} was changed by hand to {override.value} "
            f"(deployed: {override.static_value}) by {override.by or 'someone'}; "
            "put it in the spec to keep it"
        )
    if seen.state != "deployed":
        drift.append(
            f"the app is {seen.state} on Modal (modaliac recorded v{before.deployed_version})"
        )
        notes.append("apply deploys it again")
        return "create" if action == "no-op" else action
    if current is None:
        return action
    same_tag = not before.deployment_tag or current.tag == before.deployment_tag
    if current.version == before.deployed_version and same_tag:
        return action  # Modal runs what modaliac recorded: no drift
    if ours:
        # Modal already runs the code the spec renders now: an apply deployed it and was
        # stopped before it could record it. Recording it is all that is left to do.
        notes.append("Modal already runs exactly this version: apply only records it")
        return "no-op"
    who = current.deployed_by or "someone"
    if current.deployment_type == "rollback":
        drift.append(
            f"rolled back by {who} to the code of v{current.rollback_version} (now "
            f"v{current.version}); modaliac recorded v{before.deployed_version}"
        )
    else:
        drift.append(
            f"v{current.version} was deployed outside modaliac by {who} (tag "
            f"{current.tag or 'none'!r}); modaliac recorded v{before.deployed_version}"
        )
    if action == "no-op":
        notes.append("apply deploys the spec again to undo the drift")
        return "update"
    return action


def field_changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[FieldChange, ...]:
    keys = list(after) + [k for k in before if k not in after]
    return tuple(
        FieldChange(key, before.get(key), after.get(key))
        for key in keys
        if before.get(key) != after.get(key)
    )


def in_scope(spec_path: str, scope: list[str] | None) -> bool:
    """Whether a recorded spec path (relative to the project root) lies under one of the
    planned directories (relative to it too; ``.`` is the whole project). An imported app
    (no spec yet) is never in scope: planning a directory must not stop it."""
    if not scope or not spec_path:
        return False
    path = PurePosixPath(spec_path)
    return any(
        directory in (".", "") or path.is_relative_to(PurePosixPath(directory))
        for directory in scope
    )


def _warnings(desired: list[Desired]) -> list[str]:
    found: list[str] = []
    seen: set[str] = set()
    for item in desired:
        if item.loaded.path in seen:
            continue
        seen.add(item.loaded.path)
        found.extend(f"{item.address}: {warning}" for warning in item.loaded.warnings)
    specs = {item.loaded.path: item.loaded.spec for item in desired}
    return found + endpoint_warnings(list(specs.values()))


def web_endpoints(spec: Spec | GatewaySpec) -> int:
    """How many Modal web endpoints the apps of a spec expose."""
    if isinstance(spec, GatewaySpec):
        return len(spec.apps())
    return 1 if spec.surfaces.http is not None else 0


def endpoint_warnings(specs: list[Spec | GatewaySpec]) -> list[str]:
    """A warning when the specs together need more web endpoints than Modal's free tier
    allows, naming the layout that would stay under the limit (policy rule MDL009).

    A spec that suppresses MDL009 (a paid plan, say) does not count towards the limit."""
    specs = [spec for spec in specs if not suppressed(spec, "MDL009")]
    total = sum(web_endpoints(spec) for spec in specs)
    limit = FREE_TIER_WEB_ENDPOINTS
    if total <= limit:
        return []
    message = (
        f"[MDL009] these specs expose {total} web endpoints; Modal's free tier allows {limit} per "
        "workspace, so deploys past it fail there"
    )
    hints = []
    for spec in specs:
        if isinstance(spec, GatewaySpec):
            layout, count = endpoints_other_layout(spec)
            if count < len(spec.apps()):
                rest = total - len(spec.apps()) + count
                fits = "then all stay under the limit" if rest <= limit else f"then {rest} in all"
                hints.append(
                    f"layout: {layout} for gateway {spec.name!r} ({count} endpoints; {fits})"
                )
    if hints:
        return [message + "; use " + ", ".join(hints)]
    if any(isinstance(spec, Spec) and web_endpoints(spec) for spec in specs):
        hint = "a gateway spec (kind: gateway) serves several models behind one endpoint per GPU"
    else:
        hint = "every gateway already has one endpoint per GPU type: name fewer GPU types"
    return [f"{message}; {hint}"]
