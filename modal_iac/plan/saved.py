"""A saved plan: read back, and checked to be exactly what was reviewed before anything runs.

``plan -o PLAN.json`` saves a plan; ``apply PLAN.json`` carries it out. The file holds the
generated code apply deploys, so it is a sensitive artifact (Terraform's rule): whoever can
edit it between review and apply could deploy anything. apply therefore trusts nothing in it:

1. ``read_plan``: a regular file of sane size, JSON, a format this modaliac reads, every
   field of the right type; one line naming the field otherwise.
2. ``verify``: made by this modaliac version; each address is its app and environment; each
   record's source hashes to the hash the plan states and carries the deployment tag of that
   hash; the spec file each record came from still has the digest the plan recorded; and
   re-rendering that spec gives the same settings and the same code.
3. Then ``operate`` makes the plan again from the inputs it records (targets, ``--env``,
   ``--replace``), against the state and Modal as they are now, and applies only when the
   result is the plan that was reviewed.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import ModaliacError
from ..files import joined, parse_json, read_bytes, read_text
from ..render.app import HEADER_LINES
from ..spec.address import Address, AddressError, Project, profile_environment
from ..state.records import AppRecord
from ..tokens import shown
from .changes import (
    ACTIONS,
    PLAN_FORMAT_VERSION,
    STRATEGIES,
    Change,
    FieldChange,
    Inputs,
    Notice,
    Plan,
    Strategy,
    Verification,
)
from .changes import deployment_tag as tag_of

if TYPE_CHECKING:
    from ..review.cost import Prices
    from .changes import Refresh

MAX_PLAN_BYTES = 64 * 2**20
READABLE_FORMATS = (1, 2)
DEPLOYING = ("create", "update", "replace")


class PlanFileError(ModaliacError):
    """A saved plan that cannot be applied as it is."""


def read_plan(path: str) -> Plan:
    """The plan saved at ``path``; anything but a regular file is refused unread."""
    text = read_text(Path(path), path, "plan", MAX_PLAN_BYTES, joined(PlanFileError))
    if text is None:
        raise PlanFileError(f"{path}: no such plan file")
    return load_plan(text, path, applying=True)


def load_plan(text: str, where: str = "the plan", *, applying: bool = False) -> Plan:
    """A plan saved with ``--format json`` (format_version 1 or 2; ``applying``: only the
    format this modaliac applies, refused before the rest is read)."""
    document = parse_json(text, where, "plan", joined(PlanFileError))
    reader = _Reader(where)
    root = reader.mapping(document, "")
    version = reader.get(root, "format_version", int)
    if version not in READABLE_FORMATS:
        raise PlanFileError(
            f"{where}: plan format_version {version!r} is not one this modaliac reads "
            f"({', '.join(map(str, READABLE_FORMATS))}); make the plan again with this modaliac"
        )
    if applying and version != PLAN_FORMAT_VERSION:
        raise PlanFileError(
            f"{where}: plan format {version} is not the format {PLAN_FORMAT_VERSION} this "
            "modaliac applies; make the plan again"
        )
    changes = tuple(
        reader.change(item, f"changes[{index}]", version)
        for index, item in enumerate(reader.get(root, "changes", list))
    )
    warnings = tuple(
        reader.notice(item, f"warnings[{index}]", version, None)
        for index, item in enumerate(reader.get(root, "warnings", list))
    )
    inputs = Inputs()
    if version >= 2:
        raw = reader.mapping(reader.get(root, "inputs", dict), "inputs")
        inputs = Inputs(
            targets=tuple(reader.strings(reader.get(raw, "targets", list), "inputs.targets")),
            env=reader.get(raw, "env", (str, type(None))),
            profile_environment=reader.get(raw, "profile_environment", (str, type(None)))
            if "profile_environment" in raw
            else None,
            replace=tuple(reader.strings(reader.get(raw, "replace", list), "inputs.replace")),
            refresh_only=reader.get(raw, "refresh_only", bool),
            strategy=reader.strategy(raw.get("strategy"), "inputs.strategy"),
            verify=reader.get(raw, "verify", (bool, type(None))) if "verify" in raw else None,
        )
    refreshes: tuple[Refresh, ...] = ()
    if version >= 2:
        refreshes = tuple(
            reader.refresh(item, f"refresh[{index}]")
            for index, item in enumerate(reader.get(root, "refresh", list))
        )
    plan = Plan(
        changes=changes,
        warnings=warnings,
        online=reader.get(root, "online", bool),
        workspace=reader.get(root, "workspace", (str, type(None))) if "workspace" in root else None,
        inputs=inputs,
        modaliac_version=reader.get(root, "modaliac_version", str),
        format_version=version,
        refreshes=refreshes,
        prices=_prices(root, reader),
    )
    if applying:
        _check_summary(root, plan, where)
    return plan


def _check_summary(root: dict[str, Any], plan: Plan, where: str) -> None:
    """What a plan says of itself (status, summary, has_changes, blockers) is what a reviewer
    reads first, and follows from its changes: a file where the two disagree was edited (a
    blocked plan marked ok, a blocker cut from the list) and is refused."""
    said = {
        "status": plan.status,
        "summary": dict(plan.counts),
        "has_changes": plan.has_changes,
        "blockers": [asdict(b) for b in plan.blockers],
    }
    for key, value in said.items():
        if root.get(key) != value:
            raise PlanFileError(
                f"{where}: {key}: not what the plan's changes say; the plan file was edited "
                "after it was made: make the plan again"
            )


def _prices(root: dict[str, Any], reader: _Reader) -> Prices | None:
    """The prices the plan was reviewed with (``cost.prices``), None in a plan without them.
    They price what the saved plan shows; apply never compares them."""
    from ..review.cost import prices_from_json

    cost = root.get("cost")
    if not isinstance(cost, dict) or "prices" not in cost:
        return None
    return prices_from_json(cost["prices"], reader.fail)


class _Reader:
    """Typed access to a plan document: every wrong field is one line naming it."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, at: str, message: str) -> PlanFileError:
        return PlanFileError(f"{self.where}: {at}: {message}; make the plan again")

    def mapping(self, value: Any, at: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(at or "the document", "expected a JSON object")
        return value

    def get(self, mapping: dict[str, Any], key: str, kind: Any, at: str = "") -> Any:
        where = f"{at}.{key}" if at else key
        if key not in mapping:
            raise self.fail(where, "missing")
        value = mapping[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(where, "has the wrong type (bool)")
        if not isinstance(value, kinds):
            raise self.fail(where, f"has the wrong type ({type(value).__name__})")
        return value

    def strings(self, values: list[Any], at: str) -> list[str]:
        if not all(isinstance(v, str) for v in values):
            raise self.fail(at, "expected a list of strings")
        return values

    def notice(self, raw: Any, at: str, version: int, address: str | None) -> Notice:
        if version == 1:  # version 1 kept warnings, drift and blockers as bare strings
            if not isinstance(raw, str):
                raise self.fail(at, "expected a string")
            return Notice("", address, raw)
        item = self.mapping(raw, at)
        return Notice(
            code=self.get(item, "code", str, at),
            address=self.get(item, "address", (str, type(None)), at),
            message=self.get(item, "message", str, at),
            fix=self.get(item, "fix", str, at),
        )

    def change(self, raw: Any, at: str, version: int) -> Change:
        item = self.mapping(raw, at)
        action = self.get(item, "action", str, at)
        if action not in ACTIONS:
            raise self.fail(
                f"{at}.action", f"{shown(action, 20)} is not one of {', '.join(ACTIONS)}"
            )
        address = self.get(item, "address", str, at)
        spec = self.mapping(self.get(item, "spec", dict, at), f"{at}.spec")
        hashes = self.mapping(self.get(item, "source_sha256", dict, at), f"{at}.source_sha256")
        recorded = self.mapping(self.get(item, "recorded", dict, at), f"{at}.recorded")
        observed = self.mapping(self.get(item, "observed", dict, at), f"{at}.observed")
        maybe_int = (int, type(None))
        maybe_str = (str, type(None))
        fields = []
        for index, raw_field in enumerate(self.get(item, "fields", list, at)):
            one = self.mapping(raw_field, f"{at}.fields[{index}]")
            path = self.get(one, "path", str, f"{at}.fields[{index}]")
            fields.append(FieldChange(path, one.get("before"), one.get("after")))
        record = self.get(item, "record", (dict, type(None)), at)
        usage = item.get("usage") or {}
        hours = usage.get("active_hours_per_day") if isinstance(usage, dict) else None
        if hours is not None and (isinstance(hours, bool) or not isinstance(hours, int | float)):
            raise self.fail(f"{at}.usage.active_hours_per_day", "expected a number")
        return Change(
            action=action,
            address=address,
            app=self.get(item, "app", str, at),
            environment=self.get(item, "environment", maybe_str, at),
            spec_path=self.get(spec, "path", str, f"{at}.spec"),
            spec_digest=self.get(spec, "sha256", maybe_str, f"{at}.spec"),
            source_hash_before=self.get(hashes, "before", maybe_str, f"{at}.source_sha256"),
            source_hash_after=self.get(hashes, "after", maybe_str, f"{at}.source_sha256"),
            fields=tuple(fields),
            notes=tuple(self.strings(self.get(item, "notes", list, at), f"{at}.notes")),
            drift=tuple(
                self.notice(d, f"{at}.drift[{i}]", version, address)
                for i, d in enumerate(self.get(item, "drift", list, at))
            ),
            blockers=tuple(
                self.notice(b, f"{at}.blockers[{i}]", version, address)
                for i, b in enumerate(self.get(item, "blockers", list, at))
            ),
            recorded_version=self.get(recorded, "version", maybe_int, f"{at}.recorded"),
            observed_version=self.get(observed, "version", maybe_int, f"{at}.observed"),
            observed_state=self.get(observed, "state", maybe_str, f"{at}.observed"),
            record=self.record(record, f"{at}.record") if record is not None else None,
            active_hours_per_day=hours,
            renamed_from=item.get("renamed_from") if version >= 2 else None,
            strategy=self.strategy(item.get("strategy"), f"{at}.strategy"),
            verify=self.verification(item.get("verify"), f"{at}.verify"),
        )

    def verification(self, value: Any, at: str) -> Verification | None:
        """The check apply runs after deploying the change; None where the plan names none
        (older plans, changes apply does not verify)."""
        if value is None:
            return None
        item = self.mapping(value, at)
        timeout = self.get(item, "timeout", int, at)
        if timeout < 1:
            raise self.fail(f"{at}.timeout", "expected a number of seconds, at least 1")
        prompt = self.get(item, "prompt", (str, type(None)), at) if "prompt" in item else None
        return Verification(timeout=timeout, prompt=prompt)

    def strategy(self, value: Any, at: str) -> Strategy | None:
        """A deployment strategy, or None where the plan names none (older plans, changes
        that deploy nothing); planning again checks it is the one this run would use."""
        if value is None:
            return None
        if value not in STRATEGIES:
            raise self.fail(at, f"{shown(str(value), 20)} is not {' or '.join(STRATEGIES)}")
        return value  # type: ignore[no-any-return]

    def refresh(self, raw: Any, at: str) -> Refresh:
        from .changes import Refresh

        item = self.mapping(raw, at)
        action = self.get(item, "action", str, at)
        if action not in ("record", "forget"):
            raise self.fail(f"{at}.action", f"{shown(action, 20)} is not record or forget")
        after = self.get(item, "record", (dict, type(None)), at)
        return Refresh(
            address=self.get(item, "address", str, at),
            action="record" if action == "record" else "forget",
            before=self.record(self.get(item, "before", dict, at), f"{at}.before"),
            after=self.record(after, f"{at}.record") if after is not None else None,
            reasons=tuple(self.strings(self.get(item, "reasons", list, at), f"{at}.reasons")),
        )

    def record(self, raw: dict[str, Any], at: str) -> AppRecord:
        from ..errors import StateError
        from ..state.records import parse_record

        try:
            return parse_record(raw, at)
        except StateError as exc:
            raise PlanFileError(f"{self.where}: {exc}; make the plan again") from None


# -- is it what was reviewed? -----------------------------------------------------------------


def _check_environment(plan: Plan, where: str) -> None:
    """A plan made without ``--env`` placed specs that name no environment where Modal's
    settings said (``MODAL_ENVIRONMENT``, else the profile's): applying it under settings that
    say another would re-plan other apps, so it is refused, naming both."""
    if plan.inputs.env is not None:
        return
    now = profile_environment()
    if now != plan.inputs.profile_environment:
        raise PlanFileError(
            f"{where}: the plan was made for {_environment(plan.inputs.profile_environment)} "
            f"(MODAL_ENVIRONMENT or the Modal profile) and this run's is {_environment(now)}; "
            "apply it with the settings it was made with, or make the plan again"
        )


def _environment(name: str | None) -> str:
    return f"environment {name}" if name else "the workspace's default environment"


def verify(plan: Plan, where: str, project: Project) -> None:
    """Refuse a saved plan that this modaliac cannot apply or that is not what was reviewed:
    checked on the plan and the spec files alone, before Modal or any generated code."""
    if plan.format_version != PLAN_FORMAT_VERSION:
        raise PlanFileError(
            f"{where}: plan format {plan.format_version} is not the format "
            f"{PLAN_FORMAT_VERSION} this modaliac applies; make the plan again"
        )
    if plan.modaliac_version != __version__:
        raise PlanFileError(
            f"{where}: made by modaliac {plan.modaliac_version}; this is modaliac {__version__}, "
            "which applies only the plans it makes (they render the same code): make the plan "
            "again"
        )
    if not plan.online:
        raise PlanFileError(
            f"{where}: this plan was made without consulting Modal; make it again with Modal "
            "credentials (modaliac plan -o FILE.json)"
        )
    _check_environment(plan, where)
    for target in plan.inputs.targets:
        inside = PurePosixPath(target)
        if not target or inside.is_absolute() or ".." in inside.parts:
            raise PlanFileError(
                f"{where}: inputs.targets: {shown(target)} is not a path inside the project; a "
                "saved plan applies specs of its own project only (was the file edited?)"
            )
    seen: set[str] = set()
    for change in plan.changes:
        _check_address(change, where)
        if change.record is not None and change.record.env_option != plan.inputs.env:
            raise PlanFileError(
                f"{where}: {change.address}: its record was planned with --env "
                f"{change.record.env_option} and the plan's inputs say --env {plan.inputs.env}; "
                "the plan file was edited after it was made: make the plan again"
            )
        if change.address in seen:
            raise PlanFileError(f"{where}: {change.address} appears twice")
        seen.add(change.address)
        if change.action in DEPLOYING and change.record is None:
            raise PlanFileError(f"{where}: {change.address}: a {change.action} without a record")
        if change.action == "delete" and change.record is not None:
            raise PlanFileError(f"{where}: {change.address}: a delete with a record to write")
        if change.record is not None:
            _check_record(change, change.record, where, project)


def _check_address(change: Change, where: str) -> None:
    try:
        address = Address.parse(change.address)
    except AddressError as exc:
        raise PlanFileError(f"{where}: {exc}") from None
    if (address.environment, address.app) != (change.environment, change.app):
        raise PlanFileError(
            f"{where}: {change.address}: the change names app {change.app!r} in environment "
            f"{change.environment!r}; the plan file was edited after it was made"
        )


def _check_record(change: Change, record: AppRecord, where: str, project: Project) -> None:
    edited = "the plan file was edited after it was made: make the plan again"
    at = f"{where}: {change.address}"
    if record.address != change.address:
        raise PlanFileError(f"{at}: its record is for {record.address}; {edited}")
    body = record.source.split("\n", HEADER_LINES)[-1] if record.source.count("\n") >= 2 else ""
    digest = hashlib.sha256(body.encode()).hexdigest()
    if digest != record.source_hash or record.source_hash != change.source_hash_after:
        raise PlanFileError(
            f"{at}: the generated source does not hash to the plan's source_sha256.after; " + edited
        )
    if record.deployment_tag != tag_of(record.source_hash):
        raise PlanFileError(f"{at}: the deployment tag is not that of its source; {edited}")
    if (record.spec_path, record.spec_digest) != (change.spec_path, change.spec_digest):
        raise PlanFileError(f"{at}: the record names another spec than the change; {edited}")
    # Read once, not checked then read: a pipe swapped in meanwhile is refused, never waited on.
    from ..loading.parse import MAX_SPEC_BYTES

    shown_spec = project.shown(record.spec_path)
    fail = joined(lambda line: PlanFileError(f"{at}: {line}; make the plan again"))
    raw = read_bytes(
        project.resolve(record.spec_path), shown_spec, "spec file", MAX_SPEC_BYTES, fail
    )
    if raw is None:
        raise PlanFileError(f"{at}: its spec {shown_spec} is gone; make the plan again")
    if hashlib.sha256(raw).hexdigest() != record.spec_digest:
        raise PlanFileError(
            f"{at}: {shown_spec} changed since the plan was made; make the plan again and review it"
        )
    rendered = _rendered(record, project, change.record.env_option if change.record else None)
    if rendered is None:
        raise PlanFileError(f"{at}: its spec no longer yields this app; make the plan again")
    settings, source = rendered
    if settings != record.settings:
        raise PlanFileError(f"{at}: the settings are not what its spec renders; {edited}")
    if _comparable(source) != _comparable(record.source):
        raise PlanFileError(f"{at}: the generated code is not what its spec renders; {edited}")


def _rendered(
    record: AppRecord, project: Project, env: str | None
) -> tuple[dict[str, Any], str] | None:
    """(settings, source) of the app ``record`` names, rendered from its spec now."""
    from ..loading.load import load_spec
    from ..render.app import render_all
    from .plan import Desired

    loaded = load_spec(project.resolve(record.spec_path), env, project=project)
    for rendered in render_all(loaded):
        desired = Desired(loaded, rendered, env)
        if desired.address == record.address:
            return desired.settings(), rendered.source
    return None


def _comparable(source: str) -> str:
    """A generated file without the note a forced redeploy adds to its second line
    (``plan.forced``): the re-planning in apply checks that note."""
    lines = source.split("\n", HEADER_LINES)
    if len(lines) > 1:
        lines[1] = lines[1].split(" Redeployed ", 1)[0]
    return "\n".join(lines)
