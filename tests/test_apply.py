"""plan / apply / destroy / import / rollback end to end through the CLI, against the local
Modal API with the real ``modal`` client: what the client sent, what the state says."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modal_iac.cli import main
from modal_iac.local_api import LocalModalServer, reset_modal_client
from modal_iac.local_api.billing import WORKSPACE_NAME
from modal_iac.state.store import read_state

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
    modal_api.state.add_secret("huggingface", ("HF_TOKEN",))
    modal_api.state.add_secret("kalm-api-key", ("VLLM_API_KEY",))
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
    edit(
        project / "specs/kalm.yaml",
        "hf_token_secret: huggingface",
        "secrets: [hf-extra]\nhf_token_secret: huggingface",
    )
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 1
    assert (
        "secret 'hf-extra' does not exist on Modal; create it with "
        "`modal secret create hf-extra KEY=...`" in out
    )
    assert out.rstrip().endswith(
        "Plan blocked: 2 to create, 0 to update, 0 to replace, 0 to delete; apply refuses "
        "until the 1 blocker above is fixed."
    )
    assert err.startswith("apply refused: kalm-embedding: secret 'hf-extra'")
    assert publishes(modal_api) == 0
    assert not (project / ".modaliac/state.json").exists()
    # A blocked plan is not an applicable one: --detailed-exitcode says 1, not 2.
    code, out, _ = cli(capsys, "plan", "--detailed-exitcode", "--format", "json")
    assert code == 1 and json.loads(out)["status"] == "blocked"
    # The pull-request comment lists its blockers under its title, which points nowhere.
    _code, out, _ = cli(capsys, "plan", "--format", "markdown")
    title, blocked = out.splitlines()[0], out.index("**Blocked**: apply refuses")
    assert (
        title == "### modaliac plan (blocked): 2 to create, 0 to update, 0 to replace, 0 to delete"
    )
    assert out.index("secret 'hf-extra' does not exist on Modal") > blocked


def test_an_api_key_secret_without_its_key_blocks_the_plan(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    modal_api.state.add_secret("kalm-api-key", ("SOMETHING_ELSE",))
    code, out, _ = cli(capsys, "plan", "--format", "json", "--detailed-exitcode")
    assert code == 1
    (blocker,) = json.loads(out)["blockers"]
    assert (blocker["code"], blocker["address"]) == ("secret-missing-key", "kalm-embedding")
    assert blocker["message"] == (
        "secret 'kalm-api-key' exists on Modal but holds no VLLM_API_KEY, so the deploy would fail"
    )
    code, _, err = cli(capsys, "apply", "--yes")
    assert code == 1 and err.startswith("apply refused: kalm-embedding: secret 'kalm-api-key'")
    assert publishes(modal_api) == 0


def test_a_missing_api_key_secret_names_the_key_it_must_hold(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(project / "specs/kalm.yaml", "api_key_secret: kalm-api-key", "api_key_secret: kalm-key-2")
    _, out, _ = cli(capsys, "plan", "--format", "json")
    (blocker,) = json.loads(out)["blockers"]
    assert blocker == {
        "code": "missing-secret",
        "address": "kalm-embedding",
        "message": "secret 'kalm-key-2' does not exist on Modal",
        "fix": "create it with `modal secret create kalm-key-2 VLLM_API_KEY=...` (modaliac "
        "never handles secret values)",
    }


def test_a_secret_without_the_api_key_is_refused_before_anything_is_published(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan asks Modal for the key secret with required_keys=[api_key_env], as the deploy
    will (the server attaches it so; test_modal_fidelity checks what the client sends), so a
    secret that lacks the key blocks the apply: no container ever starts to fail on the
    missing key, and none serves open."""
    modal_api.state.add_secret("kalm-api-key", ("API_KEY",))  # the key under another name
    code, out, err = cli(capsys, "apply", "--yes", "specs/kalm.yaml")
    assert code == 1
    assert err.startswith(
        "apply refused: kalm-embedding: secret 'kalm-api-key' exists on Modal but holds no "
        "VLLM_API_KEY"
    )
    asked = [
        list(request.required_keys)
        for request in modal_api.state.requests("SecretGetOrCreate")
        if request.deployment_name == "kalm-api-key"
    ]
    assert ["VLLM_API_KEY"] in asked
    assert publishes(modal_api) == 0
    assert modal_api.state.deployed_app("kalm-embedding") is None
    assert state(project) == {}

    modal_api.state.add_secret("kalm-api-key", ("VLLM_API_KEY",))  # fixed: the apply goes on
    code, out, err = cli(capsys, "apply", "--yes", "specs/kalm.yaml")
    assert code == 0, err
    assert "ok     create   kalm-embedding: deployed v1" in out
    assert state(project) == {"kalm-embedding": 1}


def test_a_hugging_face_secret_holding_huggingface_token_blocks_with_the_fix(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seed 002 stored the token as HUGGINGFACE_TOKEN, which huggingface_hub ignores. The
    plan asks Modal for HF_TOKEN with required_keys, as the deploy will, and then for the
    wrong spelling, so the blocker says what the secret holds and how to fix it."""
    modal_api.state.add_secret("huggingface", ("HUGGINGFACE_TOKEN",))
    code, out, _ = cli(capsys, "plan", "--format", "json", "specs/kalm.yaml")
    (blocker,) = json.loads(out)["blockers"]
    assert blocker == {
        "code": "secret-missing-key",
        "address": "kalm-embedding",
        "message": "secret 'huggingface' exists on Modal but holds no HF_TOKEN (it holds "
        "HUGGINGFACE_TOKEN, which huggingface_hub ignores), so the deploy would fail",
        "fix": "put the Hugging Face token in it as HF_TOKEN (the Modal dashboard, or `modal "
        "secret create --force huggingface HF_TOKEN=...` with every key it should hold)",
    }
    asked = {
        tuple(request.required_keys)
        for request in modal_api.state.requests("SecretGetOrCreate")
        if request.deployment_name == "huggingface"
    }
    assert asked == {(), ("HF_TOKEN",), ("HUGGINGFACE_TOKEN",)}
    code, _, err = cli(capsys, "apply", "--yes", "specs/kalm.yaml")
    assert code == 1 and err.startswith("apply refused: kalm-embedding: secret 'huggingface'")
    assert publishes(modal_api) == 0

    # Another key altogether: the same blocker, without a guess at what it holds.
    modal_api.state.add_secret("huggingface", ("TOKEN",))
    _, out, _ = cli(capsys, "plan", "--format", "json", "specs/kalm.yaml")
    (blocker,) = json.loads(out)["blockers"]
    assert blocker["message"] == (
        "secret 'huggingface' exists on Modal but holds no HF_TOKEN, so the deploy would fail"
    )

    # Fixed: the deploy attaches the secret with required_keys=["HF_TOKEN"] and goes on.
    modal_api.state.add_secret("huggingface", ("HF_TOKEN",))
    before = len(modal_api.state.requests("SecretGetOrCreate"))
    code, _, err = cli(capsys, "apply", "--yes", "specs/kalm.yaml")
    assert code == 0, err
    asked_now = [
        tuple(request.required_keys)
        for request in modal_api.state.requests("SecretGetOrCreate")[before:]
        if request.deployment_name == "huggingface"
    ]
    # the plan's existence check and its HF_TOKEN check, then the deploy's own HF_TOKEN check
    assert sorted(asked_now) == [(), ("HF_TOKEN",), ("HF_TOKEN",)]


def test_a_missing_hugging_face_secret_names_hf_token(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(project / "specs/kalm.yaml", "hf_token_secret: huggingface", "hf_token_secret: hf-gated")
    _, out, _ = cli(capsys, "plan", "--format", "json", "specs/kalm.yaml")
    (blocker,) = json.loads(out)["blockers"]
    assert blocker["message"] == "secret 'hf-gated' does not exist on Modal"
    assert blocker["fix"].startswith("create it with `modal secret create hf-gated HF_TOKEN=...`")


def functions_deployed(api: LocalModalServer) -> dict[str, set[str]]:
    """App name -> the names of the functions its deploys created."""
    found: dict[str, set[str]] = {}
    for request in api.state.requests("FunctionCreate"):
        name = request.function.function_name or request.function_data.function_name
        found.setdefault(api.state.apps[request.app_id].name, set()).add(name)
    return found


def test_only_the_listed_surfaces_are_deployed(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spec without surfaces is the Python class only; one that lists surfaces gets exactly
    those: asking for the HTTP server no longer adds a class (a second GPU pool) or a
    downloader."""
    (project / "specs/kalm.yaml").unlink()
    (project / "specs/server.yaml").write_text(
        "app: minilm-server\nmodel: {id: sentence-transformers/all-MiniLM-L6-v2, task: embed}\n"
        "gpu: L4\nsurfaces:\n  http: {api_key_secret: kalm-api-key}\n"
    )
    code, _, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert functions_deployed(modal_api) == {
        "minilm-embedding": {"Model.*"},
        "minilm-server": {"Server.*"},
    }
    edit(project / "specs/server.yaml", "surfaces:\n", "surfaces:\n  downloader: true\n")
    modal_api.state.clear_calls()
    assert cli(capsys, "apply", "--yes")[0] == 0
    assert functions_deployed(modal_api) == {"minilm-server": {"Server.*", "download_weights"}}


def test_saved_plan_is_applied_exactly_and_refused_when_stale(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "plan", "-o", "plan.json")
    assert code == 0, err
    reviewed = json.loads((project / "plan.json").read_text())
    assert reviewed["online"] is True and reviewed["inputs"]["targets"] == ["specs"]
    code, _out, err = cli(capsys, "apply", "plan.json")
    assert code == 0, err
    sources = {
        name: data.decode()
        for name, data in modal_api.state.app_files("minilm-embedding").items()
        if name.endswith(".py")
    }
    (deployed,) = sources.values()
    minilm = next(c for c in reviewed["changes"] if c["app"] == "minilm-embedding")
    assert deployed == minilm["record"]["source"]  # the very code that was reviewed

    # A second application of the same plan is stale: the state moved on.
    code, _, err = cli(capsys, "apply", "plan.json")
    assert code == 1
    assert "stale plan: the recorded state of kalm-embedding changed" in err


def _forge_source(document: dict[str, Any]) -> None:
    """Edit the code of the first change and fix every hash and tag to match, as an attacker
    who knows the format would: only re-rendering the spec can tell."""
    change = document["changes"][0]
    record = change["record"]
    head, body = record["source"].split("\n", 2)[:2], record["source"].split("\n", 2)[2]
    body = 'open("PWNED", "w").write("ran")\n' + body
    record["source"] = "\n".join([*head, body])
    digest = hashlib.sha256(body.encode()).hexdigest()
    record["source_hash"] = change["source_sha256"]["after"] = digest
    record["deployment_tag"] = f"modaliac-{digest[:12]}"


def _add_a_delete(document: dict[str, Any]) -> None:
    kept = document["changes"][0]
    document["changes"].append(
        {**kept, "action": "delete", "record": None, "spec": {**kept["spec"], "sha256": None}}
        | {"address": "prod-app", "app": "prod-app", "fields": []}
        | {"source_sha256": {"before": kept["source_sha256"]["after"], "after": None}}
    )
    document["summary"]["delete"] += 1  # what the plan says of itself agrees: caught later


TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrSt12345"  # shaped like a Hugging Face token
TAMPERED: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "source edited",
        lambda d: d["changes"][0]["record"].update(
            source=d["changes"][0]["record"]["source"] + "\nimport os\n"
        ),
        "kalm-embedding: the generated source does not hash to the plan's source_sha256.after",
    ),
    (
        "source forged with matching hashes",
        _forge_source,
        "kalm-embedding: the generated code is not what its spec renders",
    ),
    (
        "settings edited",
        lambda d: d["changes"][0]["record"]["settings"].update(gpu=["H100"]),
        "kalm-embedding: the settings are not what its spec renders",
    ),
    (
        "deployment tag edited",
        lambda d: d["changes"][0]["record"].update(deployment_tag="modaliac-000000000000"),
        "kalm-embedding: the deployment tag is not that of its source",
    ),
    (
        "address moved to another environment",
        lambda d: d["changes"][0].update(address="prod/kalm-embedding"),
        "prod/kalm-embedding: the change names app 'kalm-embedding' in environment None",
    ),
    (
        "record for another app",
        lambda d: d["changes"][0]["record"].update(app="other-app"),
        "kalm-embedding: its record is for other-app",
    ),
    ("a delete added", _add_a_delete, "prod-app: the plan changes an app the state does not"),
    (
        "inputs retargeted",
        lambda d: d["inputs"].update(env="prod"),
        "kalm-embedding: its record was planned with --env None and the plan's inputs say",
    ),
    (
        "targets outside the project",
        lambda d: d["inputs"].update(targets=["../../etc"]),
        "inputs.targets: '../../etc' is not a path inside the project",
    ),
    (
        "targets narrowed",
        lambda d: d["inputs"].update(targets=["specs/kalm.yaml"]),
        "minilm-embedding is no longer planned",
    ),
    (
        "strategy edited",
        lambda d: d["changes"][0].update(strategy="recreate"),
        "kalm-embedding: its strategy differs",
    ),
    (
        "strategy not a strategy",
        lambda d: d["changes"][0].update(strategy="blue-green"),
        "changes[0].strategy: 'blue-green' is not rolling or recreate",
    ),
    (
        "notes edited",
        lambda d: d["changes"][0]["notes"].append("reviewed by nobody"),
        "kalm-embedding: its notes differ",
    ),
    (
        "status marked applicable",
        lambda d: d.update(status="no-changes"),
        "status: not what the plan's changes say",
    ),
    (
        "summary edited",
        lambda d: d["summary"].update(create=0),
        "summary: not what the plan's changes say",
    ),
    (
        "a blocker listed that no change has",
        lambda d: d["blockers"].append(
            {"code": "missing-secret", "address": "kalm-embedding", "message": "m", "fix": ""}
        ),
        "blockers: not what the plan's changes say",
    ),
    (
        "a warning added",
        lambda d: d["warnings"].append({"code": "x", "address": None, "message": "m", "fix": ""}),
        "its warnings differ",
    ),
    (
        "format 1",
        lambda d: d.update(format_version=1),
        "plan format 1 is not the format 2 this modaliac applies",
    ),
    (
        "another modaliac",
        lambda d: d.update(modaliac_version="0.0.1"),
        "made by modaliac 0.0.1; this is modaliac",
    ),
    ("offline", lambda d: d.update(online=False), "this plan was made without consulting Modal"),
    (
        "a field of the wrong type",
        lambda d: d["changes"][0]["recorded"].update(version="3"),
        "changes[0].recorded.version: has the wrong type (str)",
    ),
    (
        "an unknown action",
        lambda d: d["changes"][0].update(action="destroy"),
        "changes[0].action: 'destroy' is not one of create",
    ),
    (
        "a token where a name belongs",
        lambda d: d["changes"][0].update(action=TOKEN),
        "changes[0].action: (a value that looks like a Hugging Face token, not shown)",
    ),
]


@pytest.mark.parametrize(
    ("tamper", "expected"), [(t, e) for _, t, e in TAMPERED], ids=[n for n, _, _ in TAMPERED]
)
def test_a_tampered_saved_plan_is_refused_before_anything_runs(
    project: Path,
    modal_api: LocalModalServer,
    capsys: pytest.CaptureFixture[str],
    tamper: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    assert cli(capsys, "plan", "-o", "plan.json")[0] == 0
    document = json.loads((project / "plan.json").read_text())
    tamper(document)
    (project / "plan.json").write_text(json.dumps(document))
    modal_api.state.clear_calls()
    code, out, err = cli(capsys, "apply", "plan.json")
    assert code == 1, out
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert err.startswith("plan.json: ") and TOKEN not in err
    assert publishes(modal_api) == 0 and modal_api.state.requests("FunctionCreate") == []
    assert not (project / "PWNED").exists()  # no generated code was imported
    assert not (project / ".modaliac/state.json").exists()


def test_a_blocked_saved_plan_is_never_applied_even_once_unblocked(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reviewer saw a plan apply would refuse; fixing the cause afterwards does not turn
    that file into an approved plan: make the plan again and review it."""
    spec = project / "specs/minilm.yaml"
    spec.write_text(spec.read_text() + "secrets: [team-extra]\n")
    assert cli(capsys, "plan", "-o", "plan.json")[0] == 0
    saved = json.loads((project / "plan.json").read_text())
    assert saved["status"] == "blocked" and saved["blockers"][0]["code"] == "missing-secret"
    modal_api.state.add_secret("team-extra")
    modal_api.state.clear_calls()
    code, out, err = cli(capsys, "apply", "plan.json", "--yes")
    assert code == 1, out
    [line] = err.splitlines()
    assert line.startswith("plan.json: the plan is blocked (1 blocker(s); minilm-embedding: ")
    assert "secret 'team-extra' does not exist" in line and "make the plan again" in line
    assert publishes(modal_api) == 0
    assert not (project / ".modaliac").exists()  # refused before the lock
    assert cli(capsys, "plan", "-o", "plan.json")[0] == 0  # planned again: it applies
    assert cli(capsys, "apply", "plan.json", "--yes")[0] == 0
    assert publishes(modal_api) == 2


def test_apply_runs_the_reviewed_source_whatever_the_build_folder_holds(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A bytecode file planted in the build folder's __pycache__ (unchecked-hash: Python
    would take it without looking at the source) and a link planted at a generated file's
    path: apply still runs the code it rendered, and writes nothing through the link."""
    import py_compile
    from importlib.util import cache_from_source

    assert cli(capsys, "apply", "--yes", "specs/minilm.yaml")[0] == 0
    build = project / ".modaliac/build"
    [generated] = sorted(build.glob("*minilm*.py"))
    evil = tmp_path / "evil.py"
    evil.write_text(
        f"open({str(project / 'PWNED')!r}, 'w').close()\nimport modal\napp = modal.App('x')\n"
    )
    py_compile.compile(
        str(evil),
        cfile=cache_from_source(str(generated)),
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    edit(project / "specs/minilm.yaml", "gpu: L4", "gpu: T4")
    code, out, err = cli(capsys, "apply", "--yes", "specs/minilm.yaml")
    assert code == 0, err + out
    assert not (project / "PWNED").exists()
    assert "T4" in generated.read_text() and victim.read_text() == "precious"
    generated.unlink()
    generated.symlink_to(victim)
    edit(project / "specs/minilm.yaml", "gpu: T4", "gpu: L4")
    code, out, err = cli(capsys, "apply", "--yes", "specs/minilm.yaml")
    assert code == 0, err + out
    assert victim.read_text() == "precious" and not generated.is_symlink()
    assert not (project / "PWNED").exists()


def test_a_saved_plan_applies_to_the_workspace_it_was_made_against_only(
    project: Path,
    modal_api: LocalModalServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Another Modal server (another workspace, to the client) with the same environments,
    secrets and volumes re-plans the same creates: the plan names where it was made."""
    assert cli(capsys, "plan", "-o", "plan.json")[0] == 0
    saved = json.loads((project / "plan.json").read_text())
    assert saved["workspace"] == f"{WORKSPACE_NAME} at {modal_api.url}"
    with LocalModalServer() as other:
        other.state.add_secret("huggingface", ("HF_TOKEN",))
        other.state.add_secret("kalm-api-key", ("VLLM_API_KEY",))
        for key, value in other.env().items():
            monkeypatch.setenv(key, value)
        reset_modal_client()
        code, out, err = cli(capsys, "apply", "plan.json", "--yes")
        assert code == 1, out
        [line] = err.splitlines()
        assert line == (
            f"plan.json: the plan was made against {WORKSPACE_NAME} at {modal_api.url} and this "
            f"run is against {WORKSPACE_NAME} at {other.url}: a saved plan applies to the Modal "
            "workspace it was reviewed for only; make the plan again there"
        )
        assert other.state.requests("AppPublish") == []
    reset_modal_client()


def test_a_saved_plan_made_under_another_profile_environment_is_refused_naming_both(
    project: Path,
    modal_api: LocalModalServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    modal_api.state.add_environment("dev")
    modal_api.state.add_secret("huggingface", ("HF_TOKEN",), "dev")
    modal_api.state.add_secret("kalm-api-key", ("VLLM_API_KEY",), "dev")
    monkeypatch.setenv("MODAL_ENVIRONMENT", "dev")
    assert cli(capsys, "plan", "-o", "plan.json")[0] == 0
    assert json.loads((project / "plan.json").read_text())["inputs"]["profile_environment"] == "dev"
    for now, named in ((None, "the workspace's default environment"), ("prod", "environment prod")):
        if now is None:
            monkeypatch.delenv("MODAL_ENVIRONMENT")
        else:
            monkeypatch.setenv("MODAL_ENVIRONMENT", now)
        code, out, err = cli(capsys, "apply", "plan.json", "--yes")
        assert code == 1, out
        assert err == (
            "plan.json: the plan was made for environment dev (MODAL_ENVIRONMENT or the Modal "
            f"profile) and this run's is {named}; apply it with the settings it was made with, "
            "or make the plan again\n"
        )
    assert publishes(modal_api) == 0
    monkeypatch.setenv("MODAL_ENVIRONMENT", "dev")
    code, out, err = cli(capsys, "apply", "plan.json", "--yes")
    assert code == 0, err + out
    assert modal_api.state.app("minilm-embedding", "dev") is not None


def test_a_saved_plan_whose_spec_changed_is_refused(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "plan", "-o", "plan.json")[0] == 0
    edit(project / "specs/minilm.yaml", "gpu: L4", "gpu: T4")
    code, _, err = cli(capsys, "apply", "plan.json")
    assert code == 1
    assert err == (
        "plan.json: minilm-embedding: specs/minilm.yaml changed since the plan was made; make "
        "the plan again and review it\n"
    )
    assert publishes(modal_api) == 0


@pytest.mark.parametrize("kind", ["directory", "fifo", "missing", "truncated", "not json"])
def test_a_plan_file_that_is_not_a_plan_is_one_line(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    target = project / "plan.json"
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)  # reading it would wait for a writer for ever
    elif kind == "truncated":
        assert cli(capsys, "plan", "-o", "plan.json")[0] == 0
        target.write_text(target.read_text()[:500])
    elif kind == "not json":
        target.write_text("plan: yes\n")
    code, out, err = cli(capsys, "apply", "plan.json")
    assert (code, out) == (1, "") and len(err.strip().splitlines()) == 1, err
    assert err.startswith("plan.json")
    assert "internal error" not in err
    assert publishes(modal_api) == 0


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


def test_rollback_takes_the_version_as_printed_and_asks_first(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", "--yes")[0] == 0
    edit(project / "specs/minilm.yaml", "gpu: L4", "gpu: T4")
    assert cli(capsys, "apply", "--yes")[0] == 0
    assert state(project)["minilm-embedding"] == 2

    code, out, err = cli(capsys, "rollback", "minilm-embedding", "--to", "v1", answer=False)
    assert code == 1 and "rollback cancelled: nothing was changed" in err
    assert "~ rollback minilm-embedding: Modal will serve v1 again" in out
    assert "AppRollback" not in modal_api.state.rpc_names()
    assert state(project)["minilm-embedding"] == 2

    code, out, err = cli(capsys, "rollback", "minilm-embedding", "--to", "v1", answer=True)
    assert code == 0, err
    assert "rolled back to v1, now v3" in out
    [sent] = [c.request for c in modal_api.state.calls if c.rpc == "AppRollback"]
    assert sent.version == 1
    assert cli(capsys, "rollback", "minilm-embedding", "--to", "1", "--yes")[0] == 0
    assert [c.request.version for c in modal_api.state.calls if c.rpc == "AppRollback"] == [1, 1]


@pytest.mark.parametrize("version", ["x", "v", "v0", "-2", "2.0"])
def test_rollback_refuses_a_version_that_is_not_one(
    capsys: pytest.CaptureFixture[str], version: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["rollback", "app", "--to", version])
    assert exited.value.code == 2
    assert "is not a version: write it as v2 or 2" in capsys.readouterr().err


def test_rollback_off_a_terminal_without_yes_refuses(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", "--yes")[0] == 0
    code = main(["rollback", "minilm-embedding"])  # the real prompt: stdin is not a terminal
    err = capsys.readouterr().err
    assert code == 2 and "not a terminal: pass --yes" in err
    assert "AppRollback" not in modal_api.state.rpc_names()


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


def stops(api: LocalModalServer) -> list[str]:
    """The containers the client asked Modal to stop, in order."""
    return [r.task_id for r in api.state.requests("ContainerStop")]


def test_deploy_strategy_rolling_recreate_per_run_per_spec_and_saved(
    project: Path,
    modal_api: LocalModalServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rolling leaves running containers to drain; recreate makes the client list the app's
    containers and stop those started before the new version (modal.runner). The run's
    --strategy beats the spec's deploy.strategy; a saved plan carries the strategy."""
    import modal.runner

    monkeypatch.setattr(modal.runner, "WAIT_FOR_CONTAINER_STOP_SLEEP_INTERVAL", 0)
    minilm = project / "specs/minilm.yaml"
    assert cli(capsys, "apply", "--yes")[0] == 0
    assert modal_api.state.requests("TaskList") == [] and stops(modal_api) == []

    # Per run: recreate stops the two running containers of the app it deploys, only those.
    running = [modal_api.state.add_container("minilm-embedding") for _ in range(2)]
    other = modal_api.state.add_container("kalm-embedding")
    edit(minilm, "gpu: L4", "gpu: A10G")
    code, out, _ = cli(capsys, "plan", "--strategy", "recreate")
    assert code == 0 and "# deploy strategy recreate: the running containers are stopped" in out
    code, out, err = cli(capsys, "apply", "--yes", "--strategy", "recreate")
    assert code == 0, err
    app_id = modal_api.state.deployed_app("minilm-embedding").app_id
    assert [r.app_id for r in modal_api.state.requests("TaskList")] == [app_id] * 2
    assert sorted(stops(modal_api)) == sorted(running)
    assert other in modal_api.state.tasks

    # Per spec: the strategy alone changes nothing on Modal, so it plans no change ...
    edit(minilm, "gpu: A10G", "gpu: A10G\ndeploy: {strategy: recreate}")
    code, out, _ = cli(capsys, "plan", "--detailed-exitcode")
    assert code == 0 and "No changes." in out
    # ... and the next deploy uses it, unless the run says otherwise.
    modal_api.state.clear_calls()
    again = modal_api.state.add_container("minilm-embedding")
    edit(minilm, "gpu: A10G", "gpu: L4")
    code, out, _ = cli(capsys, "plan", "--format", "json")
    (change,) = [c for c in json.loads(out)["changes"] if c["action"] != "no-op"]
    assert change["strategy"] == "recreate"
    code, out, _ = cli(capsys, "plan", "--format", "json", "--strategy", "rolling")
    (change,) = [c for c in json.loads(out)["changes"] if c["action"] != "no-op"]
    assert change["strategy"] == "rolling" and not any("recreate" in n for n in change["notes"])
    assert cli(capsys, "apply", "--yes", "--strategy", "rolling")[0] == 0
    assert stops(modal_api) == [] and again in modal_api.state.tasks

    # A saved plan deploys with the strategy it shows; apply PLAN.json takes no --strategy.
    edit(minilm, "gpu: L4", "gpu: A10G")
    code, _, err = cli(capsys, "plan", "-o", "plan.json", "--strategy", "recreate")
    assert code == 0, err
    saved = json.loads((project / "plan.json").read_text())
    assert saved["inputs"]["strategy"] == "recreate"
    code, _, err = cli(capsys, "apply", "plan.json", "--strategy", "rolling")
    assert code == 2 and "no --env, --replace, --strategy" in err
    code, _, err = cli(capsys, "apply", "plan.json")
    assert code == 0, err
    assert stops(modal_api) == [again]
