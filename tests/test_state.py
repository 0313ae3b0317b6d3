"""The local state store: atomic writes, one-line errors, and a lock that other processes see.

Lock holders run in real subprocesses, since what matters is what the OS does between
processes: a second apply is refused (or waits), and a killed one leaves nothing locked.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modal_iac.errors import StateError
from modal_iac.state.lock_owner import StateLockedError
from modal_iac.state.records import AppRecord, State
from modal_iac.state.store import LocalStore, read_state
from modal_iac.state.stores import open_store

ROOT = Path(__file__).resolve().parent.parent

# A second modaliac: takes the lock, says so, then holds it until stdin closes, or writes a
# new state and is SIGKILLed between writing the temporary file and renaming it. In the
# note modes it says so as soon as it holds the flock, and writes its note half a second
# later ("slow-note") or never ("no-note": a holder stopped at the worst moment).
HOLDER = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from modal_iac.state.records import AppRecord, State
    from modal_iac.state.store import LocalStore

    mode = sys.argv[2]
    if mode in ("slow-note", "no-note"):
        write_note = os.pwrite

        def pwrite(fd, data, offset):
            print("locked", flush=True)
            time.sleep(0.5 if mode == "slow-note" else 3600)
            return write_note(fd, data, offset)

        os.pwrite = pwrite
    store = LocalStore(Path(sys.argv[1]))
    with store.lock("modaliac apply " + mode):
        if mode not in ("slow-note", "no-note"):
            print("locked", flush=True)
        if mode == "crash-in-write":
            os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
            record = AppRecord("second", None, "b.yaml", "d2", "h2", {})
            store.write(State({"second": record}))
        sys.stdin.readline()
    """
)


def record(app: str, environment: str | None = None) -> AppRecord:
    return AppRecord(
        app, environment, f"specs/{app}.yaml", "digest", "hash", {"gpu": "A10"}, "source"
    )


def holder(path: Path, mode: str = "hold") -> subprocess.Popen[str]:
    """Start a holder and return once it holds the lock."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "locked\n"
    return process


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


# -- locking -----------------------------------------------------------------------------------


def test_a_second_locker_fails_fast_naming_the_holder(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / ".modaliac" / "state.json"
    first = holder(path)
    processes.append(first)
    started = time.monotonic()
    with pytest.raises(StateLockedError) as caught, LocalStore(path).lock("modaliac apply b"):
        pytest.fail("took a held lock")
    assert time.monotonic() - started < 1
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path} is locked by ")
    assert f"(pid {first.pid}, `modaliac apply hold`) since " in message
    assert message.endswith(
        "wait for it to finish and retry, or stop that process (its lock is freed when it exits)"
    )


def test_a_second_locker_waits_for_the_holder_to_finish(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / "state.json"
    first = holder(path)
    processes.append(first)
    assert first.stdin is not None
    threading.Timer(0.2, first.stdin.close).start()  # the first apply finishes
    started = time.monotonic()
    with LocalStore(path, poll=0.01).lock("modaliac apply b", wait=10) as me:
        assert me.pid == os.getpid()
    assert 0.1 < time.monotonic() - started < 5
    assert first.wait(timeout=5) == 0


def test_a_killed_holder_leaves_nothing_locked(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / "state.json"
    first = holder(path)
    processes.append(first)
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=5) == -signal.SIGKILL
    # Its note is still in the lock file, but the OS released the flock with the process.
    assert json.loads(path.with_name("state.json.lock").read_text())["pid"] == first.pid
    with LocalStore(path).lock("modaliac apply b") as me:
        assert json.loads(path.with_name("state.json.lock").read_text())["token"] == me.token


def test_a_holder_that_has_not_written_its_note_yet_is_still_named(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / "state.json"
    first = holder(path, "slow-note")  # holds the flock; its note comes half a second later
    processes.append(first)
    with pytest.raises(StateLockedError) as caught, LocalStore(path).lock("modaliac apply b"):
        pytest.fail("took a held lock")
    assert f"(pid {first.pid}, `modaliac apply slow-note`) since " in str(caught.value)


def test_a_holder_that_never_writes_its_note_is_named_by_the_os(
    tmp_path: Path, processes: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the dead holder whose note is left in the file: the process the OS says holds it."""
    import modal_iac.state.store

    monkeypatch.setattr(modal_iac.state.store, "NOTE_WAIT", 0.2)
    path = tmp_path / "state.json"
    dead = holder(path)
    processes.append(dead)
    dead.send_signal(signal.SIGKILL)
    dead.wait(timeout=5)  # its note stays behind
    stuck = holder(path, "no-note")
    processes.append(stuck)
    with pytest.raises(StateLockedError) as caught, LocalStore(path).lock("modaliac apply b"):
        pytest.fail("took a held lock")
    message = str(caught.value)
    assert "\n" not in message
    assert f"(pid {stuck.pid}, `{sys.executable} -c " in message
    assert f"pid {dead.pid}" not in message
    assert message.endswith(
        "wait for it to finish and retry, or stop that process (its lock is freed when it exits)"
    )


@pytest.mark.parametrize(
    "note",
    [
        {"pid": 10**30},  # os.kill would overflow
        {"since": float("nan")},
        {"since": 1e300, "pid": -1},
        {"expires_at": "soon", "token": 5},
    ],
    ids=["huge-pid", "nan-since", "huge-since", "wrong-types"],
)
def test_a_hostile_note_in_the_lock_file_is_never_believed(
    tmp_path: Path,
    processes: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
    note: dict[str, object],
) -> None:
    """A note no holder wrote (wrong types, numbers out of range) names nobody: the OS names
    the holder instead, in one line, never an OverflowError or a TypeError."""
    import modal_iac.state.store

    monkeypatch.setattr(modal_iac.state.store, "NOTE_WAIT", 0.2)
    path = tmp_path / "state.json"
    store = LocalStore(path)
    store.lock_path.parent.mkdir(parents=True, exist_ok=True)
    written = {"command": "x", "pid": os.getpid(), "host": socket.gethostname(), "user": "u"}
    written.update({"since": 1.0, "token": "t", **note})
    store.lock_path.write_text(json.dumps(written))  # left there; the holder writes none
    stuck = holder(path, "no-note")
    processes.append(stuck)
    with pytest.raises(StateLockedError) as caught, store.lock("modaliac apply b"):
        pytest.fail("took a held lock")
    message = str(caught.value)
    assert "\n" not in message
    assert f"(pid {stuck.pid}, `{sys.executable} -c " in message


def test_the_lock_file_names_the_holder_only_while_held(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "state.json", clock=lambda: 1_800_000_000.0)
    with store.lock("modaliac apply specs/") as me:
        noted = json.loads(store.lock_path.read_text())
        assert noted == json.loads(me.to_json())
        assert (noted["command"], noted["pid"], noted["since"]) == (
            "modaliac apply specs/",
            os.getpid(),
            1_800_000_000.0,
        )
        assert {"host", "user", "token"} <= noted.keys()
        assert me.describe().endswith(
            f"(pid {os.getpid()}, `modaliac apply specs/`) since 2027-01-15 08:00:00 UTC"
        )
        with pytest.raises(StateLockedError), store.lock("again"):  # flock is per open file
            pass
    assert store.lock_path.read_text() == ""
    with store.lock("next"):  # released
        pass


# -- writing and reading -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory", "proc-file"])
def test_a_state_that_is_not_a_regular_file_is_refused_unread(tmp_path: Path, kind: str) -> None:
    """Never opened when it is a pipe (a read would wait for ever), never read past the limit
    when the size the file system reports is not the size it has."""
    path = tmp_path / "state.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")  # endless: the size check must not trust st_size
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/proc/self/status")  # st_size 0, but it has content: not JSON
    with pytest.raises(StateError) as caught:
        LocalStore(path).read()
    message = str(caught.value)
    assert message.startswith(f"{path}:") and "\n" not in message
    if kind == "proc-file":
        assert "the state is not valid JSON" in message
    else:
        assert "not a regular file" in message or "is a directory" in message


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "nested" / "state.json")
    assert store.read() == State()  # nothing applied yet
    state = State({"a": record("a"), "prod/b": record("b", "prod")})
    with store.lock("modaliac apply"):
        store.write(state)
    assert store.read() == state
    assert read_state(store.path) == state  # the same file and format as before stores


def test_a_write_that_fails_after_the_temporary_file_keeps_the_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "state.json")
    before = State({"a": record("a")})
    store.write(before)

    def crash(src: object, dst: object) -> None:
        assert Path(str(src)).read_text().startswith("{")  # the new state was fully written
        raise RuntimeError("crashed before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(RuntimeError, match="crashed"):
        store.write(State({"b": record("b")}))
    monkeypatch.undo()
    assert store.read() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no temporary left


def test_a_process_killed_in_the_middle_of_a_write_keeps_the_previous_state(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    store = LocalStore(tmp_path / "state.json")
    before = State({"a": record("a")})
    store.write(before)
    crashed = holder(store.path, "crash-in-write")
    processes.append(crashed)
    assert crashed.wait(timeout=10) == -signal.SIGKILL
    assert store.read() == before
    with store.lock("modaliac apply"):  # and the dead writer's lock is gone
        store.write(State({"c": record("c")}))
    assert set(store.read().apps) == {"c"}


TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrSt12345"  # shaped like a Hugging Face token


def _entry(app: str, environment: str | None = None) -> dict[str, object]:
    return {
        "app": app,
        "environment": environment,
        "spec_path": "specs/a.yaml",
        "spec_digest": "d",
        "source_hash": "h",
        "settings": {},
    }


def _state(apps: dict[str, object]) -> bytes:
    return json.dumps({"format": "modaliac-state", "version": 2, "apps": apps}).encode()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"format": "modaliac-state",', "{path}:1:29: the state is not valid JSON"),
        (b'{"apps": {}}', "{path}: not a modaliac state file"),
        (b'{"format": "modaliac-state", "version": 3, "apps": {}}', "{path}: state version '3'"),
        (b'{"format": "modaliac-state", "version": true, "apps": {}}', "{path}: state version"),
        (b'{"format": "modaliac-state", "version": 1, "apps": {"a": 3}}', "{path}: apps.a: the"),
        (b'{"format": "modaliac-state", "version": 1}', "{path}: the state is damaged (apps"),
        (b'{"format": "modaliac-state", "version": 2, "apps": []}', "{path}: the state is dam"),
        (b"\xff\xfe", "{path}: byte 0 is not UTF-8; is it a state?"),
        (b"[" * 100_000, "{path}: the state is nested too deeply"),
        (b'{"format": "modaliac-state", "version": 1' + b"0" * 5000 + b"}", "{path}: the state"),
        (
            b'{"format": "modaliac-state", "version": 2, "apps": {"a": {"deployed_version": '
            + b"9" * 5000
            + b"}}}",
            "{path}: the state holds a number too long",
        ),
        # Entries that would make a command act on an app the key does not name.
        (_state({"prod/a": _entry("a")}), "{path}: apps.prod/a: the entry is for a; each"),
        (_state({"a": _entry("a", "prod")}), "{path}: apps.a: the entry is for prod/a"),
        (_state({"x/a": _entry("a", "x/..")}), "{path}: apps.x/a: environment: 'x/..' is not"),
        (_state({"a b": _entry("a b")}), "{path}: apps.'a b': 'a b': not an app name"),
        # Damaged or hand-edited entries: one line naming the entry and the field.
        (_state({"a": {**_entry("a"), "deployed_version": "2"}}), "{path}: apps.a.deployed_v"),
        (_state({"a": {**_entry("a"), "deployed_version": True}}), "{path}: apps.a.deployed_v"),
        (_state({"a": {**_entry("a"), "settings": []}}), "{path}: apps.a.settings: has the wr"),
        (_state({"a": {**_entry("a"), "surprise": 1}}), "{path}: apps.a: unknown field 'surp"),
        (_state({"a": {"app": "a"}}), "{path}: apps.a: the entry has no 'environment'"),
        (_state({"a": {**_entry("a"), "overrides": {"f": {"x": "2"}}}}), "{path}: apps.a.over"),
        (_state({"a": {**_entry("a"), "renamed_from": "x/"}}), "{path}: apps.a: 'x/': not an"),
        (_state({"a": {**_entry("a"), "deployed_version": 0}}), "{path}: apps.a.deployed_vers"),
        (_state({"a": {**_entry("a"), "deployed_version": -3}}), "{path}: apps.a.deployed_vers"),
        (_state({"a": {**_entry("a"), "deployed_version": 2**40}}), "{path}: apps.a.deployed_v"),
        (_state({"a": {**_entry("a"), "renamed_from": "a"}}), "{path}: apps.a.renamed_from: na"),
        (_state({"a": {**_entry("a"), "spec_path": "../up.yaml"}}), "{path}: apps.a.spec_path:"),
        (_state({"a": {**_entry("a"), "spec_path": "s/\x1b[2J.yaml"}}), "{path}: apps.a.spec_pa"),
        (_state({"a": {**_entry("a"), "deployment_tag": "t\x07"}}), "{path}: apps.a.deploymen"),
        # A key twice in one object: Python keeps the last, other readers the first.
        (
            b'{"format": "modaliac-state", "version": 2, "apps": {}, "apps": {}}',
            "{path}: the state holds the key 'apps' twice in one object",
        ),
        (
            _state({"a": _entry("a")}).replace(b'"app": "a"', b'"app": "b", "app": "a"'),
            "{path}: the state holds the key 'app' twice",
        ),
        # A value shaped like a secret is named by its kind, never repeated.
        (_state({TOKEN: _entry("a")}), "{path}: apps.(a value that looks like a Hugging Face"),
        (_state({"a": {**_entry("a"), TOKEN: 1}}), "{path}: apps.a: unknown field (a value"),
    ],
)
def test_a_corrupt_state_is_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StateError) as caught:
        LocalStore(path).read()
    assert str(caught.value).startswith(message.format(path=path))
    assert "\n" not in str(caught.value)
    assert TOKEN not in str(caught.value)


# -- choosing a store --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "described", "environment", "volume", "path"),
    [
        (
            "modal:modaliac-state",
            "modal:modaliac-state/state.json",
            None,
            "modaliac-state",
            "state.json",
        ),
        ("modal:st/team/a.json", "modal:st/team/a.json", None, "st", "team/a.json"),
        ("modal:prod:st", "modal:prod:st/state.json", "prod", "st", "state.json"),
        ("modal:prod:st/envs/", "modal:prod:st/envs/state.json", "prod", "st", "envs/state.json"),
        ("modal:prod:st//x/../y.json", "modal:prod:st/y.json", "prod", "st", "y.json"),
    ],
)
def test_modal_state_locations(
    spec: str, described: str, environment: str | None, volume: str, path: str
) -> None:
    from modal_iac.state.modal_store import ModalStore

    store = open_store(spec)
    assert isinstance(store, ModalStore)
    assert (store.describe(), store.environment, store.volume, store.path) == (
        described,
        environment,
        volume,
        path,
    )
    assert open_store(store.describe()).describe() == described  # describe() is a valid --state


@pytest.mark.parametrize(
    "spec", ["modal:", "modal:a:b:c", "modal:bad name", "modal:-env:v", "modal:/x"]
)
def test_a_bad_modal_location_is_one_line(spec: str) -> None:
    with pytest.raises(StateError) as caught:
        open_store(spec)
    assert str(caught.value) == (
        f"{spec}: not a Modal state location; expected modal:[<environment>:]<volume>[/<path>], "
        "names made of letters, digits, '-', '_' and '.'"
    )


def test_anything_else_is_a_local_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert open_store(".modaliac/state.json").describe() == ".modaliac/state.json"
    assert open_store("~/s.json").describe() == str(tmp_path / "s.json")
    assert open_store(tmp_path / "modal:x").describe() == str(tmp_path / "modal:x")


def test_naming_a_modal_store_imports_no_modal() -> None:
    code = (
        "import sys\n"
        "from modal_iac.state.stores import open_store\n"
        "print(open_store('modal:prod:st').describe())\n"
        "assert 'modal' not in sys.modules and 'grpclib' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "modal:prod:st/state.json\n"
