"""Drift that is planned, refresh-only plans, --replace, state rm and state mv: through the
CLI against the local Modal API, asserting what Modal runs and what the state records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from modal_proto import api_pb2

from modal_iac.cli import main
from modal_iac.local_api import LocalModalServer
from modal_iac.state.store import read_state

ROOT = Path(__file__).resolve().parent.parent
STATE = ".modaliac/state.json"


@pytest.fixture
def project(modal_api: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """specs/minilm.yaml (one pool, no snapshot), applied once."""
    work = tmp_path / "work"
    (work / "specs").mkdir(parents=True)
    shutil.copy(
        ROOT / "examples" / "small-embedding-no-snapshot.yaml", work / "specs" / "minilm.yaml"
    )
    monkeypatch.chdir(work)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    assert main(["apply", "--yes"], confirm=lambda q: True) == 0
    return work


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), confirm=lambda question: True)
    out, err = capsys.readouterr()
    return code, out, err


def effective(api: LocalModalServer, app: str, function: str = "Model.*") -> int:
    """The min_containers Modal runs the function with: static, or the hand-made override."""
    record = api.state.function(app, function)
    override = record.override
    if override.HasField("min_containers"):
        return int(override.min_containers)
    assert record.data is not None
    return int(record.data.autoscaler_settings.min_containers)


def plan_json(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, object]]:
    code, out, err = cli(capsys, "plan", "--format", "json", "--detailed-exitcode", *extra)
    plan = json.loads(out)
    assert code == {"no-changes": 0, "blocked": 1, "changes": 2}[plan["status"]], err
    return code, plan


def test_a_hand_made_autoscaler_change_is_planned_and_put_back(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    modal_api.state.set_autoscaler_override(
        "minilm-embedding", "Model.*", by="alice", min_containers=3
    )
    assert effective(modal_api, "minilm-embedding") == 3
    code, plan = plan_json(capsys)
    assert code == 2, "a plan that puts Modal back has changes"
    (change,) = plan["changes"]  # type: ignore[misc]
    assert change["action"] == "update"
    assert change["fields"] == [{"path": "scaling.min_containers[Model]", "before": 3, "after": 0}]
    (drift,) = change["drift"]
    assert drift["code"] == "autoscaler-override" and "by alice" in drift["message"]
    # Three warm containers cost three times one; the plan prices what Modal runs now.
    (cost,) = plan["cost"]["apps"]  # type: ignore[index]
    assert cost["idle_month_delta"] < 0 and cost["pools"][0]["min_containers"] == 0
    _, text, _ = cli(capsys, "plan")
    assert "~ update minilm-embedding" in text
    assert "scaling.min_containers[Model] : 3 -> 0" in text

    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert "ok     update   minilm-embedding: deployed v2" in out
    assert effective(modal_api, "minilm-embedding") == 0  # Modal is back at the spec's value
    assert modal_api.state.app("minilm-embedding").current.version == 2
    code, plan = plan_json(capsys)
    assert code == 0 and plan["status"] == "no-changes"


def test_refresh_only_records_the_hand_change_and_the_plan_then_shows_it_as_a_change(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    modal_api.state.set_autoscaler_override(
        "minilm-embedding", "Model.*", by="alice", min_containers=2
    )
    code, out, _ = cli(capsys, "plan", "--refresh-only", "--detailed-exitcode")
    assert code == 2
    assert "~ record minilm-embedding" in out
    assert "Model: min_containers is 2 on Modal, changed by hand by alice (deployed: 0)" in out
    before = read_state(project / STATE).apps["minilm-embedding"]
    assert before.overrides == {}  # a plan writes nothing

    publishes = len(modal_api.state.requests("AppPublish"))
    code, out, err = cli(capsys, "apply", "--refresh-only", "--yes")
    assert code == 0, err
    assert "Refresh finished: 1 recorded in the state." in out
    assert len(modal_api.state.requests("AppPublish")) == publishes  # nothing deployed
    assert effective(modal_api, "minilm-embedding") == 2  # the hand change is kept
    after = read_state(project / STATE).apps["minilm-embedding"]
    assert after.overrides == {"Model.*": {"min_containers": 2}}

    # The state now knows: no drift any more, but the spec still says 0, so the plan (online
    # and offline alike) shows the difference as an ordinary update.
    for extra in ((), ("--offline",)):
        code, plan = plan_json(capsys, *extra)
        assert code == 2, extra
        (change,) = plan["changes"]  # type: ignore[misc]
        assert change["drift"] == [] and change["action"] == "update"
        assert change["fields"] == [
            {"path": "scaling.min_containers[Model]", "before": 2, "after": 0}
        ]
    code, out, _ = cli(capsys, "plan", "--refresh-only", "--detailed-exitcode")
    assert code == 0 and "No changes. The state records what Modal runs." in out


def test_refresh_only_forgets_a_stopped_app_and_records_a_foreign_deploy(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "specs/other.yaml").write_text(
        (project / "specs/minilm.yaml").read_text().replace("minilm-embedding", "other")
    )
    assert cli(capsys, "apply", "--yes")[0] == 0
    modal_api.state.foreign_deploy("other", tag="hotfix", deployed_by="bob")
    modal_api.state.app("minilm-embedding").state = api_pb2.APP_STATE_STOPPED
    code, out, err = cli(capsys, "apply", "--refresh-only", "--yes")
    assert code == 0, err
    assert "- forget minilm-embedding" in out and "~ record other" in out
    recorded = read_state(project / STATE).apps
    assert "minilm-embedding" not in recorded
    assert (recorded["other"].deployed_version, recorded["other"].deployment_tag) == (2, "hotfix")
    assert recorded["other"].source == "" and recorded["other"].settings == {}
    code, plan = plan_json(capsys)
    actions = {c["address"]: c["action"] for c in plan["changes"]}  # type: ignore[union-attr]
    assert actions == {"minilm-embedding": "create", "other": "update"}


def test_replace_forces_a_new_deployment_of_unchanged_code(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, plan = plan_json(capsys, "--replace", "minilm-embedding")
    assert code == 2
    (change,) = plan["changes"]  # type: ignore[misc]
    assert change["action"] == "replace" and change["fields"] == []
    assert "--replace: Modal redeploys the app and takes a new snapshot" in change["notes"]
    assert plan["inputs"]["replace"] == ["minilm-embedding"]  # type: ignore[index]
    assert change["source_sha256"]["before"] == change["source_sha256"]["after"]

    before = modal_api.state.app("minilm-embedding").current
    assert cli(capsys, "plan", "--replace", "minilm-embedding", "-o", "plan.json")[0] == 0
    code, _, err = cli(capsys, "apply", "plan.json")
    assert code == 0, err
    current = modal_api.state.app("minilm-embedding").current
    assert current.version == before.version + 1, "Modal made a new deployment"
    assert current.definition_ids != before.definition_ids
    # The next plan sees the code the spec renders: nothing to do.
    code, plan = plan_json(capsys)
    assert code == 0
    code, _, err = cli(capsys, "plan", "--replace", "nothing-here")
    assert code == 1
    assert err == "--replace nothing-here: not an app these specs deploy (minilm-embedding)\n"


def test_state_rm_forgets_an_app_without_touching_modal(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "state", "rm", "minilm-embedding")
    assert code == 0, err
    assert out == (
        "minilm-embedding: removed from the state; Modal still runs it (modaliac import "
        "minilm-embedding adopts it again)\n"
    )
    assert read_state(project / STATE).apps == {}
    assert modal_api.state.deployed_app("minilm-embedding") is not None
    # Modal runs exactly the code the spec renders (its tag says so): a plan only records it.
    _, plan = plan_json(capsys)
    (change,) = plan["changes"]  # type: ignore[misc]
    assert change["action"] == "no-op"
    assert "Modal already runs exactly this version: apply only records it" in change["notes"]
    # Once the spec says something else, the running app is not one modaliac deployed.
    spec = project / "specs/minilm.yaml"
    spec.write_text(spec.read_text().replace("gpu: L4", "gpu: T4"))
    _, plan = plan_json(capsys)
    (blocker,) = plan["blockers"]  # type: ignore[misc]
    assert blocker["code"] == "unmanaged-app"
    assert "modaliac import minilm-embedding" in blocker["fix"]
    code, _, err = cli(capsys, "state", "rm", "dev/minilm-embedding")
    assert code == 1 and err.startswith("dev/minilm-embedding: not recorded in the state")


def test_state_mv_renames_an_app_and_apply_moves_it_on_modal(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "state", "mv", "minilm-embedding", "minilm")
    assert code == 0, err
    assert "Modal cannot rename an app" in out
    recorded = read_state(project / STATE).apps
    assert list(recorded) == ["minilm"] and recorded["minilm"].renamed_from == "minilm-embedding"
    spec = project / "specs/minilm.yaml"
    spec.write_text(spec.read_text().replace("app: minilm-embedding", "app: minilm"))
    code, plan = plan_json(capsys)
    assert code == 2
    (change,) = plan["changes"]  # type: ignore[misc]
    assert (change["action"], change["renamed_from"]) == ("update", "minilm-embedding")
    assert {"path": "app", "before": "minilm-embedding", "after": "minilm"} in change["fields"]
    assert change["drift"] == [] and change["blockers"] == []

    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert "stopped minilm-embedding" in out
    assert modal_api.state.deployed_app("minilm-embedding") is None
    assert modal_api.state.deployed_app("minilm") is not None
    recorded = read_state(project / STATE).apps
    assert list(recorded) == ["minilm"] and recorded["minilm"].renamed_from is None
    assert plan_json(capsys)[0] == 0

    for argv, message in (
        (["state", "mv", "nothing", "x"], "nothing: not recorded in the state"),
        (["state", "mv", "minilm", "minilm"], "minilm: moving an app onto itself"),
    ):
        code, _, err = cli(capsys, *argv)
        assert code == 1 and err.startswith(message), err


def test_a_hand_deploy_under_modaliacs_own_tag_is_drift_that_apply_undoes(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tag is anyone's to reuse: `modal deploy --tag modaliac-<hash>` by hand is a
    deploy modaliac did not make, not one it only has to record."""
    recorded = read_state(project / STATE).apps["minilm-embedding"]
    modal_api.state.foreign_deploy("minilm-embedding", tag=recorded.deployment_tag)
    code, plan = plan_json(capsys)
    assert code == 2
    (change,) = plan["changes"]  # type: ignore[misc]
    assert change["action"] == "update"
    assert [d["code"] for d in change["drift"]] == ["foreign-deploy"]
    assert cli(capsys, "apply", "--yes")[0] == 0
    assert modal_api.state.app("minilm-embedding").current.version == 3
    assert read_state(project / STATE).apps["minilm-embedding"].deployed_version == 3
    assert plan_json(capsys)[0] == 0


def test_app_tags_changed_by_hand_are_drift_that_apply_undoes(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    app = modal_api.state.app("minilm-embedding")
    wanted = dict(app.tags)
    app.tags = {**wanted, "managed-by": "someone", "extra": "x"}
    code, plan = plan_json(capsys)
    assert code == 2
    (change,) = plan["changes"]  # type: ignore[misc]
    assert change["action"] == "update"
    (drift,) = change["drift"]
    assert drift["code"] == "app-tags"
    assert drift["message"] == (
        "the app's tags were changed outside modaliac ('extra', 'managed-by')"
    )
    assert cli(capsys, "apply", "--yes")[0] == 0
    assert modal_api.state.app("minilm-embedding").tags == wanted
    assert plan_json(capsys)[0] == 0
