"""The state's journal: each recorded app is one appended line, replayed by every reader and
folded into the state file once, as the lock is released; a process killed at any point of
that leaves a state that tells the truth, and a damaged journal is one located line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from modal_iac.errors import StateError
from modal_iac.state.journal import digest, journal_path
from modal_iac.state.records import AppRecord, State
from modal_iac.state.store import LocalStore, read_state, write_state

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrSt12345"  # shaped like a Hugging Face token


def record(app: str) -> AppRecord:
    return AppRecord(app, None, f"specs/{app}.yaml", "digest", "hash", {"gpu": "A10"}, "src", "1")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A state that records ``a``."""
    state = tmp_path / "state.json"
    write_state(state, State({"a": record("a")}))
    return state


# -- recording and folding ---------------------------------------------------------------------


def test_a_record_is_one_journal_line_replayed_by_readers_and_folded_on_release(
    path: Path,
) -> None:
    before = path.read_bytes()
    store = LocalStore(path)
    with store.lock("modaliac apply"):
        state = store.read()
        for app in ("b", "c"):
            state.apps[app] = record(app)
            store.record(state, app)
        del state.apps["a"]
        store.record(state, "a")
        # The state file is not rewritten per app: the journal holds the three records.
        assert path.read_bytes() == before
        lines = journal_path(path).read_text().splitlines()
        assert len(lines) == 4
        assert json.loads(lines[0]) == {
            "format": "modaliac-journal",
            "version": 1,
            "base": digest(before),
        }
        assert json.loads(lines[1]) == {"address": "b", "record": asdict(record("b"))}
        assert json.loads(lines[3]) == {"address": "a", "record": None}
        assert set(read_state(path).apps) == {"b", "c"}  # what another reader sees
    assert not journal_path(path).exists()
    assert path.read_text() == State({"b": record("b"), "c": record("c")}).to_json()


def test_recording_needs_the_lock(path: Path) -> None:
    store = LocalStore(path)
    with pytest.raises(StateError, match="recording an app needs the state's lock"):
        store.record(State({"b": record("b")}), "b")
    assert not journal_path(path).exists()


def test_a_write_under_the_lock_folds_what_was_recorded(path: Path) -> None:
    store = LocalStore(path)
    with store.lock("modaliac apply"):
        state = store.read()
        state.apps["b"] = record("b")
        store.record(state, "b")
        state.apps["c"] = record("c")
        store.write(state)
        assert not journal_path(path).exists()
        assert set(read_state(path).apps) == {"a", "b", "c"}
    assert set(read_state(path).apps) == {"a", "b", "c"}


def test_an_exception_inside_the_lock_still_folds(path: Path) -> None:
    store = LocalStore(path)
    with pytest.raises(KeyboardInterrupt), store.lock("modaliac apply"):
        state = store.read()
        state.apps["b"] = record("b")
        store.record(state, "b")
        raise KeyboardInterrupt
    assert not journal_path(path).exists()
    assert set(json.loads(path.read_text())["apps"]) == {"a", "b"}


def test_a_fold_that_fails_leaves_the_journal_that_readers_replay(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modal_iac.state.store

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    store = LocalStore(path)
    with store.lock("modaliac apply"):
        state = store.read()
        state.apps["b"] = record("b")
        store.record(state, "b")
        monkeypatch.setattr(modal_iac.state.store, "_replace_file", full)
    monkeypatch.undo()
    assert set(json.loads(path.read_text())["apps"]) == {"a"}
    assert set(read_state(path).apps) == {"a", "b"}
    with store.lock("modaliac apply"):  # the next holder that writes folds it
        store.write(store.read())
    assert not journal_path(path).exists()
    assert set(json.loads(path.read_text())["apps"]) == {"a", "b"}


def test_a_journal_is_written_against_a_state_not_yet_written(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = LocalStore(path)
    with store.lock("modaliac apply"):
        store.record(State({"a": record("a")}), "a")
        assert not path.exists()
        assert json.loads(journal_path(path).read_text().splitlines()[0])["base"] is None
        assert set(read_state(path).apps) == {"a"}
    assert set(json.loads(path.read_text())["apps"]) == {"a"}


# -- killed at each point of the journal -------------------------------------------------------

# Records b, then c, under the lock, then releases it (which folds); SIGKILLed at ``point``.
RECORDER = textwrap.dedent(
    """
    import os, pathlib, signal, sys
    from modal_iac.state import journal, store as state_module
    from modal_iac.state.records import AppRecord
    from modal_iac.state.store import LocalStore

    path, point = pathlib.Path(sys.argv[1]), sys.argv[2]

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "starting-journal":
        journal.os.replace = die
    if point == "before-seal":
        journal.JournalWriter.seal = die
    if point == "after-seal":
        state_module._replace_file = die
    if point == "after-fold":
        pathlib.Path.unlink = die
    store = LocalStore(path)
    with store.lock("modaliac apply"):
        state = store.read()
        for n, app in enumerate(["b", "c"]):
            if point == "mid-line" and n == 1:
                write = os.write
                os.write = lambda fd, data: (write(fd, data[: len(data) // 2]), die())
            state.apps[app] = AppRecord(app, None, f"specs/{app}.yaml", "d", "h", {}, "s", "1")
            store.record(state, app)
            if point == "after-line" and n == 0:
                die()
    """
)


@pytest.fixture
def recorder() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@pytest.mark.parametrize(
    ("point", "truth", "in_file"),
    [
        ("starting-journal", {"a"}, {"a"}),  # nothing recorded yet
        ("after-line", {"a", "b"}, {"a"}),
        ("mid-line", {"a", "b"}, {"a"}),  # c's half line is not a record
        ("before-seal", {"a", "b", "c"}, {"a"}),
        ("after-seal", {"a", "b", "c"}, {"a"}),  # sealed, the state file not replaced yet
        ("after-fold", {"a", "b", "c"}, {"a", "b", "c"}),  # the journal not removed yet
    ],
)
def test_a_recorder_killed_at_any_point_leaves_a_state_that_tells_the_truth(
    path: Path,
    point: str,
    truth: set[str],
    in_file: set[str],
    recorder: list[subprocess.Popen[bytes]],
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", RECORDER, str(path), point],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    recorder.append(process)
    assert process.wait(timeout=20) == -signal.SIGKILL
    assert set(read_state(path).apps) == truth
    assert set(json.loads(path.read_text())["apps"]) == in_file

    # The next run goes on from there: it appends after what is complete, and folds it all.
    store = LocalStore(path)
    with store.lock("modaliac apply"):
        state = store.read()
        state.apps["d"] = record("d")
        store.record(state, "d")
        assert set(read_state(path).apps) == truth | {"d"}
    assert not journal_path(path).exists()
    assert set(json.loads(path.read_text())["apps"]) == truth | {"d"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json", "state.json.lock"]


def test_a_reader_sees_what_another_process_recorded_while_it_holds_the_lock(
    path: Path, recorder: list[subprocess.Popen[bytes]]
) -> None:
    holding = RECORDER + "    sys.stdout.write('recorded\\n'); sys.stdout.flush()\n"
    holding += "    sys.stdin.readline()\n"
    process = subprocess.Popen(
        [sys.executable, "-c", holding, str(path), "hold"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    recorder.append(process)
    assert process.stdout is not None and process.stdin is not None
    assert process.stdout.readline() == b"recorded\n"
    assert set(read_state(path).apps) == {"a", "b", "c"}
    assert set(json.loads(path.read_text())["apps"]) == {"a"}
    process.stdin.close()
    assert process.wait(timeout=20) == 0
    assert not journal_path(path).exists()
    assert set(json.loads(path.read_text())["apps"]) == {"a", "b", "c"}


# -- a damaged or foreign journal --------------------------------------------------------------


def _header(path: Path, base: str | None = "") -> str:
    named = digest(path.read_bytes()) if base == "" else base
    return json.dumps({"format": "modaliac-journal", "version": 1, "base": named}) + "\n"


def _line(app: str, **fields: object) -> str:
    return json.dumps({"address": app, "record": {**asdict(record(app)), **fields}}) + "\n"


def test_an_incomplete_last_line_is_ignored(path: Path) -> None:
    journal_path(path).write_text(_header(path) + _line("b") + _line("c")[:40])
    assert set(read_state(path).apps) == {"a", "b"}


def test_a_journal_with_half_a_header_records_nothing(path: Path) -> None:
    journal_path(path).write_text(_header(path)[:20])
    assert set(read_state(path).apps) == {"a"}


def test_a_journal_folded_into_the_state_already_is_ignored(path: Path) -> None:
    sealed = json.dumps({"sealed": digest(path.read_bytes())}) + "\n"
    journal_path(path).write_text(_header(path, "0" * 64) + _line("b") + sealed)
    assert set(read_state(path).apps) == {"a"}


@pytest.mark.parametrize(
    ("journal", "message"),
    [
        ("{header}{b}{{broken\n", "{journal}:3:2: the journal line is not valid JSON"),
        ("{header}{{broken\n{b}", "{journal}:2:2: the journal line is not valid JSON"),
        ("{header}[1, 2]\n", "{journal}:2:1: expected an address and its record"),
        ('{header}{{"address": "b"}}\n', "{journal}:2:1: expected an address and its record"),
        ("{header}\xff\n", "{journal}:2:1: not UTF-8"),
        ("{header}" + "[" * 100_000 + "\n", "{journal}:2:1: the journal line is nested too"),
        ('{{"format": "modaliac-state"}}\n{b}', "{journal}:1:1: not a modaliac state journal"),
        ('{header}{{"sealed": "x"}}\n{b}', "{journal}:3:1: a line after the seal"),
        ('{header}{{"sealed": 3}}\n', "{journal}:2:1: sealed: expected a digest"),
        ("{foreign}{b}", "{journal}:1:1: base: the journal extends another version of {path}"),
        ("{header}{wrong_type}", "{journal}:2:1: record.b.deployed_version: has the wrong type"),
        ("{header}{misfiled}", "{journal}:2:1: record.prod/b: the entry is for b; each entry"),
        ("{header}{secret}", "{journal}:2:1: record.b: unknown field (a value that looks like"),
    ],
)
def test_a_damaged_journal_is_one_located_line(path: Path, journal: str, message: str) -> None:
    b = _line("b")
    pieces = {
        "header": _header(path),
        "foreign": _header(path, "0" * 64),
        "b": b,
        "wrong_type": _line("b", deployed_version="2"),
        "misfiled": b.replace('"address": "b"', '"address": "prod/b"'),
        "secret": _line("b", **{TOKEN: 1}),
    }
    where = journal_path(path)
    damaged = journal.format(**pieces).encode("latin-1")
    where.write_bytes(damaged)
    for read in (lambda: read_state(path), lambda: LocalStore(path).read()):
        with pytest.raises(StateError) as caught:
            read()
        text = str(caught.value)
        assert text.startswith(message.format(journal=where, path=path)), text
        assert "\n" not in text and TOKEN not in text
    store = LocalStore(path)
    with pytest.raises(StateError), store.lock("modaliac apply"):  # nor is it written over
        store.record(State({"c": record("c")}), "c")
    assert where.read_bytes() == damaged
