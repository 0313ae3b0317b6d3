"""Refresh-only plans: record what Modal runs into the state, deploying nothing.

Terraform's ``-refresh-only``: when a change made on Modal by hand (an autoscaler setting, a
hotfix deploy, a stopped app) should be kept for now, ``apply --refresh-only`` makes the state
say what Modal runs, so the next plan no longer reports it as drift; the plan then shows the
spec's value against the recorded one as an ordinary change, until the spec says the same.
``plan --refresh-only`` shows what it would record. A pure function, like ``make_plan``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..state.records import AppRecord, State
from .changes import Refresh, deployment_tag
from .observed import Observed

if TYPE_CHECKING:
    from .plan import Desired


def refreshes(
    addresses: list[str],
    desired: list[Desired],
    recorded: State,
    observed: dict[tuple[str | None, str], Observed],
) -> list[Refresh]:
    """What the state would record for each recorded address among ``addresses``."""
    wanted = {item.address: item for item in desired}
    found = []
    for address in sorted(set(addresses)):
        before = recorded.apps.get(address)
        if before is None:
            continue
        seen = observed.get((before.environment, before.app))
        item = wanted.get(address)
        refreshed = _refresh(before, seen, item.record() if item else None)
        if refreshed is not None:
            found.append(refreshed)
    return found


def _refresh(before: AppRecord, seen: Observed | None, desired: AppRecord | None) -> Refresh | None:
    address = before.address
    if seen is None or seen.state != "deployed":
        state = seen.state if seen else "missing"
        reason = f"the app is {state} on Modal: the state forgets it (the next plan creates it)"
        return Refresh(address, "forget", before, None, (reason,))
    current = seen.current
    if current is None:
        return None
    overrides: dict[str, dict[str, int]] = {}
    reasons = []
    for o in seen.overrides:
        if o.value == o.static_value:
            continue
        overrides.setdefault(o.function, {})[o.setting] = o.value
        if before.overrides.get(o.function, {}).get(o.setting) != o.value:
            pool = o.function.removesuffix(".*")
            reasons.append(
                f"{pool}: {o.setting} is {o.value} on Modal, changed by hand by "
                f"{o.by or 'someone'} (deployed: {o.static_value})"
            )
    for function, settings in sorted(before.overrides.items()):
        for setting in sorted(settings):
            if setting not in overrides.get(function, {}):
                pool = function.removesuffix(".*")
                reasons.append(f"{pool}: {setting} is no longer changed by hand on Modal")
    after = replace(before, overrides=overrides)
    if (current.version, current.tag) != (before.deployed_version, before.deployment_tag):
        who = current.deployed_by or "someone"
        if current.tag == before.deployment_tag:
            reasons.append(f"Modal runs v{current.version}, of the recorded code")
            after = replace(after, deployed_version=current.version)
        elif desired is not None and current.tag == deployment_tag(desired.source_hash):
            reasons.append(f"Modal runs v{current.version}, of the code the spec renders now")
            after = replace(desired, deployed_version=current.version, overrides=overrides)
        else:
            kind = "rolled back" if current.deployment_type == "rollback" else "deployed"
            reasons.append(
                f"v{current.version} was {kind} outside modaliac by {who} (tag "
                f"{current.tag or 'none'!r}): the state records that Modal runs code modaliac "
                "did not render"
            )
            after = replace(
                after,
                deployed_version=current.version,
                deployment_tag=current.tag,
                source="",
                source_hash="",
                settings={},
            )
    if after == before:
        return None
    return Refresh(address, "record", before, after, tuple(reasons))
