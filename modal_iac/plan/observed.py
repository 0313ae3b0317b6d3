"""What Modal reports about an app, as plain values (no ``modal`` import: plans stay pure)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Commit:
    """The git commit a deploy was made from, as the client collected it."""

    commit_hash: str
    branch: str = ""
    dirty: bool = False
    author: str = ""
    repo_url: str = ""


@dataclass(frozen=True)
class Deployment:
    """One entry of an app's deployment history."""

    version: int
    tag: str
    deployed_by: str
    deployed_at: float
    deployment_type: str
    rollback_version: int = 0
    client_version: str = ""
    commit: Commit | None = None


@dataclass(frozen=True)
class Override:
    """An autoscaler setting changed by hand after deploy."""

    function: str
    setting: str
    value: int
    static_value: int
    by: str


@dataclass(frozen=True)
class Observed:
    """An app as Modal reports it now."""

    app: str
    environment: str | None
    app_id: str | None = None
    state: str = "missing"  # deployed, stopped, missing, or Modal's other app states
    history: tuple[Deployment, ...] = ()  # newest first
    tags: dict[str, str] = field(default_factory=dict)
    overrides: tuple[Override, ...] = ()
    missing_secrets: tuple[str, ...] = ()
    missing_volumes: tuple[str, ...] = ()
    secret_keys: dict[str, str] = field(default_factory=dict)  # secret -> the key it must hold
    secrets_without_key: tuple[str, ...] = ()  # secrets that exist but lack that key
    misspelt_keys: dict[str, str] = field(default_factory=dict)  # secret -> wrong key it holds
    containers: int = 0  # running containers (AppList's n_running_tasks)
    urls: dict[str, str] = field(default_factory=dict)  # web function -> URL (the app's layout)

    @property
    def current(self) -> Deployment | None:
        return self.history[0] if self.history else None
