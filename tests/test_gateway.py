"""Gateway specs: validation, rendering per GPU, the generated router run for real, deploys.

The router is code modaliac generates, so it is imported from a generated app file (offline,
as ``modal deploy`` imports it) and served with uvicorn on 127.0.0.1 in front of local
stand-ins for ``vllm serve``: one that answers (and streams), one that is slow, and one that
is down. Every server binds a free port on 127.0.0.1 and stops itself.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import json
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import web
from modal_proto import api_pb2
from test_vllm_server import (
    API_KEY_MISSING,
    LIMIT,
    NO_KEY_IDS,
    NO_KEY_VALUES,
    TOKEN,
    accepted_credentials,
    assert_openai_error,
    assert_refused,
    assert_refused_json,
    bearer,
    each_hostile_json_body,
    free_port,
    import_source,
    json_of_size,
    leave_mid_stream,
    nested,
    poll,
    refused_credentials,
    request,
    running_asgi,
    running_stand_in,
    send_raw,
    set_key,
    unsent_health_bodies,
)
from test_vllm_server import StandIn as VllmStandIn

from modal_iac.cli import main
from modal_iac.errors import SpecErrors
from modal_iac.loading.load import load_spec
from modal_iac.local_api import LocalModalServer
from modal_iac.render.app import render_all
from modal_iac.spec.gateway import GatewaySpec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "gpu-gateway.yaml"
KEY = "gateway-key-" + "z" * 20
GEMMA = "google/gemma-3-12b-it"
QWEN = "Qwen/Qwen3-VL-30B-A3B-Instruct"


# -- stand-ins for `vllm serve` -------------------------------------------------------------


class StandIn:
    """An OpenAI-compatible server that records what it is sent."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.answer)
        app.router.add_post("/v1/completions", self.answer)
        return app

    async def answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append((request.path, body))
        if self.delay:
            await asyncio.sleep(self.delay)
        if body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for word in ("Hel", "lo"):
                chunk = {"model": body["model"], "choices": [{"delta": {"content": word}}]}
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        return web.json_response(
            {
                "id": "cmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "path": request.path,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hello"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )


# -- the generated router -------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    with contextlib.chdir(ROOT):
        rendered = render_all(load_spec("examples/gpu-gateway.yaml"))
    h100 = next(r for r in rendered if r.app == "vllm-h100")
    return import_source(h100.source, tmp_path_factory.mktemp("gateway"), "vllm-h100")


@pytest.fixture(scope="module")
def router(generated: ModuleType) -> Iterator[tuple[int, dict[str, StandIn]]]:
    """The generated router: gemma-3-12b answers, gemma-3-27b is slow, qwen3-vl-30b is down."""
    fast, slow = StandIn(), StandIn(delay=3.0)
    with running_stand_in(fast) as fast_url, running_stand_in(slow) as slow_url:
        urls = {
            "gemma-3-12b": fast_url,
            "gemma-3-27b": slow_url,
            "qwen3-vl-30b": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        }
        models = {name: model["id"] for name, model in generated.MODELS.items()}
        app = generated.build_router(models, KEY, generated.http_sender(urls), timeout=0.5)
        with running_asgi(app) as port:
            yield port, {"fast": fast, "slow": slow}


CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}


PROCESS_HELPERS = ("start_vllm", "wait_healthy", "stop_vllm")


def helper_sources(source: str) -> dict[str, str]:
    """The text of each vLLM process helper a generated file defines."""
    tree = ast.parse(source)
    return {
        node.name: ast.get_source_segment(source, node) or ""
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name in PROCESS_HELPERS
    }


def test_the_vllm_process_helpers_are_one_text_in_every_generated_file() -> None:
    """Starting vLLM, waiting for its health and stopping it are written once
    (templates/_vllm_process.py.j2): each golden file that runs vLLM has the same three."""
    found = {}
    for golden in sorted((ROOT / "tests" / "golden").glob("*.py")):
        source = golden.read_text()
        if "vllm serve" in source:
            found[golden.name] = helper_sources(source)
    assert any("gateway" in name for name in found) and len(found) > 5, sorted(found)
    texts = {tuple(sorted(helpers.items())) for helpers in found.values()}
    assert len(texts) == 1, "the vLLM process helpers differ between generated files"
    (only,) = texts
    assert [name for name, _ in only] == sorted(PROCESS_HELPERS)
    for template in (ROOT / "templates").glob("*.j2"):
        if template.name != "_vllm_process.py.j2":
            text = template.read_text()
            assert not any(f"def {name}(" in text for name in PROCESS_HELPERS), template.name


@pytest.mark.parametrize("ignores_sigterm", [False, True], ids=["exits", "ignores-sigterm"])
def test_a_model_containers_stop_hook_ends_vllm_even_if_it_ignores_sigterm(
    generated: ModuleType, ignores_sigterm: bool
) -> None:
    """The model classes' exit hook calls stop_vllm: SIGTERM, then SIGKILL after the grace."""
    assert "stop_vllm(self.process)" in inspect.getsource(generated)
    code = "import signal, sys, time\n"
    if ignores_sigterm:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('up', flush=True)\ntime.sleep(60)\n"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "up\n"
        generated.stop_vllm(process, grace=0.3)
        expected = signal.SIGKILL if ignores_sigterm else signal.SIGTERM
        assert process.wait(timeout=10) == -expected
    finally:
        process.kill()
        process.wait()


def test_the_generated_app_defines_one_class_per_model_and_one_router(
    generated: ModuleType,
) -> None:
    assert generated.GPU == "H100"
    assert set(generated.MODEL_CLASSES) == {"gemma-3-12b", "gemma-3-27b", "qwen3-vl-30b"}
    assert [c.__name__ for c in generated.MODEL_CLASSES.values()] == [
        "Gemma312b",
        "Gemma327b",
        "Qwen3Vl30b",
    ]
    qwen = generated.MODELS["qwen3-vl-30b"]["serve_args"]
    assert qwen[:3] == [QWEN, "--revision=main", f"--served-model-name={QWEN}"]
    assert qwen[3:5] == ["--host=127.0.0.1", "--port=8000"]
    assert "--tool-call-parser=hermes" in qwen and "--enable-auto-tool-choice" in qwen


def test_routes_by_full_id_and_short_name(router: tuple[int, dict[str, StandIn]]) -> None:
    port, stand_ins = router
    stand_ins["fast"].seen.clear()
    by_id = request(port, "POST", "/v1/chat/completions", {**CHAT, "model": GEMMA}, KEY)
    by_name = request(port, "POST", "/v1/completions", {"model": "gemma-3-12b", "prompt": "x"}, KEY)
    assert by_id.status == 200 and by_id.json()["path"] == "/v1/chat/completions"
    assert by_name.status == 200 and by_name.json()["path"] == "/v1/completions"
    # the model always reaches vLLM by its served name, the full id
    assert [body["model"] for _, body in stand_ins["fast"].seen] == [GEMMA, GEMMA]


def test_model_ids_match_case_insensitively_and_answer_as_configured(
    router: tuple[int, dict[str, StandIn]],
) -> None:
    port, stand_ins = router
    stand_ins["fast"].seen.clear()
    shouted = request(port, "POST", "/v1/chat/completions", {**CHAT, "model": GEMMA.upper()}, KEY)
    named = request(port, "POST", "/v1/completions", {"model": "GEMMA-3-12B", "prompt": "x"}, KEY)
    assert shouted.status == 200 and named.status == 200
    # vLLM is sent, and answers with, the id as the spec writes it
    assert [body["model"] for _, body in stand_ins["fast"].seen] == [GEMMA, GEMMA]
    assert shouted.json()["model"] == GEMMA
    # seed 004's LiteLLM table: the lower-cased Qwen id reaches Qwen's pool (down here: 503)
    lowered = request(port, "POST", "/v1/chat/completions", {**CHAT, "model": QWEN.lower()}, KEY)
    assert lowered.status == 503
    assert lowered.json()["error"]["type"] == "upstream_unavailable"
    unknown = request(port, "POST", "/v1/chat/completions", {**CHAT, "model": 12}, KEY)
    assert unknown.status == 404 and unknown.json()["error"]["type"] == "model_not_found"


def test_structured_outputs_pass_through_unchanged(router: tuple[int, dict[str, StandIn]]) -> None:
    port, stand_ins = router
    stand_ins["fast"].seen.clear()
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    body = {
        **CHAT,
        "model": GEMMA,
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
        "structured_outputs": {"choice": ["Positive", "Negative"]},
    }
    assert request(port, "POST", "/v1/chat/completions", body, KEY).status == 200
    assert stand_ins["fast"].seen == [("/v1/chat/completions", body)]


@pytest.mark.parametrize(
    ("field", "replacement"),
    [
        ("guided_json", "structured_outputs"),
        ("guided_regex", 'structured_outputs: {"regex"'),
        ("guided_choice", 'structured_outputs: {"choice"'),
        ("guided_grammar", 'structured_outputs: {"grammar"'),
    ],
)
def test_guided_fields_are_refused_naming_the_replacement(
    router: tuple[int, dict[str, StandIn]], field: str, replacement: str
) -> None:
    port, stand_ins = router
    stand_ins["fast"].seen.clear()
    answer = request(port, "POST", "/v1/chat/completions", {**CHAT, "model": GEMMA, field: 1}, KEY)
    assert answer.status == 400
    error = answer.json()["error"]
    assert error["param"] == field and replacement in error["message"]
    assert "vLLM 0.33" in error["message"]
    assert stand_ins["fast"].seen == []


def test_streaming_is_passed_through(router: tuple[int, dict[str, StandIn]]) -> None:
    port, _ = router
    answer = request(
        port, "POST", "/v1/chat/completions", {**CHAT, "model": GEMMA, "stream": True}, KEY
    )
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = [line for line in answer.body.decode().split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    words = [
        json.loads(e.removeprefix("data: "))["choices"][0]["delta"]["content"] for e in events[:-1]
    ]
    assert words == ["Hel", "lo"]


def test_auth(router: tuple[int, dict[str, StandIn]]) -> None:
    port, _ = router
    assert request(port, "GET", "/health").status == 200
    for key in (None, "wrong", KEY + "x"):
        answer = request(port, "POST", "/v1/chat/completions", {**CHAT, "model": GEMMA}, key)
        assert answer.status == 401 and answer.json()["error"]["type"] == "authentication_error"
    assert request(port, "GET", "/v1/models").status == 401
    assert request(port, "GET", "/v1/models", key="wrong").status == 401
    basic = request(port, "GET", "/v1/models", headers={"Authorization": f"Basic {KEY}"})
    assert basic.status == 401


def test_models_are_listed(router: tuple[int, dict[str, StandIn]]) -> None:
    port, _ = router
    answer = request(port, "GET", "/v1/models", key=KEY)
    assert answer.status == 200
    listed = {m["id"]: m["short_name"] for m in answer.json()["data"]}
    assert listed == {
        GEMMA: "gemma-3-12b",
        "google/gemma-3-27b-it": "gemma-3-27b",
        QWEN: "qwen3-vl-30b",
    }


def test_errors_are_openai_shaped(router: tuple[int, dict[str, StandIn]]) -> None:
    port, _ = router
    unknown = request(port, "POST", "/v1/chat/completions", {**CHAT, "model": "gpt-4"}, KEY)
    assert unknown.status == 404 and unknown.json()["error"]["type"] == "model_not_found"
    assert "gemma-3-12b" in unknown.json()["error"]["message"]
    down = request(port, "POST", "/v1/chat/completions", {**CHAT, "model": "qwen3-vl-30b"}, KEY)
    assert down.status == 503 and down.json()["error"]["type"] == "upstream_unavailable"
    slow = request(port, "POST", "/v1/completions", {"model": "gemma-3-27b", "prompt": "x"}, KEY)
    assert slow.status == 504 and slow.json()["error"]["type"] == "upstream_timeout"
    not_json = request(port, "POST", "/v1/completions", ["a", "list"], KEY)
    assert not_json.status == 400
    assert request(port, "POST", "/v1/embeddings", {"model": GEMMA}, KEY).status == 404
    # vLLM's unauthenticated routes do not exist on the router
    assert request(port, "POST", "/sleep", {}, KEY).status == 404


# -- the guard in front of the router: one table for every generated endpoint ---------------


@pytest.fixture
def guarded(generated: ModuleType) -> Iterator[tuple[int, VllmStandIn]]:
    """The generated router with its key and a body limit of LIMIT bytes, in front of the
    stand-in for vLLM of test_vllm_server.py (it records every path, header and body), as
    model "alpha"; yields the router's port and the stand-in."""
    stand_in = VllmStandIn(token=TOKEN)
    with running_stand_in(stand_in) as url:
        send = generated.http_sender({"alpha": url}, TOKEN)
        app = generated.build_router({"alpha": "org/alpha"}, KEY, send, 5, LIMIT)
        with running_asgi(app) as port:
            yield port, stand_in


ALPHA_CHAT = json.dumps({"model": "alpha", "messages": [{"role": "user", "content": "Hi"}]})


@pytest.mark.parametrize(
    ("headers", "status"),
    [(headers, status) for _, headers, status in refused_credentials(KEY)],
    ids=[case for case, _, _ in refused_credentials(KEY)],
)
def test_the_router_refuses_bad_credentials_before_a_model_sees_them(
    guarded: tuple[int, VllmStandIn], headers: list[tuple[str, str]], status: int
) -> None:
    port, stand_in = guarded
    for method, path in [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/x")]:
        assert_refused(send_raw(port, method, path, headers, ALPHA_CHAT.encode()), status)
    assert stand_in.seen == [], "a refused request reached a model"


def test_the_router_takes_the_right_key_and_never_passes_it_on(
    guarded: tuple[int, VllmStandIn],
) -> None:
    port, stand_in = guarded
    assert send_raw(port, "GET", "/health").status == 200
    for headers in accepted_credentials(KEY):
        answer = send_raw(port, "POST", "/v1/chat/completions", headers, ALPHA_CHAT.encode())
        assert answer.status == 200, answer.body
        assert answer.json()["choices"][0]["message"]["content"] == "hello"
    # The model's vLLM gets its own per-container token (here the sender's), never the key.
    assert [seen.headers["authorization"] for seen in stand_in.seen] == [f"Bearer {TOKEN}"] * 3
    assert not any(KEY in str(seen) for seen in stand_in.seen)


def test_the_router_takes_a_body_at_the_limit_and_refuses_one_byte_more_unread(
    guarded: tuple[int, VllmStandIn],
) -> None:
    port, stand_in = guarded
    at_limit = json_of_size(LIMIT, model="alpha", messages=[])
    for chunked in (False, True):
        answer = send_raw(
            port, "POST", "/v1/chat/completions", bearer(KEY), at_limit, chunked=chunked
        )
        assert answer.status == 200, answer.body
    padding = json.loads(at_limit)["user"]
    assert [seen.json()["user"] for seen in stand_in.seen] == [padding, padding]
    stand_in.seen.clear()

    over = json_of_size(LIMIT + 1, model="alpha", messages=[])
    path = "/v1/chat/completions"
    declared = send_raw(port, "POST", path, bearer(KEY), declared=LIMIT + 1)
    chunked = send_raw(port, "POST", path, bearer(KEY), over, chunked=True)
    for answer in (declared, chunked):
        assert_openai_error(answer, 413, "invalid_request_error")
    assert stand_in.seen == [], "a model saw bytes of a refused body"


def test_a_client_that_leaves_mid_stream_cancels_the_models_request(
    guarded: tuple[int, VllmStandIn],
) -> None:
    """Through http_sender (as a model container's forward reaches vLLM): the router closes
    the model's generator, which closes its connection to vLLM."""
    port, stand_in = guarded
    stand_in.events, stand_in.event_interval = 500, 0.01
    leave_mid_stream(port, KEY, "alpha")
    assert poll(stand_in.aborted.is_set), "the model kept generating for a client that left"
    assert stand_in.events_sent < 500


def test_a_client_that_leaves_closes_a_modal_style_generator(generated: ModuleType) -> None:
    """A sender like modal_sender (an async generator that blocks between items): the
    router closes it when the client leaves, before its next item."""
    closed = threading.Event()

    async def send(name: str, path: str, body: dict[str, Any]) -> Any:
        try:
            yield 200, "text/event-stream"
            yield b"data: token-0\n\n"
            await asyncio.Event().wait()  # a model still generating its next token
            yield b"data: token-1\n\n"
        finally:
            closed.set()

    app = generated.build_router({"m": "org/m"}, KEY, send)
    with running_asgi(app) as port:
        leave_mid_stream(port, KEY)
        assert poll(closed.is_set), "the model's generator was not closed"


@pytest.mark.parametrize("value", NO_KEY_VALUES, ids=NO_KEY_IDS)
def test_the_router_does_not_start_without_its_api_key(
    generated: ModuleType, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    """router(), the ASGI factory Modal calls as the container starts, raises: the start
    fails with this message instead of serving open."""
    assert (generated.API_KEY_SECRET, generated.API_KEY_ENV) == ("vllm-api-key", "API_KEY")
    set_key(monkeypatch, "API_KEY", value)
    with pytest.raises(RuntimeError) as caught:
        generated.router.local()
    assert str(caught.value) == API_KEY_MISSING.format(secret="vllm-api-key", env="API_KEY")


def test_a_router_the_spec_declares_open_starts_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_spec(gateway(tmp_path, router={"open": True, "max_body": "1MiB"}))
    first = render_all(loaded)[0]
    assert "Secret.from_name(API_KEY_SECRET" not in first.source
    module = import_source(first.source, tmp_path / "apps", first.app)
    assert module.MAX_BODY_BYTES == 2**20
    monkeypatch.delenv("API_KEY", raising=False)
    with running_asgi(module.router.local()) as port:
        listed = request(port, "GET", "/v1/models")
        assert listed.status == 200
        assert [m["short_name"] for m in listed.json()["data"]] == ["alpha", "beta"]
        too_large = send_raw(port, "POST", "/v1/completions", declared=2**20 + 1)
        assert too_large.status == 413


def test_model_errors_pass_through_with_their_status(generated: ModuleType) -> None:
    """An upstream's own 4xx (e.g. a context too long) reaches the client as it was."""

    async def send(name: str, path: str, body: dict[str, Any]) -> Any:
        yield 400, "application/json"
        yield b'{"error": {"message": "too long"}}'

    app = generated.build_router({"m": "org/m"}, None, send)
    with running_asgi(app) as port:
        answer = request(port, "POST", "/v1/completions", {"model": "m", "prompt": "x"})
    assert answer.status == 400 and answer.json() == {"error": {"message": "too long"}}


def test_a_model_call_modal_cuts_at_its_timeout_is_a_504(generated: ModuleType) -> None:
    """Modal ends a model call that runs past scaling.timeout with FunctionTimeoutError; the
    client gets the router's 504, as for the router's own wait, not a 503."""
    import modal.exception

    async def send(name: str, path: str, body: dict[str, Any]) -> Any:
        raise modal.exception.FunctionTimeoutError("Function timed out")
        yield  # an async generator, as modal_sender returns

    app = generated.build_router({"m": "org/m"}, None, send)
    with running_asgi(app) as port:
        answer = request(port, "POST", "/v1/completions", {"model": "m", "prompt": "x"})
    assert answer.status == 504
    assert answer.json()["error"]["type"] == "upstream_timeout"
    assert answer.json()["error"]["message"] == "m ran past its timeout"


# -- spec, rendering, layouts, the endpoint limit ---------------------------------------------


def test_one_app_per_gpu_named_by_the_pattern() -> None:
    with contextlib.chdir(ROOT):
        loaded = load_spec("examples/gpu-gateway.yaml")
    rendered = render_all(loaded)
    assert [r.app for r in rendered] == [
        "vllm-rtx-pro-6000",
        "vllm-a100",
        "vllm-h100",
        "vllm-h200",
        "vllm-b200",
    ]
    assert rendered[0].filename == "vllm-rtx-pro-6000.py"
    for item in rendered:
        assert item.source.count("@modal.asgi_app()") == 1
        assert item.source.count("@app.cls(") == 3
    assert 'GPU = "A100-80GB"' in rendered[1].source


def gateway(tmp_path: Path, name: str = "gw", **changes: Any) -> Path:
    data: dict[str, Any] = {
        "kind": "gateway",
        "name": name,
        "models": [
            {"id": "org/alpha", "name": "alpha", "max_model_len": "8k"},
            {"id": "org/beta", "name": "beta", "max_num_seqs": 16},
        ],
        "gpus": ["L4", "H100"],
        "hf_token_secret": "huggingface",
        "router": {"api_key_secret": "gw-key"},
        **changes,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_per_model_layout_is_one_app_per_model_and_gpu(tmp_path: Path) -> None:
    loaded = load_spec(gateway(tmp_path, layout="per-model"))
    rendered = render_all(loaded)
    assert [r.app for r in rendered] == [
        "gw-alpha-l4",
        "gw-beta-l4",
        "gw-alpha-h100",
        "gw-beta-h100",
    ]
    assert all(r.source.count("@app.cls(") == 1 for r in rendered)
    custom = load_spec(gateway(tmp_path, app_name="{gpu}-{name}"))
    assert [r.app for r in render_all(custom)] == ["l4-gw", "h100-gw"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"app_name": "{name}"}, "app_name: needs {gpu}"),
        ({"app_name": "{name}-{gpu}", "layout": "per-model"}, "app_name: needs {model}"),
        ({"app_name": "{nmae}-{gpu}"}, "unknown placeholder {nmae}"),
        ({"layout": "per-gpu"}, "layout"),
        ({"gpus": ["H100", "h100"]}, "listed twice"),
        ({"secrets": ["gw-key"]}, "also under secrets"),
        ({"router": {"api_key_secret": "huggingface"}}, "keep the Hugging Face token in a secret"),
        ({"secrets": ["huggingface"]}, "hf_token_secret attaches it already"),
        (
            {"models": [{"id": "org/alpha", "name": "alpha"}, {"id": "Org/Alpha", "name": "b"}]},
            "differ only in case",
        ),
        ({"modles": []}, 'did you mean "models"'),
        ({"models": []}, "models: list at least one model"),
        ({"kind": "gatway"}, 'kind: expected one of "service", "gateway", got "gatway"; did'),
        ({"models": [{"id": "a/b", "name": "B c"}]}, "models[0].name"),
    ],
)
def test_gateway_spec_errors(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecErrors) as caught:
        load_spec(gateway(tmp_path, **changes))
    assert message in str(caught.value)


TAKEN = "a name the generated gateway module defines itself"
KEYWORD = "a Python keyword"
BUILTIN = "a Python builtin the generated code must not shadow"


@pytest.mark.parametrize(
    ("short_name", "class_name", "reason"),
    [
        ("router", "Router", TAKEN),  # would rebind the router class the requests go through
        ("g-p-u", "GPU", TAKEN),
        ("m-o-d-e-l-s", "MODELS", TAKEN),
        ("none", "None", KEYWORD),  # `class None:` does not parse
        ("true", "True", KEYWORD),
        ("false", "False", KEYWORD),
        ("exception", "Exception", BUILTIN),  # the router catches Exception
        ("timeout-error", "TimeoutError", BUILTIN),
        ("stop-async-iteration", "StopAsyncIteration", BUILTIN),
    ],
)
def test_render_refuses_a_short_name_whose_class_is_taken(
    short_name: str,
    class_name: str,
    reason: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """These passed validate and then failed render with an internal error (or rendered a
    module whose router was gone); now both refuse them with the located line."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "    name: gemma-3-27b\n" in text
    text = text.replace("    name: gemma-3-27b\n", f'    name: "{short_name}"\n')
    line = text.splitlines().index(f'    name: "{short_name}"') + 1
    path = tmp_path / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    expected = (
        f"{path}:{line}:11: models[1].name: {short_name!r} would name its model class "
        f"{class_name}, {reason}; choose another short name\n"
    )
    for argv in (["render", str(path)], ["render", str(path), "-o", str(tmp_path / "out")]):
        assert main(argv) == 1, argv
        out, err = capsys.readouterr()
        assert (out, err) == ("", expected), argv
    assert not (tmp_path / "out").exists()


def test_validate_warns_past_the_free_tier_endpoint_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(EXAMPLE, specs / "gateway.yaml")
    assert main(["validate", str(specs)]) == 0
    out, err = capsys.readouterr()
    assert "vllm-rtx-pro-6000, vllm-a100, vllm-h100, vllm-h200, vllm-b200" in out
    assert "MDL009" not in err  # 5 endpoints: under the limit (the example's revisions warn)
    assert err.count("[MDL001]") == 3

    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "kind: gateway", "kind: gateway\nlayout: per-model"
    )
    (specs / "gateway.yaml").write_text(text, encoding="utf-8")
    assert main(["validate", str(specs)]) == 0
    out, err = capsys.readouterr()
    assert "these specs expose 15 web endpoints; Modal's free tier allows 8" in err
    assert "layout: gateway for gateway 'vllm' (5 endpoints; then all stay under the limit)" in err


def test_endpoints_are_counted_across_specs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway(tmp_path, "one", gpus=["L4", "H100", "A10", "L40S", "T4"])
    gateway(tmp_path, "two", gpus=["L4", "H100", "A10", "L40S"])
    assert main(["validate", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "expose 9 web endpoints" in err and "name fewer GPU types" in err


def test_the_examples_together_pass_the_limit_and_are_told_about_gateways(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", str(ROOT / "examples")]) == 0
    err = capsys.readouterr().err
    assert "web endpoints; Modal's free tier allows 8" in err
    assert "a gateway spec (kind: gateway) serves several models behind one endpoint" in err


def test_explain_lists_each_app(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["render", "--explain", str(gateway(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "app gw-l4 (gateway, L4)" in out and "app gw-h100 (gateway, H100)" in out
    assert "# alpha: vllm serve org/alpha --revision=main" in out
    assert "--max-model-len=8000" in out


def test_gateway_spec_model_is_exported() -> None:
    assert GatewaySpec.model_fields["kind"].is_required()


# -- deploying to the local Modal API -------------------------------------------------------


def test_apply_deploys_one_router_and_one_class_per_model(
    modal_api: LocalModalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / "work"
    (work / "specs").mkdir(parents=True)
    gateway(work / "specs")
    modal_api.state.add_secret("huggingface", ("HF_TOKEN",))
    modal_api.state.add_secret("gw-key", ("API_KEY",))
    monkeypatch.chdir(work)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)

    assert main(["plan"], confirm=lambda q: True) in (0, 2)
    out = capsys.readouterr().out
    assert "+ create gw-l4" in out and "+ create gw-h100" in out

    assert main(["apply", "--yes"], confirm=lambda q: True) == 0, capsys.readouterr().err
    assert "Apply finished: 2 succeeded, 0 failed." in capsys.readouterr().out
    state = modal_api.state
    by_app: dict[str, dict[str, Any]] = {}
    for item in state.requests("FunctionCreate"):
        by_app.setdefault(state.apps[item.app_id].name, {})[item.function.function_name] = (
            item.function
        )
    assert set(by_app) == {"gw-l4", "gw-h100"}
    # The router's key secret is looked up with its key, so one without it fails the deploy.
    asked = {
        (r.deployment_name, tuple(r.required_keys)) for r in state.requests("SecretGetOrCreate")
    }
    assert ("gw-key", ("API_KEY",)) in asked  # (plan's own existence check sends none)
    assert ("huggingface", ("HF_TOKEN",)) in asked  # the name huggingface_hub reads
    for app, functions in by_app.items():
        assert set(functions) == {"router", "Alpha.*", "Beta.*"}
        router = functions["router"]
        assert router.webhook_config.type == api_pb2.WEBHOOK_TYPE_ASGI_APP  # the one endpoint
        # the router outlives its wait for a model (scaling.timeout, 5m) to answer the 504
        assert router.timeout_secs == 300 + 30
        # each pool takes what vLLM batches: 32 by default, beta's max_num_seqs
        assert functions["Alpha.*"].max_concurrent_inputs == 32
        assert functions["Beta.*"].max_concurrent_inputs == 16
        assert functions["Alpha.*"].timeout_secs == 300
        assert not router.resources.gpu_config.gpu_type
        # it asks for no CPU or memory: Modal's default request, which plan prices it at
        assert router.resources.milli_cpu == 0 and router.resources.memory_mb == 0
        assert state.secret_names(router.secret_ids) == ["gw-key"]
        for name in ("Alpha.*", "Beta.*"):
            model = functions[name]
            assert model.resources.gpu_config.gpu_type == app.removeprefix("gw-").upper()
            assert state.secret_names(model.secret_ids) == ["huggingface"]  # never the key
            forward = model.method_definitions["forward"]
            assert forward.webhook_config.type == api_pb2.WEBHOOK_TYPE_UNSPECIFIED  # no URL
            assert forward.function_type == api_pb2.Function.FUNCTION_TYPE_GENERATOR

    assert main(["plan", "--detailed-exitcode"], confirm=lambda q: True) == 0
    assert "no changes" in capsys.readouterr().out.lower()


# -- LiteLLM export -------------------------------------------------------------------------


def litellm_router(config_text: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The config loaded by the real ``litellm`` Router, as ``litellm --config`` loads it."""
    import yaml

    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network
    import litellm

    config = yaml.safe_load(config_text)
    return litellm.Router(model_list=config["model_list"])


def test_litellm_export_offline_has_placeholders_and_env_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The router's own variable (router.api_key_env: API_KEY), not the default VLLM_API_KEY.
    monkeypatch.setenv("API_KEY", KEY)
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    target = tmp_path / "litellm.yaml"
    assert main(["export", "litellm", str(EXAMPLE), "--offline", "-o", str(target)]) == 0
    text = target.read_text(encoding="utf-8")
    assert KEY not in text and "VLLM_API_KEY" not in text
    assert (
        "# Set API_KEY to the API key: the value in Modal secret vllm-api-key (key API_KEY)."
        in text
    )
    assert "# NOTE: not deployed" in text and "vllm-h100" in text
    router = litellm_router(text, monkeypatch)
    deployments = {d["model_name"]: d["litellm_params"] for d in router.model_list}
    expected = {
        f"{m}-{g}"
        for m in ("gemma-3-12b", "gemma-3-27b", "qwen3-vl-30b")
        for g in ("rtx-pro-6000", "a100", "h100", "h200", "b200")
    }
    assert set(deployments) == expected
    qwen = deployments["qwen3-vl-30b-b200"]
    assert qwen["model"] == f"openai/{QWEN}"
    assert qwen["api_base"] == "https://vllm-b200.modal.run.invalid/v1"
    assert qwen["api_key"] == KEY  # resolved by LiteLLM from the environment


def test_litellm_export_keys_each_gateway_with_its_own_router_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two gateways: one whose router keeps its key under GW_KEY in secret gw-key, one open;
    --api-key-env names another variable for every router's key, the secret stays named."""
    keyed = gateway(tmp_path, router={"api_key_secret": "gw-key", "api_key_env": "GW_KEY"})
    gateway(tmp_path, "open", models=[{"id": "org/x", "name": "x"}], router={"open": True})
    monkeypatch.setenv("GW_KEY", KEY)
    code = main(["export", "litellm", str(tmp_path), "--offline"])
    text = capsys.readouterr().out
    assert code == 0
    router = litellm_router(text, monkeypatch)
    keys = {d["model_name"]: d["litellm_params"]["api_key"] for d in router.model_list}
    assert keys == {"alpha-l4": KEY, "beta-l4": KEY, "alpha-h100": KEY, "beta-h100": KEY} | {
        "x-l4": "open",
        "x-h100": "open",
    }
    assert [x for x in text.splitlines() if x.startswith("# Set")] == [
        "# Set GW_KEY to the API key: the value in Modal secret gw-key (key GW_KEY)."
    ]
    assert main(["export", "litellm", str(keyed), "--offline", "--api-key-env", "LITELLM_GW"]) == 0
    text = capsys.readouterr().out
    assert '"os.environ/LITELLM_GW"' in text and "os.environ/GW_KEY" not in text
    assert "# Set LITELLM_GW to the API key: the value in Modal secret gw-key (key GW_KEY)." in text


def test_litellm_export_reads_deployed_urls_and_routes_through_the_gateway(
    modal_api: LocalModalServer,
    generated: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Deploy a gateway to the local Modal API, whose router URL is a generated router on
    127.0.0.1; export; LiteLLM then answers a chat through that router and a stand-in."""
    work = tmp_path / "work"
    (work / "specs").mkdir(parents=True)
    spec = gateway(work / "specs", gpus=["L4", "H100"])
    gateway(work / "specs", "plain", models=[{"id": "org/x", "name": "x"}], gpus=["T4"])
    modal_api.state.add_secret("huggingface", ("HF_TOKEN",))
    modal_api.state.add_secret("gw-key", ("API_KEY",))
    monkeypatch.chdir(work)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    monkeypatch.setenv("API_KEY", KEY)  # the routers' router.api_key_env
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    stand_in = StandIn()
    with running_stand_in(stand_in) as upstream:
        urls = {"alpha": upstream, "beta": upstream}
        app = generated.build_router(
            {"alpha": "org/alpha", "beta": "org/beta"}, KEY, generated.http_sender(urls)
        )
        with running_asgi(app) as port:
            modal_api.state.serve_web_url("gw-h100", "router", f"http://127.0.0.1:{port}")
            assert main(["apply", "--yes", str(spec)], confirm=lambda q: True) == 0
            capsys.readouterr()
            assert main(["export", "litellm"]) == 0
            text = capsys.readouterr().out
            assert KEY not in text
            assert "# NOTE: not deployed (placeholder api_base" in text and "plain-t4" in text
            router = litellm_router(text, monkeypatch)
            bases = {d["model_name"]: d["litellm_params"]["api_base"] for d in router.model_list}
            assert bases["alpha-h100"] == f"http://127.0.0.1:{port}/v1"
            assert bases["beta-l4"] == "http://local--gw-l4-router.localhost/v1"
            assert bases["x-t4"] == "https://plain-t4.modal.run.invalid/v1"
            reply = router.completion(
                model="beta-h100", messages=[{"role": "user", "content": "Hi"}]
            )
            # --env names the environment: dev runs no gateway, so every URL is a placeholder
            # (never the default environment's routers).
            modal_api.state.add_environment("dev")
            assert main(["export", "litellm", "--env", "dev"]) == 0
            dev = capsys.readouterr().out
            assert "alpha-h100" in dev and f"127.0.0.1:{port}" not in dev
            assert "https://gw-h100.modal.run.invalid/v1" in dev
    assert reply.choices[0].message.content == "Hello"
    assert [(path, body["model"]) for path, body in stand_in.seen] == [
        ("/v1/chat/completions", "org/beta")
    ]


@each_hostile_json_body
def test_the_router_refuses_a_hostile_body_saying_why(
    guarded: tuple[int, VllmStandIn], body: bytes, says: str
) -> None:
    port, stand_in = guarded
    assert_refused_json(send_raw(port, "POST", "/v1/chat/completions", bearer(KEY), body), says)
    assert stand_in.seen == []


def test_the_router_refuses_a_number_python_will_not_read(
    router: tuple[int, dict[str, StandIn]],
) -> None:
    """More digits than Python's int() takes (4300): past the guarded router's LIMIT, so this
    one goes to the router with the default body limit."""
    port, stand_ins = router
    stand_ins["fast"].seen.clear()
    body = b'{"model": "gemma-3-12b", "user": ' + b"9" * 4400 + b"}"
    answer = send_raw(port, "POST", "/v1/chat/completions", bearer(KEY), body)
    assert_refused_json(answer, "a number too long to read")
    assert stand_ins["fast"].seen == []


def test_the_router_takes_a_body_nested_to_the_limit(guarded: tuple[int, VllmStandIn]) -> None:
    port, stand_in = guarded
    body = f'{{"model": "alpha", "messages": [], "user": {nested(99)}}}'.encode()
    assert send_raw(port, "POST", "/v1/chat/completions", bearer(KEY), body).status == 200
    assert stand_in.seen[0].json()["user"] == json.loads(nested(99))


@pytest.mark.parametrize(
    ("field", "shown"),
    [
        ("model", "model 'xxxxxxxx"),
        ("model", "model '\\u202eevil"),  # a bidi override, escaped
        ("guided_", "'guided_xxxxxx"),
        ("guided_", "'guided_\\u202eevil"),
    ],
)
def test_the_router_echoes_no_whole_hostile_value(
    guarded: tuple[int, VllmStandIn], field: str, shown: str
) -> None:
    """An unknown model or a guided_* field of any length or character: the message quotes a
    printable excerpt of it, at most 80 characters, and names no param it cannot show."""
    port, stand_in = guarded
    value = ("\u202eevil" if "u202e" in shown else "") + "x" * 900
    fields = {"model": value} if field == "model" else {"model": "alpha", field + value: 1}
    body = json.dumps({**fields, "messages": []}).encode()
    answer = send_raw(port, "POST", "/v1/chat/completions", bearer(KEY), body)
    error = answer.json()["error"]
    assert answer.status == (404 if field == "model" else 400)
    assert shown in error["message"] and "\u202e" not in error["message"]
    assert "x" * 80 not in error["message"] and "x..." in error["message"]
    assert error["param"] == ("model" if field == "model" else None)
    assert stand_in.seen == []


def test_health_is_answered_without_waiting_for_its_body(
    guarded: tuple[int, VllmStandIn],
) -> None:
    port, stand_in = guarded
    assert [answer.status for answer in unsent_health_bodies(port)] == [200, 200]
    assert stand_in.seen == []
