"""``modaliac status`` through the CLI against the local Modal API: what Modal runs, who
deployed it from which commit, its containers and URLs, and whether it matches its spec (the
plan's own verdict)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import point_modal_at_closed_port

from modal_iac.cli import main
from modal_iac.local_api import LocalModalServer

ROOT = Path(__file__).resolve().parent.parent
HTTP_SPEC = """\
app: tiny-http
model:
  id: sentence-transformers/all-MiniLM-L6-v2
  revision: c9745ed1d9f207416be6d2e6f8de32d1f16199bf
  task: embed
  embedding:
    dimension: 384
    pooling: mean
gpu: L4
surfaces:
  http:
    proxy_auth: true
environments:
  staging: {}
"""


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), confirm=lambda question: True)
    out, err = capsys.readouterr()
    return code, out, err


def git(*argv: str) -> str:
    return subprocess.run(["git", *argv], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def project(modal_api: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with specs/minilm.yaml (a class only) and specs/tiny.yaml (an HTTP
    endpoint), committed and applied, so the client sent the commit with the deploy."""
    work = tmp_path / "work"
    (work / "specs").mkdir(parents=True)
    shutil.copy(
        ROOT / "examples" / "small-embedding-no-snapshot.yaml", work / "specs" / "minilm.yaml"
    )
    (work / "specs" / "tiny.yaml").write_text(HTTP_SPEC, encoding="utf-8")
    (work / ".gitignore").write_text(".modaliac/\n", encoding="utf-8")
    monkeypatch.chdir(work)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    git("init", "-q", "-b", "main")
    git("add", ".")
    git("-c", "user.name=Ada", "-c", "user.email=ada@example.com", "commit", "-qm", "specs")
    assert main(["apply", "--yes"], confirm=lambda q: True) == 0
    return work


def status_json(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    code, out, err = cli(capsys, "status", "--format", "json", *extra)
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def by_address(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {app["address"]: app for app in document["apps"]}


def test_status_shows_what_runs_who_deployed_it_and_that_it_matches(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    modal_api.state.add_container("minilm-embedding")
    modal_api.state.add_container("minilm-embedding")
    modal_api.state.add_container("tiny-http")
    document = status_json(capsys)
    assert document["format_version"] == 1 and document["env"] is None
    apps = by_address(document)
    assert sorted(apps) == ["minilm-embedding", "tiny-http"]
    minilm, tiny = apps["minilm-embedding"], apps["tiny-http"]
    assert minilm["matches_spec"] is True and minilm["plan"]["action"] == "no-op"
    assert minilm["spec"] == "specs/minilm.yaml" and minilm["recorded_version"] == 1
    modal = minilm["modal"]
    assert (modal["state"], modal["version"], modal["containers"]) == ("deployed", 1, 2)
    assert modal["deployed_by"] == "local-user" and modal["deployment_type"] == "standard"
    assert modal["deployed_at"].endswith("Z") and modal["tag"].startswith("modaliac-")
    assert modal["urls"] == {}  # a class only: nothing on the web
    assert modal["commit"] == {
        "hash": git("rev-parse", "HEAD"),
        "branch": "main",
        "dirty": False,
        "author": "Ada",
        "repo_url": "",
    }
    assert tiny["modal"]["containers"] == 1
    (url,) = tiny["modal"]["urls"].values()
    assert url.startswith("http") and "tiny-http" in url

    code, out, err = cli(capsys, "status")
    assert code == 0, err
    header, *lines = out.splitlines()
    words = ["ADDRESS", "MODAL", "VERSION", "DEPLOYED", "BY", "CONTAINERS", "MATCHES", "SPEC"]
    assert header.split() == words
    row = next(line for line in lines if line.startswith("minilm-embedding"))
    assert row.split()[1:3] == ["deployed", "v1"] and row.split()[-2:] == ["2", "yes"]
    assert f"    commit main@{git('rev-parse', 'HEAD')[:12]} by Ada" in lines
    assert f"    url {next(iter(tiny['modal']['urls']))}: {url}" in lines
    assert lines[-1] == "2 app(s): 2 match their spec."


def test_status_says_what_differs_with_the_plans_own_verdict(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deploy made outside modaliac, an app stopped by hand, a spec not applied yet and a
    removed spec: each row's verdict is the action `plan` gives that app."""
    modal_api.state.foreign_deploy("minilm-embedding", deployed_by="bob")
    new = (project / "specs" / "tiny.yaml").read_text().replace("tiny-http", "fresh-http")
    (project / "specs" / "fresh.yaml").write_text(new, encoding="utf-8")
    (project / "specs" / "tiny.yaml").unlink()

    code, out, err = cli(capsys, "plan", "--format", "json")
    assert code == 0, err
    planned = {c["address"]: c["action"] for c in json.loads(out)["changes"]}
    apps = by_address(status_json(capsys))
    assert {a: app["plan"]["action"] for a, app in apps.items()} == planned
    assert (planned["fresh-http"], planned["tiny-http"]) == ("create", "delete")
    minilm = apps["minilm-embedding"]
    assert minilm["matches_spec"] is False and minilm["plan"]["drift"]
    assert (minilm["modal"]["version"], minilm["modal"]["deployed_by"]) == (2, "bob")
    assert minilm["recorded_version"] == 1 and minilm["modal"]["commit"] is None
    fresh = apps["fresh-http"]
    assert fresh["modal"]["state"] == "missing" and fresh["recorded_version"] is None
    assert fresh["matches_spec"] is False and fresh["modal"]["version"] is None

    code, out, err = cli(capsys, "status")
    assert code == 0, err
    rows = {line.split()[0]: line for line in out.splitlines() if line[:1].strip()}
    assert rows["minilm-embedding"].endswith(f"no: {planned['minilm-embedding']} (drift)")
    assert " bob " in rows["minilm-embedding"]
    assert rows["fresh-http"].split()[1:3] == ["missing", "-"]
    assert rows["fresh-http"].endswith("no: not deployed")
    assert rows["tiny-http"].split()[1:3] == ["deployed", "v1"]
    assert rows["tiny-http"].endswith("no: spec removed")
    assert "    drift: " in out
    assert "3 app(s): 0 match their spec, 3 differ (modaliac plan shows the changes)." in out


def test_status_of_a_recorded_app_gone_from_modal(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    found = modal_api.state.deployed_app("tiny-http", "main")
    assert found is not None
    stub_stop = modal_api.state.apps[found.app_id]
    from modal_proto import api_pb2

    stub_stop.state = api_pb2.APP_STATE_STOPPED  # stopped by hand on Modal
    apps = by_address(status_json(capsys))
    tiny = apps["tiny-http"]
    assert tiny["modal"]["state"] == "stopped" and tiny["recorded_version"] == 1
    assert tiny["matches_spec"] is False and tiny["modal"]["containers"] == 0
    _, out, _ = cli(capsys, "status")
    assert "    recorded as v1, but stopped on Modal" in out


def test_status_env_shows_that_runs_apps_and_counts_the_others(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    modal_api.state.add_environment("staging")
    code, _, err = cli(capsys, "apply", "--yes", "--env", "staging", "specs/tiny.yaml")
    assert code == 0, err
    modal_api.state.add_container("tiny-http", "staging")
    modal_api.state.clear_calls()
    apps = by_address(status_json(capsys, "--env", "staging", "specs/tiny.yaml"))
    (staged,) = apps.values()
    assert staged["address"] == "staging/tiny-http" and staged["environment"] == "staging"
    assert staged["matches_spec"] is True and staged["modal"]["containers"] == 1
    # The containers come with the AppList of each environment observed (the state's apps
    # in the default one too): the plan's one pass, nothing more.
    sent = sorted(r.environment_name for r in modal_api.state.requests("AppList"))
    assert "staging" in sent and "" in sent
    assert modal_api.state.requests("TaskList") == []

    document = status_json(capsys)
    assert "staging/tiny-http" not in by_address(document)
    assert document["not_shown"] == ["staging/tiny-http"]
    assert by_address(document)["tiny-http"]["modal"]["containers"] == 0
    _, out, _ = cli(capsys, "status")
    assert "1 recorded app(s) of runs with another --env not shown: staging/tiny-http" in out


def test_status_reads_and_never_changes_anything(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    state_file = project / ".modaliac" / "state.json"
    before = state_file.read_bytes()
    modal_api.state.clear_calls()
    code, _, err = cli(capsys, "status")
    assert code == 0, err
    sent = set(modal_api.state.rpc_names())
    assert {"AppList", "AppDeploymentHistory", "AppGetTags"} <= sent  # ids from the listing
    writes = {"AppPublish", "AppSetTags", "AppStop", "AppCreate", "DictUpdate", "AppRollback"}
    assert not sent & writes
    assert state_file.read_bytes() == before

    # Naming one spec: the other recorded app is still shown, as not planned by this run.
    code, out, err = cli(capsys, "status", "specs/minilm.yaml")
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("tiny-http "))
    assert row.split()[1] == "deployed" and row.endswith(" -")
    assert "    not planned: its spec (specs/tiny.yaml) is not among these" in out
    assert "2 app(s): 1 match their spec." in out
    apps = by_address(status_json(capsys, "specs/minilm.yaml"))
    assert apps["tiny-http"]["plan"] is None and apps["tiny-http"]["matches_spec"] is None


def test_status_needs_modal_and_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import modal.config

    (tmp_path / "specs").mkdir()
    shutil.copy(ROOT / "examples" / "small-embedding-no-snapshot.yaml", tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(modal.config, "config", modal.config.Config())
    code, out, err = cli(capsys, "status")
    assert (code, out) == (1, "")
    assert err == (
        "no Modal credentials: run `modal token new`, or set MODAL_TOKEN_ID and "
        "MODAL_TOKEN_SECRET\n"
    )

    point_modal_at_closed_port(monkeypatch)
    started = time.monotonic()
    code, out, err = cli(capsys, "status", "--format", "json")
    assert (code, out) == (1, "")
    assert len(err.strip().splitlines()) == 1, err
    assert "connecting to Modal timed out" in err or "cannot reach Modal" in err
    assert time.monotonic() - started < 15


def test_status_finds_apps_modaliac_tagged_that_the_state_forgot(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "specs" / "tiny.yaml").unlink()
    code, _, err = cli(capsys, "state", "rm", "tiny-http")
    assert code == 0, err
    modal_api.state.foreign_deploy("by-hand")  # not modaliac's: no managed-by tag
    modal_api.state.add_container("tiny-http")
    apps = by_address(status_json(capsys))
    assert sorted(apps) == ["minilm-embedding", "tiny-http"]
    stray = apps["tiny-http"]
    assert stray["found_by_tag"] is True and stray["plan"] is None
    assert stray["recorded_version"] is None and stray["spec"] is None
    assert (stray["modal"]["state"], stray["modal"]["containers"]) == ("deployed", 1)
    assert apps["minilm-embedding"]["found_by_tag"] is False
    _, out, _ = cli(capsys, "status")
    assert (
        "    tagged managed-by modaliac, but neither these specs nor this state know it "
        "(another state file? modaliac import tiny-http adopts it)"
    ) in out
    assert "by-hand" not in out


def test_status_shows_what_blocks_an_app(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = HTTP_SPEC.replace("tiny-http", "keyed").replace(
        "proxy_auth: true", "api_key_secret: no-such-secret"
    )
    (project / "specs" / "keyed.yaml").write_text(spec, encoding="utf-8")
    apps = by_address(status_json(capsys))
    (blocker,) = apps["keyed"]["plan"]["blockers"]
    assert "no-such-secret" in blocker["message"]
    _, out, _ = cli(capsys, "status")
    assert f"    blocked: {blocker['message']}" in out
