"""The recorded state: what modaliac last applied, per app. A local JSON file by default.

The state holds names, hashes, resolved settings and the rendered source, never a secret
value (specs cannot hold one: load.py refuses them). Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import StateError

STATE_FORMAT = "modaliac-state"
STATE_VERSION = 1
DEFAULT_STATE_PATH = Path(".modaliac") / "state.json"


def app_address(environment: str | None, app: str) -> str:
    """How plans and the state name an app: ``app`` or ``environment/app``."""
    return f"{environment}/{app}" if environment else app


@dataclass(frozen=True)
class AppRecord:
    """One app as modaliac last applied it."""

    app: str
    environment: str | None
    spec_path: str
    spec_digest: str
    source_hash: str
    settings: dict[str, Any]
    source: str = ""
    modaliac_version: str = __version__

    @property
    def address(self) -> str:
        return app_address(self.environment, self.app)


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


def read_state(path: Path) -> State:
    """The state at ``path``; a missing file is an empty state (nothing applied yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return State()
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"{path}: cannot read the state: {exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(
            f"{path}:{exc.lineno}:{exc.colno}: the state is not valid JSON ({exc.msg})"
        ) from None
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise StateError(f"{path}: not a modaliac state file")
    if document.get("version") != STATE_VERSION:
        raise StateError(
            f"{path}: state version {document.get('version')!r} is not {STATE_VERSION}; "
            "use the modaliac version that wrote it"
        )
    try:
        apps = {address: AppRecord(**record) for address, record in document["apps"].items()}
    except (KeyError, TypeError, AttributeError) as exc:
        raise StateError(f"{path}: the state is damaged ({exc})") from None
    return State(apps)


def write_state(path: Path, state: State) -> None:
    """Replace the state file atomically: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".state-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(state.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
