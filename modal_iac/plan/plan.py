"""The plan is a value: a pure function of the desired apps, the recorded state and, online,
what Modal reports.

Printing, saving and applying a plan are separate steps over this value. A plan also records
what it was made from (``Inputs``), so ``apply PLAN.json`` can make it again and refuse it
when the result differs from what was reviewed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ModaliacError
from ..loading.load import LoadedSpec, SpecRef
from ..render.app import HEADER_LINES, Rendered, render_app
from ..review.policy import EndpointUse, endpoint_use, endpoints_warnings
from ..spec.address import Address, profile_environment
from ..spec.gateway import GatewaySpec, app_settings
from ..spec.placement import routing_region_change, runtime_notes
from ..spec.settings import settings
from ..state.records import AppRecord, State
from .changes import (
    DEPLOYING,
    Action,
    AllSettings,
    Change,
    FieldChange,
    Inputs,
    Notice,
    Plan,
    Strategy,
    Verification,
    deployment_tag,
    field_changes,
)
from .drift import autoscaler_resets, observe
from .observed import Observed

# Changing only these never rebuilds a container or a snapshot.
_METADATA_PREFIXES = ("labels",)


class Desired:
    """One app as the specs want it: what planning reads of its spec, not the spec.
    ``env_option`` is the run's ``--env`` (None: none).

    A plan over thousands of specs would otherwise hold each spec's validated model (about
    11 KiB) and each app's generated file (25 KiB) that printing it never reads. It keeps
    the file's hash (``Rendered.deferred``) and, as ``loaded``, where the spec came from
    (``load.SpecRef``): the source, and its ``record()``'s, is made again from the spec's
    file when read, refused if the file or what it renders changed since."""

    __slots__ = (
        "_settings",
        "active_hours_per_day",
        "endpoints",
        "env_option",
        "environment",
        "loaded",
        "rendered",
        "secret_keys",
        "secrets",
        "strategy",
        "verification",
        "verify_by_default",
        "volumes",
        "warnings",
    )

    def __init__(
        self, loaded: LoadedSpec, rendered: Rendered, env_option: str | None = None
    ) -> None:
        spec = loaded.spec
        self.loaded: SpecRef = loaded.ref(env_option)
        self.rendered = rendered.deferred(_Remade(self.loaded, rendered.app, rendered.body_hash))
        self.env_option = env_option
        self.environment: str | None = spec.environment
        self.warnings = loaded.warnings
        usage = spec.usage
        self.active_hours_per_day = usage.active_hours_per_day if usage is not None else None
        self.strategy: Strategy = spec.deploy.strategy
        self.verify_by_default = spec.verify.enabled
        self.verification: Verification | None = None  # None: no HTTP endpoint to check
        if isinstance(spec, GatewaySpec) or spec.surfaces.http is not None:
            self.verification = Verification(spec.verify.timeout, spec.verify.request.prompt)
        self.endpoints = endpoint_use(spec)
        # What observing Modal checks: the secrets (and the key each must hold), the volumes.
        self.secrets = tuple(spec.referenced_secrets())
        self.secret_keys = spec.secret_keys()
        self.volumes = tuple(spec.volumes.values())
        # The flat settings of this app (one app of a gateway: its GPU and its models).
        if isinstance(spec, GatewaySpec):
            self._settings = app_settings(spec, rendered.app)
        else:
            self._settings = settings(spec)

    @property
    def app(self) -> str:
        return self.rendered.app

    @property
    def address(self) -> str:
        return str(Address(self.environment, self.app))

    def settings(self) -> dict[str, Any]:
        """The flat settings of this app, as its record keeps them."""
        return self._settings

    def record(self) -> AppRecord:
        """What the state will hold once this app is applied."""
        return AppRecord(
            app=self.app,
            environment=self.environment,
            spec_path=self.loaded.recorded_path,
            spec_digest=self.loaded.digest,
            source_hash=self.rendered.body_hash,
            settings=self._settings,
            source=_Remade(self.loaded, self.app, self.rendered.body_hash),
            deployment_tag=deployment_tag(self.rendered.body_hash),
            env_option=self.env_option,
            profile_environment=None if self.env_option is not None else profile_environment(),
        )


@dataclass(frozen=True, slots=True)
class _Remade:
    """Makes one app's generated file again from its spec's file, when it is read. The plan's
    hash is the contract: a spec file changed since the plan, or a file that renders
    differently (a template replaced while the run went on), is refused, never deployed in
    place of what was reviewed."""

    spec: SpecRef
    app: str
    body_hash: str

    def __call__(self) -> str:
        again = render_app(self.spec.again(), self.app)
        if again.body_hash != self.body_hash:
            raise ModaliacError(
                f"{self.spec.path}: {self.app}: its generated file changed since the plan was "
                "made; plan again"
            )
        return again.source


def forced(source: str, version: int | None, why: str) -> str:
    """``source`` with a header that makes Modal see a new deployment of the same code.

    Modal skips a deploy whose function definitions it already runs, so a redeploy of
    unchanged code (``--replace``, or putting back an autoscaler changed by hand) changes the
    uploaded file instead: its second header line. The header is outside the body hash, so
    the next plan still sees the code the spec renders, and the line names why and over
    which version, so every forced redeploy differs from the last one."""
    lines = source.split("\n", HEADER_LINES)
    lines[HEADER_LINES - 1] += f" Redeployed {why} over v{version if version else 0}."
    return "\n".join(lines)


def make_plan(
    desired: list[Desired],
    recorded: State,
    delete_scope: list[str] | None = None,
    observed: dict[tuple[str | None, str], Observed] | None = None,
    inputs: Inputs | None = None,
    root: Path | None = None,
) -> Plan:
    """Compare desired apps with the recorded state and, when given, what Modal reports.

    ``delete_scope``: the planned spec directories, relative to the project root (as the
    state records spec paths). Recorded apps that ``deletions`` finds are planned for
    deletion; planning single files (no scope) never deletes: other specs are out of view.
    ``root``: the project root, where a recorded spec that this run did not load is looked
    for; one still there is never deleted, and the plan warns (None: not looked for).
    ``observed``: None plans offline (recorded state only); otherwise drift is planned too
    and the actions converge Modal back to the specs. ``inputs``: the run's ``--env`` and
    ``--replace``, kept on the plan.
    """
    inputs = inputs or Inputs()
    changes = []
    wanted = {item.address: item for item in desired}
    for address, item in sorted(wanted.items()):
        before = recorded.apps.get(address)
        seen = None
        if observed is not None:
            key = (item.environment, item.app)
            seen = observed.get(key, Observed(item.app, item.environment))
        change = _compare(item, before, seen, address in inputs.replace)
        change = with_strategy(change, inputs.strategy or item.strategy)
        changes.append(with_verification(change, item, inputs.verify))
    for record in deletions(desired, recorded, delete_scope, inputs, root):
        changes.append(_delete(record, observed))
    unloaded = deletions(desired, recorded, delete_scope, inputs, root, kept=True)
    return Plan(
        changes=tuple(changes),
        warnings=(*_warnings(desired), *(_out_of_view(record) for record in unloaded)),
        online=observed is not None,
        inputs=inputs,
    )


RECREATE_NOTE = (
    "deploy strategy recreate: the running containers are stopped as the new version is "
    "published (requests fail until a new container is ready)"
)


def with_strategy(change: Change, strategy: Strategy) -> Change:
    """``change`` with the strategy apply deploys it with; a recreate is said in its notes."""
    if change.action not in DEPLOYING:
        return change
    notes = (*change.notes, RECREATE_NOTE) if strategy == "recreate" else change.notes
    return replace(change, strategy=strategy, notes=notes)


NO_ENDPOINT_NOTE = "not verified: the app has no HTTP endpoint to send a request to"


def with_verification(change: Change, item: Desired, asked: bool | None) -> Change:
    """``change`` with the check apply runs once it is deployed: the spec's ``verify``, on or
    off as ``--verify`` / ``--no-verify`` say. An app without an HTTP endpoint cannot be
    verified; asked anyway, the plan says so."""
    wanted = item.verify_by_default if asked is None else asked
    if change.action not in DEPLOYING or not wanted:
        return change
    if item.verification is None:
        return replace(change, notes=(*change.notes, NO_ENDPOINT_NOTE))
    return replace(change, verify=item.verification)


def deletions(
    desired: list[Desired],
    recorded: State,
    scope: list[str] | None,
    run: Inputs | None = None,
    root: Path | None = None,
    *,
    kept: bool = False,
) -> list[AppRecord]:
    """The recorded apps a run over ``scope`` removes, in address order; plan and diff agree.

    A run never removes an app of an environment it does not plan: the environments its
    specs resolve to, and ``run.default_environment`` (where a spec naming none deploys in
    this run: ``--env``, else ``MODAL_ENVIRONMENT`` or the profile's, else the workspace's
    default). A recorded app goes when its spec lived in a planned directory and the run no
    longer yields its address, and
    - its spec is still loaded, in the environment that spec resolves to in this run (the
      app was renamed, or a gateway lost a GPU): records of the same spec in other
      environments belong to the runs of those environments;
    - its spec file is gone from ``root`` (the project root; a file still there that this
      run did not load, in a folder or under a name the scan skips, is out of view, never
      gone), and this run plans its environment (``_planned``): the one the spec named, or
      the one the run's settings choose as they chose it when it was applied.
    A record that ``state mv`` renamed away from an address is never deleted here: apply
    stops the old app once the new address is deployed.

    With ``kept``, instead: the recorded apps kept only because their spec file is still
    there though this run did not load it (the plan says so rather than stopping them).
    """
    return [
        record
        for record, loaded in _gone(desired, recorded, scope, run or Inputs())
        if (not loaded and _still_there(record.spec_path, root)) == kept
    ]


def _gone(
    desired: list[Desired],
    recorded: State,
    scope: list[str] | None,
    run: Inputs,
) -> Iterator[tuple[AppRecord, bool]]:
    """Each recorded app of a planned environment and directory that the run no longer
    yields, and whether its spec was loaded in this run."""
    wanted = {item.address for item in desired}
    resolved: dict[str, set[str | None]] = {}
    for item in desired:
        resolved.setdefault(item.loaded.recorded_path, set()).add(item.environment)
    planned = {item.environment for item in desired} | {run.default_environment}
    for address, record in sorted(recorded.apps.items()):
        if address in wanted or not in_scope(record.spec_path, scope):
            continue
        environments = resolved.get(record.spec_path)
        if environments is not None and record.environment not in environments:
            continue
        if environments is None and not _planned(record, planned, run):
            continue
        yield record, environments is not None


def _out_of_view(record: AppRecord) -> Notice:
    return Notice(
        "out-of-view",
        str(record.address),
        f"its spec {record.spec_path} is still there, but this run did not load it (a hidden "
        "or linked folder, or a name other than *.yaml/*.yml): not planned for deletion",
        "plan that file by name, or move it where the folder's scan finds it",
    )


def _planned(record: AppRecord, planned: set[str | None], run: Inputs) -> bool:
    """Whether this run plans the environment of a record whose spec is gone. One its spec
    named goes in any run without ``--env`` (as it was applied) or one that plans that
    environment; one ``--env`` or Modal's settings chose goes in the run whose settings
    choose it now too, never in another's."""
    if record.environment_named_by_spec:
        return run.env is None or record.environment in planned
    return record.environment == run.default_environment


def _still_there(spec_path: str, root: Path | None) -> bool:
    """Whether anything is at the recorded spec path (a link too; a path that cannot be
    looked at counts as there: a spec is gone only when it is surely gone)."""
    if root is None:
        return False
    try:
        os.lstat(root / spec_path)
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    return True


def _delete(record: AppRecord, observed: dict[tuple[str | None, str], Observed] | None) -> Change:
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
    return Change(
        action="delete",
        address=record.address,
        app=record.app,
        environment=record.environment,
        spec_path=record.spec_path,
        spec_digest=None,
        source_hash_before=record.source_hash,
        source_hash_after=None,
        fields=AllSettings(record.settings, created=False),
        notes=tuple(notes),
        recorded_version=record.deployed_version,
        observed_state=seen_state,
        observed_version=seen_version,
    )


def _compare(
    item: Desired, before: AppRecord | None, seen: Observed | None, replacing: bool
) -> Change:
    after = item.record()
    fields: Sequence[FieldChange] = ()
    notes: list[str] = []
    if before is None:
        action: Action = "create"
        fields = AllSettings(after.settings, created=True)
    else:
        fields = field_changes(before.settings, after.settings)
        if before.source_hash == after.source_hash:
            # Settings a newer modaliac lists that the record lacks, at values that render the
            # very code Modal runs: nothing to deploy, so no change (and no new snapshot).
            fields = tuple(f for f in fields if f.path in before.settings)
        action = "no-op"
        if fields or before.source_hash != after.source_hash:
            action = "update"
            if not fields:
                notes.append("the generated code changed (a new modaliac version or template)")
            action = _snapshot_action(before, after, fields, notes)
            notes.extend(endpoint_notes(fields))
        if before.renamed_from:
            notes.append(
                f"renamed from {before.renamed_from} by `modaliac state mv`: Modal cannot rename "
                f"an app, so apply deploys {item.address} (a new app, with its own URL) and then "
                f"stops {before.renamed_from}"
            )
            action = "update" if action == "no-op" else action
    changed = [f.path for f in fields if f.before is not None or f.after is not None]
    notes.extend(runtime_notes(changed, created=before is None))
    drift: list[Notice] = []
    blockers: list[Notice] = []
    if seen is not None:
        action = observe(item.address, after, before, seen, action, notes, drift, blockers)
    if before is not None and not before.renamed_from:
        blockers.extend(_fixed_settings(item.address, before, after))
    resets = autoscaler_resets(item.address, after, before, seen, drift)
    if resets:
        fields = (*fields, *resets)
        if action == "no-op":
            notes.append(
                "apply redeploys to put back the autoscaler settings changed by hand (a new "
                "deployment resets them); `apply --refresh-only` records them instead"
            )
            action = _snapshot_action(before, after, resets, notes, metadata=False)
    if replacing and action in ("no-op", "update"):
        notes.append("--replace: Modal redeploys the app and takes a new snapshot")
        action = "replace"
    if (replacing or resets) and _runs_this_file(before, after, seen):
        assert before is not None  # a record to run is one Modal runs
        why = "by --replace" if replacing else "to reset the autoscaler"
        after = replace(after, source=forced(after.source, before.deployed_version, why))
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
        renamed_from=before.renamed_from if before else None,
    )


def _fixed_settings(address: str, before: AppRecord, after: AppRecord) -> list[Notice]:
    """Settings Modal takes at an app's first deploy only: changing them needs a new app."""
    fixed = routing_region_change(before.settings, after.settings)
    if fixed is None:
        return []
    fix = (
        "keep the recorded routing region, or give the app a new name (`modaliac state mv "
        "OLD NEW` and app: NEW in the spec: apply deploys NEW, then stops OLD)"
    )
    return [Notice("routing-region-fixed", address, fixed, fix)]


def endpoint_notes(fields: tuple[FieldChange, ...]) -> list[str]:
    """What a change of the HTTP endpoint's primitive or proxy auth means for its callers."""
    notes = []
    for item in fields:
        if item.path == "surfaces.http.primitive" and item.before is not None:
            server = item.after == "server"
            kind = "Modal's @app.server" if server else "a Modal class"
            queue = ", and expect 503 rather than a queue while no container is ready"
            notes.append(
                f"the HTTP endpoint becomes {kind}: a new function with its own URL (`modaliac "
                f"url` shows it); point clients at it{queue if server else ''}"
            )
        if item.path == "surfaces.http.proxy_auth" and item.after is True:
            notes.append(
                "Modal's proxy auth goes on: callers without Modal-Key and Modal-Secret "
                "headers (a workspace proxy auth token) get 401 from Modal"
            )
    return notes


def _runs_this_file(before: AppRecord | None, after: AppRecord, seen: Observed | None) -> bool:
    """Whether Modal runs the very file apply would upload, so that it would skip the deploy
    as unchanged: the recorded source is this one and Modal runs the recorded version (as far
    as an offline plan knows). A rename deploys a new app, never skipped."""
    if before is None or before.renamed_from or before.source != after.source:
        return False
    if seen is None:
        return True
    current = seen.current
    return (
        seen.state == "deployed"
        and current is not None
        and (current.version == before.deployed_version)
    )


def _snapshot_action(
    before: AppRecord | None,
    after: AppRecord,
    fields: tuple[FieldChange, ...],
    notes: list[str],
    *,
    metadata: bool = True,
) -> Action:
    """``replace`` when a deploy takes a new memory snapshot (more than labels change on an
    app with snapshots), else ``update``."""
    previous = before.settings.get("snapshot") if before else None
    snapshots = {previous, after.settings.get("snapshot")} - {"none", None}
    metadata_only = (
        metadata and fields and all(f.path.startswith(_METADATA_PREFIXES) for f in fields)
    )
    if snapshots and not metadata_only:
        notes.append(
            "a new memory snapshot is taken: the first cold starts after deploy load the model"
        )
        return "replace"
    return "update"


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


def _warnings(desired: list[Desired]) -> list[Notice]:
    found: list[Notice] = []
    uses: dict[str, EndpointUse | None] = {}  # by spec: a gateway's apps count once
    for item in desired:
        if item.loaded.path in uses:
            continue
        uses[item.loaded.path] = item.endpoints
        found.extend(
            Notice(warning.code or "warning", item.address, str(warning), warning.fix)
            for warning in item.warnings
        )
    return found + [
        Notice("MDL009", None, text) for text in endpoints_warnings(list(uses.values()))
    ]
