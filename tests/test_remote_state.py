"""The state on Modal, through the real SDK against the local Modal API: a file on a Volume and
a leased lock entry in a Dict. Lease expiry runs on an injected clock, not on real time.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import modal
import pytest

from modal_iac.errors import StateError
from modal_iac.local_api import LocalModalServer, reset_modal_client
from modal_iac.state.lock_owner import LockOwner, StateLockedError, lock_id
from modal_iac.state.modal_store import LOCKS_DICT, ModalStore
from modal_iac.state.records import AppRecord, State
from modal_iac.state.stores import open_store

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
LEASE = 900.0


class Clock:
    """Wall time that moves only when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store(
    clock: Clock | None = None, *, environment: str | None = None, **options: float
) -> ModalStore:
    return ModalStore(
        "modaliac-state", environment=environment, clock=clock or Clock(), lease=LEASE, **options
    )


def lock_entry(environment: str | None = None) -> LockOwner | None:
    """The lock entry as another client sees it."""
    raw = modal.Dict.from_name(LOCKS_DICT, environment_name=environment).get(
        "modaliac-state/state.json"
    )
    return None if raw is None else LockOwner.from_json(raw)


def crashed_apply() -> LockOwner:
    """The lock entry an apply that crashed at T0 left behind (nothing will ever release it)."""
    owner = replace(LockOwner.current("crashed apply", T0), expires_at=T0 + LEASE)
    locks = modal.Dict.from_name(LOCKS_DICT, create_if_missing=True)
    assert locks.put("modaliac-state/state.json", owner.to_json(), skip_if_exists=True)
    return owner


def one_line(error: pytest.ExceptionInfo[StateError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def applied() -> State:
    return State(
        {
            "prod/kalm-embedding": AppRecord(
                "kalm-embedding", "prod", "specs/kalm.yaml", "d1", "h1", {"gpu": "A100-40GB"}, "src"
            )
        }
    )


# -- the state file ----------------------------------------------------------------------------


def test_write_then_read_round_trips_through_a_volume(modal_api: LocalModalServer) -> None:
    remote = open_store("modal:modaliac-state")
    assert remote.read() == State()  # a new volume: nothing applied yet
    volume = modal_api.state.find_volume("modaliac-state")
    assert volume is not None and volume.files == {}  # created, but nothing written by a read
    remote.write(applied())
    assert volume.files["state.json"] == applied().to_json().encode()
    assert open_store("modal:modaliac-state/state.json").read() == applied()
    assert "VolumePutFiles2" in modal_api.state.rpc_names()


def test_recording_an_app_is_one_journal_file_folded_once_at_release(
    modal_api: LocalModalServer,
) -> None:
    remote = store()
    state = applied()
    volume = modal_api.state.find_volume("modaliac-state") or modal_api.state.add_volume(
        "modaliac-state"
    )
    with remote.lock("modaliac apply"):
        remote.record(state, "prod/kalm-embedding")
        assert set(volume.files) == {"state.json.journal/000001.json"}  # no state file yet
        assert store().read() == applied()  # another reader replays the journal
        del state.apps["prod/kalm-embedding"]
        remote.record(state, "prod/kalm-embedding")
        assert set(volume.files) == {
            "state.json.journal/000001.json",
            "state.json.journal/000002.json",
        }
        assert store().read() == State()
        state.apps.update(applied().apps)
        remote.record(state, "prod/kalm-embedding")
    assert volume.files == {"state.json": applied().to_json().encode()}  # folded, journal gone
    assert remote.read() == applied()


def test_recording_needs_the_lock(modal_api: LocalModalServer) -> None:
    with pytest.raises(StateError) as caught:
        store().record(applied(), "prod/kalm-embedding")
    assert one_line(caught) == (
        "modal:modaliac-state/state.json: recording an app needs the state's lock"
    )


def many(count: int) -> State:
    """``count`` apps of about 8 KiB each (their rendered source), like a real state."""
    return State(
        {
            f"prod/app-{n:03d}": AppRecord(
                f"app-{n:03d}",
                "prod",
                f"specs/app-{n:03d}.yaml",
                f"d{n}",
                f"h{n}",
                {"gpu": "A10G"},
                f"# app {n}\n" + "x = 1\n" * 1400,
            )
            for n in range(count)
        }
    )


def uploaded_by_an_apply(modal_api: LocalModalServer, count: int) -> int:
    """The bytes an apply of ``count`` new apps uploads to the Volume, recording each."""
    target = many(count)
    remote = ModalStore(f"state-{count}", clock=Clock(), lease=LEASE)
    remote.read()  # the volume exists before counting
    before = modal_api.state.block_bytes
    with remote.lock("modaliac apply"):
        state = remote.read()
        for address, record in target.apps.items():
            state.apps[address] = record
            remote.record(state, address)
    assert remote.read() == target
    return modal_api.state.block_bytes - before


def test_the_bytes_an_apply_uploads_per_app_do_not_grow_with_the_apps(
    modal_api: LocalModalServer,
) -> None:
    """Counted, not timed: whole-state uploads would be 4x more per app at 20 apps than at 5."""
    per_app_5 = uploaded_by_an_apply(modal_api, 5) / 5
    per_app_20 = uploaded_by_an_apply(modal_api, 20) / 20
    record = len(many(1).apps["prod/app-000"].source)
    assert per_app_20 <= per_app_5 * 1.05
    assert per_app_20 < 3 * record  # its entry, its share of the one fold, and a little


def record_each(remote: ModalStore, state: State, apps: State) -> None:
    """What apply does as each app finishes: update its copy of the state, record the app."""
    for address, record in apps.apps.items():
        state.apps[address] = record
        remote.record(state, address)


def journal_files(modal_api: LocalModalServer) -> list[str]:
    volume = modal_api.state.find_volume("modaliac-state")
    assert volume is not None
    return sorted(name for name in volume.files if name.startswith("state.json.journal/"))


def test_a_failed_apply_keeps_the_apps_it_recorded(modal_api: LocalModalServer) -> None:
    store().write(applied())
    first_two = State(dict(list(many(3).apps.items())[:2]))
    remote = store()
    with pytest.raises(RuntimeError, match="deploy failed"), remote.lock("modaliac apply"):
        record_each(remote, remote.read(), first_two)
        raise RuntimeError("deploy failed")
    assert store().read().apps == {**applied().apps, **first_two.apps}
    assert journal_files(modal_api) == []  # folded as the lock was released


KILLED_APPLY = """
import os, sys
from modal_iac.state.modal_store import ModalStore
from modal_iac.state.records import AppRecord
remote = ModalStore("modaliac-state", lease=900.0, clock=lambda: {now})
with remote.lock("modaliac apply"):
    state = remote.read()
    for n in range({count}):
        address = f"prod/killed-{{n}}"
        state.apps[address] = AppRecord(f"killed-{{n}}", "prod", "s.yaml", "d", "h", {{}})
        remote.record(state, address)
    os._exit(9)  # killed: no fold, no release
"""


def test_a_killed_apply_leaves_its_records_and_the_next_run_takes_them_over(
    modal_api: LocalModalServer,
) -> None:
    store().write(applied())
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_APPLY.format(now=T0, count=3)], timeout=120
    )
    assert killed.returncode == 9
    recorded = store().read()
    assert sorted(recorded.apps) == [
        "prod/kalm-embedding",
        "prod/killed-0",
        "prod/killed-1",
        "prod/killed-2",
    ]
    assert lock_entry() is not None  # still held by the killed run, until its lease lapses
    later = store(Clock(T0 + LEASE + 1))
    with later.lock("modaliac apply"):  # takes the lapsed lease over
        state = later.read()
        del state.apps["prod/killed-1"]
        later.record(state, "prod/killed-1")
        assert journal_files(modal_api)[-1] == "state.json.journal/000004.json"  # after theirs
    assert sorted(store().read().apps) == ["prod/kalm-embedding", "prod/killed-0", "prod/killed-2"]
    assert journal_files(modal_api) == []


def test_a_fold_stopped_after_its_upload_reads_right_and_is_cleared_next_time(
    modal_api: LocalModalServer,
) -> None:
    remote = store()
    modal_api.state.faults.add("VolumeRemoveFile2", "FAILED_PRECONDITION", times=100)
    with remote.lock("modaliac apply"):
        record_each(remote, State(), applied())
    volume = modal_api.state.find_volume("modaliac-state")
    assert volume is not None
    assert volume.files["state.json"] == applied().to_json().encode()  # the fold's upload
    assert journal_files(modal_api) == [
        "state.json.journal/000001.json",
        "state.json.journal/sealed.json",
    ]
    assert store().read() == applied()  # the seal says the entry is in the file already
    modal_api.state.faults.clear()
    with remote.lock("modaliac state rm"):  # a later write must not bring the app back
        remote.write(State())
    assert store().read() == State()
    assert journal_files(modal_api) == []


def test_a_fold_stopped_before_its_upload_still_replays_the_journal(
    modal_api: LocalModalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modal_iac.state import modal_store as remote_state

    upload = remote_state.upload

    async def crash_on_the_state(volume: modal.Volume, path: str, data: bytes, **kw: bool) -> None:
        if path == "state.json":
            raise OSError("connection reset")
        await upload(volume, path, data, **kw)

    store().write(applied())
    remote = store()
    monkeypatch.setattr(remote_state, "upload", crash_on_the_state)
    with remote.lock("modaliac apply"):
        record_each(remote, remote.read(), many(2))
    assert journal_files(modal_api)[-1] == "state.json.journal/sealed.json"
    expected = {**applied().apps, **many(2).apps}
    assert store().read().apps == expected
    monkeypatch.setattr(remote_state, "upload", upload)
    with remote.lock("modaliac apply"):
        record_each(remote, remote.read(), many(3))
    assert store().read().apps == {**expected, **many(3).apps}
    assert journal_files(modal_api) == []


def put(path: str, data: bytes) -> None:
    volume = modal.Volume.from_name("modaliac-state", create_if_missing=True)
    with volume.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(data), path)


REPAIR = (
    "the journal is damaged: remove it (modal volume rm -r modaliac-state state.json.journal), "
    "then run plan (an app Modal runs that the state does not record is shown as one apply "
    "only records)"
)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "000002.json",
            b'{"base": null, "format": "modaliac-journal", "version": 1}\n',
            f"000002.json:1:1: expected a journal header and one entry; {REPAIR}",
        ),
        (
            "000002.json",
            b'{"base": null, "format": "modaliac-journal", "version": 1}\n{"address": "a"}\n',
            "000002.json:2:1: expected an address and its record; the journal is damaged",
        ),
        (
            "000002.json",
            b'{"base": "0123", "format": "modaliac-journal", "version": 1}\n'
            b'{"address": "prod/x", "record": null}\n',
            "000002.json:1:1: base: the journal extends another version of "
            "modal:modaliac-state/state.json (the file was replaced since); neither can be "
            f"trusted alone: {REPAIR}",
        ),
        (
            "000002.json",
            b'{"base": null, "format": "modaliac-journal", "version": 1}\n'
            b'{"address": "prod/x", "record": {"app": "y"}}\n',
            "000002.json:2:1: record.prod/x: the entry has no 'environment'",
        ),
        ("notes.txt", b"hello", f"notes.txt: not an entry of the state's journal; {REPAIR}"),
    ],
)
def test_a_damaged_journal_entry_is_one_located_line(
    modal_api: LocalModalServer, name: str, content: bytes, message: str
) -> None:
    remote = store()
    with remote.lock("modaliac apply"):
        remote.record(applied(), "prod/kalm-embedding")  # 000001.json, a good one
        put(f"state.json.journal/{name}", content)
        with pytest.raises(StateError) as caught:
            store().read()
    assert one_line(caught).startswith(f"modal:modaliac-state/state.json.journal/{message}")
    with pytest.raises(StateError):  # the fold refused it too: nothing was folded
        store().read()


def test_a_named_environment_holds_its_own_state(modal_api: LocalModalServer) -> None:
    modal_api.state.add_environment("prod")
    remote = open_store("modal:prod:modaliac-state/team/a.json")
    remote.write(applied())
    with remote.lock("modaliac apply"):
        assert modal_api.state.find_dict(LOCKS_DICT) is None  # nothing in the default one
        assert modal.Dict.from_name(LOCKS_DICT, environment_name="prod").get(
            "modaliac-state/team/a.json"
        )
    prod = modal_api.state.find_volume("modaliac-state", "prod")
    assert prod is not None and set(prod.files) == {"team/a.json"}
    assert modal_api.state.find_volume("modaliac-state") is None


def test_a_missing_environment_is_one_line(modal_api: LocalModalServer) -> None:
    with pytest.raises(StateError) as caught:
        open_store("modal:nope:modaliac-state").read()
    assert one_line(caught) == (
        "modal:nope:modaliac-state/state.json: reading the state: Environment 'nope' not found"
    )


def test_a_corrupt_remote_state_is_one_line(modal_api: LocalModalServer) -> None:
    volume = modal.Volume.from_name("modaliac-state", create_if_missing=True)
    with volume.batch_upload() as batch:
        batch.put_file(io.BytesIO(b'{"format": "modaliac-state", "version": 1'), "state.json")
    with pytest.raises(StateError) as caught:
        store().read()
    assert one_line(caught).startswith(
        "modal:modaliac-state/state.json:1:42: the state is not valid JSON"
    )


# -- the lock ----------------------------------------------------------------------------------


def test_lock_is_a_leased_dict_entry_removed_on_release(modal_api: LocalModalServer) -> None:
    remote = store()
    with remote.lock("modaliac apply specs/") as me:
        assert me.expires_at == T0 + LEASE
        assert lock_entry() == me
        assert modal_api.state.requests("DictUpdate")[0].if_not_exists  # an atomic create
    assert lock_entry() is None
    with remote.lock("again"):  # released: free for the next run
        pass


def test_the_lock_is_released_when_the_apply_fails(modal_api: LocalModalServer) -> None:
    with pytest.raises(RuntimeError, match="deploy failed"), store().lock("modaliac apply"):
        raise RuntimeError("deploy failed")
    assert lock_entry() is None


def test_a_second_locker_fails_naming_the_holder(modal_api: LocalModalServer) -> None:
    with store().lock("modaliac apply specs/") as first:
        started = time.monotonic()
        with pytest.raises(StateLockedError) as caught, store(Clock(T0 + 60)).lock("b"):
            pytest.fail("took a held lock")
        assert time.monotonic() - started < 2
        assert lock_entry() == first  # untouched
    assert one_line(caught) == (
        f"modal:modaliac-state/state.json is locked by {first.user}@{first.host} "
        f"(pid {first.pid}, `modaliac apply specs/`) since 2027-01-15 08:00:00 UTC; wait for it "
        "to finish and retry, or if that process is gone, retry after 2027-01-15 08:15:00 UTC "
        "when its lease lapses"
    )


def test_a_second_locker_waits_for_the_holder_to_finish(modal_api: LocalModalServer) -> None:
    held = store().lock("first")
    held.__enter__()
    threading.Timer(0.2, held.__exit__, (None, None, None)).start()
    started = time.monotonic()
    with store(poll=0.02).lock("second", wait=10) as me:
        assert lock_entry() == me
    assert 0.1 < time.monotonic() - started < 5


def test_a_lapsed_lease_is_taken_over_and_its_holder_learns_it(
    modal_api: LocalModalServer,
) -> None:
    clock = Clock()
    first = store(clock)
    with first.lock("slow apply") as crashed:
        later = store(Clock(T0 + LEASE + 1))
        with later.lock("modaliac apply") as me:
            assert lock_entry() == me
            clock.now = T0 + LEASE + 2
            with pytest.raises(StateLockedError) as caught:
                first.write(applied())  # a write under a lost lock is refused
            assert one_line(caught).startswith(
                "modal:modaliac-state/state.json: this run's lock was taken over by "
            )
            assert "lapsed at 2027-01-15 08:15:00 UTC); stop, and plan again" in str(caught.value)
            assert lock_entry() == me
        assert crashed.token != me.token
    assert lock_entry() is None  # the first run's exit removed nothing of the second's
    assert store().read() == State()  # the refused write wrote nothing


def test_refresh_extends_the_lease(modal_api: LocalModalServer) -> None:
    clock = Clock()
    remote = store(clock)
    with remote.lock("long apply") as me:
        clock.now = T0 + 600
        remote.refresh()
        renewed = lock_entry()
        assert renewed is not None and renewed.expires_at == T0 + 600 + LEASE
        assert renewed.token == me.token
        clock.now = T0 + 800
        remote.write(applied())  # writes renew too
        assert (entry := lock_entry()) is not None and entry.expires_at == T0 + 800 + LEASE
        with pytest.raises(StateLockedError):  # at T0 + 1000 the first lease would have lapsed
            store(Clock(T0 + 1000)).lock("b").__enter__()


def test_a_heartbeat_renews_the_lease_while_held_and_stops_on_release(
    modal_api: LocalModalServer,
) -> None:
    clock = Clock()
    remote = store(clock, renew_every=0.02)
    with remote.lock("apply with a long first build") as me:
        clock.now = T0 + 600  # no write for ten minutes: the heartbeat renews anyway
        deadline = time.monotonic() + 10
        while (entry := lock_entry()) is None or entry.expires_at != T0 + 600 + LEASE:
            assert time.monotonic() < deadline, "the heartbeat did not renew the lease"
            time.sleep(0.01)
        assert entry.token == me.token
        with pytest.raises(StateLockedError):  # the first lease would have lapsed at T0 + 900
            store(Clock(T0 + 1000)).lock("b").__enter__()
    assert lock_entry() is None
    beating = [t for t in threading.enumerate() if t.name == "modaliac-lock-heartbeat"]
    assert beating == []  # released: nothing renews the lock any more


def test_refresh_works_from_inside_a_running_event_loop(modal_api: LocalModalServer) -> None:
    clock = Clock()
    remote = store(clock)

    async def deploying() -> None:  # e.g. a progress callback of an async apply
        clock.now = T0 + 60
        remote.refresh()

    with remote.lock("modaliac apply"):
        asyncio.run(deploying())
        assert (entry := lock_entry()) is not None and entry.expires_at == T0 + 60 + LEASE


def test_concurrent_takers_of_a_lapsed_lease_exactly_one_wins(
    modal_api: LocalModalServer,
) -> None:
    lapsed = crashed_apply()
    takers = [store(Clock(T0 + LEASE + 1)) for _ in range(4)]
    # Slow down the first pops so that every taker is past its look at the lapsed entry
    # before any of them replaces it.
    modal_api.state.faults.add("DictPop", delay=0.2, times=4)
    start = threading.Barrier(len(takers))
    outcomes: list[str] = []

    def take(remote: ModalStore) -> None:
        start.wait()
        try:
            with remote.lock("modaliac apply") as me:
                outcomes.append(me.token)
                time.sleep(0.5)  # hold it while the others finish trying
        except StateLockedError:
            outcomes.append("locked")

    threads = [threading.Thread(target=take, args=(t,)) for t in takers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(outcomes).count("locked") == len(takers) - 1, outcomes
    winner = next(o for o in outcomes if o != "locked")
    claim = f"modaliac-state/state.json#takeover:{lapsed.token}"
    assert modal.Dict.from_name(LOCKS_DICT).get(claim) == winner  # it won by taking over


def test_a_taker_with_a_stale_view_does_not_pop_the_winners_lock(
    modal_api: LocalModalServer,
) -> None:
    """The interleaving that pop-then-put alone gets wrong: B and C both saw A's lapsed entry;
    B took over first; C must not remove B's fresh lock."""
    lapsed = crashed_apply()
    b = store(Clock(T0 + LEASE + 1))
    with b.lock("b") as b_owner:
        c = store(Clock(T0 + LEASE + 1))
        c_owner = LockOwner.current("c", T0 + LEASE + 1)

        async def take_over_as_c() -> LockOwner | None:
            locks = await c._hydrated(c._locks_object())
            return await c._take_over(locks, lapsed, c_owner)  # C acts on what it saw

        assert c._run("taking over", take_over_as_c) == b_owner
        assert lock_entry() == b_owner


def test_break_lock_removes_the_lock_of_that_id_only(modal_api: LocalModalServer) -> None:
    with store().lock("stuck apply") as stuck:
        with pytest.raises(StateLockedError) as caught:
            store().break_lock("0123456789ab")
        assert one_line(caught).endswith(", not by lock '0123456789ab'; nothing removed")
        assert lock_entry() == stuck
        assert store().break_lock(lock_id(stuck)) == stuck
        assert lock_entry() is None
    assert store().break_lock(lock_id(stuck)) is None


# -- hostile lock entries: held (never taken over), one line, and a way out -------------------

KEY = "modaliac-state/state.json"
YEAR_2100 = 4_102_444_800.0


def entry(**changes: object) -> str:
    """A lock entry as a modaliac run writes one, with ``changes`` (None: the field left out)."""
    owner = json.loads(replace(LockOwner.current("apply", T0), expires_at=T0 + LEASE).to_json())
    owner.update(changes)
    return json.dumps({k: v for k, v in owner.items() if v is not None})


UNREADABLE = {  # the entry as put in the Dict, and why modaliac cannot read it
    "NaN lease": (entry(expires_at=float("nan")), "its expires_at is not a moment"),
    "infinite lease": (entry(expires_at=float("inf")), "its expires_at is not a moment"),
    "huge lease": (entry(expires_at=10**400), "its expires_at is not a moment"),
    "negative lease": (entry(expires_at=-1.0), "its expires_at is not a moment"),
    "lease as text": (entry(expires_at="tomorrow"), "its expires_at is not a number"),
    "since as text": (entry(since="then"), "its since is not a number"),
    "huge since": (entry(since=1e300), "its since is not a moment"),
    "huge pid": (entry(pid=10**30), "its pid is not a process id"),
    "pid as bool": (entry(pid=True), "its pid is not a process id"),
    "owner as number": (entry(user=7), "its user is not text"),
    "no lease": (entry(expires_at=None), "it has no expires_at"),
    "no token": (entry(token=None), "it has no token"),
    "not JSON": ("{oops", "it is not JSON"),
    "a list": ("[1, 2]", "it is not a JSON object"),
    "not text": ({"pid": 1}, "it is not text"),
    "a number": (12345, "it is not text"),
}


def put_entry(value: object) -> None:
    assert modal.Dict.from_name(LOCKS_DICT, create_if_missing=True).put(KEY, value)


def raw_entry() -> object:
    return modal.Dict.from_name(LOCKS_DICT).get(KEY)


def unlock_hint(text: str) -> str:
    """The lock id a refusal names in its ``modaliac state unlock ID --state ...``."""
    found = re.search(r"modaliac state unlock ([0-9a-f]{12}) --state modal:modaliac-state", text)
    assert found, text
    return found.group(1)


@pytest.mark.parametrize(("value", "why"), UNREADABLE.values(), ids=list(UNREADABLE))
def test_an_unreadable_lock_entry_is_held_until_a_person_removes_it(
    modal_api: LocalModalServer, value: object, why: str
) -> None:
    put_entry(value)
    later = store(Clock(T0 + 30 * 86400))  # a month on: any real lease would have lapsed
    with pytest.raises(StateLockedError) as caught, later.lock("modaliac apply"):
        pytest.fail("took over an unreadable lock entry")
    message = one_line(caught)
    assert message.startswith(
        f"modal:modaliac-state/state.json is locked by a lock entry modaliac cannot read ({why}"
    )
    assert "it never lapses by itself: if no modaliac run holds it, remove it: " in message
    assert raw_entry() == value or value != value  # untouched (a NaN is not equal to itself)
    with pytest.raises(StateError), later.lock("modaliac apply", wait=0.05):
        pass  # waiting changes nothing: it is still held, and still one line
    assert later.break_lock(unlock_hint(message)) is not None  # the way out it names
    with later.lock("modaliac apply") as me:
        assert lock_entry() == me


def test_a_lease_of_year_2100_is_held_and_named_as_no_modaliac_lease(
    modal_api: LocalModalServer,
) -> None:
    put_entry(entry(expires_at=YEAR_2100))
    with pytest.raises(StateLockedError) as caught, store(Clock(T0 + 86400)).lock("b"):
        pytest.fail("took a held lock")
    message = one_line(caught)
    assert "until 2100-01-01 00:00:00 UTC, further ahead than any modaliac lease (15 minutes, " in (
        message
    )
    assert lock_entry() is not None and lock_entry().expires_at == YEAR_2100  # type: ignore[union-attr]
    assert store().break_lock(unlock_hint(message)) is not None
    assert raw_entry() is None


def test_a_holder_named_with_control_characters_is_shown_printable(
    modal_api: LocalModalServer,
) -> None:
    hostile = "\x1b]0;owned\x07\x1b[2J\r\nrm -rf /"
    put_entry(entry(command=hostile, user="ev\x1bil", host="h\nost"))
    with pytest.raises(StateLockedError) as caught, store(Clock(T0 + 60)).lock("b"):
        pytest.fail("took a held lock")
    message = one_line(caught)
    assert not any(c in message for c in "\x1b\x07\r"), message
    assert "ev?il@h?ost (pid " in message and "`?]0;owned??[2J??rm -rf /`" in message


def test_state_commands_refuse_a_hostile_lock_in_one_line_and_state_unlock_removes_it(
    modal_api: LocalModalServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the CLI: a lock entry of year 2100 and NaN fields is one line, exit 1, no
    traceback; `state unlock` with the id it names removes it, and only it."""
    from modal_iac.cli import main

    monkeypatch.chdir(tmp_path)
    store().write(applied())
    remote = "modal:modaliac-state"
    for value in (entry(expires_at=YEAR_2100), entry(since=float("nan"), pid=-1)):
        put_entry(value)
        code = main(["state", "rm", "prod/kalm-embedding", "--state", remote])
        out, err = capsys.readouterr()
        assert (code, out) == (1, "")
        assert err.count("\n") == 1 and "Traceback" not in err and "internal error" not in err
        lock = unlock_hint(err)
        assert main(["state", "unlock", "feedfacefeed", "--state", remote]) == 1
        assert "nothing removed" in capsys.readouterr().err
        assert raw_entry() == value
        assert main(["state", "unlock", lock, "--state", remote]) == 0
        out, _ = capsys.readouterr()
        assert out.startswith("modal:modaliac-state/state.json: removed the lock held by ")
        assert raw_entry() is None
    assert main(["state", "unlock", lock, "--state", remote]) == 0
    assert (
        capsys.readouterr().out == "modal:modaliac-state/state.json: not locked; nothing removed\n"
    )
    assert main(["state", "rm", "prod/kalm-embedding", "--state", remote]) == 0
    assert store().read() == State()
    # A local state's lock is the OS's: nothing to unlock.
    assert main(["state", "unlock", lock]) == 1
    assert "a local state's lock is the OS's" in capsys.readouterr().err


# -- an unreachable Modal ----------------------------------------------------------------------


def test_an_unreachable_api_fails_within_seconds_with_one_line(
    modal_api: LocalModalServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    reset_modal_client()
    monkeypatch.setenv("MODAL_SERVER_URL", f"http://127.0.0.1:{closed}")
    remote = store(timeout=1.0)
    for doing, call in [
        ("reading the state", remote.read),
        ("taking the state lock", lambda: remote.lock("x").__enter__()),
    ]:
        started = time.monotonic()
        with pytest.raises(StateError) as caught:
            call()
        assert time.monotonic() - started < 3
        assert one_line(caught) == (
            f"modal:modaliac-state/state.json: {doing} timed out after 1s; "
            f"is Modal reachable at http://127.0.0.1:{closed}?"
        )
    reset_modal_client()


def test_a_read_that_a_fold_overtakes_reads_again(
    modal_api: LocalModalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader lists the journal, then the fold replaces the state and removes the journal,
    then the reader reads the state: it sees a journal that is not of this file, and reads
    again instead of replaying it or dropping it."""
    from modal_iac.state import modal_store as remote_state

    store().write(applied())
    applying = store()
    holding = applying.lock("modaliac apply")
    holding.__enter__()
    record_each(applying, applying.read(), many(2))
    read_optional = remote_state.read_optional
    reads = 0

    async def overtaken(volume: modal.Volume, path: str) -> bytes | None:
        nonlocal reads
        reads += 1
        if reads == 1:  # after the reader listed the journal: the apply finishes and folds
            holding.__exit__(None, None, None)
        return await read_optional(volume, path)

    monkeypatch.setattr(remote_state, "read_optional", overtaken)
    assert store().read().apps == {**applied().apps, **many(2).apps}
    assert reads == 3  # the reader's first read, the fold's, the reader's second
    assert journal_files(modal_api) == []
