"""Hostile local files and environment variables, through the CLI: a link, a pipe or a
folder planted where modaliac keeps its lock or reads Modal's config is one line, exit 1,
nothing written through it and no hang."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modal_iac.local_api import LocalModalServer
from tests.helpers import isolate_modal_config, record_applied
from tests.test_apply import project, publishes
from tests.test_environments import run, spec

__all__ = ["project", "spec"]  # the fixtures

KEEP = "export KEEP=1\n"


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


def plant(at: Path, kind: str, outside: Path) -> None:
    """Something that is not a file of modaliac's own, at ``at``; ``outside`` must not change."""
    at.parent.mkdir(parents=True, exist_ok=True)
    if kind == "link":
        at.symlink_to(outside)
    elif kind == "dangling":
        at.symlink_to(outside.with_name("nowhere"))
    elif kind == "hardlink":
        os.link(outside, at)
    elif kind == "fifo":
        os.mkfifo(at)
    elif kind == "folder":
        at.mkdir()
    else:
        at.write_text(KEEP)  # a file where a folder belongs


@pytest.mark.parametrize(
    ("where", "kind"),
    [
        ("logs/minilm-embedding.log", "link"),
        ("logs/minilm-embedding.log", "dangling"),
        ("logs/minilm-embedding.log", "hardlink"),
        ("logs/minilm-embedding.log", "fifo"),
        ("logs/minilm-embedding.log", "folder"),
        ("logs", "link"),  # to a folder elsewhere: every log would be written there
        ("logs", "file"),
    ],
)
def test_a_planted_log_is_refused_before_anything_is_deployed(
    project: Path,
    modal_api: LocalModalServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    where: str,
    kind: str,
) -> None:
    outside = tmp_path / "bashrc"
    if where == "logs" and kind == "link":
        outside.mkdir()
    else:
        outside.write_text(KEEP)
    planted = project / ".modaliac" / where
    plant(planted, kind, outside)
    code, out, err = run(capsys, "apply", "--yes", "specs/minilm.yaml")
    assert code == 1, err + out
    assert len(err.strip().splitlines()) == 1 and "internal error" not in err, err
    assert f"{planted}:" in err and "move it away" in err, err
    assert publishes(modal_api) == 0  # nothing deployed
    assert not (project / ".modaliac" / "state.json").exists()  # nothing recorded
    if outside.is_dir():
        assert list(outside.iterdir()) == []
    else:
        assert outside.read_text() == KEEP
    assert not outside.with_name("nowhere").exists()


@pytest.mark.parametrize("kind", ["link", "hardlink", "fifo", "folder"])
def test_a_log_planted_after_the_check_is_never_written_through_nor_read(
    tmp_path: Path, kind: str
) -> None:
    """What appears between the check before an apply and the first write (while Modal
    builds) is not written through: that log is skipped; reading its tail back never waits
    on a pipe nor reads another file. The SDK's log alike."""
    from modal_iac.commands.progress import AppLogs
    from modal_iac.modal.sdk_log import SdkLog

    outside = tmp_path / "bashrc"
    outside.write_text(KEEP)
    logs = AppLogs(tmp_path / "logs")
    logs.check(["dev/x"])
    plant(logs.path("dev/x"), kind, outside)
    logs.write("dev/x", "built\n")
    logs.close()
    assert logs.tail("dev/x") == [] and not logs.written("dev/x")
    sdk = SdkLog(tmp_path / "logs" / "apply.log")
    plant(sdk.path, kind, outside)
    sdk.write("a warning\n")
    sdk.close()
    assert not sdk.written
    assert outside.read_text() == KEEP


@pytest.mark.parametrize("kind", ["link", "file", "fifo"])
@pytest.mark.parametrize(
    "command", [["state", "rm", "minilm"], ["plan"], ["render", "-o", "out", "specs"]]
)
def test_a_state_folder_that_is_not_a_folder_of_its_own_is_refused(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, command: list[str]
) -> None:
    """``.modaliac`` a link to a folder elsewhere (the state, builds and logs would go there),
    a file or a pipe: one line naming it, before anything is read or written there."""
    (tmp_path / ".git").mkdir()  # the project root, whatever .modaliac is
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    record_applied(elsewhere / "state.json", str(spec))
    before = {path.name: path.read_bytes() for path in elsewhere.iterdir()}
    folder = tmp_path / ".modaliac"
    if kind == "link":
        folder.symlink_to(elsewhere)
    elif kind == "fifo":
        os.mkfifo(folder)
    else:
        folder.write_text(KEEP)
    code, out, err = run(capsys, *command)
    assert code == 1, err + out
    assert len(err.strip().splitlines()) == 1 and "internal error" not in err, err
    assert f"{folder}: " in err and "move it away" in err, err
    assert {path.name: path.read_bytes() for path in elsewhere.iterdir()} == before
    assert folder.is_symlink() or folder.is_fifo() or folder.read_text() == KEEP


@pytest.mark.parametrize(
    "kind",
    ["long", "long-folder", "nul", "control", "folder", "fifo", "device", "binary", "missing"],
)
def test_schema_check_of_any_name_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    monkeypatch.chdir(tmp_path)
    name = {
        "long": "a" * 5000,
        "long-folder": "a" * 300 + "/schema.json",
        "nul": "schema\x00.json",
        "control": "schema\x1b[2J.json",
        "device": "/dev/zero",
    }.get(kind, "schema.json")
    if kind == "folder":
        Path(name).mkdir()
    elif kind == "fifo":
        os.mkfifo(name)  # read, it would wait for a writer for ever
    elif kind == "binary":
        Path(name).write_bytes(b"\xff\xfe{}")
    code, out, err = run(capsys, "schema", "--check", name)
    assert code == 1, err + out
    assert len(err.strip().splitlines()) == 1 and "internal error" not in err, err
    assert "\x1b" not in err and "\x00" not in err and len(err) < 400, err


@pytest.mark.parametrize("kind", ["long", "long-folder", "fifo", "fifo-in-folder", "device"])
@pytest.mark.parametrize("command", ["validate", "plan", "render"])
def test_a_spec_path_the_system_refuses_or_that_is_no_file_is_one_line(
    spec: Path, capsys: pytest.CaptureFixture[str], kind: str, command: str
) -> None:
    target = {
        "long": f"specs/{'a' * 300}.yaml",
        "long-folder": f"specs/{'a' * 300}",
        "fifo": "specs/pipe.yaml",
        "fifo-in-folder": "specs",
        "device": "/dev/zero",
    }[kind]
    if kind.startswith("fifo"):
        os.mkfifo("specs/pipe.yaml")  # read, it would wait for a writer for ever
    code, out, err = run(capsys, command, target)
    assert code == 1, err + out
    assert "internal error" not in err and len(err.splitlines()[0]) < 400, err
    assert ("too long" in err) if kind.startswith("long") else ("not a regular file" in err), err


@pytest.mark.parametrize("ends", ["\r", "\r\n", "\n"], ids=["cr", "crlf", "lf"])
@pytest.mark.parametrize(
    "target", ["../nowhere.json", "a" * 300 + ".json", "a/" * 2100], ids=["missing", "255", "4096"]
)
def test_a_schema_line_with_any_line_ends_or_an_impossible_path_is_a_warning(
    spec: Path, capsys: pytest.CaptureFixture[str], ends: str, target: str
) -> None:
    """The schema line ends at a lone CR too (YAML's line ends): with CR line ends the whole
    file was taken for the path, which the system refused (an internal error); a path too
    long for the file system names no file, so it is the usual warning."""
    from tests.test_environments import SPEC

    spec.write_bytes(
        f"# yaml-language-server: $schema={target}\n{SPEC}".replace("\n", ends).encode()
    )
    code, out, err = run(capsys, "validate", str(spec))
    assert code == 0, err + out
    assert "internal error" not in err and "which does not exist" in err, err
    assert "app: minilm" not in err  # the rest of the file is no part of the path
    Path("schema.json").write_text("{}")
    code, out, err = run(capsys, "fmt", str(spec))
    assert code == 0, err + out
    fixed = spec.read_bytes()
    assert fixed.startswith(b"# yaml-language-server: $schema=../schema.json")
    assert b"app: minilm" in fixed and b"all-MiniLM-L6-v2" in fixed  # the rest kept


@pytest.mark.parametrize("kind", ["dangling", "link", "fifo"])
def test_init_refuses_a_link_or_a_pipe_where_it_writes_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """A link pointing nowhere is no file to ``exists()``, so init went on and its create
    failed (an internal error, the files before it written); a pipe would have been written
    into. Every target is created exclusively, never through a link."""
    outside = tmp_path / "bashrc"
    project = tmp_path / "project"
    project.mkdir()
    plant(project / ".gitignore", kind, outside)
    if kind == "link":
        outside.write_text(KEEP)
    code, out, err = run(capsys, "init", str(project))
    assert code == 1, err + out
    assert err.strip() == (
        f"init: {project / '.gitignore'} already exists; init writes only new files "
        "(nothing was written)"
    )
    assert sorted(p.name for p in project.iterdir()) == [".gitignore"]
    assert not outside.exists() or outside.read_text() == KEEP


@pytest.mark.parametrize("kind", ["fifo", "folder", "missing"])
def test_a_saved_plans_spec_swapped_for_a_pipe_or_a_folder_is_named_as_one(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """The saved plan's spec is read once (never checked, then read: a pipe swapped in
    between would be waited on), and what is there instead is named."""
    assert run(capsys, "plan", "-o", "plan.json")[0] == 0
    spec = project / "specs" / "minilm.yaml"
    spec.unlink()
    if kind != "missing":
        plant(spec, kind, project / "unused")
    code, out, err = run(capsys, "apply", "plan.json")
    assert code == 1, err + out
    assert len(err.strip().splitlines()) == 1 and "internal error" not in err, err
    expected = {"fifo": "is not a regular file", "folder": "is a directory", "missing": "is gone"}
    assert err.startswith("plan.json: minilm-embedding: ") and expected[kind] in err, err
    assert publishes(modal_api) == 0


def test_an_address_too_long_for_a_file_name_is_one_line(
    spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad address is checked against the disk for a hint: a name the system refuses to
    look up (over 255 bytes) raised there, an internal error."""
    state = tmp_path / ".modaliac" / "state.json"
    state.parent.mkdir()
    record_applied(state, str(spec))
    code, out, err = run(capsys, "state", "rm", "a" * 300)
    assert code == 1, err + out
    assert len(err.strip().splitlines()) == 1 and "internal error" not in err, err
    assert "minilm" in state.read_text()
