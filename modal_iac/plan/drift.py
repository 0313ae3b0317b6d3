"""Drift: what Modal reports against what modaliac recorded, folded into a planned change.

A deploy outside modaliac, a rollback, a stopped app, a missing secret (or one without the key
the app reads) and an autoscaler setting changed by hand each become a notice (drift or a
blocker) and, where apply can undo them, the action or the field changes that do.
"""

from __future__ import annotations

from ..spec.fields import HF_TOKEN_KEY
from ..state.records import AppRecord
from ..tokens import shown
from .changes import Action, FieldChange, Notice
from .observed import Observed, Override
from .tags import app_tags

# Who reads a key modaliac knows, for a blocker that names a wrong spelling of it.
_READER = {HF_TOKEN_KEY: "huggingface_hub"}


def _without_key(address: str, name: str, key: str, misspelt: str | None, env_flag: str) -> Notice:
    """The blocker for a secret that exists but lacks the key the app reads from it."""
    what = "the Hugging Face token" if key == HF_TOKEN_KEY else "the API key"
    held = ""
    if misspelt is not None:
        held = f" (it holds {misspelt}, which {_READER.get(key, 'nothing')} ignores)"
    return Notice(
        "secret-missing-key",
        address,
        f"secret {name!r} exists on Modal but holds no {key}{held}, so the deploy would fail",
        f"put {what} in it as {key} (the Modal dashboard, or `modal secret create --force "
        f"{name} {key}=...{env_flag}` with every key it should hold)",
    )


def observe(
    address: str,
    after: AppRecord,
    before: AppRecord | None,
    seen: Observed,
    action: Action,
    notes: list[str],
    drift: list[Notice],
    blockers: list[Notice],
) -> Action:
    """Fold what Modal reports into the action; fill notes, drift and blockers in place."""
    env_flag = f" --env {after.environment}" if after.environment else ""
    for name in seen.missing_secrets:
        key = seen.secret_keys.get(name) or "KEY"
        blockers.append(
            Notice(
                "missing-secret",
                address,
                f"secret {name!r} does not exist on Modal",
                f"create it with `modal secret create {name} {key}=...{env_flag}` (modaliac "
                "never handles secret values)",
            )
        )
    for name in seen.secrets_without_key:
        key = seen.secret_keys.get(name, "KEY")
        blockers.append(_without_key(address, name, key, seen.misspelt_keys.get(name), env_flag))
    notes.extend(
        f"volume {name!r} does not exist yet and will be created" for name in seen.missing_volumes
    )
    current = seen.current
    ours = current is not None and current.tag == after.deployment_tag
    if before is None or before.renamed_from:
        if seen.state == "deployed" and ours and before is None:
            notes.append("Modal already runs exactly this version: apply only records it")
            return "no-op"
        if seen.state == "deployed" and not ours:
            blockers.append(
                Notice(
                    "unmanaged-app",
                    address,
                    f"an app named {after.app!r} is already deployed on Modal and modaliac does "
                    "not manage it",
                    f"adopt it with `modaliac import {address}`, or rename the spec's app",
                )
            )
        return action
    if seen.state != "deployed":
        drift.append(
            Notice(
                f"app-{seen.state}" if seen.state in ("stopped", "missing") else "app-state",
                address,
                f"the app is {seen.state} on Modal (modaliac recorded v{before.deployed_version})",
                "apply deploys it again",
            )
        )
        return "create" if action == "no-op" else action
    if current is None:
        return action
    same_tag = not before.deployment_tag or current.tag == before.deployment_tag
    if current.version == before.deployed_version and same_tag:
        return _tags_drift(address, before, seen, action, notes, drift)
    if ours and _unrecorded_apply(before, after, seen):
        # Modal already runs the code the spec renders now: an apply deployed it and was
        # stopped before it could record it. Recording it is all that is left to do.
        notes.append("Modal already runs exactly this version: apply only records it")
        return "no-op"
    who = current.deployed_by or "someone"
    if current.deployment_type == "rollback":
        drift.append(
            Notice(
                "rollback",
                address,
                f"rolled back by {who} to the code of v{current.rollback_version} (now "
                f"v{current.version}); modaliac recorded v{before.deployed_version}",
                "apply deploys the spec again",
            )
        )
    else:
        drift.append(
            Notice(
                "foreign-deploy",
                address,
                f"v{current.version} was deployed outside modaliac by {who} (tag "
                f"{current.tag or 'none'!r}); modaliac recorded v{before.deployed_version}",
                "apply deploys the spec again",
            )
        )
    if action == "no-op":
        notes.append("apply deploys the spec again to undo the drift")
        return "update"
    return action


def _tags_drift(
    address: str,
    before: AppRecord,
    seen: Observed,
    action: Action,
    notes: list[str],
    drift: list[Notice],
) -> Action:
    """Modal runs the recorded version: its app tags, if modaliac set them, are drift when
    changed by hand (a redeploy sets them again)."""
    if not before.source_hash:  # recorded, not deployed, by modaliac: it set no tags
        return action
    wanted = app_tags(before)
    changed = sorted(
        k for k in wanted.keys() | seen.tags.keys() if wanted.get(k) != seen.tags.get(k)
    )
    if not changed:
        return action
    keys = ", ".join(shown(k, 40) for k in changed[:5])
    drift.append(
        Notice(
            "app-tags",
            address,
            f"the app's tags were changed outside modaliac ({keys})",
            "apply deploys the spec again, which sets them back",
        )
    )
    if action == "no-op":
        notes.append("apply deploys the spec again to undo the drift")
        return "update"
    return action


def _unrecorded_apply(before: AppRecord, after: AppRecord, seen: Observed) -> bool:
    """Whether the one deploy Modal made since the recorded version can only be an apply that
    was stopped before recording it: a tag is anyone's to reuse, so a deploy under the tag
    modaliac recorded (what a hand ``modal deploy --tag`` of that tag makes) is drift, and so
    is one that is not the only deploy since the recorded version."""
    recorded = before.deployed_version or 0
    since = [d for d in seen.history if d.version > recorded]
    return (
        after.deployment_tag != before.deployment_tag
        and len(since) == 1
        and since[0].deployment_type == "standard"
    )


def autoscaler_resets(
    address: str,
    after: AppRecord,
    before: AppRecord | None,
    seen: Observed | None,
    drift: list[Notice],
) -> tuple[FieldChange, ...]:
    """Autoscaler settings Modal runs with a hand-made value, as the changes a redeploy makes
    (``scaling.min_containers[Server]: 2 -> 0``). Online they are what Modal reports (drift,
    unless ``apply --refresh-only`` recorded them); offline, what the state recorded."""
    if before is None:
        return ()
    if seen is not None:
        if seen.state != "deployed":
            return ()
        found = [o for o in seen.overrides if o.value != o.static_value]
    else:
        found = [
            Override(function, setting, value, value, "")
            for function, values in sorted(before.overrides.items())
            for setting, value in sorted(values.items())
        ]
    changes = []
    for override in found:
        pool = override.function.removesuffix(".*")
        spec_value = after.settings.get(f"scaling.{override.setting}", override.static_value)
        recorded = before.overrides.get(override.function, {}).get(override.setting)
        if seen is not None and recorded != override.value:
            drift.append(
                Notice(
                    "autoscaler-override",
                    address,
                    f"{pool}: {override.setting} was changed by hand to {override.value} "
                    f"(deployed: {override.static_value}) by {override.by or 'someone'}",
                    "apply puts the spec's value back; to keep it, put it in the spec, or "
                    "record it with `apply --refresh-only`",
                )
            )
        changes.append(
            FieldChange(f"scaling.{override.setting}[{pool}]", override.value, spec_value)
        )
    return tuple(changes)
