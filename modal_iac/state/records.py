"""The recorded state as a value: what modaliac last applied, per app, and its checks.

The state holds names, hashes, resolved settings and the rendered source, never a secret
value (specs cannot hold one: load.py refuses them). ``State`` is what both stores read and
write (store.py: a local file; modal_store.py: a file on a Modal Volume); ``parse_state`` and
``replay_entries`` check every record a state file or a journal holds before any is used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from .. import __version__
from ..deferred import DeferredText
from ..errors import ModaliacError, StateError
from ..files import joined, parse_json
from ..spec.address import Address, check_environment
from ..tokens import shown, token_kind

STATE_FORMAT = "modaliac-state"
STATE_VERSION = 2
APP_KEY = re.compile(r"^([a-zA-Z0-9][a-zA-Z0-9_-]{0,63}/)?[a-zA-Z0-9._-]{1,64}$")  # an address
READABLE_VERSIONS = (1, 2)
REMOTE_PREFIX = "modal:"  # --state modal:... names a state on a Modal Volume (modal_store.py)
MAX_VERSION = 2**31 - 1  # Modal's app versions count up from 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class AppRecord:
    """One app as modaliac last applied it: what Modal runs, as far as modaliac knows.

    ``spec_path`` is relative to the project root. ``env_option`` is the ``--env`` of the run
    that applied it (None: none) and, without one, ``profile_environment`` what
    ``MODAL_ENVIRONMENT`` or the Modal profile said then: whether the run's settings chose the
    app's environment or its spec named it, so a plan only removes apps of its own
    environment.
    ``overrides`` are autoscaler settings changed by hand on Modal that ``apply
    --refresh-only`` recorded (function -> setting -> value). ``renamed_from`` is the address
    ``state mv`` moved this record from: Modal cannot rename an app, so the next apply
    deploys this address and then stops that one. ``last_apply`` says what the last apply
    did when a verification failed (rolled back, kept running).
    """

    app: str
    environment: str | None
    spec_path: str
    spec_digest: str
    source_hash: str
    settings: dict[str, Any]
    # A plan's records make the source when it is read (plan.Desired).
    source: DeferredText = DeferredText("")  # noqa: RUF009 (a descriptor, shared by design)
    modaliac_version: str = __version__
    deployed_version: int | None = None  # Modal's app version after modaliac's deploy
    deployment_tag: str = ""  # the tag modaliac deployed with: modaliac-<source hash>
    env_option: str | None = None
    profile_environment: str | None = None
    overrides: dict[str, dict[str, int]] = field(default_factory=dict)
    renamed_from: str | None = None
    last_apply: str | None = None  # what the last apply did when it did not go as planned

    @property
    def address(self) -> str:
        return str(Address(self.environment, self.app))

    @property
    def environment_named_by_spec(self) -> bool:
        """Whether its spec named the environment (neither ``--env`` nor Modal's settings)."""
        return self.env_option is None and self.environment != self.profile_environment


@dataclass
class State:
    apps: dict[str, AppRecord] = field(default_factory=dict)

    def to_json(self) -> str:
        document = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "apps": {address: asdict(record) for address, record in sorted(self.apps.items())},
        }
        return json.dumps(document, indent=2, sort_keys=True) + "\n"

    def in_environment(self, environment: str | None) -> list[str]:
        """The recorded addresses of one environment, sorted."""
        return sorted(a for a, r in self.apps.items() if r.environment == environment)


def parse_state(text: str, where: str) -> State:
    """A state document from its JSON text; ``where`` names it in the one-line errors.

    Every record is checked before any is used: a hand-edited or damaged state is one line
    naming the entry, never an internal error, and an entry whose key is not its own address
    is refused (it would make a command act on an app the key does not name)."""
    document = parse_json(text, where, "state", joined(StateError))
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise StateError(f"{where}: not a modaliac state file")
    version = document.get("version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise StateError(
            f"{where}: state version {shown(json.dumps(version), 20)} is not one this modaliac "
            "reads "
            f"({', '.join(map(str, READABLE_VERSIONS))}); use the modaliac version that wrote it"
        )
    apps = document.get("apps")
    if not isinstance(apps, dict):
        raise StateError(f"{where}: the state is damaged (apps is not a mapping)")
    state = State()
    for key, raw in apps.items():
        state.apps[key] = checked_entry(key, raw, f"{where}: apps", migrate=version == 1)
    return state


def checked_entry(key: str, raw: Any, where: str, *, migrate: bool = False) -> AppRecord:
    """The record a state (or its journal) keeps under ``key``, which must be its address."""
    label = key if APP_KEY.match(key) and token_kind(key) is None else shown(key)
    record = parse_record(raw, f"{where}.{label}", migrate=migrate)
    if record.address != key:
        named = record.address if token_kind(record.address) is None else shown(record.app)
        raise StateError(
            f"{where}.{label}: the entry is for {named}; each entry's key must be its "
            "address (ENVIRONMENT/APP)"
        )
    return record


_FIELDS = {f.name: f for f in fields(AppRecord)}
_REQUIRED = [
    name for name, f in _FIELDS.items() if f.default is MISSING and f.default_factory is MISSING
]
_TYPES: dict[str, tuple[type, ...]] = {
    "app": (str,),
    "environment": (str, type(None)),
    "spec_path": (str,),
    "spec_digest": (str,),
    "source_hash": (str,),
    "settings": (dict,),
    "source": (str,),
    "modaliac_version": (str,),
    "deployed_version": (int, type(None)),
    "deployment_tag": (str,),
    "env_option": (str, type(None)),
    "profile_environment": (str, type(None)),
    "overrides": (dict,),
    "renamed_from": (str, type(None)),
    "last_apply": (str, type(None)),
}


def parse_record(raw: Any, where: str, *, migrate: bool = False) -> AppRecord:
    """One entry of a state (or a plan's record), checked field by field."""
    if not isinstance(raw, dict):
        raise StateError(f"{where}: the entry is not a mapping")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise StateError(f"{where}: unknown field {shown(unknown[0], 40)}")
    missing = [name for name in _REQUIRED if name not in raw]
    if missing:
        raise StateError(f"{where}: the entry has no {missing[0]!r}")
    for name, value in raw.items():
        allowed = _TYPES[name]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise StateError(f"{where}.{name}: has the wrong type ({type(value).__name__})")
    try:
        Address.parse(raw["app"], None)
        if raw["environment"] is not None:
            check_environment(raw["environment"], "environment")
        if raw.get("renamed_from") is not None:
            Address.parse(raw["renamed_from"])
        for name in ("env_option", "profile_environment"):
            if raw.get(name) is not None:
                check_environment(raw[name], name)
    except ModaliacError as exc:
        raise StateError(f"{where}: {exc}") from None
    _check_values(raw, where)
    overrides = raw.get("overrides", {})
    if not all(
        isinstance(settings, dict)
        and all(isinstance(k, str) and type(v) is int for k, v in settings.items())
        for settings in overrides.values()
    ):
        raise StateError(f"{where}.overrides: expected function -> setting -> whole number")
    if migrate and "env_option" not in raw:
        # Version 1 did not record --env: take the app's environment, which errs towards
        # keeping an app (a plan of another --env never removes it).
        raw = {**raw, "env_option": raw["environment"]}
    return AppRecord(**raw)


def _check_values(raw: dict[str, Any], where: str) -> None:
    """What a record's fields may hold beyond their types: a state file is input like any
    other (edited by hand, damaged, or written to mislead), and its values reach plans,
    error lines and deletions."""
    version = raw.get("deployed_version")
    if version is not None and not 1 <= version <= MAX_VERSION:
        shown_version = version if abs(version) <= MAX_VERSION else "a number that large"
        raise StateError(
            f"{where}.deployed_version: {shown_version} is not a Modal app version (1 or more)"
        )
    for name in ("spec_path", "spec_digest", "source_hash", "deployment_tag", "modaliac_version"):
        value = raw.get(name)
        if isinstance(value, str) and _CONTROL.search(value):
            raise StateError(f"{where}.{name}: holds a control character")
    if ".." in raw["spec_path"].split("/"):
        raise StateError(
            f"{where}.spec_path: {shown(raw['spec_path'])} climbs out with '..'; a state records "
            "spec paths relative to the project root, or absolute"
        )
    if raw.get("renamed_from") is not None and raw["renamed_from"] == str(
        Address(raw["environment"], raw["app"])
    ):
        raise StateError(f"{where}.renamed_from: names the app itself")


def replay_entries(
    state: State, entries: Iterable[tuple[str, str, dict[str, Any] | None]]
) -> State:
    """``state`` with journal entries (where, address, record; None: removed) applied in
    order, each record checked as the state's own; the local and the Modal journal's."""
    for where, address, raw in entries:
        if raw is None:
            state.apps.pop(address, None)
        else:
            state.apps[address] = checked_entry(address, raw, f"{where}: record")
    return state
