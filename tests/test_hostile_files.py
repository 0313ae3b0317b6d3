"""Hostile local files and environment variables, through the CLI: a link, a pipe or a
folder planted where modaliac keeps its lock or reads Modal's config is one line, exit 1,
nothing written through it and no hang."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import isolate_modal_config, record_applied
from tests.test_environments import run, spec

__all__ = ["spec"]  # the fixture


@pytest.fixture(autouse=True)
def no_modal_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_modal_config(monkeypatch, tmp_path / "home")


@pytest.mark.parametrize("kind", ["link", "fifo", "folder"])
def test_planted_lock_file_is_refused(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    state = tmp_path / ".modaliac" / "state.json"
    state.parent.mkdir()
    record_applied(state, str(spec))
    lock = state.with_name("state.json.lock")
    outside = tmp_path / "bashrc"
    outside.write_text("export KEEP=1\n")
    if kind == "link":
        lock.symlink_to(outside)
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    code, _, err = run(capsys, "state", "rm", "minilm")
    assert code == 1, err
    assert "state.json.lock:" in err and "move it away" in err and "internal error" not in err
    assert outside.read_text() == "export KEEP=1\n"  # nothing written through the link
    assert "minilm" in state.read_text()  # nothing removed


def test_planted_journal_link_is_refused(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from modal_iac.state.journal import header_line, journal_path
    from modal_iac.state.store import LocalStore

    state = tmp_path / ".modaliac" / "state.json"
    state.parent.mkdir()
    record_applied(state, str(spec))
    store = LocalStore(state)
    with store.lock("test"):
        pass
    # A valid journal elsewhere, linked at the journal's path: appending would write there.
    from modal_iac.state.journal import digest

    outside = tmp_path / "elsewhere"
    outside.write_bytes(header_line(digest(state.read_bytes())))
    journal_path(state).symlink_to(outside)
    before = outside.read_bytes()
    code, _, err = run(capsys, "state", "rm", "minilm")
    assert code == 1, err
    assert "symbolic link" in err and "internal error" not in err
    assert outside.read_bytes() == before


@pytest.mark.parametrize(
    "kind", ["folder", "fifo", "device", "long", "control", "missing", "devnull"]
)
def test_hostile_modal_config_path(
    spec: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    target = tmp_path / "config.toml"
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)  # modal itself waits for ever on it; modaliac must not
    elif kind == "device":
        target = Path("/dev/zero")
    elif kind == "long":
        target = tmp_path / ("a" * 300)
    elif kind == "control":
        target = tmp_path / "a\x1bb.toml"
    elif kind == "devnull":
        target = Path(os.devnull)  # like a missing file: no config, as for modal
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(target))
    code, _, err = run(capsys, "render", str(spec))
    if kind in ("missing", "devnull"):
        assert code == 0, err
        return
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and "internal error" not in err
    assert "\x1b" not in err


def test_two_active_profiles_and_missing_profile(
    spec: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "modal.toml"
    config.write_text('[a]\nactive = true\n[b]\nactive = true\nenvironment = "dev"\n')
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(config))
    code, _, err = run(capsys, "render", str(spec))
    assert code == 1 and "more than one Modal profile is active" in err, err
    config.write_text('[a]\nenvironment = "dev"\n')
    monkeypatch.setenv("MODAL_PROFILE", "nope")
    code, _, err = run(capsys, "render", str(spec))
    assert code == 1 and "'nope' is not in" in err, err
