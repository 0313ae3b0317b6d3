"""Health-gated apply end to end through the CLI, against the local Modal API and stand-in
servers on 127.0.0.1 that the local API reports as each app version's web URL: a version that
answers, one that answers 500, one that never answers, a gateway with one broken model, a
rollback that fails, a new app that fails (stopped, or kept with --keep-failed)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_probe import KEY, StandIn
from test_probe import SPEC as PROBE_SPEC

from modal_iac.cli import main
from modal_iac.local_api import LocalModalServer
from modal_iac.state.store import read_state

SPEC = (
    PROBE_SPEC.replace("app: probe-embed", "app: gated").replace("probe-key", "verified-key")
    + "verify:\n  enabled: true\n  timeout: 2s\n"
)
WEB = "Server.serve"  # the HTTP server's web function: what modaliac test and verify call


class Broken(StandIn):
    """A stand-in that answers 500 (``mode="500"``), or never (``"hang"``), or answers every
    model but ``broken`` (a gateway router with one model down)."""

    def __init__(self, kind: str, mode: str = "500", broken: str = "") -> None:
        self.mode, self.broken = mode, broken
        self.released = threading.Event()
        super().__init__(kind)

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.mode == "hang":
            self.released.wait(10)
            return 200, {}
        if self.mode == "model" and body.get("model") != self.broken:
            return super().answer(path, body)
        if self.mode == "starting":  # Modal's 303 after 150 s, then no container ready yet
            if len(self.bodies) > 2:
                return super().answer(path, body)
            return (303, {}) if len(self.bodies) == 1 else (503, {"detail": "starting"})
        return 500, {"error": {"message": "engine dead"}}

    def close(self) -> None:
        self.released.set()
        super().close()


@pytest.fixture
def servers() -> Iterator[Any]:
    started: list[StandIn] = []

    def start(server: StandIn) -> StandIn:
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def project(modal_api: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    (work / "specs").mkdir(parents=True)
    (work / "specs" / "verified.yaml").write_text(SPEC)
    modal_api.state.add_secret("verified-key", ("VLLM_API_KEY",))
    monkeypatch.chdir(work)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    return work


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), confirm=lambda question: True)
    out, err = capsys.readouterr()
    return code, out, err


def recorded(work: Path) -> dict[str, Any]:
    return read_state(work / ".modaliac/state.json").apps


def serve(api: LocalModalServer, server: StandIn, version: int, app: str = "gated") -> None:
    api.state.serve_web_url(app, WEB, server.url, version=version)


def deploy_v1(
    project: Path, api: LocalModalServer, servers: Any, capsys: pytest.CaptureFixture[str]
) -> StandIn:
    """The first version, answering; applied, verified and recorded at v1."""
    good = servers(StandIn("embedding"))
    serve(api, good, 1)
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert "verified: answered in" in out and "1 embedding(s) of dimension 16" in out
    assert good.bodies[-1]["model"] == "bge-small"
    assert recorded(project)["gated"].deployed_version == 1
    return good


def change_spec(work: Path) -> None:
    path = work / "specs" / "verified.yaml"
    path.write_text(path.read_text().replace("scaledown_window: 90s", "scaledown_window: 5m"))


def test_the_plan_says_which_apps_are_verified(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "plan")
    assert code == 0, err
    assert (
        "# verified: once deployed, the built-in request must be answered within 2s (cold "
        "start included), else it is stopped (apply --keep-failed keeps it)"
    ) in out
    cli(capsys, "plan", "--format", "json", "-o", "plan.json")
    change = json.loads((project / "plan.json").read_text())["changes"][0]
    assert change["verify"] == {"timeout": 2, "prompt": None}
    code, out, _ = cli(capsys, "plan", "--no-verify")
    assert "verified:" not in out
    code, out, _ = cli(capsys, "plan", "--format", "markdown")
    assert "> verified: once deployed" in out
    (project / "specs" / "plain.yaml").write_text(
        "app: plain\nmodel: {id: org/m, revision: abc123, task: embed}\ngpu: L4\n"
    )
    code, out, err = cli(capsys, "plan", "--verify")
    assert code == 0, err
    assert "# not verified: the app has no HTTP endpoint to send a request to" in out
    assert out.count("# verified: once deployed") == 1


def test_a_version_that_answers_is_recorded(
    project: Path,
    modal_api: LocalModalServer,
    servers: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    deploy_v1(project, modal_api, servers, capsys)
    assert modal_api.state.requests("AppStop") == []
    assert recorded(project)["gated"].last_apply is None


def test_a_cold_start_within_the_timeout_passes_and_the_spec_prompt_is_sent(
    project: Path,
    modal_api: LocalModalServer,
    servers: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = project / "specs" / "verified.yaml"
    path.write_text(path.read_text() + "  request: {prompt: 'gate check'}\n")
    starting = servers(Broken("embedding", "starting"))
    serve(modal_api, starting, 1)
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert "ok     create   gated: deployed v1" in out and "verified: answered in" in out
    assert [b["input"] for b in starting.bodies] == [["gate check"]] * 3
    assert recorded(project)["gated"].deployed_version == 1


@pytest.mark.parametrize("mode", ["500", "hang"])
def test_a_failing_update_is_rolled_back_and_recorded_as_modal_runs_it(
    mode: str,
    project: Path,
    modal_api: LocalModalServer,
    servers: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = deploy_v1(project, modal_api, servers, capsys)
    before = recorded(project)["gated"]
    serve(modal_api, servers(Broken("embedding", mode)), 2)
    change_spec(project)
    answered = len(good.bodies)
    started = time.monotonic()
    code, out, err = cli(capsys, "apply", "--yes")
    elapsed = time.monotonic() - started
    assert code == 1, out
    assert "verifying" in out and "rolling back" in out
    line = next(x for x in out.splitlines() if x.startswith("FAILED update   gated:"))
    why = "HTTP 500 Internal Server Error: engine dead" if mode == "500" else "no answer within 2s;"
    assert why in line
    assert "rolled back to v1, now v3 (the state records it), which answers" in line
    assert [r.version for r in modal_api.state.requests("AppRollback")] == [1]
    assert len(good.bodies) == answered + 1  # the restored version was asked, and answered
    if mode == "hang":
        assert elapsed < 2 + 2 + 15  # the timeout bounded the wait (plus deploy and rollback)
    after = recorded(project)["gated"]
    assert after.deployed_version == 3
    assert (after.source_hash, after.deployment_tag) == (before.source_hash, before.deployment_tag)
    assert after.last_apply == "v2 failed verification; rolled back to v1 (now v3)"
    app = modal_api.state.deployed_app("gated")
    assert app is not None and app.current is not None and app.current.rollback_version == 1
    assert app.tags["modaliac-source"] == before.source_hash[:12]
    assert "1 failed" in out and err.startswith("1 app(s) failed")
    code, out, _ = cli(capsys, "plan")  # the spec still wants the new version
    assert "~ update gated" in out


def test_a_rollback_that_fails_leaves_the_state_at_the_failing_version(
    project: Path,
    modal_api: LocalModalServer,
    servers: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    deploy_v1(project, modal_api, servers, capsys)
    serve(modal_api, servers(Broken("embedding")), 2)
    change_spec(project)
    modal_api.state.faults.fail_nth("AppRollback", 1, message="rollback refused")
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 1
    assert "the rollback failed too" in out and "rollback refused" in out
    assert err.startswith("1 app(s) failed")
    assert "Modal still runs v2, as the state records" in out
    after = recorded(project)["gated"]
    app = modal_api.state.deployed_app("gated")
    assert app is not None and app.current is not None and app.current.version == 2
    assert after.deployed_version == 2
    assert after.last_apply is not None and "the rollback failed" in after.last_apply


def test_a_new_app_that_fails_is_stopped_or_kept(
    project: Path,
    modal_api: LocalModalServer,
    servers: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    serve(modal_api, servers(Broken("embedding")), 1)
    code, out, _ = cli(capsys, "apply", "--yes")
    assert code == 1
    assert "stopped it (no version served before)" in out
    assert len(modal_api.state.requests("AppStop")) == 1
    assert modal_api.state.requests("AppRollback") == []
    assert "gated" not in recorded(project)

    code, out, _ = cli(capsys, "apply", "--yes", "--keep-failed")  # a new app again, at v1
    assert code == 1
    assert "kept running (--keep-failed), recorded at v1" in out
    assert len(modal_api.state.requests("AppStop")) == 1
    kept = recorded(project)["gated"]
    assert kept.deployed_version == 1
    assert kept.last_apply == "v1 failed verification; kept running (--keep-failed)"
    assert modal_api.state.deployed_app("gated") is not None


def test_no_verify_skips_it_and_a_saved_plan_verifies_as_it_says(
    project: Path,
    modal_api: LocalModalServer,
    servers: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken = servers(Broken("embedding"))
    serve(modal_api, broken, 1)
    code, out, err = cli(capsys, "apply", "--yes", "--no-verify")
    assert code == 0, err
    assert broken.bodies == [] and "verified:" not in out and "verifying" not in out
    change_spec(project)
    good = servers(StandIn("embedding"))
    serve(modal_api, good, 2)
    assert cli(capsys, "plan", "-o", "plan.json")[0] == 0
    code, out, err = cli(capsys, "apply", "--yes", "plan.json")
    assert code == 0, err
    assert "verified: answered" in out and len(good.bodies) == 1
    code, _, err = cli(capsys, "apply", "--yes", "--verify", "plan.json")
    assert code == 2 and "--verify" in err


def test_a_key_this_machine_lacks_deploys_nothing(
    project: Path,
    modal_api: LocalModalServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("VLLM_API_KEY")
    code, out, _ = cli(capsys, "apply", "--yes")
    assert code == 1
    assert (
        "not deployed: cannot verify: $VLLM_API_KEY is not set: export the endpoint's API key in it"
    ) in out
    assert modal_api.state.requests("AppPublish") == []


def test_a_gateway_with_one_broken_model_fails_verification(
    modal_api: LocalModalServer,
    servers: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / "gw"
    (work / "specs").mkdir(parents=True)
    spec = {
        "kind": "gateway",
        "name": "gw",
        "models": [{"id": "org/alpha", "name": "alpha"}, {"id": "org/beta", "name": "beta"}],
        "gpus": ["L4"],
        "hf_token_secret": "huggingface",
        "router": {"api_key_secret": "gw-key"},
        "verify": {"enabled": True, "timeout": "2s"},
    }
    (work / "specs" / "gw.yaml").write_text(json.dumps(spec))
    modal_api.state.add_secret("huggingface", ("HF_TOKEN",))
    modal_api.state.add_secret("gw-key", ("API_KEY",))
    monkeypatch.chdir(work)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    monkeypatch.setenv("API_KEY", KEY)
    router = servers(Broken("chat", "model", broken="beta"))
    modal_api.state.serve_web_url("gw-l4", "router", router.url, version=1)
    code, out, _ = cli(capsys, "apply", "--yes")
    assert code == 1
    assert "verification failed: model beta: " in out and "HTTP 500" in out
    assert [b["model"] for b in router.bodies] == ["alpha", "beta"]
    assert "stopped it" in out and "gw-l4" not in recorded(work)


def test_a_renamed_app_that_fails_keeps_the_rename_pending(
    project: Path,
    modal_api: LocalModalServer,
    servers: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    deploy_v1(project, modal_api, servers, capsys)
    assert cli(capsys, "state", "mv", "gated", "gated2")[0] == 0
    path = project / "specs" / "verified.yaml"
    path.write_text(path.read_text().replace("app: gated", "app: gated2"))
    moved = recorded(project)["gated2"]
    serve(modal_api, servers(Broken("embedding")), 1, app="gated2")
    code, out, _ = cli(capsys, "apply", "--yes")
    assert code == 1 and "stopped it (no version served before)" in out
    assert recorded(project) == {"gated2": moved}  # the old app still runs, still to be stopped
    assert modal_api.state.deployed_app("gated") is not None
    assert modal_api.state.deployed_app("gated2") is None
