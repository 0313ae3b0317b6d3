"""The tags apply sets on every app it deploys: the spec's labels, and what marks the app as
modaliac's (owner, code and spec hashes, the app's name for Modal's billing report)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..spec.fields import MANAGED_BY as MANAGED_BY  # what the commands read the tag by
from ..spec.fields import MODALIAC_TAG_PREFIX

if TYPE_CHECKING:
    from ..state.records import AppRecord

APP_TAG = MODALIAC_TAG_PREFIX + "app"  # the app's name: Modal's billing report groups costs by it
MAX_TAG_VALUE = 63


def app_tags(record: AppRecord) -> dict[str, str]:
    """The spec's labels plus what identifies modaliac's deploy: owner, code and spec hashes."""
    labels = record.settings.get("labels") or {}
    return {
        **{str(k): str(v) for k, v in labels.items()},
        MANAGED_BY: "modaliac",
        MODALIAC_TAG_PREFIX + "source": record.source_hash[:12],
        MODALIAC_TAG_PREFIX + "spec": record.spec_digest[:12],
        APP_TAG: app_tag(record.app),
    }


def app_tag(app: str) -> str:
    """The ``modaliac-app`` tag of an app: its name (the environment is the billing row's
    own), shortened with a hash when it is longer than a tag value may be."""
    if len(app) <= MAX_TAG_VALUE:
        return app
    import hashlib

    return app[:50] + "-" + hashlib.sha256(app.encode()).hexdigest()[:12]
