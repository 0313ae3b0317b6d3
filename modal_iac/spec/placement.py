"""Where containers run and how they are retried: Modal's region and cloud names, the price
multiplier a region adds, and what a plan says when these runtime settings change.

Plain data and functions (no pydantic, no ``modal``): the spec models validate with the tables,
``cost.py`` prices with the multipliers, ``plan.py`` adds the notes.

Region codes are those of Modal's region guide (https://modal.com/docs/guide/region-selection,
"Container region options"): broad regions and the narrow ones inside them. A workspace that
Modal gives finer regions may also name a cloud's own region (``us-east-1``, ``us-east4``,
``us-ashburn-1``); modaliac accepts those by their shape and prices them as narrow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

BROAD_REGIONS = ("us", "eu", "ap", "uk", "ca", "me", "sa", "af", "mx")
NARROW_REGIONS = (
    "us-east",
    "us-central",
    "us-south",
    "us-west",
    "eu-west",
    "eu-north",
    "eu-south",
    "ap-northeast",
    "ap-southeast",
    "ap-south",
    "ap-melbourne",
    "jp",
    "au",
)
# A cloud provider's own region: us-east-1 (AWS), us-east4 (GCP), us-ashburn-1 (OCI).
CLOUD_REGION = re.compile(r"^[a-z]{2,12}(-[a-z]{2,12}){1,2}-?[0-9]{1,2}$")
# modal.App.function(cloud=...): "aws, gcp, oci, auto" (modal/app.py, CloudProvider enum).
CLOUDS = ("aws", "gcp", "oci", "auto")
# Modal's ephemeral_disk= is in MiB; its guide allows up to 3 TiB, and bills a disk request
# as a memory request of at least 1/20 of it (https://modal.com/docs/guide/resources).
MAX_EPHEMERAL_DISK_MIB = 3 * 1024 * 1024
DISK_PER_MEMORY = 20
# modal.Retries bounds (modal/retries.py).
RETRY_DELAY_RANGE = (0, 60)
RETRY_MAX_DELAY_RANGE = (1, 60)
RETRY_BACKOFF_RANGE = (1.0, 10.0)
MAX_RETRIES = 10


def region_kind(code: str) -> str | None:
    """``broad``, ``narrow`` (a cloud's own region too), or None for a name Modal lacks."""
    if code in BROAD_REGIONS:
        return "broad"
    if code in NARROW_REGIONS or CLOUD_REGION.match(code):
        return "narrow"
    return None


def region_multiplier(regions: Iterable[str], multipliers: dict[str, float]) -> float | None:
    """The multiplier Modal applies to every rate of a function pinned to these regions: 1
    without a region; with several, the smallest (Modal's rule). None when a kind of region
    has no multiplier in the price table."""
    kinds = {region_kind(code) or "narrow" for code in regions}
    if not kinds:
        return 1.0
    found = [multipliers.get(kind) for kind in sorted(kinds)]
    if None in found:
        return None
    return min(value for value in found if value is not None)


def billed_memory_mib(memory: int | None, ephemeral_disk: int | None) -> int | None:
    """The memory Modal bills: the request, raised to 1/20 of a disk request."""
    if ephemeral_disk is None:
        return memory
    return max(memory or 0, -(-ephemeral_disk // DISK_PER_MEMORY))


# What a change of each runtime setting does once deployed (plan notes). The snapshot side is
# plan.py's own: any change but labels on an app with snapshots takes a new one.
_EFFECTS = (
    (
        "placement.",
        "placement changes: Modal starts the new containers in the new region or cloud and "
        "stops the old ones; the region's price multiplier applies to GPU, CPU and memory",
    ),
    (
        "resources.ephemeral_disk",
        "ephemeral_disk changes: new containers get the new disk (its contents never survive "
        "a container); a disk request bills at least 1/20 of it as memory",
    ),
    (
        "retries",
        "retries change: the policy applies to calls made after the deploy; Modal never "
        "retries HTTP requests",
    ),
    (
        "scaling.target_concurrency",
        "target_concurrency changes: the autoscaler adds containers above this many inputs "
        "per container (concurrency stays the hard limit)",
    ),
    (
        "surfaces.http.custom_domains",
        "custom_domains change: Modal serves the endpoint on each listed domain only once "
        "the domain is added and verified in the workspace's settings (a DNS record); the "
        "modal.run URL stays",
    ),
)


def runtime_notes(paths: Iterable[str], created: bool = False) -> list[str]:
    """The notes a plan adds for changed runtime settings (one per kind), in a fixed order."""
    changed = list(paths)
    notes = []
    for prefix, note in _EFFECTS:
        if created and prefix != "surfaces.http.custom_domains":
            continue
        if any(path.startswith(prefix) for path in changed):
            notes.append(note)
    return notes


ROUTING_REGION = "placement.routing_region"
DEFAULT_ROUTING_REGION = "us-east"


def routing_region_change(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """Why a deployed app cannot take the new routing region, or None: Modal sets a
    function's routing region at its first deploy only (region guide, "Current
    restrictions")."""
    old = before.get(ROUTING_REGION) or DEFAULT_ROUTING_REGION
    new = after.get(ROUTING_REGION) or DEFAULT_ROUTING_REGION
    if old == new:
        return None
    return (
        f"placement.routing_region changes from {old} to {new}, but Modal fixes a "
        "function's routing region at its first deploy"
    )


def placement_text(settings: dict[str, Any]) -> str:
    """``in eu-west on aws`` for a cost line, or nothing without a placement."""
    regions = settings.get("placement.region") or []
    cloud = settings.get("placement.cloud")
    text = f" in {', '.join(regions)}" if regions else ""
    return text + (f" on {cloud}" if cloud else "")
