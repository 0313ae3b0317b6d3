"""The local Modal API against the real client: ``modal deploy`` (CLI and in-process), the
``modal app`` commands, lookups, storage, and injected faults.

Assertions read what the client SENT (``state.requests``), so they check the generated app
the way Modal's servers would see it, with no account and no network.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import modal
import modal.exception
import modal.runner
import pytest
from grpclib.const import Status
from helpers import import_file
from modal_proto import api_pb2

from modal_iac.loading.load import load_spec
from modal_iac.local_api import LocalModalServer, reset_modal_client, wait_for_port
from modal_iac.render.app import Rendered, render

ROOT = Path(__file__).resolve().parent.parent
KALM = ROOT / "specs" / "kalm.yaml"
APP = "kalm-embedding"
CLASS_SERVICE = "VLLMEmbeddingSnapshot.*"
SERVER = "Server.*"  # the HTTP surface: a class whose web method `serve` is the proxy


# -- helpers ---------------------------------------------------------------------------------


def rendered_kalm(tmp_path: Path, replace: tuple[str, str] | None = None) -> Rendered:
    """Render specs/kalm.yaml, optionally with one text edit (a changed setting)."""
    text = KALM.read_text(encoding="utf-8")
    if replace is not None:
        assert replace[0] in text
        text = text.replace(*replace)
    spec = tmp_path / "specs" / f"kalm-{uuid.uuid4().hex[:6]}.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(text, encoding="utf-8")
    return render(load_spec(spec))


def write(rendered: Rendered, folder: Path, filename: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (filename or rendered.filename)
    path.write_text(rendered.source, encoding="utf-8")
    return path


def import_app(path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import a generated file as `modal deploy` does: registered in sys.modules first
    (otherwise Modal treats it like a notebook and pickles the functions)."""
    name = f"local_api_{path.stem.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    return import_file(path, name, monkeypatch)


def deploy(module: ModuleType, name: str = APP, tag: str = "") -> Any:
    return modal.runner.deploy_app(module.app, name=name, tag=tag)


def modal_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real `modal` CLI in a subprocess (it inherits the fixture's MODAL_* and HOME)."""
    return subprocess.run(
        [sys.executable, "-m", "modal", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def with_secrets(api: LocalModalServer) -> LocalModalServer:
    api.state.add_secret("huggingface", ("HF_TOKEN",))
    api.state.add_secret("kalm-api-key", ("VLLM_API_KEY",))
    return api


def created(api: LocalModalServer, tag: str) -> api_pb2.Function:
    """The last Function definition the client sent for ``tag``."""
    requests = [r for r in api.state.requests("FunctionCreate") if r.function.function_name == tag]
    assert requests, f"no FunctionCreate for {tag}"
    return requests[-1].function


# -- the servicer itself ---------------------------------------------------------------------


def test_unmodelled_rpcs_answer_unimplemented_and_every_request_is_recorded(
    modal_api: LocalModalServer,
) -> None:
    from grpclib.client import Channel
    from grpclib.exceptions import GRPCError
    from modal_proto.api_grpc import ModalClientStub

    async def call() -> GRPCError:
        channel = Channel("127.0.0.1", modal_api.port)
        try:
            await ModalClientStub(channel).SandboxList(api_pb2.SandboxListRequest(app_id="ap-x"))
        except GRPCError as exc:
            return exc
        finally:
            channel.close()
        raise AssertionError("SandboxList answered")

    error = asyncio.run(call())
    assert error.status is Status.UNIMPLEMENTED
    assert modal_api.state.rpc_names() == ["SandboxList"]
    assert modal_api.state.requests("SandboxList")[0].app_id == "ap-x"


def _hello_times(server: LocalModalServer, count: int) -> tuple[float, list[float]]:
    """Send ``count`` ClientHellos at once over one channel: (wall time of all, each one's)."""
    from google.protobuf import empty_pb2  # type: ignore[import-untyped]
    from grpclib.client import Channel
    from modal_proto.api_grpc import ModalClientStub

    async def one(stub: ModalClientStub) -> float:
        start = time.perf_counter()
        await stub.ClientHello(empty_pb2.Empty())
        return time.perf_counter() - start

    async def calls() -> tuple[float, list[float]]:
        channel = Channel("127.0.0.1", server.port)
        try:
            stub = ModalClientStub(channel)
            await one(stub)  # connected before anything is timed
            start = time.perf_counter()
            each = await asyncio.gather(*(one(stub) for _ in range(count)))
            return time.perf_counter() - start, list(each)
        finally:
            channel.close()

    return asyncio.run(calls())


def test_rpc_delay_delays_every_rpc_and_concurrent_calls_overlap() -> None:
    """Like a network round trip: no answer comes sooner than the delay, and calls in flight
    together wait side by side (an asyncio sleep, not a blocked server)."""
    delay, count = 0.2, 10
    with LocalModalServer(rpc_delay=delay) as server:
        wall, each = _hello_times(server, count)
        assert server.state.rpc_names().count("ClientHello") == count + 1
    assert min(each) >= delay  # a lower bound: nothing answers early
    assert wall < count * delay / 2  # serialised calls would take count * delay


def test_rpc_delay_is_checked_where_it_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    from modal_iac.local_api.__main__ import main

    for bad in ("-1", "nan", "soon"):
        with pytest.raises(SystemExit) as exit_info:
            main(["--rpc-delay", bad])
        assert exit_info.value.code == 2
        assert f"expected seconds >= 0, like 0.05, not {bad!r}" in capsys.readouterr().err
    with pytest.raises(ValueError, match="rpc_delay must be"):
        LocalModalServer(rpc_delay=-0.1)


# -- deploying the KaLM spec -----------------------------------------------------------------


def test_cli_deploy_sends_the_spec_settings(modal_api: LocalModalServer, tmp_path: Path) -> None:
    state = with_secrets(modal_api).state
    rendered = rendered_kalm(tmp_path)
    path = write(rendered, tmp_path / "apps")
    result = modal_cli("deploy", str(path), "--tag", "t1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = state.rpc_names()
    assert names[:2] == ["AppGetByDeploymentName", "AppCreate"]
    assert names[-1] == "AppPublish"

    model = created(modal_api, CLASS_SERVICE)
    gpu = model.resources.gpu_config
    assert (gpu.gpu_type, gpu.count) == ("A100-40GB", 1)
    autoscaler = model.autoscaler_settings
    assert (autoscaler.min_containers, autoscaler.max_containers, autoscaler.scaledown_window) == (
        0,
        1,
        300,
    )
    assert model.timeout_secs == 300
    assert model.startup_timeout_secs == 1200
    assert model.checkpointing_enabled  # enable_memory_snapshot=True
    assert dict(model.experimental_options) == {"enable_gpu_snapshot": "True"}
    assert model.is_class and sorted(model.method_definitions) == ["embed", "embed_with_metadata"]
    assert state.volume_mounts(model) == {
        "/root/.cache/huggingface": "hf-embedding-cache",
        "/root/.cache/vllm": "vllm-jit-cache",
    }
    assert state.secret_names(model.secret_ids) == ["huggingface"]
    assert model.definition_type == api_pb2.Function.DEFINITION_TYPE_FILE  # the file, not pickles

    serve = created(modal_api, SERVER)
    assert serve.method_definitions["serve"].webhook_config.type == api_pb2.WEBHOOK_TYPE_ASGI_APP
    assert serve.max_concurrent_inputs == 32
    assert serve.resources.gpu_config.gpu_type == "A100-40GB"
    assert state.secret_names(serve.secret_ids) == ["huggingface", "kalm-api-key"]

    publish = state.requests("AppPublish")[0]
    assert publish.name == APP and publish.deployment_tag == "t1"
    assert dict(publish.tags) == {"team": "search"}
    assert set(publish.function_ids) == {CLASS_SERVICE, SERVER, "download_weights"}
    assert set(publish.class_ids) == {"VLLMEmbeddingSnapshot", "Server"}
    # The app's source file was uploaded as a mount, byte for byte.
    assert state.app_files(APP)[f"/root/{rendered.filename}"] == rendered.source.encode()
    app = state.app(APP)
    assert app.state == api_pb2.APP_STATE_DEPLOYED and app.current is not None
    assert (app.current.version, app.current.tag, app.current.client_version) == (
        1,
        "t1",
        modal.__version__,
    )


@pytest.fixture
def secrets_first(modal_api: LocalModalServer) -> LocalModalServer:
    return with_secrets(modal_api)


def test_in_process_deploy_then_lookups(
    secrets_first: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = secrets_first
    module = import_app(
        write(rendered_kalm(tmp_path), tmp_path / "apps", "kalm_embedding.py"), monkeypatch
    )
    result = deploy(module, tag="inproc")
    assert result.app_id == api.state.app(APP).app_id
    assert created(api, CLASS_SERVICE).definition_type == api_pb2.Function.DEFINITION_TYPE_FILE

    api.state.clear_calls()
    info = modal.Cls.from_name(APP, "Server")().serve.info()
    assert api.state.rpc_names() == ["ClassGet", "FunctionGet"]
    assert info.gpus == [("A100-40GB", 1)]
    assert info.timeout == 300
    assert info.concurrency_info is not None and info.concurrency_info.max_inputs == 32
    volume_names = {path: api.state.volumes[v.volume_id].name for path, v in info.volumes.items()}
    assert volume_names == {
        "/root/.cache/huggingface": "hf-embedding-cache",
        "/root/.cache/vllm": "vllm-jit-cache",
    }
    assert api.state.secret_names(info.secrets) == ["huggingface", "kalm-api-key"]
    assert info.method_details["serve"].web_url

    cls = modal.Cls.from_name(APP, "VLLMEmbeddingSnapshot")
    cls.hydrate()
    assert cls.object_id == api.state.app(APP).class_ids["VLLMEmbeddingSnapshot"]
    with pytest.raises(modal.exception.NotFoundError, match=r"is a modal\.Cls"):
        modal.Function.from_name(APP, "VLLMEmbeddingSnapshot").hydrate()
    with pytest.raises(modal.exception.NotFoundError):
        modal.App.lookup("no-such-app")
    deployed = modal.App.lookup(APP)
    assert deployed.get_tags() == {"team": "search"}
    deployed.set_tags({"team": "ads", "cost-center": "42"})
    assert api.state.app(APP).tags == {"team": "ads", "cost-center": "42"}


def test_autoscaler_overrides_are_visible_with_who_changed_them(
    secrets_first: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = secrets_first
    deploy(import_app(write(rendered_kalm(tmp_path), tmp_path / "apps", "kalm_a.py"), monkeypatch))
    api.state.set_autoscaler_override(APP, SERVER, min_containers=2, by="alice")
    server = modal.Cls.from_name(APP, "Server")()
    assert server.serve.autoscaler.settings().min_containers == 2

    server.update_autoscaler(max_containers=3)
    sent = api.state.requests("FunctionUpdateSchedulingParams")[-1]
    assert sent.settings.max_containers == 3
    record = api.state.function(APP, SERVER)
    assert (record.override.min_containers, record.override.max_containers) == (2, 3)
    assert record.override_events["min_containers"].requested_by == "alice"
    assert record.override_events["max_containers"].requested_by == "local-user"

    params = api.state.requests("FunctionGetSchedulingParams")  # the client's own read
    assert params and params[0].function_id == record.function_id


def test_cli_redeploy_keeps_ids_records_history_and_skips_unchanged(
    secrets_first: LocalModalServer, tmp_path: Path
) -> None:
    api = secrets_first
    path = write(rendered_kalm(tmp_path), tmp_path / "apps")
    assert modal_cli("deploy", str(path), "--tag", "v1", cwd=tmp_path).returncode == 0
    first_ids = dict(api.state.requests("AppPublish")[0].function_ids)

    api.state.clear_calls()
    write(
        rendered_kalm(tmp_path, ("scaledown_window: 5m", "scaledown_window: 10m")),
        tmp_path / "apps",
    )
    result = modal_cli("deploy", str(path), "--tag", "v2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = api.state.rpc_names()
    assert "AppGetLayout" in names and "AppCreate" not in names
    precreated = {
        r.function_name: r.existing_function_id for r in api.state.requests("FunctionPrecreate")
    }
    assert precreated == first_ids
    assert dict(api.state.requests("AppPublish")[0].function_ids) == first_ids
    assert created(api, SERVER).autoscaler_settings.scaledown_window == 600
    history = api.state.app(APP).history
    assert [(d.version, d.tag) for d in history] == [(1, "v1"), (2, "v2")]

    result = modal_cli("deploy", str(path), "--tag", "v3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stdout  # identical definitions: AppPublish answered deployed_at=0
    assert len(api.state.app(APP).history) == 2


def test_a_foreign_deploy_makes_an_identical_redeploy_count(
    secrets_first: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = secrets_first
    module = import_app(write(rendered_kalm(tmp_path), tmp_path / "apps", "kalm_x.py"), monkeypatch)
    deploy(module, tag="ours")
    deploy(module, tag="ours-again")  # identical: skipped, no new version
    assert [d.tag for d in api.state.app(APP).history] == ["ours"]
    api.state.foreign_deploy(APP, tag="hotfix", deployed_by="alice")
    deploy(module, tag="ours-again")  # the deployed code is someone else's now
    history = api.state.app(APP).history
    assert [(d.version, d.tag, d.deployed_by) for d in history] == [
        (1, "ours", "local-user"),
        (2, "hotfix", "alice"),
        (3, "ours-again", "local-user"),
    ]


def test_app_commands_through_the_real_cli(
    secrets_first: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = secrets_first
    deploy(
        import_app(write(rendered_kalm(tmp_path), tmp_path / "apps", "kalm_v1.py"), monkeypatch),
        tag="v1",
    )
    edited = rendered_kalm(tmp_path, ("concurrency: 32", "concurrency: 16"))
    deploy(import_app(write(edited, tmp_path / "apps", "kalm_v2.py"), monkeypatch), tag="v2")
    api.state.foreign_deploy(APP, tag="hotfix", deployed_by="alice")

    listed = modal_cli("app", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert APP in listed.stdout and "deployed" in listed.stdout

    history = modal_cli("app", "history", APP, "--json", cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    for expected in ("v1", "v2", "v3", "hotfix", "alice", "local-user"):
        assert expected in history.stdout
    assert api.state.requests("AppDeploymentHistory")

    rollback = modal_cli("app", "rollback", APP, cwd=tmp_path)
    assert rollback.returncode == 0, rollback.stderr
    assert api.state.requests("AppRollback")[0].version == -1
    current = api.state.app(APP).current
    assert current is not None
    assert (current.version, current.rollback_version) == (4, 2)
    assert current.deployment_type == api_pb2.DEPLOYMENT_TYPE_ROLLBACK
    serve = modal.Cls.from_name(APP, "Server")().serve.info()  # v2's definitions again
    assert serve.concurrency_info is not None and serve.concurrency_info.max_inputs == 16

    stop = modal_cli("app", "stop", APP, "--yes", cwd=tmp_path)
    assert stop.returncode == 0, stop.stderr
    app = api.state.app(APP)
    assert app.state == api_pb2.APP_STATE_STOPPED and app.stopped_at


def test_publish_carries_git_commit_info(secrets_first: LocalModalServer, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    path = write(rendered_kalm(tmp_path), repo)
    git = ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
    try:
        subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not usable here")
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "app"], cwd=repo, check=True)
    assert modal_cli("deploy", str(path), cwd=repo).returncode == 0
    commit = secrets_first.state.app(APP).history[0].commit_info
    assert commit is not None
    assert (commit.vcs, commit.branch, commit.author_name, commit.dirty) == (
        "git",
        "main",
        "Dev",
        False,
    )
    assert len(commit.commit_hash) == 40


# -- failures --------------------------------------------------------------------------------


def test_missing_secret_fails_the_deploy_clearly(
    modal_api: LocalModalServer, tmp_path: Path
) -> None:
    modal_api.state.add_secret("huggingface", ("HF_TOKEN",))
    path = write(rendered_kalm(tmp_path), tmp_path / "apps")
    result = modal_cli("deploy", str(path), cwd=tmp_path)
    assert result.returncode != 0
    assert "Secret 'kalm-api-key' not found in environment 'main'" in result.stderr
    assert "AppPublish" not in modal_api.state.rpc_names()
    assert modal_api.state.deployed_app(APP) is None


def test_unavailable_publish_fails_fast_and_transient_faults_are_retried(
    secrets_first: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = secrets_first
    module = import_app(write(rendered_kalm(tmp_path), tmp_path / "apps", "kalm_f.py"), monkeypatch)
    api.state.faults.add("AppPublish", Status.UNAVAILABLE, times=10)
    started = time.monotonic()
    with pytest.raises(modal.exception.ServiceError, match="AppPublish"):
        deploy(module)
    elapsed = time.monotonic() - started
    # The client retries UNAVAILABLE 3 times (0.1 s, 0.2 s, 0.4 s apart), then gives up.
    assert api.state.rpc_names().count("AppPublish") == 4
    assert elapsed < 5, elapsed

    api.state.faults.clear()
    api.state.clear_calls()
    api.state.faults.add("AppPublish", "UNAVAILABLE", times=2)
    deploy(module)
    assert api.state.rpc_names().count("AppPublish") == 3
    assert api.state.app(APP).state == api_pb2.APP_STATE_DEPLOYED


def test_nth_publish_fails_in_the_middle_of_a_multi_app_apply(
    secrets_first: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = secrets_first
    small = render(load_spec(ROOT / "examples" / "small-embedding-no-snapshot.yaml"))
    first = import_app(write(rendered_kalm(tmp_path), tmp_path / "apps", "kalm_m.py"), monkeypatch)
    second = import_app(write(small, tmp_path / "apps", "minilm.py"), monkeypatch)
    api.state.faults.fail_nth("AppPublish", 2)
    deploy(first)
    with pytest.raises(modal.exception.ConflictError, match="injected"):
        deploy(second, name=small.app)
    assert api.state.deployed_app(APP) is not None
    assert api.state.deployed_app(small.app) is None


def test_the_deploys_of_one_apply_ask_git_once_and_tag_each_app(
    secrets_first: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK asks git (four processes) in every deploy; one apply's deploys share a working
    directory, so they share one answer, and every publish still carries it."""
    from modal_iac.modal.deploy import DeployJob, deploy_all

    commit = api_pb2.CommitInfo(vcs="git", branch="main", commit_hash="c" * 40, author_name="a")
    asked: list[int] = []

    async def git_commit_info() -> api_pb2.CommitInfo:
        asked.append(1)
        await asyncio.sleep(0.05)  # still running while the other deploys ask
        return commit

    monkeypatch.setattr(modal.runner, "get_git_commit_info", git_commit_info)
    source = rendered_kalm(tmp_path).source
    jobs = [
        DeployJob(
            address=f"git-{i}",
            app=f"git-{i}",
            environment=None,
            source=source,
            module_name=f"git_once_{i}_{uuid.uuid4().hex[:8]}",
            deployment_tag="t1",
            tags={"modaliac-app": f"git-{i}"},
        )
        for i in range(3)
    ]
    try:
        results = deploy_all(jobs, tmp_path / "build", parallel=3)
    finally:
        for job in jobs:
            sys.modules.pop(job.module_name, None)
    assert [(r.status, r.version) for r in results] == [("ok", 1)] * 3
    assert len(asked) == 1
    publishes = secrets_first.state.requests("AppPublish")
    assert [p.commit_info.commit_hash for p in publishes] == ["c" * 40] * 3
    assert modal.runner.get_git_commit_info is git_commit_info  # put back after the apply
    for i in range(3):
        app = secrets_first.state.deployed_app(f"git-{i}")
        assert app is not None and app.tags == {"modaliac-app": f"git-{i}"}


def test_deadline_bounds_a_hanging_server_and_a_closed_port(
    secrets_first: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither case fails by itself within seconds (a hang never does, a closed port after about
    a minute of reconnects): a caller's own deadline is what bounds them."""
    module = import_app(write(rendered_kalm(tmp_path), tmp_path / "apps", "kalm_d.py"), monkeypatch)

    async def bounded() -> None:
        await asyncio.wait_for(modal.runner.deploy_app.aio(module.app, name=APP), timeout=0.5)

    secrets_first.state.faults.add("AppGetByDeploymentName", delay=3)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(bounded())
    assert time.monotonic() - started < 2

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    reset_modal_client()
    monkeypatch.setenv("MODAL_SERVER_URL", f"http://127.0.0.1:{closed}")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(bounded())
    assert time.monotonic() - started < 2
    reset_modal_client()


# -- storage for state and locks -------------------------------------------------------------


def test_volume_files_round_trip(modal_api: LocalModalServer) -> None:
    volume = modal.Volume.from_name("modaliac-state", create_if_missing=True)
    big = bytes(range(256)) * (9 * 1024 * 1024 // 256 + 7)  # two 8 MiB blocks, second one partial
    with volume.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(b'{"apps": {}}'), "/state/state.json")
        batch.put_file(io.BytesIO(big), "/state/big.bin")
    assert b"".join(volume.read_file("/state/state.json")) == b'{"apps": {}}'
    assert b"".join(volume.read_file("state/big.bin")) == big
    assert sorted(e.path for e in volume.listdir("/state")) == ["state/big.bin", "state/state.json"]
    assert modal_api.state.find_volume("modaliac-state") is not None
    assert "VolumePutFiles2" in modal_api.state.rpc_names()

    with pytest.raises(FileExistsError), volume.batch_upload() as batch:  # no force: no overwrite
        batch.put_file(io.BytesIO(b"other"), "/state/state.json")
    volume.remove_file("/state/state.json")
    with pytest.raises(FileNotFoundError):
        b"".join(volume.read_file("/state/state.json"))
    assert modal_api.state.find_volume("modaliac-state").files.keys() == {"state/big.bin"}  # type: ignore[union-attr]


def test_dict_put_if_absent_is_an_atomic_lock(modal_api: LocalModalServer) -> None:
    locks = modal.Dict.from_name("modaliac-locks", create_if_missing=True)
    assert locks.put("apply", {"owner": "a"}, skip_if_exists=True) is True
    assert locks.put("apply", {"owner": "b"}, skip_if_exists=True) is False
    assert locks.get("apply") == {"owner": "a"}
    assert modal_api.state.requests("DictUpdate")[-1].if_not_exists
    assert locks.pop("apply") == {"owner": "a"}
    assert locks.put("apply", {"owner": "b"}, skip_if_exists=True) is True


def test_large_files_go_through_blobs(
    secrets_first: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "weights.bin"
    big.write_bytes(b"w" * (5 * 1024 * 1024))
    app_file = tmp_path / "apps" / "bigfile.py"
    app_file.parent.mkdir()
    app_file.write_text(
        "import modal\n"
        f"image = modal.Image.debian_slim().add_local_file({str(big)!r}, '/data/weights.bin')\n"
        "app = modal.App('bigfile')\n\n"
        "@app.function(image=image)\n"
        "def f():\n    pass\n",
        encoding="utf-8",
    )
    deploy(import_app(app_file, monkeypatch), name="bigfile")
    api = secrets_first
    assert "BlobCreate" in api.state.rpc_names()
    blob_puts = [r for r in api.state.requests("MountPutFile") if r.data_blob_id]
    assert blob_puts and api.state.content[blob_puts[0].sha256_hex] == big.read_bytes()


# -- standalone ------------------------------------------------------------------------------


CHECK_SECRET = """
import sys, modal
name, key = sys.argv[1:]
try:
    modal.Secret.from_name(name, required_keys=[key]).hydrate()
except modal.exception.Error as exc:
    print("refused:", str(exc).splitlines()[0])
else:
    print("ok")
"""


def test_standalone_server_prints_exports_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modal_iac.local_api",
            "--secret",
            "huggingface",
            "--secret",
            "kalm-api-key=VLLM_API_KEY,OTHER",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's, not an installed one
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(3)]
        assert lines[0].startswith("export MODAL_SERVER_URL=http://127.0.0.1:")
        assert lines[1].startswith("export MODAL_TOKEN_ID=")
        assert lines[2].startswith("export MODAL_TOKEN_SECRET=")
        wait_for_port(int(lines[0].rsplit(":", 1)[1]))
        exports = dict(line.removeprefix("export ").split("=", 1) for line in lines)
        client_env = {**os.environ, **exports, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
        client_env["MODAL_CONFIG_PATH"] = str(tmp_path / "none.toml")
        for secret, key, expected in (
            ("kalm-api-key", "VLLM_API_KEY", "ok"),  # --secret NAME=KEY,... holds those keys
            ("kalm-api-key", "OTHER", "ok"),
            ("huggingface", "VLLM_API_KEY", "refused:"),  # plain --secret NAME holds VALUE
        ):
            done = subprocess.run(
                [sys.executable, "-c", CHECK_SECRET, secret, key],
                capture_output=True,
                text=True,
                env=client_env,
                timeout=60,
            )
            assert done.stdout.startswith(expected), (secret, key, done.stdout, done.stderr)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_observing_many_apps_keeps_a_bounded_number_of_rpcs_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan over hundreds of apps gathers its reads at once; grpclib makes each request that
    finds no free HTTP/2 stream try again whenever one closes, so modaliac keeps at most
    MAX_IN_FLIGHT in flight on one connection, and reads many apps over a few connections.
    With a network's delay every lookup is in flight together."""
    from helpers import isolate_modal_config

    from modal_iac.local_api import LocalModalServer, reset_modal_client
    from modal_iac.modal import observe as modal_api

    isolate_modal_config(monkeypatch, tmp_path / "home")
    reset_modal_client()
    queries = [modal_api.Query(app=f"app-{i}", environment=None) for i in range(150)]
    with LocalModalServer(rpc_delay=0.05) as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        found = modal_api.observe(queries).apps
        assert server.state.rpc_names().count("AppGetByDeploymentName") == len(queries)
        # 150 apps are read over four connections, never more than the cap on any one.
        assert len(server.state.connections) == 4
        assert server.state.max_in_flight > modal_api.MAX_IN_FLIGHT
        assert 1 < server.state.max_in_flight_on_one <= modal_api.MAX_IN_FLIGHT
    assert {o.state for o in found.values()} == {"missing"} and len(found) == len(queries)
