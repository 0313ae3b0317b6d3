"""A plan's values: the changes it makes, the notices it gives, the records a refresh takes.

Plain data, read by every step over a plan (presenting, saving, costing, applying), so none of
them needs what makes a plan (``plan.py``) or a refresh (``refresh.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

from .. import __version__
from ..spec.fields import shown_duration
from ..state.records import AppRecord

if TYPE_CHECKING:
    from ..review.cost import Prices

PLAN_FORMAT_VERSION = 2
Action = Literal["create", "update", "replace", "delete", "no-op"]
ACTIONS: tuple[Action, ...] = ("create", "update", "replace", "delete", "no-op")
Status = Literal["no-changes", "changes", "blocked"]
Strategy = Literal["rolling", "recreate"]  # Modal's deployment strategies (App.deploy)
STRATEGIES: tuple[Strategy, ...] = ("rolling", "recreate")
DEPLOYING: tuple[Action, ...] = ("create", "update", "replace")  # the actions that deploy
RefreshAction = Literal["record", "forget"]


@dataclass(frozen=True)
class Notice:
    """A warning, a drift or a blocker: ``code`` for machines, the rest for people.

    ``address`` is the app it concerns (None: the specs as a whole); ``fix`` is what to do,
    when there is something to do."""

    code: str
    address: str | None
    message: str
    fix: str = ""

    def text(self) -> str:
        return f"{self.message}; {self.fix}" if self.fix else self.message


@dataclass(frozen=True)
class Inputs:
    """What a plan was made from: the spec files and folders (relative to the project root),
    the ``--env``, the environment Modal's own settings chose (``MODAL_ENVIRONMENT`` or the
    profile's), the addresses ``--replace`` forces, and whether it only refreshes."""

    targets: tuple[str, ...] = ()
    env: str | None = None
    profile_environment: str | None = None  # MODAL_ENVIRONMENT, else the Modal profile's
    replace: tuple[str, ...] = ()
    refresh_only: bool = False
    strategy: Strategy | None = None  # --strategy: over every spec's deploy.strategy
    verify: bool | None = None  # --verify / --no-verify: over every spec's verify.enabled

    @property
    def default_environment(self) -> str | None:
        """Where a spec that names no environment deploys in this run: ``--env``, else the
        profile's, else None (the workspace's default environment)."""
        return self.env if self.env is not None else self.profile_environment


@dataclass(frozen=True)
class Verification:
    """How apply checks an app it deployed: one request of the kind it serves must be
    answered within ``timeout`` seconds (a cold start included), else it is rolled back."""

    timeout: int
    prompt: str | None = None  # None: the built-in one (modaliac test's)


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    before: Any
    after: Any


class AllSettings(Sequence[FieldChange]):
    """Every setting of a created (or deleted) app as a change from (or to) nothing, made
    from its settings when read: a create lists ~120 of them, and a plan over thousands of
    apps would otherwise hold a row for each, beside the record's settings they repeat.

    It reads, compares and hashes as the tuple of those rows."""

    __slots__ = ("_created", "_settings")

    def __init__(self, settings: dict[str, Any], *, created: bool) -> None:
        self._settings, self._created = settings, created

    def _row(self, key: str, value: Any) -> FieldChange:
        return FieldChange(key, None, value) if self._created else FieldChange(key, value, None)

    def __iter__(self) -> Iterator[FieldChange]:
        return (self._row(key, value) for key, value in self._settings.items())

    def __len__(self) -> int:
        return len(self._settings)

    @overload
    def __getitem__(self, index: int) -> FieldChange: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[FieldChange, ...]: ...
    def __getitem__(self, index: int | slice) -> FieldChange | tuple[FieldChange, ...]:
        return tuple(self)[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AllSettings | tuple):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


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
    fields: Sequence[FieldChange] = ()  # a tuple, or AllSettings
    notes: tuple[str, ...] = ()
    drift: tuple[Notice, ...] = ()  # changed on Modal outside modaliac
    blockers: tuple[Notice, ...] = ()  # apply refuses while any remain
    recorded_version: int | None = None
    observed_version: int | None = None
    observed_state: str | None = None  # None: planned offline
    record: AppRecord | None = None  # what the state holds once applied (None for delete)
    active_hours_per_day: float | None = None  # the spec's usage estimate, for cost only
    renamed_from: str | None = None  # the address apply stops once this one is deployed
    strategy: Strategy | None = None  # how apply deploys it (None: it deploys nothing)
    verify: Verification | None = None  # how apply checks it once deployed (None: it does not)


@dataclass(frozen=True)
class Refresh:
    """One recorded app brought up to what Modal runs (``after`` None: forgotten)."""

    address: str
    action: RefreshAction
    before: AppRecord
    after: AppRecord | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """What applying would do. A refresh-only plan (``inputs.refresh_only``) has no changes,
    only ``refreshes``: the records the state would take from Modal."""

    changes: tuple[Change, ...]
    warnings: tuple[Notice, ...] = ()
    online: bool = False
    inputs: Inputs = field(default_factory=Inputs)
    modaliac_version: str = __version__
    format_version: int = PLAN_FORMAT_VERSION
    refreshes: tuple[Refresh, ...] = ()
    prices: Prices | None = None  # a saved plan's prices, read back with it (cost.py)
    workspace: str | None = None  # online: the Modal workspace and server it was made against
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        found = Counter(change.action for change in self.changes)
        object.__setattr__(self, "counts", {action: found[action] for action in ACTIONS})

    @property
    def has_changes(self) -> bool:
        if self.inputs.refresh_only:
            return bool(self.refreshes)
        return any(change.action != "no-op" for change in self.changes)

    @property
    def blockers(self) -> list[Notice]:
        return [b for c in self.changes for b in c.blockers]

    @property
    def status(self) -> Status:
        """``blocked`` when apply would refuse it, else whether anything changes."""
        if self.blockers:
            return "blocked"
        return "changes" if self.has_changes else "no-changes"


def deployment_tag(source_hash: str) -> str:
    """The tag modaliac deploys with; it names the generated code, so drift is detectable."""
    return f"modaliac-{source_hash[:12]}"


def has_previous(change: Change) -> bool:
    """Whether Modal serves a version of the app that a failed verification can roll back to
    (an offline plan assumes one for everything but a create)."""
    if change.observed_state is None:
        return change.action != "create"
    return change.observed_state == "deployed"


def verify_text(change: Change) -> str:
    """What the plan says about the check apply runs once ``change`` is deployed."""
    assert change.verify is not None
    otherwise = (
        "apply rolls it back to the version serving before"
        if has_previous(change)
        else "it is stopped (apply --keep-failed keeps it)"
    )
    sent = "the built-in request" if change.verify.prompt is None else "the spec's prompt"
    return (
        f"verified: once deployed, {sent} must be answered within "
        f"{shown_duration(change.verify.timeout)} (cold start included), else {otherwise}"
    )


def field_changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[FieldChange, ...]:
    keys = list(after) + [k for k in before if k not in after]
    return tuple(
        FieldChange(key, before.get(key), after.get(key))
        for key in keys
        if before.get(key) != after.get(key)
    )
