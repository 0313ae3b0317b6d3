"""The tags apply sets on every app it deploys (kept in ``plan/tags.py``, where drift compares
them with what Modal reports)."""

from __future__ import annotations

from ..plan.tags import APP_TAG, MANAGED_BY, MAX_TAG_VALUE, app_tag, app_tags

__all__ = ["APP_TAG", "MANAGED_BY", "MAX_TAG_VALUE", "app_tag", "app_tags"]
