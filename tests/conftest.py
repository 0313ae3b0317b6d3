"""Shared fixtures. ``modal_api``: a local Modal API the real client talks to, no network."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from modal_iac.local_api import LocalModalServer


@pytest.fixture(autouse=True)
def no_modal_credentials(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test starts without Modal credentials (so plans are offline) unless it asks for
    the ``modal_api`` fixture: a developer's own ~/.modal.toml must never be used."""
    for key in list(os.environ):
        if key.startswith("MODAL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path_factory.getbasetemp() / "no-modal.toml"))


@pytest.fixture
def modal_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalModalServer]:
    """A running local Modal API; MODAL_* point at it for this process and its children.

    HOME is a throw-away folder and the SDK's parsed ``~/.modal.toml`` is emptied (it is read
    once, at import), so no real profile or token leaks in.
    """
    from helpers import isolate_modal_config

    from modal_iac.local_api import LocalModalServer, reset_modal_client

    isolate_modal_config(monkeypatch, tmp_path / "home")
    reset_modal_client()
    with LocalModalServer() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        try:
            yield server
        finally:
            reset_modal_client()
        assert not server.state.errors, f"the local Modal API raised: {server.state.errors!r}"
