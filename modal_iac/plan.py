"""The plan is a value: a pure function of the desired apps and the recorded state.

Printing, saving and (later) applying a plan are separate steps over this value.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import __version__
from .load import LoadedSpec
from .render import Rendered
from .settings import settings
from .state import AppRecord, State, app_address

PLAN_FORMAT_VERSION = 1
Action = Literal["create", "update", "replace", "delete", "no-op"]
ACTIONS: tuple[Action, ...] = ("create", "update", "replace", "delete", "no-op")
# Changing only these never rebuilds a container or a snapshot.
_METADATA_PREFIXES = ("labels",)


@dataclass(frozen=True)
class Desired:
    """One app as the specs want it."""

    loaded: LoadedSpec
    rendered: Rendered

    @property
    def address(self) -> str:
        return app_address(self.loaded.spec.environment, self.loaded.spec.app)

    def record(self) -> AppRecord:
        """What the state will hold once this app is applied."""
        spec = self.loaded.spec
        return AppRecord(
            app=spec.app,
            environment=spec.environment,
            spec_path=self.loaded.path,
            spec_digest=self.loaded.digest,
            source_hash=self.rendered.body_hash,
            settings=settings(spec),
            source=self.rendered.source,
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


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    warnings: tuple[str, ...] = ()
    modaliac_version: str = __version__
    format_version: int = PLAN_FORMAT_VERSION
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        found = Counter(change.action for change in self.changes)
        object.__setattr__(self, "counts", {action: found[action] for action in ACTIONS})

    @property
    def has_changes(self) -> bool:
        return any(change.action != "no-op" for change in self.changes)


def make_plan(
    desired: list[Desired], recorded: State, delete_scope: list[Path] | None = None
) -> Plan:
    """Compare desired apps with the recorded state.

    ``delete_scope``: spec directories this plan covers. A recorded app whose spec lived
    under one of them and is no longer desired is planned for deletion. Planning single
    files (no scope) never deletes: other specs are simply out of view.
    """
    changes = []
    wanted = {item.address: item for item in desired}
    for address, item in sorted(wanted.items()):
        before = recorded.apps.get(address)
        changes.append(_compare(item, before))
    for address, record in sorted(recorded.apps.items()):
        if address not in wanted and _in_scope(record.spec_path, delete_scope):
            changes.append(
                Change(
                    action="delete",
                    address=address,
                    app=record.app,
                    environment=record.environment,
                    spec_path=record.spec_path,
                    spec_digest=None,
                    source_hash_before=record.source_hash,
                    source_hash_after=None,
                    fields=tuple(FieldChange(k, v, None) for k, v in record.settings.items()),
                    notes=("its spec was removed: the Modal app will be stopped",),
                )
            )
    return Plan(changes=tuple(changes), warnings=tuple(_warnings(desired)))


def _compare(item: Desired, before: AppRecord | None) -> Change:
    after = item.record()

    def change(action: Action, fields: tuple[FieldChange, ...], notes: list[str]) -> Change:
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
        )

    if before is None:
        return change(
            "create", tuple(FieldChange(k, None, v) for k, v in after.settings.items()), []
        )
    fields = _field_changes(before.settings, after.settings)
    if not fields and before.source_hash == after.source_hash:
        return change("no-op", (), [])
    notes = []
    if not fields:
        notes.append("the generated code changed (a new modaliac version or template)")
    action: Action = "update"
    snapshots = {before.settings.get("snapshot"), after.settings.get("snapshot")} - {"none"}
    metadata_only = fields and all(f.path.startswith(_METADATA_PREFIXES) for f in fields)
    if snapshots and not metadata_only:
        action = "replace"
        notes.append(
            "a new memory snapshot is taken: the first cold starts after deploy load the model"
        )
    return change(action, fields, notes)


def _field_changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[FieldChange, ...]:
    keys = list(after) + [k for k in before if k not in after]
    return tuple(
        FieldChange(key, before.get(key), after.get(key))
        for key in keys
        if before.get(key) != after.get(key)
    )


def _in_scope(spec_path: str, scope: list[Path] | None) -> bool:
    if not scope:
        return False
    path = Path(spec_path).resolve()
    return any(path.is_relative_to(directory.resolve()) for directory in scope)


def _warnings(desired: list[Desired]) -> list[str]:
    found = []
    for item in desired:
        http = item.loaded.spec.surfaces.http
        if http is not None and http.api_key_secret is None:
            found.append(
                f"{item.address}: surfaces.http has no api_key_secret, so the endpoint "
                "answers anyone who has its URL"
            )
    return found
