"""plan / apply / destroy / import / rollback end to end through the CLI, against the local
Modal API with the real ``modal`` client: what the client sent, what the state says."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modal_iac.cli import main
from modal_iac.local_api import LocalModalServer
from modal_iac.state import read_state

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(modal_api: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """specs/ with two apps (kalm on a GPU snapshot, minilm without), secrets on Modal."""
    work = tmp_path / "work"
    (work / "specs").mkdir(parents=True)
    shutil.copy(ROOT / "specs" / "kalm.yaml", work / "specs" / "kalm.yaml")
    shutil.copy(
        ROOT / "examples" / "small-embedding-no-snapshot.yaml", work / "specs" / "minilm.yaml"
    )
    for name in ("huggingface", "kalm-api-key"):
        modal_api.state.add_secret(name)
    monkeypatch.chdir(work)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    return work


def cli(
    capsys: pytest.CaptureFixture[str], *argv: str, answer: bool = True
) -> tuple[int, str, str]:
    code = main(list(argv), confirm=lambda question: answer)
    out, err = capsys.readouterr()
    return code, out, err


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def state(work: Path) -> dict[str, object]:
    return {
        a: r.deployed_version for a, r in read_state(work / ".modaliac/state.json").apps.items()
    }


def publishes(api: LocalModalServer) -> int:
    return len(api.state.requests("AppPublish"))


def test_lifecycle_create_noop_update_replace_delete(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "plan", "--detailed-exitcode")
    assert code == 2, err
    assert "+ create kalm-embedding" in out and "+ create minilm-embedding" in out
    assert "volume 'hf-embedding-cache' does not exist yet and will be created" in out

    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert "Apply finished: 2 succeeded, 0 failed." in out
    assert state(project) == {"kalm-embedding": 1, "minilm-embedding": 1}
    creates = {
        r.function.function_name: r.function for r in modal_api.state.requests("FunctionCreate")
    }
    klass = creates["VLLMEmbeddingSnapshot.*"]
    assert klass.resources.gpu_config.gpu_type == "A100-40GB"
    assert klass.checkpointing_enabled is True
    tags = modal_api.state.deployed_app("kalm-embedding").tags
    assert tags["managed-by"] == "modaliac" and tags["team"] == "search"

    # Same specs again: nothing to do, nothing sent.
    before = publishes(modal_api)
    code, out, _ = cli(capsys, "plan", "--detailed-exitcode")
    assert code == 0 and "No changes." in out
    code, out, _ = cli(capsys, "apply", "--yes")
    assert code == 0 and "Nothing to apply." in out
    assert publishes(modal_api) == before

    # GPU change on the app without a snapshot: an update with the field diff.
    edit(project / "specs/minilm.yaml", "gpu: L4", "gpu: A10G")
    code, out, _ = cli(capsys, "plan")
    assert "~ update minilm-embedding" in out and 'gpu : ["L4"] -> ["A10"]' in out
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert state(project)["minilm-embedding"] == 2

    # Snapshot mode change: a replace, and the plan says why it costs a cold start.
    edit(project / "specs/minilm.yaml", "gpu: A10G", "gpu: A10G\nsnapshot: gpu")
    code, out, _ = cli(capsys, "plan")
    assert "-/+ replace minilm-embedding" in out and "new memory snapshot" in out
    assert re.search(r'snapshot +: "none" -> "gpu"', out)
    assert re.search(r"engine.enforce_eager +: false -> true", out)
    assert cli(capsys, "apply", "--yes")[0] == 0

    # Spec removed: the app is stopped and forgotten.
    (project / "specs/minilm.yaml").unlink()
    code, out, _ = cli(capsys, "plan")
    assert "- delete minilm-embedding" in out
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert "minilm-embedding" not in state(project)
    assert modal_api.state.deployed_app("minilm-embedding") is None


def test_drift_is_reported_and_converged(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", "--yes")[0] == 0

    modal_api.state.set_autoscaler_override(
        "kalm-embedding", "VLLMEmbeddingSnapshot.*", by="alice", min_containers=2
    )
    modal_api.state.foreign_deploy("minilm-embedding", tag="hotfix", deployed_by="bob")
    _, out, _ = cli(capsys, "plan")
    assert "Drift: changed on Modal outside modaliac:" in out
    assert "min_containers was changed by hand to 2 (deployed: 0) by alice" in out
    assert "v2 was deployed outside modaliac by bob (tag 'hotfix'); modaliac recorded v1" in out
    assert "~ update minilm-embedding" in out

    assert cli(capsys, "apply", "--yes")[0] == 0
    assert state(project)["minilm-embedding"] == 3

    # Stopped by hand with Modal's own CLI: reported, and apply deploys it again.
    subprocess.run(
        [sys.executable, "-m", "modal", "app", "stop", "minilm-embedding", "--yes"],
        check=True,
        capture_output=True,
    )
    _code, out, _ = cli(capsys, "plan")
    assert "the app is stopped on Modal (modaliac recorded v3)" in out
    assert "+ create minilm-embedding" in out


def test_missing_secret_blocks_apply(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(project / "specs/kalm.yaml", "secrets: [huggingface]", "secrets: [huggingface, hf-extra]")
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 1
    assert (
        "secret 'hf-extra' does not exist on Modal: create it with "
        "`modal secret create hf-extra KEY=VALUE`" in out
    )
    assert err.startswith("apply refused: kalm-embedding: secret 'hf-extra'")
    assert publishes(modal_api) == 0
    assert not (project / ".modaliac/state.json").exists()


def test_saved_plan_is_applied_exactly_and_refused_when_stale(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "plan", "-o", "plan.json")
    assert code == 0, err
    reviewed = json.loads((project / "plan.json").read_text())
    assert reviewed["online"] is True
    # The spec changes after review: apply still deploys what was reviewed.
    edit(project / "specs/minilm.yaml", "gpu: L4", "gpu: T4")
    code, _out, err = cli(capsys, "apply", "plan.json")
    assert code == 0, err
    deployed = {
        r.function.function_name: r.function.resources.gpu_config.gpu_type
        for r in modal_api.state.requests("FunctionCreate")
    }
    assert deployed["Model.*"] == "L4"

    # A second application of the same plan is stale: the state moved on.
    code, _, err = cli(capsys, "apply", "plan.json")
    assert code == 1
    assert "stale plan: the recorded state of kalm-embedding changed" in err


def test_stale_plan_after_a_foreign_deploy(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", "--yes")[0] == 0
    edit(project / "specs/minilm.yaml", "gpu: L4", "gpu: T4")
    assert cli(capsys, "plan", "-o", "plan.json")[0] == 0
    modal_api.state.foreign_deploy("minilm-embedding", deployed_by="carol")
    code, _, err = cli(capsys, "apply", "plan.json")
    assert code == 1
    assert (
        "stale plan: minilm-embedding on Modal is now deployed v2 (the plan saw deployed v1)" in err
    )


def test_partial_failure_is_recorded_and_a_rerun_converges(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    modal_api.state.faults.fail_nth("AppPublish", 2)
    code, out, err = cli(capsys, "apply", "--yes", "--parallel", "1")
    assert code == 1
    assert "Apply finished: 1 succeeded, 1 failed." in out
    assert "the state records the 1 that succeeded" in err
    assert len(state(project)) == 1

    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert len(state(project)) == 2
    code, out, _ = cli(capsys, "plan", "--detailed-exitcode")
    assert code == 0


def test_import_rollback_destroy(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", "--yes")[0] == 0
    edit(project / "specs/minilm.yaml", "gpu: L4", "gpu: T4")
    assert cli(capsys, "apply", "--yes")[0] == 0
    assert state(project)["minilm-embedding"] == 2

    code, out, err = cli(capsys, "rollback", "minilm-embedding")
    assert code == 0, err
    assert "rolled back to the previous version, now v3" in out
    code, out, _ = cli(capsys, "plan")
    assert "rolled back by" in out and "to the code of v1" in out

    code, out, err = cli(capsys, "destroy", "minilm-embedding", "--yes")
    assert code == 0, err
    assert "minilm-embedding" not in state(project)

    # An app deployed by hand is adopted, then the spec manages it.
    modal_api.state.foreign_deploy("hand-made", deployed_by="dave")
    code, out, err = cli(capsys, "import", "hand-made")
    assert code == 0, err
    assert state(project)["hand-made"] == 1
    code, out, _ = cli(capsys, "state", "list")
    assert "hand-made" in out and "(imported)" in out


def test_unmanaged_app_of_the_same_name_blocks_create(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    modal_api.state.foreign_deploy("minilm-embedding", deployed_by="erin")
    code, out, _ = cli(capsys, "apply", "--yes")
    assert code == 1
    assert "is already deployed on Modal and modaliac does not manage it" in out
    assert "`modaliac import minilm-embedding`" in out


def test_no_credentials_and_unreachable_api_fail_in_one_line(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import modal.config

    monkeypatch.delenv("MODAL_TOKEN_ID")
    monkeypatch.delenv("MODAL_TOKEN_SECRET")
    monkeypatch.setattr(modal.config, "config", modal.config.Config())
    code, _, err = cli(capsys, "apply", "--yes")
    assert code == 1
    assert err == (
        "no Modal credentials: run `modal token new`, or set MODAL_TOKEN_ID and "
        "MODAL_TOKEN_SECRET\n"
    )

    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-test")
    monkeypatch.setenv("MODAL_SERVER_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(modal.config, "config", modal.config.Config())
    started = time.monotonic()
    code, _out, err = cli(capsys, "apply", "--yes")
    elapsed = time.monotonic() - started
    assert code == 1
    assert len(err.strip().splitlines()) == 1, err
    assert "connecting to Modal timed out" in err or "cannot reach Modal" in err
    assert elapsed < 15


def test_state_kept_on_modal(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """--state modal:VOLUME keeps the state in a Modal Volume; nothing is written locally."""
    remote = "modal:modaliac-state/team/state.json"
    code, out, err = cli(capsys, "apply", "--yes", "--state", remote)
    assert code == 0, err
    assert "Apply finished: 2 succeeded, 0 failed." in out
    assert not (project / ".modaliac/state.json").exists()
    assert modal_api.state.find_volume("modaliac-state") is not None

    code, out, _ = cli(capsys, "plan", "--detailed-exitcode", "--state", remote)
    assert code == 0 and "No changes." in out
    code, out, _ = cli(capsys, "state", "list", "--state", remote)
    assert "kalm-embedding" in out and "minilm-embedding" in out
    # The local state knows nothing, so a plan against it wants to create both again, and
    # Modal's tags show they are already deployed by modaliac.
    code, out, _ = cli(capsys, "plan")
    assert "Modal already runs exactly this version" in out


def test_offline_plan_build_dir_and_state_show(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "apply", "--yes", "--build-dir", "out/build")
    assert code == 0, err
    built = sorted(p.name for p in (project / "out/build").iterdir())
    assert built == ["modaliac___kalm_1embedding.py", "modaliac___minilm_1embedding.py"]

    calls = len(modal_api.state.calls)
    code, out, _ = cli(capsys, "plan", "--offline")
    assert "Modal was not consulted" in out
    assert len(modal_api.state.calls) == calls, "--offline must not talk to Modal"

    code, out, _ = cli(capsys, "state", "show", "kalm-embedding")
    shown = json.loads(out)
    assert shown["deployed_version"] == 1 and "source" not in shown
    assert shown["deployment_tag"].startswith("modaliac-")
    code, out, _ = cli(capsys, "state", "show", "specs/kalm.yaml", "--source")
    assert json.loads(out)["source"].startswith("# Generated by modaliac")
