"""Modal credentials and the server URL as the environment gives them: a token pasted with a
line break, a URL holding a password. One line, exit 1, and never the value."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modal_iac.cli import main
from modal_iac.local_api import LocalModalServer, reset_modal_client

ROOT = Path(__file__).resolve().parents[1]
SECRET = "as-local-supersecretvalue"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from helpers import isolate_modal_config

    isolate_modal_config(monkeypatch, tmp_path / "home")
    (tmp_path / "specs").mkdir()
    shutil.copy(ROOT / "examples/small-embedding-no-snapshot.yaml", tmp_path / "specs/a.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    reset_modal_client()
    yield tmp_path
    reset_modal_client()


@pytest.mark.parametrize("variable", ["MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"])
@pytest.mark.parametrize("command", [["plan"], ["apply", "--yes"], ["status"]])
def test_a_token_with_a_line_break_is_one_line_without_its_value(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    command: list[str],
) -> None:
    with LocalModalServer() as api:
        for key, value in api.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv(variable, SECRET + "\n")
        code = main(command, confirm=lambda question: True)
        out, err = capsys.readouterr()
        assert code == 1, out
        [line] = err.splitlines()
        assert variable in line and "line break" in line and "internal error" not in line
        assert "supersecret" not in out + err
        assert api.state.requests("AppPublish") == []


def test_the_server_url_is_shown_without_its_password_or_line_breaks(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-x")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-x")
    monkeypatch.setenv("MODAL_SERVER_URL", "http://user:pw-secret@127.0.0.1:1\n")
    code = main(["plan"], confirm=lambda question: True)
    out, err = capsys.readouterr()
    assert code == 1, out
    [line] = err.splitlines()
    assert "MODAL_SERVER_URL" in line and "pw-secret" not in line and "user:" not in line
