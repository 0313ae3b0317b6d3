"""``modaliac export litellm`` for plain HTTP services (the gateway export is in
tests/test_gateway.py): specs applied to the local Modal API, whose endpoint URLs are
stand-in OpenAI servers on 127.0.0.1; the exported config is loaded by the real LiteLLM
Router, which then answers through them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_gateway import litellm_router
from test_probe import KEY, StandIn, run

from modal_iac.local_api import LocalModalServer

CHAT_KEY = "sk-chat-51c2"  # another key, read from another variable

CHAT = """\
app: small-chat
model:
  id: Qwen/Qwen3-0.6B
  revision: c1899de289a04d12100db370d81485cdf75e47ca
  task: generate
  served_name: qwen-small
gpu: L4
surfaces:
  http:
    api_key_secret: chat-key
    api_key_env: CHAT_KEY
"""

EMBED = """\
app: open-embed
model:
  id: BAAI/bge-small-en-v1.5
  revision: 5c38ec7c405ec4b44b94cc5a9bb96e735b38267a
  task: embed
  embedding:
    dimension: 384
gpu: L4
surfaces:
  http:
    open: true
"""

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_KEY", CHAT_KEY)
    monkeypatch.setenv("VLLM_API_KEY", KEY)


def test_litellm_export_routes_to_deployed_http_services(
    modal_api: LocalModalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / "work"
    (work / "specs").mkdir(parents=True)
    (work / "specs" / "chat.yaml").write_text(CHAT)
    (work / "specs" / "embed.yaml").write_text(EMBED)
    modal_api.state.add_secret("chat-key", ("CHAT_KEY",))
    monkeypatch.chdir(work)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    code, _, err = run(capsys, "apply", "--yes")
    assert code == 0, err
    chat, embed = StandIn("chat", key=CHAT_KEY), StandIn("embedding", key=None)
    try:
        modal_api.state.serve_web_url("small-chat", "Server.serve", chat.url)
        modal_api.state.serve_web_url("open-embed", "Server.serve", embed.url)
        code, text, err = run(capsys, "export", "litellm")
        assert code == 0, err
        assert CHAT_KEY not in text + err and KEY not in text + err
        assert "# NOTE: not deployed" not in text
        assert "# Set CHAT_KEY to the API key: the value in Modal secret chat-key" in text
        router = litellm_router(text, monkeypatch)
        deployments = {d["model_name"]: d["litellm_params"] for d in router.model_list}
        assert set(deployments) == {"qwen-small", "BAAI/bge-small-en-v1.5"}
        assert deployments["qwen-small"]["api_base"] == chat.url + "/v1"
        assert deployments["qwen-small"]["api_key"] == CHAT_KEY  # from os.environ/CHAT_KEY
        reply = router.completion(model="qwen-small", messages=[{"role": "user", "content": "Hi"}])
        vectors = router.embedding(model="BAAI/bge-small-en-v1.5", input=["a", "b"])
    finally:
        chat.close()
        embed.close()
    assert reply.choices[0].message.content.startswith("Hello from the stand-in")
    assert [b["model"] for b in chat.bodies] == ["qwen-small"]  # the served name
    assert len(vectors.data) == 2 and embed.bodies[0]["model"] == "BAAI/bge-small-en-v1.5"


def test_litellm_export_offline_placeholders_and_what_litellm_cannot_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "chat.yaml").write_text(CHAT)
    specs = [
        str(tmp_path / "chat.yaml"),
        str(EXAMPLES / "multimodal-embedding-transformers.yaml"),
        str(EXAMPLES / "chat-app-server-proxy-auth.yaml"),
        str(EXAMPLES / "embedding-http-staging.yaml"),
    ]
    target = tmp_path / "litellm.yaml"
    code, _, err = run(capsys, "export", "litellm", *specs, "--offline", "-o", str(target))
    assert code == 0, err
    text = target.read_text(encoding="utf-8")
    skipped = [line for line in err.splitlines() if line.startswith("note: ")]
    assert len(skipped) == 2, err
    assert "the transformers engine serves /embed, which is not OpenAI's API" in skipped[0]
    assert "proxy_auth needs the Modal-Key and Modal-Secret headers" in skipped[1]
    for line in skipped:
        assert f"# {line.removeprefix('note: ')}" in text
    assert "# NOTE: not deployed (placeholder api_base" in text
    assert "bge-m3-embedding, small-chat" in text
    assert '      api_key: "os.environ/CHAT_KEY"' in text
    assert '      api_key: "os.environ/API_KEY"' in text
    assert '      api_base: "https://small-chat.modal.run.invalid/v1"' in text
    assert '      mode: "embedding"' in text and '      mode: "chat"' in text
    assert "Modal secret embedding-api-key (key API_KEY)" in text


def test_litellm_export_needs_a_gateway_or_an_http_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "class.yaml"
    spec.write_text(CHAT.split("surfaces:")[0])
    code, _, err = run(capsys, "export", "litellm", str(spec), "--offline")
    assert code == 2
    assert err.strip().endswith(
        "export litellm: none of these specs is a gateway (kind: gateway) or serves HTTP "
        "(surfaces.http)"
    )


def test_one_variable_for_several_keys_is_called_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b"):
        text = CHAT.replace("small-chat", f"chat-{name}").replace("chat-key", f"key-{name}")
        (tmp_path / f"{name}.yaml").write_text(text)
    code, out, err = run(capsys, "export", "litellm", str(tmp_path), "--offline")
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("# Set CHAT_KEY"))
    assert "Modal secret key-a (key CHAT_KEY), Modal secret key-b (key CHAT_KEY)" in line
    assert "must hold the same key" in line


def chat_spec(folder: Path, app: str, **model: str) -> Path:
    """CHAT as another app, its model's keys replaced by ``model``."""
    text = CHAT.replace("small-chat", app)
    for key, value in model.items():
        old = next(line for line in text.splitlines() if line.startswith(f"  {key}:"))
        text = text.replace(old, f"  {key}: {json.dumps(value, ensure_ascii=False)}")
    path = folder / f"{app}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_one_model_name_for_two_models_is_refused_naming_both_apps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """LiteLLM balances the requests for one model_name between its entries: two different
    models under one name would answer the same request differently."""
    chat_spec(tmp_path, "small-chat")
    chat_spec(tmp_path, "other-chat", id="Qwen/Qwen3-1.7B")
    target = tmp_path / "out" / "litellm.yaml"
    code, out, err = run(capsys, "export", "litellm", str(tmp_path), "--offline", "-o", str(target))
    assert code == 1 and out == "" and not target.exists()
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"{tmp_path / 'small-chat.yaml'}:6:16: model.served_name: ")
    assert "apps small-chat and other-chat" in err and "model_name 'qwen-small'" in err
    assert "Qwen/Qwen3-0.6B at revision" in err and "Qwen/Qwen3-1.7B at revision" in err
    # a gateway model's <name>-<gpu> is a model_name too
    (tmp_path / "other-chat.yaml").unlink()
    gateway = {
        "kind": "gateway",
        "name": "gw",
        "models": [{"id": "org/qwen", "name": "qwen-small"}],
        "gpus": ["T4"],
        "router": {"api_key_secret": "gw-key"},
    }
    (tmp_path / "gw.yaml").write_text(json.dumps(gateway), encoding="utf-8")
    chat_spec(tmp_path, "small-chat", served_name="qwen-small-t4")
    code, out, err = run(capsys, "export", "litellm", str(tmp_path), "--offline")
    assert code == 1 and out == "", err
    assert "apps small-chat and gw-t4 (" in err and "org/qwen at revision main, chat" in err


def test_one_model_under_one_name_is_litellm_load_balancing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two apps serving the same model (id and revision) under one served name are two
    deployments of one LiteLLM model: kept, and the config says so."""
    chat_spec(tmp_path, "small-chat")
    chat_spec(tmp_path, "small-chat-eu")
    code, text, err = run(capsys, "export", "litellm", str(tmp_path), "--offline")
    assert code == 0, err
    assert (
        "# qwen-small: LiteLLM balances requests between apps small-chat-eu, small-chat, " in text
    )
    router = litellm_router(text, monkeypatch)
    bases = [d["litellm_params"]["api_base"] for d in router.model_list]
    assert [d["model_name"] for d in router.model_list] == ["qwen-small", "qwen-small"]
    assert bases == [
        "https://small-chat-eu.modal.run.invalid/v1",  # in file order
        "https://small-chat.modal.run.invalid/v1",
    ]


def test_hostile_spec_paths_and_names_add_no_key_to_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the config says comes from specs (paths, names) or Modal (URLs): a line break or
    an escape sequence in any of it cannot start a YAML line of its own (a spec path holding
    one is refused before anything is written), and every value reads back as written: a
    JSON string is not YAML's, whose readers take its surrogate pair escapes as two
    characters (LiteLLM's Router happens to join them again)."""
    folder = tmp_path / "x\nmodel_list: []\n\x1b[2Jgeneral_settings:\n  master_key: own"
    folder.mkdir()
    chat_spec(folder, "small-chat")
    code, text, err = run(capsys, "export", "litellm", str(folder), "--offline")
    assert code == 1 and text == "" and "\x1b" not in err
    assert err.endswith(
        "small-chat.yaml: the file's name holds a control character; rename the file\n"
    )
    name = 'qwen-\U0001f600 "# \\ x: y\u200b\ufeff'
    (tmp_path / "ok").mkdir()
    chat_spec(tmp_path / "ok", "small-chat", served_name=name)
    chat_spec(tmp_path / "ok", "small-chat-eu", served_name=name)
    code, text, err = run(capsys, "export", "litellm", str(tmp_path / "ok"), "--offline")
    assert code == 0, err
    import yaml

    config = yaml.safe_load(text)
    assert set(config) == {"model_list"}
    assert [entry["model_name"] for entry in config["model_list"]] == [name, name]
    assert all(line.startswith(("# ", "model_list:", "  ")) for line in text.splitlines())
    assert all(line.isprintable() for line in text.splitlines())
    router = litellm_router(text, monkeypatch)
    assert [d["model_name"] for d in router.model_list] == [name, name]
