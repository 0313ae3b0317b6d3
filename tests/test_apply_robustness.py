"""apply under stress, end to end against the local Modal API with the real ``modal`` client:
the JSON plan against docs/plan.schema.json, a 50-app Markdown plan within a GitHub comment,
two applies at once, an apply killed half way, and faults on every RPC modaliac depends on."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from modal_iac.cli import main
from modal_iac.local_api import LocalModalServer
from modal_iac.plan.present import as_json
from modal_iac.plan.saved import load_plan
from modal_iac.state.store import read_state

ROOT = Path(__file__).resolve().parent.parent
PLAN_SCHEMA = ROOT / "docs" / "plan.schema.json"
PLAN_DOC = ROOT / "docs" / "plan-format.md"
SMALL_SPEC = ROOT / "examples" / "small-embedding-no-snapshot.yaml"
STATE = Path(".modaliac") / "state.json"
GITHUB_COMMENT_LIMIT = 65_536
# Child processes import modal_iac from this checkout, not from wherever it is installed.
THIS_CHECKOUT = {
    "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
}


# -- helpers ------------------------------------------------------------------------------------


def cli(
    capsys: pytest.CaptureFixture[str], *argv: str, answer: bool = True
) -> tuple[int, str, str]:
    code = main(list(argv), confirm=lambda question: answer)
    out, err = capsys.readouterr()
    return code, out, err


def timed_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    code, out, err = cli(capsys, *argv)
    return code, out, err, time.monotonic() - started


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def small_spec(app: str, *, http: bool = False) -> str:
    """The smallest example under another app name; ``http`` adds an endpoint the spec
    declares open (no API key)."""
    text = SMALL_SPEC.read_text().replace("app: minilm-embedding", f"app: {app}", 1)
    return text + ("surfaces:\n  http:\n    open: true\n" if http else "")


def recorded(work: Path) -> dict[str, int | None]:
    return {a: r.deployed_version for a, r in read_state(work / STATE).apps.items()}


def assert_state_sound(work: Path) -> None:
    """The state parses, and no temporary file of an interrupted write is left beside it."""
    read_state(work / STATE)
    leftovers = sorted(p.name for p in (work / STATE).parent.glob(".state-*"))
    assert not leftovers, leftovers


def publishes(api: LocalModalServer) -> int:
    return len(api.state.requests("AppPublish"))


def wait_until(what: str, condition: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


Spawn = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def modaliac() -> Iterator[Spawn]:
    """Start the CLI in its own process: ``modaliac(work, "apply", "--yes")``. MODAL_* (set by
    the modal_api fixture) point it at the in-process local API. Whatever a test leaves running
    is killed afterwards."""
    started: list[subprocess.Popen[str]] = []

    def spawn(
        work: Path, *argv: str, env: dict[str, str] | None = None, code: str = ""
    ) -> subprocess.Popen[str]:
        """``env`` adds variables; ``code`` runs instead of ``-m modal_iac.cli`` (with argv)."""
        program = ["-c", code] if code else ["-m", "modal_iac.cli"]
        process = subprocess.Popen(
            [sys.executable, *program, *argv],
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1", **THIS_CHECKOUT, **(env or {})},
        )
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


@pytest.fixture
def project(modal_api: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """specs/ with kalm (GPU snapshot: updates are replaces) and minilm; secrets on Modal."""
    work = tmp_path / "work"
    (work / "specs").mkdir(parents=True)
    shutil.copy(ROOT / "specs" / "kalm.yaml", work / "specs" / "kalm.yaml")
    shutil.copy(SMALL_SPEC, work / "specs" / "minilm.yaml")
    modal_api.state.add_secret("huggingface", ("HF_TOKEN",))
    modal_api.state.add_secret("kalm-api-key", ("VLLM_API_KEY",))
    monkeypatch.chdir(work)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    return work


# Deadlines small enough that a hanging Modal costs a test seconds, not minutes (the deploy
# timeout is apply's --deploy-timeout).
CONNECT_TIMEOUT, READ_TIMEOUT, DEPLOY_TIMEOUT = 2.0, 2.0, 3.0
LONG_DELAY = 4.0  # longer than every deadline above


@pytest.fixture
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    from modal_iac.modal import sdk as modal_api

    monkeypatch.setattr(modal_api, "CONNECT_TIMEOUT", CONNECT_TIMEOUT)
    monkeypatch.setattr(modal_api, "READ_TIMEOUT", READ_TIMEOUT)


# -- 1. the JSON plan and its schema -------------------------------------------------------------


@pytest.fixture(scope="module")
def plan_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(PLAN_SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return schema


def schema_errors(schema: dict[str, Any], document: object) -> list[str]:
    validator = Draft202012Validator(schema)
    return sorted(
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(document)
    )


def test_plans_of_every_shape_match_the_schema(
    project: Path,
    modal_api: LocalModalServer,
    capsys: pytest.CaptureFixture[str],
    plan_schema: dict[str, Any],
) -> None:
    from modal_iac.modal.changes import stop

    specs = project / "specs"
    for app in ("tiny-a", "tiny-b", "tiny-c"):
        (specs / f"{app}.yaml").write_text(small_spec(app))
    (specs / "web.yaml").write_text(small_spec("web", http=True))
    plans: dict[str, dict[str, Any]] = {}

    def plan(name: str, *extra: str) -> dict[str, Any]:
        code, out, err = cli(capsys, "plan", "--format", "json", *extra)
        assert code == 0, err
        document: dict[str, Any] = json.loads(out)
        assert schema_errors(plan_schema, document) == [], name
        plans[name] = document
        return document

    def change(document: dict[str, Any], address: str) -> dict[str, Any]:
        found: dict[str, Any] = next(c for c in document["changes"] if c["address"] == address)
        return found

    offline = plan("offline create", "--offline")
    assert offline["online"] is False and offline["summary"]["create"] == 6
    assert all(c["observed"] == {"state": None, "version": None} for c in offline["changes"])

    online = plan("online create")
    assert online["online"] is True and online["warnings"]
    assert change(online, "web")["observed"] == {"state": "missing", "version": None}

    code, _, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert plan("no changes")["has_changes"] is False

    edit(specs / "minilm.yaml", "gpu: L4", "gpu: T4\nsecrets: [not-on-modal]")  # update, blocked
    edit(specs / "kalm.yaml", "timeout: 5m", "timeout: 10m")  # replace
    modal_api.state.set_autoscaler_override("tiny-a", "Model.*", by="alice", min_containers=2)
    assert stop("tiny-b", None)  # stopped by hand: drift, created again
    (specs / "tiny-c.yaml").unlink()  # delete
    state = read_state(project / STATE)
    del state.apps["web"]  # deployed, but the apply that did it never recorded it
    (project / STATE).write_text(state.to_json())
    mixed = plan("every action")
    assert {c["action"] for c in mixed["changes"]} == {
        "create",
        "update",
        "replace",
        "delete",
        "no-op",
    }
    # A hand-made autoscaler change is planned as an update that puts the spec's value back.
    assert change(mixed, "tiny-a")["action"] == "update" and change(mixed, "tiny-a")["drift"]
    assert change(mixed, "tiny-a")["fields"] == [
        {"path": "scaling.min_containers[Model]", "before": 2, "after": 0}
    ]
    assert change(mixed, "tiny-b")["action"] == "create" and change(mixed, "tiny-b")["drift"]
    assert change(mixed, "tiny-c")["record"] is None
    assert (
        "Modal already runs exactly this version: apply only records it"
        in (change(mixed, "web")["notes"])
    )
    assert mixed["status"] == "blocked"
    assert mixed["blockers"] == change(mixed, "minilm-embedding")["blockers"]
    assert [(b["code"], b["address"]) for b in mixed["blockers"]] == [
        ("missing-secret", "minilm-embedding")
    ]

    # A saved plan validates too, and reads back to the very same document.
    code, _, err = cli(capsys, "plan", "-o", "plan.json")
    assert code == 0, err
    saved = (project / "plan.json").read_text(encoding="utf-8")
    assert schema_errors(plan_schema, json.loads(saved)) == []
    assert as_json(load_plan(saved)) == saved

    # An app adopted with `modaliac import`: its recorded code hash is empty.
    modal_api.state.foreign_deploy("adopted", deployed_by="dave")
    assert cli(capsys, "import", "adopted")[0] == 0
    (specs / "adopted.yaml").write_text(small_spec("adopted"))
    adopted = change(plan("imported"), "adopted")
    assert adopted["source_sha256"]["before"] == "" and adopted["recorded"]["version"] == 1


def test_the_schema_is_strict(
    project: Path, capsys: pytest.CaptureFixture[str], plan_schema: dict[str, Any]
) -> None:
    (project / "specs" / "minilm.yaml").unlink()
    assert cli(capsys, "apply", "--yes")[0] == 0
    shutil.copy(SMALL_SPEC, project / "specs" / "minilm.yaml")
    (project / "specs" / "kalm.yaml").unlink()
    _, out, _ = cli(capsys, "plan", "--format", "json")
    good = json.loads(out)
    assert schema_errors(plan_schema, good) == []
    create = next(i for i, c in enumerate(good["changes"]) if c["action"] == "create")
    delete = next(i for i, c in enumerate(good["changes"]) if c["action"] == "delete")

    def broken(change: Callable[[dict[str, Any]], None]) -> list[str]:
        document = json.loads(out)
        change(document)
        return schema_errors(plan_schema, document)

    assert broken(lambda d: d.update(extra=1))
    assert broken(lambda d: d.pop("online"))
    assert broken(lambda d: d.update(format_version=1))
    assert broken(lambda d: d.update(status="applicable"))
    assert broken(lambda d: d["inputs"].pop("env"))
    assert broken(lambda d: d["warnings"].append("a bare string"))
    assert broken(lambda d: d["warnings"].append({"code": "x", "address": None, "message": ""}))
    assert broken(lambda d: d["summary"].update(destroy=0))
    assert broken(lambda d: d["changes"][create].update(action="destroy"))
    assert broken(lambda d: d["changes"][create].pop("record"))
    assert broken(lambda d: d["changes"][create]["record"].update(password="x"))
    assert broken(lambda d: d["changes"][create].update(record=None))
    assert broken(lambda d: d["changes"][create]["fields"][0].update(note="x"))
    assert broken(lambda d: d["changes"][create]["spec"].update(sha256="abc"))
    assert broken(lambda d: d["changes"][delete].update(record=d["changes"][create]["record"]))
    assert broken(lambda d: d["changes"][delete]["source_sha256"].update(after="0" * 64))


def _schema_paths(schema: dict[str, Any], node: dict[str, Any], prefix: str) -> Iterator[str]:
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        yield from _schema_paths(schema, schema["$defs"][name], prefix)
    for option in node.get("anyOf", []):
        yield from _schema_paths(schema, option, prefix)
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path
        yield from _schema_paths(schema, child, path)
    if isinstance(node.get("items"), dict):
        yield from _schema_paths(schema, node["items"], prefix + "[]")


def test_every_field_of_the_schema_is_documented(plan_schema: dict[str, Any]) -> None:
    """Each field has a row in docs/plan-format.md, is named in its parent's row, or has rows
    for its own fields (``[]`` marks array items and is ignored)."""
    doc = PLAN_DOC.read_text(encoding="utf-8")
    assert "[`plan.schema.json`](plan.schema.json)" in doc
    rows = {}
    for line in doc.splitlines():
        if line.startswith("| `"):
            rows[line.split("`")[1].replace("[]", "")] = line
    missing = []
    for path in sorted({p.replace("[]", "") for p in _schema_paths(plan_schema, plan_schema, "")}):
        parent, _, leaf = path.rpartition(".")
        if (
            path in rows
            or f"`{leaf}`" in rows.get(parent, "")
            or any(row.startswith(path + ".") for row in rows)
        ):
            continue
        missing.append(path)
    assert missing == []


# -- 2. a pull-request comment for 50 apps ------------------------------------------------------


@pytest.mark.parametrize("names", ["short", "long"])
def test_markdown_of_50_apps_fits_a_github_comment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], names: str
) -> None:
    monkeypatch.chdir(tmp_path)
    apps = []
    for i in range(50):
        if names == "short":
            app, folder = f"embedding-{i:02d}", Path("specs")
        else:  # longest names Modal allows, deep folders, and a warning per app
            app = f"{i:02d}-" + "very-long-application-name-" * 3
            app, folder = app[:64], Path("specs", *(["team-with-a-long-name"] * 4))
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / f"{app}.yaml").write_text(small_spec(app, http=names == "long"))
        apps.append(app)

    code, text, err = cli(capsys, "plan", "--offline", "--format", "markdown")
    assert code == 0, err
    assert len(text) < GITHUB_COMMENT_LIMIT

    lines = text.splitlines()
    assert lines[0].startswith("> **Offline plan**: Modal was not consulted.")
    assert lines[2] == "### modaliac plan: 50 to create, 0 to update, 0 to replace, 0 to delete."
    first_section = text.index("<details>")
    table = [line for line in text[:first_section].splitlines() if line.startswith("| `+` |")]
    assert [row.split("`")[3] for row in table] == sorted(apps)
    if names == "long":
        # one per open endpoint, and one: 50 web endpoints pass Modal's free-tier limit
        assert "**Warnings** (51):" in text[:first_section]
        assert "these specs expose 50 web endpoints" in text

    shown = text.count("<details>")
    assert shown == text.count("</details>")  # no section is cut in the middle
    assert 0 < shown < 50
    note = (
        f"_{50 - shown} more app sections left out to fit a comment: run "
        "`modaliac plan --format text` for every setting._"
    )
    assert text.rstrip().endswith(note)


def test_markdown_without_dropped_sections_has_no_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    for app in ("one", "two"):
        (tmp_path / "specs" / f"{app}.yaml").write_text(small_spec(app))
    _, text, _ = cli(capsys, "plan", "--offline", "--format", "markdown")
    assert text.count("<details>") == 2
    assert "left out" not in text


# -- 3. two applies at once ---------------------------------------------------------------------


def test_a_second_apply_fails_at_once_while_the_first_holds_the_lock(
    project: Path, modal_api: LocalModalServer, modaliac: Spawn
) -> None:
    # The first apply stays in its deploy long enough for the second to start and end: "at
    # once" is that the second ends while the first still holds the lock (no timed bound:
    # these machines are shared and noisy).
    modal_api.state.faults.add("AppPublish", delay=8.0)
    first = modaliac(project, "apply", "--yes")
    wait_until("the first apply to deploy", lambda: modal_api.state.requests("AppPublish"))

    second = modaliac(project, "apply", "--yes")
    out, err = second.communicate(timeout=20)
    assert first.poll() is None, "the second apply must end while the first holds the lock"
    assert second.returncode == 1
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"{Path('.modaliac/state.json')} is locked by ")
    assert f"(pid {first.pid}, `modaliac apply --yes`) since " in err

    out, err = first.communicate(timeout=30)
    assert first.returncode == 0, err
    assert "Apply finished: 2 succeeded, 0 failed." in out
    assert publishes(modal_api) == 2
    assert recorded(project) == {"kalm-embedding": 1, "minilm-embedding": 1}
    assert_state_sound(project)
    assert (project / ".modaliac/state.json.lock").read_text() == ""  # released: names nobody


def test_a_second_apply_with_lock_timeout_waits_then_finds_nothing_to_do(
    project: Path, modal_api: LocalModalServer, modaliac: Spawn
) -> None:
    modal_api.state.faults.add("AppPublish", delay=2.0)
    first = modaliac(project, "apply", "--yes")
    wait_until("the first apply to deploy", lambda: modal_api.state.requests("AppPublish"))
    second = modaliac(project, "apply", "--yes", "--lock-timeout", "30")
    assert first.poll() is None  # the second starts while the first holds the lock

    out1, err1 = first.communicate(timeout=30)
    out2, err2 = second.communicate(timeout=30)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert "Apply finished: 2 succeeded, 0 failed." in out1
    assert "Nothing to apply." in out2 and "No changes." in out2
    assert publishes(modal_api) == 2
    assert recorded(project) == {"kalm-embedding": 1, "minilm-embedding": 1}
    assert_state_sound(project)


# A first apply holding the lock of a state on Modal with a 2 s lease, renewed by the
# heartbeat 10 times a lease; it prints the end of its first lease, then waits to be killed.
MODAL_LOCK_HOLDER = textwrap.dedent(
    """
    import time
    from modal_iac.state.modal_store import ModalStore

    store = ModalStore("modaliac-state", lease=2.0, renew_every=0.2)
    with store.lock("modaliac apply (a slow first build)") as me:
        print(me.expires_at, flush=True)
        time.sleep(3600)
    """
)


def test_a_modal_state_lock_is_renewed_while_held_and_taken_over_only_once_it_lapsed(
    project: Path, modal_api: LocalModalServer, modaliac: Spawn, capsys: pytest.CaptureFixture[str]
) -> None:
    import modal

    from modal_iac.state.lock_owner import LockOwner
    from modal_iac.state.modal_store import LOCKS_DICT

    def lock_entry() -> LockOwner | None:
        raw = modal.Dict.from_name(LOCKS_DICT).get("modaliac-state/state.json")
        return None if raw is None else LockOwner.from_json(raw)

    state = ("--state", "modal:modaliac-state")
    first = modaliac(project, code=MODAL_LOCK_HOLDER)
    assert first.stdout is not None
    first_lease_ends = float(first.stdout.readline())

    # Long past its first lease, the first apply still holds the lock: its heartbeat renewed it.
    wait_until("the first lease to be over", lambda: time.time() > first_lease_ends + 0.5)
    code, out, err = cli(capsys, "apply", "--yes", *state)
    assert (code, out) == (1, "")
    assert (
        single_line(err).startswith("modal:modaliac-state/state.json is locked by ")
        and f"(pid {first.pid}, `modaliac apply (a slow first build)`)" in err
    )
    held = lock_entry()
    assert held is not None and held.pid == first.pid and held.expires_at > first_lease_ends

    first.kill()  # no release, no more renewals
    first.wait(timeout=10)
    code, _, err = cli(capsys, "apply", "--yes", *state)  # its lease has not lapsed yet
    assert code == 1 and "retry after " in single_line(err) and "when its lease lapses" in err

    started = time.monotonic()
    code, out, err = cli(capsys, "apply", "--yes", *state, "--lock-timeout", "30")
    assert code == 0, err
    assert time.monotonic() - started < 20
    assert "Apply finished: 2 succeeded, 0 failed." in out
    assert lock_entry() is None  # released
    claim = f"modaliac-state/state.json#takeover:{held.token}"
    assert modal.Dict.from_name(LOCKS_DICT).get(claim) is not None  # it took the lapsed lease over


# -- 4. an apply killed half way ----------------------------------------------------------------


def test_an_apply_killed_after_its_first_app_leaves_a_state_a_rerun_converges(
    project: Path, modal_api: LocalModalServer, modaliac: Spawn, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "specs" / "tiny.yaml").write_text(small_spec("tiny"))
    modal_api.state.faults.add("AppPublish")  # the first publish goes through,
    modal_api.state.faults.add("AppPublish", delay=60.0)  # the second hangs until killed
    run = modaliac(project, "apply", "--yes", "--parallel", "1")
    wait_until("the first app to be recorded", lambda: recorded(project))
    wait_until("the second deploy to hang", lambda: publishes(modal_api) == 2)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    modal_api.state.faults.clear()

    assert recorded(project) == {"kalm-embedding": 1}
    assert_state_sound(project)
    # Recorded in the journal (one line per app), which every reader replays; not folded yet.
    assert (project / STATE).with_name("state.json.journal").exists()
    deployed = {
        a for a in ("kalm-embedding", "minilm-embedding", "tiny") if modal_api.state.deployed_app(a)
    }
    assert deployed == {"kalm-embedding"}

    code, out, err = cli(capsys, "plan")
    assert code == 0, err
    assert "+ create minilm-embedding" in out and "+ create tiny" in out
    assert "Unchanged: kalm-embedding" in out
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert "Apply finished: 2 succeeded, 0 failed." in out
    assert recorded(project) == {"kalm-embedding": 1, "minilm-embedding": 1, "tiny": 1}
    assert not (project / STATE).with_name("state.json.journal").exists()  # folded
    assert set(json.loads((project / STATE).read_text())["apps"]) == set(recorded(project))
    assert cli(capsys, "plan", "--detailed-exitcode")[0] == 0
    assert [len(modal_api.state.app(a).history) for a in ("minilm-embedding", "tiny")] == [1, 1]


def test_an_apply_killed_between_publish_and_record_is_recorded_without_a_deploy(
    project: Path, modal_api: LocalModalServer, modaliac: Spawn, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "specs" / "minilm.yaml").unlink()
    modal_api.state.faults.add("AppSetTags", delay=60.0)  # right after AppPublish
    run = modaliac(project, "apply", "--yes")
    wait_until("the deploy to be published", lambda: modal_api.state.requests("AppSetTags"))
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    assert modal_api.state.deployed_app("kalm-embedding") is not None
    assert recorded(project) == {}

    code, out, err = cli(capsys, "plan", "--detailed-exitcode")
    assert code == 0, err
    assert "# kalm-embedding: Modal already runs exactly this version: apply only records it" in out
    before = publishes(modal_api)
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert "ok     record   kalm-embedding: recorded" in out
    assert publishes(modal_api) == before
    assert recorded(project) == {"kalm-embedding": 1}
    assert_state_sound(project)
    code, out, _ = cli(capsys, "apply", "--yes")
    assert code == 0 and "Nothing to apply." in out


def test_an_update_killed_between_publish_and_record_is_recorded_without_a_deploy(
    project: Path, modal_api: LocalModalServer, modaliac: Spawn, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", "--yes")[0] == 0
    edit(project / "specs/minilm.yaml", "gpu: L4", "gpu: T4")
    tagged = len(modal_api.state.requests("AppSetTags"))
    modal_api.state.faults.add("AppSetTags", delay=60.0)
    run = modaliac(project, "apply", "--yes")
    wait_until(
        "the deploy to be published",
        lambda: len(modal_api.state.requests("AppSetTags")) > tagged,
    )
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    assert modal_api.state.app("minilm-embedding").current.version == 2
    assert recorded(project)["minilm-embedding"] == 1

    _, out, _ = cli(capsys, "plan")
    assert "Drift" not in out
    assert "Modal already runs exactly this version: apply only records it" in out
    before = publishes(modal_api)
    assert cli(capsys, "apply", "--yes")[0] == 0
    assert publishes(modal_api) == before
    assert recorded(project)["minilm-embedding"] == 2


def test_an_app_recorded_after_an_interrupted_apply_gets_its_tags(
    project: Path, modal_api: LocalModalServer, modaliac: Spawn, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "specs" / "minilm.yaml").unlink()
    modal_api.state.faults.add("AppSetTags", delay=60.0)
    run = modaliac(project, "apply", "--yes")
    wait_until("the deploy to be published", lambda: modal_api.state.requests("AppSetTags"))
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    assert cli(capsys, "apply", "--yes")[0] == 0
    tags = modal_api.state.deployed_app("kalm-embedding").tags
    assert tags.get("managed-by") == "modaliac" and tags.get("team") == "search"


def test_planning_an_update_reports_no_drift(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", "--yes")[0] == 0
    edit(project / "specs/minilm.yaml", "gpu: L4", "gpu: T4")
    _, out, _ = cli(capsys, "plan")
    assert "~ update minilm-embedding" in out
    assert "Drift" not in out, out


def test_a_saved_plan_with_a_delete_applies(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", "--yes")[0] == 0
    (project / "specs/minilm.yaml").unlink()
    assert cli(capsys, "plan", "-o", "plan.json")[0] == 0
    code, _, err = cli(capsys, "apply", "plan.json")
    assert code == 0, err
    assert modal_api.state.deployed_app("minilm-embedding") is None


# -- 5. faults on every RPC apply depends on ----------------------------------------------------

FAULTS: dict[str, dict[str, Any]] = {
    "unavailable": dict(status="UNAVAILABLE", times=100),  # outlasts the SDK's retries
    "deadline-exceeded": dict(status="DEADLINE_EXCEEDED", times=100),
    "internal": dict(status="INTERNAL", times=100),
    "permission-denied": dict(status="PERMISSION_DENIED", times=100),
    "long-delay": dict(delay=LONG_DELAY, times=100),
}


def single_line(text: str) -> str:
    assert "Traceback" not in text and "internal error" not in text, text
    lines = text.splitlines()
    assert len(lines) == 1 and lines[0].strip(), text
    return lines[0]


def expected_error(fault: str, rpc: str, deadline: float, doing: str) -> str:
    if fault == "long-delay":
        return f"{doing} timed out after {deadline:g}s"
    return f"Modal: {rpc}: injected by the local Modal API"


@pytest.mark.usefixtures("short_deadlines")
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("rpc", ["AppList", "AppDeploymentHistory"])
def test_observe_fault_fails_in_one_line_and_changes_nothing(
    project: Path,
    modal_api: LocalModalServer,
    capsys: pytest.CaptureFixture[str],
    rpc: str,
    fault: str,
) -> None:
    assert cli(capsys, "apply", "--yes")[0] == 0
    edit(project / "specs/minilm.yaml", "gpu: L4", "gpu: T4")
    state_before = (project / STATE).read_bytes()
    published = publishes(modal_api)
    modal_api.state.faults.add(rpc, **FAULTS[fault])

    for command in (["plan"], ["apply", "--yes"]):
        code, out, err, seconds = timed_cli(capsys, *command)
        assert code == 1, (command, out)
        assert out == ""
        line = single_line(err)
        assert expected_error(fault, rpc, READ_TIMEOUT, "waiting for Modal") in line
        assert seconds < READ_TIMEOUT + 3
    assert (project / STATE).read_bytes() == state_before
    assert publishes(modal_api) == published


@pytest.mark.usefixtures("short_deadlines")
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("rpc", ["FunctionCreate", "AppPublish"])
def test_deploy_fault_fails_the_app_records_the_others_and_a_rerun_converges(
    project: Path,
    modal_api: LocalModalServer,
    capsys: pytest.CaptureFixture[str],
    rpc: str,
    fault: str,
) -> None:
    assert cli(capsys, "apply", "--yes")[0] == 0
    kalm_id = modal_api.state.deployed_app("kalm-embedding").app_id
    kalm_calls = sum(1 for r in modal_api.state.requests(rpc) if r.app_id == kalm_id)
    edit(project / "specs/kalm.yaml", "timeout: 5m", "timeout: 10m")  # replace, deployed first
    edit(project / "specs/minilm.yaml", "gpu: L4", "gpu: T4")  # update, deployed second
    minilm_before = read_state(project / STATE).apps["minilm-embedding"]
    modal_api.state.faults.add(rpc, times=kalm_calls)  # kalm's calls go through
    modal_api.state.faults.add(rpc, **FAULTS[fault])

    code, out, err, seconds = timed_cli(
        capsys, "apply", "--yes", "--parallel", "1", "--deploy-timeout", f"{DEPLOY_TIMEOUT:g}"
    )
    assert code == 1, out
    assert single_line(err) == (
        "1 app(s) failed; the state records the 1 that succeeded, and for each failed app the "
        "version Modal runs now. "
        "Fix the cause and run apply again."
    )
    assert "ok     replace  kalm-embedding: deployed v2 in " in out
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert failed == [
        "FAILED update   minilm-embedding: "
        + expected_error(fault, rpc, DEPLOY_TIMEOUT, "deploying")
        + (f" ({modal_api.url})" if fault == "long-delay" else "")
    ]
    assert "Apply finished: 1 succeeded, 1 failed." in out
    assert seconds < DEPLOY_TIMEOUT + 5
    assert_state_sound(project)
    state = read_state(project / STATE)
    assert state.apps["minilm-embedding"] == minilm_before
    assert state.apps["kalm-embedding"].deployed_version == 2
    assert modal_api.state.deployed_app("minilm-embedding").current.version == 1

    modal_api.state.faults.clear()
    code, _, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert recorded(project) == {"kalm-embedding": 2, "minilm-embedding": 2}
    assert cli(capsys, "plan", "--detailed-exitcode")[0] == 0


@pytest.mark.usefixtures("short_deadlines")
@pytest.mark.parametrize("fault", FAULTS)
def test_stop_fault_fails_in_one_line_and_keeps_the_app_recorded(
    project: Path,
    modal_api: LocalModalServer,
    capsys: pytest.CaptureFixture[str],
    fault: str,
) -> None:
    assert cli(capsys, "apply", "--yes")[0] == 0
    state_before = (project / STATE).read_bytes()
    modal_api.state.faults.add("AppStop", **FAULTS[fault])
    error = expected_error(fault, "AppStop", READ_TIMEOUT, "waiting for Modal")

    code, out, err, seconds = timed_cli(capsys, "destroy", "minilm-embedding", "--yes")
    assert code == 1
    assert error in single_line(err)
    assert seconds < READ_TIMEOUT + 3
    assert (project / STATE).read_bytes() == state_before

    (project / "specs/minilm.yaml").unlink()  # the same stop, planned by apply
    code, out, err, seconds = timed_cli(capsys, "apply", "--yes")
    assert code == 1
    assert single_line(err).startswith("1 app(s) failed; the state records the 0 that succeeded")
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and failed[0].startswith("FAILED delete   minilm-embedding: ")
    assert error in failed[0]
    assert seconds < READ_TIMEOUT + 3
    assert (project / STATE).read_bytes() == state_before
    assert modal_api.state.deployed_app("minilm-embedding") is not None

    modal_api.state.faults.clear()
    code, _, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert recorded(project) == {"kalm-embedding": 1}
    assert modal_api.state.deployed_app("minilm-embedding") is None
    assert cli(capsys, "plan", "--detailed-exitcode")[0] == 0


# -- 6. faults that must end an apply ----------------------------------------------------------
#
# Three apps deployed one at a time (kalm, minilm, tiny). The first publishes; the second's
# AppPublish waits ``delay`` seconds, and once the local API has seen it, ``then`` happens:
# nothing (the deploy deadline ends it), Ctrl-C, the server process is stopped (SIGSTOP), or
# every state write from the second on fails as on a full disk. ``modaliac apply`` runs as a
# process of its own and must end within ``within`` seconds of that moment, with ``code``,
# these outcome lines and counts on stdout, one line on stderr, no traceback anywhere, and a
# state that records ``recorded`` of what Modal runs (``running``). A rerun then converges.

APPS = ("kalm-embedding", "minilm-embedding", "tiny")
ANY = "*"  # in an expected line: any text


@dataclass(frozen=True)
class Ending:
    then: str  # "" | "sigint" | "sigstop" | "disk-full"
    options: tuple[str, ...]
    delay: float
    code: int
    outcomes: tuple[str, ...]  # the outcome lines, in order (ANY matches any text)
    counts: str
    error: str
    recorded: dict[str, int]
    running: frozenset[str]
    within: float = 20.0
    faults: tuple[tuple[str, dict[str, Any]], ...] = ()  # more faults on the local API
    logged: str = ""  # text the SDK's log file holds (named on the stderr line)


OK_KALM = "ok* create   kalm-embedding: deployed v1 in *s"
ENDINGS = {
    "hanging publish": Ending(
        then="",
        options=("--deploy-timeout", "2"),
        delay=60.0,
        # Every heartbeat fails as well: the SDK logs a traceback for each, into the log.
        faults=(("AppHeartbeat", {"status": "FAILED_PRECONDITION", "times": 100}),),
        code=1,
        outcomes=(
            OK_KALM,
            "FAILED create   minilm-embedding: deploying timed out after 2s (http://*)",
            "ok     create   tiny: deployed v1 in *s",
        ),
        counts="Apply finished: 2 succeeded, 1 failed.",
        error="1 app(s) failed; the state records the 2 that succeeded, and for each failed app "
        "the version Modal runs now. Fix the cause and run "
        "apply again.",
        logged="Loop attempt for _deploy_app.<locals>.heartbeat failed",
        recorded={"kalm-embedding": 1, "tiny": 1},
        running=frozenset({"kalm-embedding", "tiny"}),
    ),
    "Modal stops answering": Ending(
        then="sigstop",
        options=("--no-progress-timeout", "2", "--deploy-timeout", "600"),
        delay=60.0,
        code=1,
        outcomes=(
            OK_KALM,
            "FAILED    create   minilm-embedding: Modal answered nothing for 2s (http://*)",
            "CANCELLED create   tiny: not started (Modal stopped answering)",
        ),
        counts="Apply stopped: 1 succeeded, 1 failed, 1 cancelled.",
        error="apply stopped: Modal stopped answering: the state records the 1 that "
        "succeeded; 1 failed, 1 cancelled. Run apply again to finish.",
        recorded={"kalm-embedding": 1},
        running=frozenset({"kalm-embedding"}),
    ),
    "Ctrl-C during a deploy": Ending(
        then="sigint",
        options=(),
        delay=60.0,
        code=130,
        outcomes=(
            OK_KALM,
            "CANCELLED create   minilm-embedding: cancelled while deploying (interrupted by "
            "Ctrl-C)",
            "CANCELLED create   tiny: not started (interrupted by Ctrl-C)",
        ),
        counts="Apply interrupted: 1 succeeded, 0 failed, 2 cancelled.",
        error="apply interrupted: the state records the 1 that succeeded; 0 failed, 2 "
        "cancelled. Run apply again to finish.",
        recorded={"kalm-embedding": 1},
        running=frozenset({"kalm-embedding"}),
    ),
    "Ctrl-C while a publish can still finish": Ending(
        then="sigint",
        options=(),
        delay=0.5,  # well within the grace in-flight deploys get
        code=130,
        outcomes=(
            OK_KALM,
            "ok        create   minilm-embedding: deployed v1 in *s",
            "CANCELLED create   tiny: not started (interrupted by Ctrl-C)",
        ),
        counts="Apply interrupted: 2 succeeded, 0 failed, 1 cancelled.",
        error="apply interrupted: the state records the 2 that succeeded; 0 failed, 1 "
        "cancelled. Run apply again to finish.",
        recorded={"kalm-embedding": 1, "minilm-embedding": 1},
        running=frozenset({"kalm-embedding", "minilm-embedding"}),
    ),
    "disk full on the state write": Ending(
        then="disk-full",
        options=(),
        delay=0.0,
        code=1,
        outcomes=(
            OK_KALM,
            "FAILED    create   minilm-embedding: deployed v1 in *s, but the state does not "
            "record it (.modaliac/state.json: cannot write the state: [Errno 28] No space left "
            "on device); the next apply does",
            "CANCELLED create   tiny: not started (the state cannot be written)",
        ),
        counts="Apply stopped: 1 succeeded, 1 failed, 1 cancelled.",
        error="apply stopped: the state cannot be written: the state records the 1 that "
        "succeeded; 1 failed, 1 cancelled. Run apply again to finish.",
        recorded={"kalm-embedding": 1},  # and Modal runs minilm: the next apply records it
        running=frozenset({"kalm-embedding", "minilm-embedding"}),
    ),
}

# The CLI with every state write (a journal line) after the first failing as on a full disk.
FULL_DISK = textwrap.dedent(
    """
    import errno, sys
    from modal_iac.state.journal import JournalWriter
    from modal_iac.cli import main

    real, writes = JournalWriter.append, []

    def append(self, line):
        writes.append(line)
        if len(writes) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, line)

    JournalWriter.append = append
    sys.exit(main(sys.argv[1:]))
    """
)

# A local Modal API in a process of its own, so a test can stop it (SIGSTOP): the first
# AppPublish goes through, the second hangs; it says when it has seen that one, and then
# answers each line on stdin with the apps it runs.
SERVER = textwrap.dedent(
    """
    import json, sys, time
    from modal_iac.local_api import LocalModalServer

    server = LocalModalServer()
    server.state.add_secret("huggingface", ("HF_TOKEN",))
    server.state.add_secret("kalm-api-key", ("VLLM_API_KEY",))  # the key the endpoint needs
    server.state.faults.add("AppPublish")
    server.state.faults.add("AppPublish", delay=60.0)
    server.start()
    print(server.url, flush=True)
    while len(server.state.requests("AppPublish")) < 2:
        time.sleep(0.01)
    print("second AppPublish", flush=True)
    for line in sys.stdin:
        print(json.dumps([a for a in sys.argv[1:] if server.state.deployed_app(a)]), flush=True)
    """
)


def matches(line: str, pattern: str) -> bool:
    return re.fullmatch(".*".join(map(re.escape, pattern.split(ANY))), line) is not None


@pytest.fixture
def three_apps(project: Path) -> Path:
    (project / "specs" / "tiny.yaml").write_text(small_spec("tiny"))
    return project


@pytest.fixture
def server_process() -> Iterator[subprocess.Popen[str]]:
    """The local API in its own process (SERVER); resumed and ended afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, *APPS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **THIS_CHECKOUT},
    )
    yield process
    process.send_signal(signal.SIGCONT)
    process.kill()
    process.communicate(timeout=10)


@pytest.mark.parametrize("name", ENDINGS)
def test_a_fault_ends_the_apply_in_one_summary_and_a_truthful_state(
    three_apps: Path,
    modal_api: LocalModalServer,
    modaliac: Spawn,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    name: str,
) -> None:
    row = ENDINGS[name]
    argv = ("apply", "--yes", "--parallel", "1", *row.options)
    env: dict[str, str] = {}
    server: subprocess.Popen[str] | None = None
    if row.then == "sigstop":
        server = request.getfixturevalue("server_process")
        assert server.stdout is not None
        env = {**modal_api.env(), "MODAL_SERVER_URL": server.stdout.readline().strip()}
    else:
        modal_api.state.faults.add("AppPublish")
        modal_api.state.faults.add("AppPublish", delay=row.delay)
        for rpc, fault in row.faults:
            modal_api.state.faults.add(rpc, **fault)
    run = modaliac(three_apps, *argv, env=env, code=FULL_DISK if row.then == "disk-full" else "")

    if server is not None:
        assert server.stdout is not None
        assert server.stdout.readline() == "second AppPublish\n"
        server.send_signal(signal.SIGSTOP)
    else:
        wait_until("the second publish", lambda: publishes(modal_api) == 2)
    fault_at = time.monotonic()
    if row.then == "sigint":
        run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    seconds = time.monotonic() - fault_at
    if server is not None:
        server.send_signal(signal.SIGCONT)

    assert run.returncode == row.code, (out, err)
    assert seconds < row.within
    assert "Traceback" not in out + err and "internal error" not in err, err
    lines = [line for line in out.splitlines() if line.startswith(("ok ", "FAILED ", "CANC"))]
    assert len(lines) == len(row.outcomes), lines
    for line, pattern in zip(lines, row.outcomes, strict=True):
        assert matches(line, pattern), (line, pattern)
    assert row.counts in out.splitlines()
    line = single_line(err)
    assert line.startswith(row.error), line
    named = line.removeprefix(row.error)
    if row.logged:
        log = re.fullmatch(
            r" The Modal SDK's output is in (\.modaliac/logs/apply-\S+\.log)\.", named
        )
        assert log, named
        assert row.logged in (three_apps / log[1]).read_text()
    else:
        assert named == ""
    assert recorded(three_apps) == row.recorded
    assert_state_sound(three_apps)
    if server is not None:
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write("which apps run?\n")
        server.stdin.flush()
        assert set(json.loads(server.stdout.readline())) == row.running
    else:
        assert {a for a in APPS if modal_api.state.deployed_app(a)} == row.running

    # The next apply converges: it deploys what is missing and records what Modal runs.
    if server is not None:
        rerun = modaliac(three_apps, "apply", "--yes", env=env)
        _, rerun_err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, rerun_err
    else:
        modal_api.state.faults.clear()
        before = publishes(modal_api)
        code, out, err = cli(capsys, "apply", "--yes")
        assert code == 0, err
        assert publishes(modal_api) - before == len(set(APPS) - row.running)
        assert cli(capsys, "plan", "--detailed-exitcode")[0] == 0
    assert recorded(three_apps) == dict.fromkeys(APPS, 1)


def test_an_app_whose_generated_file_does_not_import_fails_alone(
    project: Path,
    modal_api: LocalModalServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modal_iac.modal import deploy
    from modal_iac.modal.sdk import ModalApiError

    real = deploy._import

    def broken_minilm(job: deploy.DeployJob, build_dir: Path) -> Any:
        if job.app == "minilm-embedding":
            raise ModalApiError(f"{job.module_name}.py: the generated app does not import: boom")
        return real(job, build_dir)

    monkeypatch.setattr(deploy, "_import", broken_minilm)
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 1
    assert (
        "FAILED create   minilm-embedding: modaliac___minilm_1embedding.py: the generated app "
        "does not import: boom" in out.splitlines()
    )
    assert single_line(err).startswith("1 app(s) failed; the state records the 1 that succeeded")
    assert recorded(project) == {"kalm-embedding": 1}


def test_the_prompt_reaches_the_terminal_while_the_sdks_output_is_kept_apart(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def confirm(question: str) -> bool:
        print(f"{question} [the prompt]")  # as input() writes it, to sys.stdout
        return True

    code = main(["apply"], confirm=confirm)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Apply these changes? [the prompt]" in out.splitlines()
    # The prompt reached the terminal, not the SDK's log (which, in a test process, a thread
    # another test left running may write to: only the prompt is looked for).
    logs = project / ".modaliac" / "logs"
    kept = [p.read_text() for p in logs.iterdir()] if logs.exists() else []
    assert not any("[the prompt]" in text for text in kept), kept


def test_an_apply_whose_reader_left_still_finishes_and_records_everything(
    project: Path, modal_api: LocalModalServer
) -> None:
    """``modaliac apply --yes | head -n 0``: nobody reads the plan or the progress, and the
    apply carries on to the end rather than stopping half way; it exits as SIGPIPE ends other
    tools (141), quietly."""
    pipeline = (
        f"{shlex.quote(sys.executable)} -m modal_iac.cli apply --yes 2> err.txt | head -n 0; "
        'echo "modaliac exited ${PIPESTATUS[0]}"'
    )
    result = subprocess.run(
        ["bash", "-c", pipeline],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, **THIS_CHECKOUT},
        timeout=60,
    )
    assert result.stdout == "modaliac exited 141\n"
    assert (project / "err.txt").read_text() == ""
    assert recorded(project) == {"kalm-embedding": 1, "minilm-embedding": 1}
    assert all(modal_api.state.deployed_app(a) for a in ("kalm-embedding", "minilm-embedding"))
