"""Helpers several test files share: importing generated app files, isolating Modal's config."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest


def import_file(path: Path, name: str, mp: pytest.MonkeyPatch | None = None) -> ModuleType:
    """Import a generated app file under ``name`` as ``modal deploy`` does: registered in
    sys.modules before it runs, or Modal treats it like a notebook and pickles the functions
    instead of uploading the file. With ``mp`` the registration is undone after the test."""
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    if mp is None:
        sys.modules[name] = module
    else:
        mp.setitem(sys.modules, name, module)
    module_spec.loader.exec_module(module)
    return module


def isolate_modal_config(mp: pytest.MonkeyPatch, home: Path) -> None:
    """A throw-away HOME, no MODAL_* variables and no parsed ~/.modal.toml (the SDK reads it
    once, at import), so no real profile or token reaches a test."""
    import modal.config

    home.mkdir(parents=True, exist_ok=True)
    mp.setenv("HOME", str(home))
    for key in list(os.environ):
        if key.startswith("MODAL_"):
            mp.delenv(key)
    mp.setattr(modal.config, "_user_config", {})


def record_applied(state_path: Path, *spec_paths: str) -> None:
    """Write a local state as if these specs had been applied (what apply would record)."""
    from modal_iac.plan.targets import desired_apps
    from modal_iac.spec.address import Project
    from modal_iac.state.records import State
    from modal_iac.state.store import write_state

    state = State()
    for item in desired_apps(list(spec_paths), None, Project.here()):
        state.apps[item.address] = item.record()
    write_state(state_path, state)


def point_modal_at_closed_port(mp: pytest.MonkeyPatch) -> None:
    """Credentials for a Modal API nobody listens at (a port just closed on 127.0.0.1), so a
    command must fail with one line in seconds, not after the SDK's minute of retries."""
    import socket

    import modal.config

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.setenv("MODAL_TOKEN_ID", "ak-test")
    mp.setenv("MODAL_TOKEN_SECRET", "as-test")
    mp.setenv("MODAL_SERVER_URL", f"http://127.0.0.1:{port}")
    mp.setattr(modal.config, "config", modal.config.Config())


def run_benchmark(
    script: str,
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> str:
    """Run ``benchmarks/<script>`` (on this checkout's code) and return what it printed, once
    it has exited 0. ``env``: the environment to start from (default: this process's)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks" / script), *args],
        cwd=cwd or root,
        env={**(os.environ if env is None else env), "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    return done.stdout
