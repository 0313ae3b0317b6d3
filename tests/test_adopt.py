"""`modaliac import APP --generate-spec FILE`: an app deployed by hand (the real modal client
deploying a generated file, not modaliac) becomes a spec, and the first plan is small."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

import modal
import modal.runner
import pytest
from helpers import import_file

from modal_iac.cli import main
from modal_iac.loading.load import load_spec
from modal_iac.local_api import LocalModalServer
from modal_iac.render.app import render
from modal_iac.spec.gateway import GatewaySpec
from modal_iac.state.store import read_state

ROOT = Path(__file__).resolve().parent.parent


def deploy_by_hand(
    source: str, app: str, folder: Path, mp: pytest.MonkeyPatch, environment: str = ""
) -> None:
    """Deploy an app file with the real `modal` client, as a team does without modaliac."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{uuid.uuid4().hex[:12]}.py"
    target.write_text(source, encoding="utf-8")
    module = import_file(target, f"by_hand_{target.stem}", mp)
    assert isinstance(module.app, modal.App)
    modal.runner.deploy_app(module.app, name=app, environment_name=environment, tag="by-hand")


@pytest.fixture
def work(modal_api: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project, and kalm deployed by hand with `modal` (tagged like a team would)."""
    modal_api.state.add_secret("huggingface", ("HF_TOKEN",))
    modal_api.state.add_secret("kalm-api-key", ("VLLM_API_KEY",))
    rendered = render(load_spec(ROOT / "specs" / "kalm.yaml"))
    deploy_by_hand(rendered.source, "kalm-embedding", tmp_path / "by-hand", monkeypatch)
    found = modal_api.state.app("kalm-embedding", "")
    found.tags.update({"team": "search"})
    work = tmp_path / "work"
    (work / "specs").mkdir(parents=True)
    shutil.copy(ROOT / "schema.json", work / "schema.json")
    monkeypatch.chdir(work)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    return work


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), confirm=lambda question: True)
    out, err = capsys.readouterr()
    return code, out, err


def test_import_writes_a_spec_and_the_first_plan_is_small(
    work: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "import", "kalm-embedding", "--generate-spec", "specs/kalm.yaml")
    assert code == 0, err
    assert "imported v1 and wrote specs/kalm.yaml" in out
    text = (work / "specs/kalm.yaml").read_text()
    for line in (
        "app: kalm-embedding",
        "  team: search",
        "  id: FILL-IN/model-id  # fill in",
        "  task: embed  # guessed",
        "gpu: A100-40GB",
        "snapshot: gpu",
        "  /root/.cache/huggingface: hf-embedding-cache",
        "  /root/.cache/vllm: vllm-jit-cache",
        "hf_token_secret: huggingface  # holds HF_TOKEN",
        "  max_containers: 1",
        "  scaledown_window: 300s",
        "  timeout: 300s",
        "  concurrency: 32",
        "    name: VLLMEmbeddingSnapshot",
        "    api_key_secret: kalm-api-key",
        "  downloader: true",
    ):
        assert f"\n{line}" in text, (line, text)
    assert "modaliac-" not in text.replace("`modaliac import", "")
    assert cli(capsys, "fmt", "--check", "specs/kalm.yaml")[0] == 0  # written as fmt writes
    # FetchGet asked per function: what the spec was written from is what Modal reported.
    asked = {r.object_tag for r in modal_api.state.requests("FunctionGet")}
    assert {"Server.*", "VLLMEmbeddingSnapshot.*", "download_weights"} <= asked

    record = read_state(work / ".modaliac/state.json").apps["kalm-embedding"]
    assert record.spec_path == "specs/kalm.yaml" and record.deployed_version == 1
    assert record.settings["gpu"] == ["A100-40GB"]
    assert record.settings["model.id"] == "FILL-IN/model-id"

    # Until the model id is filled in, the spec does not validate, with one clear line.
    code, out, err = cli(capsys, "validate", "specs/kalm.yaml")
    assert code == 1
    assert err.startswith("specs/kalm.yaml:")
    assert 'model.id: "FILL-IN/model-id" is the placeholder' in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err

    # Filled in, the plan changes the model id (and its served name) and deploys modaliac's
    # code; nothing else is replaced, created or deleted.
    spec = work / "specs/kalm.yaml"
    spec.write_text(
        spec.read_text().replace("FILL-IN/model-id", "tencent/KaLM-Embedding-Gemma3-12B-2511")
    )
    code, out, err = cli(capsys, "plan")
    assert code == 0, err
    changed = [line.strip() for line in out.splitlines() if "->" in line]
    assert changed and all(
        line.startswith(("model.id", "model.served_name")) for line in changed
    ), out
    # A GPU snapshot app deploys with a new snapshot: replace, said why; nothing else.
    assert "-/+ replace kalm-embedding" in out
    assert "a new memory snapshot is taken" in out
    assert "Plan: 0 to create, 0 to update, 1 to replace, 0 to delete." in out


def test_import_refuses_to_overwrite_the_spec_file(
    work: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (work / "specs/kalm.yaml").write_text("keep me\n")
    code, _, err = cli(capsys, "import", "kalm-embedding", "--generate-spec", "specs/kalm.yaml")
    assert code == 1
    assert err == "specs/kalm.yaml: already exists; name a new file\n"
    assert (work / "specs/kalm.yaml").read_text() == "keep me\n"
    assert not (work / ".modaliac/state.json").exists()


@pytest.mark.parametrize("taken", ["dangling link", "folder", "fifo", "control character"])
def test_import_refuses_a_spec_path_that_is_taken(
    taken: str, work: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "specs/kalm.yaml"
    if taken == "dangling link":
        (work / name).symlink_to(work / "nowhere" / "kalm.yaml")
    elif taken == "folder":
        (work / name).mkdir()
    elif taken == "fifo":
        os.mkfifo(work / name)
    else:
        name = "specs/ka\x1b[2Jlm.yaml"
    code, out, err = cli(capsys, "import", "kalm-embedding", "--generate-spec", name)
    assert (code, out) == (1, "")
    assert err == {
        "dangling link": f"{name}: already exists (a symbolic link); name a new file\n",
        "control character": "specs/ka?[2Jlm.yaml: the name holds a control character; name "
        "the spec's file in printable characters\n",
    }.get(taken, f"{name}: already exists; name a new file\n")
    assert not (work / "nowhere").exists()
    assert not (work / ".modaliac/state.json").exists()


HAND_WRITTEN = """\
import modal

app = modal.App("hand-chat")
cache = modal.Volume.from_name("hf-cache", create_if_missing=True)


@app.function(
    gpu="L40S",
    image=modal.Image.debian_slim(),
    volumes={"/root/.cache/huggingface": cache},
    secrets=[modal.Secret.from_name("hf-secret")],
    min_containers=1,
    scaledown_window=120,
    timeout=600,
)
@modal.concurrent(max_inputs=16)
@modal.web_server(8000, startup_timeout=900)
def serve() -> None:
    pass
"""


def test_import_of_an_app_written_by_hand(
    work: Path,
    modal_api: LocalModalServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    modal_api.state.add_secret("hf-secret", ("HF_TOKEN",))
    deploy_by_hand(HAND_WRITTEN, "hand-chat", work.parent / "hand", monkeypatch)

    code, out, err = cli(capsys, "import", "hand-chat", "--generate-spec", "specs/chat.yaml")
    assert code == 0, err
    text = (work / "specs/chat.yaml").read_text()
    for line in (
        "  task: generate  # guessed",
        "gpu: L40S",
        "volumes:\n  /root/.cache/huggingface: hf-cache",
        "hf_token_secret: hf-secret  # holds HF_TOKEN",
        "  min_containers: 1",
        "  scaledown_window: 120s",
        "  timeout: 600s",
        "  startup_timeout: 600s",  # the client sends the timeout when none is given
        "  concurrency: 16",
        "surfaces:\n  http:\n    api_key_secret: CHANGE-ME  # Modal reports no key and no "
        "proxy auth: name the secret holding the API key, or write open: true",
    ):
        assert f"\n{line}" in text, (line, text)
    assert "snapshot" not in text and "class:" not in text and "downloader" not in text
    assert "\n    open:" not in text  # Modal cannot say whether a key is checked: no guess

    spec = work / "specs/chat.yaml"
    spec.write_text(spec.read_text().replace("FILL-IN/model-id", "Qwen/Qwen3-0.6B"))
    assert cli(capsys, "validate", "specs/chat.yaml")[0] == 0
    code, out, err = cli(capsys, "plan")
    assert code == 0, err
    changed = [line.strip() for line in out.splitlines() if "->" in line]
    # Recorded as Modal runs it (no key): the placeholder is a change to see.
    assert [line.split()[0] for line in changed] == [
        "model.id",
        "model.served_name",
        "surfaces.http.api_key_secret",
        "surfaces.http.open",
    ], out
    # Applied as it stands, the deploy fails on the placeholder: nothing is served open.
    code, _, err = cli(capsys, "apply", "--yes")
    assert code == 1 and "CHANGE-ME" in err, err
    # The user decides the endpoint is open: only then does the spec say so.
    spec.write_text(re.sub("api_key_secret: CHANGE-ME.*", "open: true", spec.read_text(), count=1))
    code, out, err = cli(capsys, "plan")
    assert code == 0, err
    changed = [line.strip() for line in out.splitlines() if "->" in line]
    assert [line.split()[0] for line in changed] == ["model.id", "model.served_name"], out
    assert "~ update hand-chat" in out
    assert "Plan: 0 to create, 1 to update, 0 to replace, 0 to delete." in out
    # Applied, modaliac's code runs and the spec is the whole truth: the next plan is empty.
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert cli(capsys, "plan", "--detailed-exitcode")[0] == 0


def test_import_of_an_app_a_spec_cannot_describe_says_so(
    work: Path,
    modal_api: LocalModalServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = HAND_WRITTEN.replace('    gpu="L40S",\n', "").replace('"hand-chat"', '"hand-cpu"')
    source = source.replace('modal.Secret.from_name("hf-secret")', "")
    deploy_by_hand(source, "hand-cpu", work.parent / "hand", monkeypatch)

    code, out, err = cli(capsys, "import", "hand-cpu", "--generate-spec", "specs/cpu.yaml")
    assert code == 0, err
    assert "imported v1 and wrote specs/cpu.yaml" in out
    assert err == (
        "specs/cpu.yaml: needs more than model.id to validate (`modaliac validate "
        "specs/cpu.yaml` says what); the next plan lists every setting as new\n"
    )
    assert "\ngpu:" not in (work / "specs/cpu.yaml").read_text()
    assert read_state(work / ".modaliac/state.json").apps["hand-cpu"].settings == {}
    code, _, err = cli(capsys, "validate", "specs/cpu.yaml")
    assert code == 1 and "Traceback" not in err and err.startswith("specs/cpu.yaml:")


EXAMPLES = sorted(
    p.name
    for p in (ROOT / "examples").glob("*.yaml")
    if "kind: gateway" not in p.read_text(encoding="utf-8")
)


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_deployed_by_hand_is_adopted_with_a_small_plan(
    example: str,
    work: Path,
    modal_api: LocalModalServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = load_spec(ROOT / "examples" / example).spec
    assert not isinstance(original, GatewaySpec)
    http = original.surfaces.http
    for name in filter(None, [*original.secrets, original.hf_token_secret]):
        modal_api.state.add_secret(name, ("HF_TOKEN",))
    if http is not None and http.api_key_secret is not None:
        modal_api.state.add_secret(http.api_key_secret, (http.api_key_env,))
    rendered = render(load_spec(ROOT / "examples" / example))
    deploy_by_hand(rendered.source, original.app, work.parent / "hand", monkeypatch)

    code, _, err = cli(capsys, "import", original.app, "--generate-spec", "specs/app.yaml")
    assert (code, err) == (0, ""), (spec_text_of(work), err)
    spec = work / "specs/app.yaml"
    adopted = spec.read_text().replace("FILL-IN/model-id", original.model.id)
    spec.write_text(adopted)
    written = load_spec(spec).spec
    assert not isinstance(written, GatewaySpec)
    # What Modal reports comes back as the original spec said it.
    assert written.gpu == original.gpu
    assert written.volumes == original.volumes
    # vLLM's sleep mode takes a GPU snapshot: to Modal the two look the same.
    assert written.snapshot == ("gpu" if original.snapshot == "sleep" else original.snapshot)
    assert written.scaling.max_containers == original.scaling.max_containers
    assert written.scaling.scaledown_window == original.scaling.scaledown_window
    assert written.scaling.timeout == original.scaling.timeout
    assert written.scaling.min_containers == original.scaling.min_containers
    assert written.scaling.startup_timeout == original.scaling.startup_timeout
    assert written.concurrency == original.concurrency
    # The same secrets; one named like the token's is written as hf_token_secret (a guess).
    assert {written.hf_token_secret, *written.secrets} - {None} == {
        original.hf_token_secret,
        *original.secrets,
    } - {None}
    assert written.surfaces.downloader == original.surfaces.downloader
    assert (written.surfaces.class_ is None) == (original.surfaces.class_ is None)
    if http is None:
        assert written.surfaces.http is None
    else:
        assert written.surfaces.http is not None
        assert written.surfaces.http.api_key_secret == http.api_key_secret
        assert written.surfaces.http.api_key_env == http.api_key_env
        assert written.surfaces.http.proxy_auth == http.proxy_auth
        assert written.surfaces.http.primitive == http.primitive
    code, out, err = cli(capsys, "plan")
    assert code == 0, err
    changed = [line.split()[0] for line in out.splitlines() if "->" in line]
    assert changed == ["model.id", "model.served_name"], out


def spec_text_of(work: Path) -> str:
    path = work / "specs/app.yaml"
    return path.read_text() if path.exists() else ""


def test_import_of_an_app_in_another_environment(
    work: Path,
    modal_api: LocalModalServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    modal_api.state.add_environment("staging")
    modal_api.state.add_secret("hf-secret", ("HF_TOKEN",), "staging")
    deploy_by_hand(HAND_WRITTEN, "hand-chat", work.parent / "hand", monkeypatch, "staging")

    code, out, err = cli(
        capsys, "import", "staging/hand-chat", "--generate-spec", "specs/chat.yaml"
    )
    assert code == 0, err
    text = (work / "specs/chat.yaml").read_text()
    assert "\nenvironment: staging\n" in text and "\nhf_token_secret: hf-secret" in text
    assert "\n  /root/.cache/huggingface: hf-cache\n" in text  # named in its environment
    record = read_state(work / ".modaliac/state.json").apps["staging/hand-chat"]
    assert record.environment == "staging" and record.settings["environment"] == "staging"
    spec = work / "specs/chat.yaml"
    spec.write_text(spec.read_text().replace("FILL-IN/model-id", "Qwen/Qwen3-0.6B"))
    code, out, err = cli(capsys, "plan")
    assert code == 0, err
    assert "~ update staging/hand-chat" in out, out
    changed = [line.split()[0] for line in out.splitlines() if "->" in line]
    # Modal reports no key for the hand-deployed endpoint: the spec names a placeholder secret,
    # never open: true, and apply refuses until the user says which.
    open_to_keyed = ["surfaces.http.api_key_secret", "surfaces.http.open"]
    assert changed == ["model.id", "model.served_name", *open_to_keyed], out
    assert "secret 'CHANGE-ME' does not exist on Modal" in out


def test_labels_and_names_read_back_as_the_strings_modal_reported() -> None:
    from modal_iac.commands.adopt import Function, recorded_settings, spec_text

    tags = {"enabled": "true", "cost-centre": "0042", "on": "yes", "modaliac-app": "x"}
    serving = Function("serve", gpus=("L4",), web=True, secrets=("hf",))
    text = spec_text("demo", None, tags, [serving], {"hf": ("HF_TOKEN",)})
    settings = recorded_settings(text)
    assert settings is not None
    assert settings["labels"] == {"cost-centre": "0042", "enabled": "true", "on": "yes"}
    assert settings["hf_token_secret"] == "hf"
