"""url / test / bench through the CLI, against stand-in servers on 127.0.0.1 (OpenAI-style
embeddings, chat and completions, and the transformers engine's /embed). A stand-in is slow on
its first request after a (simulated) scale-down, so it measures as a cold start."""

from __future__ import annotations

import json
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modal_iac.cli import main
from modal_iac.local_api import LocalModalServer
from modal_iac.modal import endpoints as probe

KEY = "sk-test-3f9a"  # the value tests check is never printed
COLD_DELAY = 0.25  # the stand-in's "cold start"; warm answers take about a millisecond


class StandIn:
    """A tiny server answering one kind of request, with Bearer auth when ``key`` is set."""

    def __init__(
        self,
        kind: str,
        key: str | None = KEY,
        delay: float = 0.0,
        proxy: tuple[str, str] | None = None,
        echo: str = "",
    ) -> None:
        self.kind, self.key, self.delay = kind, key, delay
        self.echo = echo  # said in a refusal after the Authorization header it was sent
        self.proxy = proxy  # Modal's proxy auth: the Modal-Key and Modal-Secret it wants
        self.cold = True
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def scale_down(self) -> None:
        with self.lock:
            self.cold = True

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path != probe.PATHS[self.kind]:
            return 404, {"detail": "Not Found"}
        if self.kind == "embed":
            return 200, {"embeddings": [[0.5] * 8 for _ in body["texts"]], "dimension": 8}
        if self.kind == "embedding":
            data = [{"index": i, "embedding": [0.1] * 16} for i, _ in enumerate(body["input"])]
            return 200, {"data": data, "model": body.get("model", "stand-in")}
        words = "Hello from the stand-in server, friend."
        usage = {"completion_tokens": 7}
        if self.kind == "chat":
            message = {"role": "assistant", "content": words}
            return 200, {"choices": [{"message": message}], "usage": usage}
        return 200, {"choices": [{"text": " Paris. " + words}], "usage": usage}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real proxies do

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                sent = (self.headers.get("Modal-Key"), self.headers.get("Modal-Secret"))
                if stand_in.proxy and sent != stand_in.proxy:
                    message = "modal-http: missing credentials for proxy authorization"
                    self._send(401, {"error": {"message": message}})
                    return
                if stand_in.key and self.headers.get("Authorization") != f"Bearer {stand_in.key}":
                    sent_key = self.headers.get("Authorization", "")
                    message = f"missing or wrong API key{stand_in.echo} {sent_key}".rstrip()
                    if not stand_in.echo:
                        message = "missing or wrong API key"
                    self._send(401, {"error": {"message": message}})
                    return
                with stand_in.lock:
                    cold, stand_in.cold = stand_in.cold, False
                    stand_in.bodies.append(body)
                    stand_in.in_flight += 1
                    stand_in.max_in_flight = max(stand_in.max_in_flight, stand_in.in_flight)
                time.sleep(COLD_DELAY if cold else stand_in.delay)
                with stand_in.lock:
                    stand_in.in_flight -= 1
                self._send(*stand_in.answer(self.path, body))

            def _send(self, status: int, data: dict[str, Any]) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler


@pytest.fixture
def stand_in() -> Iterator[Any]:
    started: list[StandIn] = []

    def start(kind: str, **options: Any) -> StandIn:
        started.append(StandIn(kind, **options))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_API_KEY", KEY)


class FakeClock:
    """Time that passes only when slept; each sleep may run a hook (the scale-down)."""

    def __init__(self, on_sleep: Any = None) -> None:
        self.t = 1000.0
        self.slept: list[float] = []
        self.on_sleep = on_sleep

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds
        if self.on_sleep:
            self.on_sleep()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- test ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "shown"),
    [
        ("embedding", "1 embedding(s) of dimension 16"),
        ("embed", "1 embedding(s) of dimension 8"),
        ("chat", "reply: 'Hello from the stand-in server, friend.'"),
        ("completion", "reply: 'Paris. Hello from the stand-in server, friend.'"),
    ],
)
def test_test_sends_one_request_of_each_kind(
    kind: str, shown: str, stand_in: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = stand_in(kind)
    code, out, err = run(capsys, "test", server.url, "--kind", kind, "--model", "m")
    assert code == 0, err
    assert out.startswith(f"{server.url} {kind}")
    assert re.search(r"ok in \d+ ms, ", out) and out.rstrip().endswith(shown)
    assert len(server.bodies) == 1
    body = server.bodies[0]
    if kind == "embed":
        assert body == {"texts": [probe.PROMPTS["embed"]]}  # /embed takes no model
    else:
        assert body["model"] == "m"
    assert KEY not in out + err


def test_test_prompt_and_api_key_env(
    stand_in: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = stand_in("chat", key="other-key")
    monkeypatch.setenv("MY_KEY", "other-key")
    code, _, err = run(
        capsys, "test", server.url, "--kind", "chat", "--api-key-env", "MY_KEY", "--prompt", "Hi"
    )
    assert code == 0, err
    assert server.bodies == [{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 32}]


PROXY_TOKEN = ("wk-proxy-id", "ws-proxy-secret-77")


def test_test_sends_modals_proxy_token_only_when_asked(
    stand_in: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = stand_in("embedding", key=None, proxy=PROXY_TOKEN)
    argv = ("test", server.url, "--kind", "embedding")
    code, _, err = run(capsys, *argv, "--proxy-auth")
    assert code == 1 and err == (
        "$MODAL_PROXY_TOKEN_ID is not set: this endpoint uses Modal's proxy auth; export a "
        "proxy auth token of the workspace (Modal settings, Proxy Auth Tokens) as "
        "$MODAL_PROXY_TOKEN_ID and $MODAL_PROXY_TOKEN_SECRET\n"
    )
    monkeypatch.setenv("MODAL_PROXY_TOKEN_ID", PROXY_TOKEN[0])
    code, _, err = run(capsys, *argv, "--proxy-auth")
    assert code == 1 and "$MODAL_PROXY_TOKEN_SECRET is not set" in err
    monkeypatch.setenv("MODAL_PROXY_TOKEN_SECRET", PROXY_TOKEN[1])
    code, out, err = run(capsys, *argv, "--proxy-auth")
    assert code == 0, err
    assert PROXY_TOKEN[1] not in out + err
    assert len(server.bodies) == 1
    code, _, err = run(capsys, *argv)  # not asked: no token leaves this machine
    assert code == 1 and "missing credentials for proxy authorization" in err
    assert len(server.bodies) == 1


def test_test_wrong_key_is_one_line(stand_in: Any, capsys: pytest.CaptureFixture[str]) -> None:
    server = stand_in("embedding", key="the-right-key")
    code, out, err = run(capsys, "test", server.url, "--kind", "embedding")
    assert code == 1 and out == ""
    assert err == (
        f"{server.url}/v1/embeddings: HTTP 401 Unauthorized: missing or wrong API key "
        "(key read from $VLLM_API_KEY)\n"
    )
    assert KEY not in err


def test_test_unset_key_env_is_named(
    stand_in: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = stand_in("embedding")
    code, _, err = run(capsys, "test", server.url, "--kind", "embedding", "--api-key-env", "NOPE")
    assert (code, err) == (1, "$NOPE is not set: export the endpoint's API key in it\n")
    monkeypatch.delenv("VLLM_API_KEY")
    code, _, err = run(capsys, "test", server.url, "--kind", "embedding")
    assert code == 1 and err.endswith(
        "HTTP 401 Unauthorized: missing or wrong API key (no API key sent: set it in the "
        "environment, see --api-key-env)\n"
    )


@pytest.mark.parametrize("value", [KEY + "\n", KEY + " ", " " + KEY, "sk-te\x1bst", "\t"])
def test_a_key_with_a_line_break_or_control_character_is_refused_unshown(
    value: str, stand_in: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = stand_in("embedding")
    monkeypatch.setenv("VLLM_API_KEY", value)
    for command in ("test", "bench"):
        code, out, err = run(capsys, command, server.url, "--kind", "embedding")
        assert (code, out) == (1, "")
        assert err == (
            "$VLLM_API_KEY holds a line break, control character or surrounding space: export "
            "the key alone (its value is not shown)\n"
        )
    assert server.bodies == []


def test_an_empty_key_env_is_refused(
    stand_in: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = stand_in("embedding")
    monkeypatch.setenv("MY_KEY", "")
    code, _, err = run(capsys, "test", server.url, "--kind", "embedding", "--api-key-env", "MY_KEY")
    assert (code, err) == (1, "$MY_KEY is empty: export the endpoint's API key in it\n")
    assert server.bodies == []


@pytest.mark.parametrize("name", ["MY-KEY", "1KEY", "", "KEY\n", "$KEY", "sk-Xq7RvN2mT9bL4cZp8Kd3"])
def test_api_key_env_must_name_a_variable(
    name: str, stand_in: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = stand_in("embedding")
    out_file = tmp_path / "litellm.yaml"
    for argv in (
        ("test", server.url, "--kind", "embedding"),
        ("bench", server.url, "--kind", "embedding", "-n", "1"),
        ("export", "litellm", "--offline", "-o", str(out_file), str(tmp_path)),
    ):
        with pytest.raises(SystemExit) as exited:  # argparse refuses the value itself
            main([*argv, "--api-key-env", name])
        out, err = capsys.readouterr()
        assert (exited.value.code, out) == (2, ""), argv
        last = err.splitlines()[-1]
        assert last.endswith(
            "is not an environment variable name: use letters, digits and '_', not starting "
            "with a digit"
        ), err
        assert "Xq7RvN2m" not in err  # a key pasted in place of its name
    assert server.bodies == [] and not out_file.exists()


def test_the_url_and_the_servers_words_are_shown_without_credentials(
    stand_in: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    modal_token = "wk-" + "Xq7RvN2mT9bL4cZp8Kd3"
    server = stand_in("embedding", key="the-right-key", echo=f" (got \x1b[31m{modal_token}):")
    url = server.url.replace("http://", "http://admin:hunter2@")
    code, out, err = run(capsys, "test", url, "--kind", "embedding")
    assert code == 1 and out == ""
    assert err == (
        f"{server.url}/v1/embeddings: HTTP 401 Unauthorized: missing or wrong API key (got "
        "?[31m(a value that looks like a Modal token, not shown)): Bearer (the key sent, not "
        "shown) (key read from $VLLM_API_KEY)\n"
    )
    assert KEY not in err and "hunter2" not in err
    good = stand_in("embedding")
    code, out, err = run(
        capsys, "test", good.url.replace("//", "//admin:hunter2@"), "--kind", "embedding"
    )
    assert code == 0, err
    assert out.startswith(f"{good.url} embedding: ok in ") and "hunter2" not in out + err


def test_test_down_server_and_timeout(stand_in: Any, capsys: pytest.CaptureFixture[str]) -> None:
    url = closed_port_url()
    code, out, err = run(capsys, "test", url, "--kind", "chat")
    assert code == 1 and out == ""
    assert err.startswith(f"{url}/v1/chat/completions: cannot connect: ") and err.count("\n") == 1

    slow = stand_in("chat")  # its first answer takes COLD_DELAY
    code, _, err = run(capsys, "test", slow.url, "--kind", "chat", "--timeout", "0.05")
    assert (code, err) == (1, f"{slow.url}/v1/chat/completions: no answer within 0.05s\n")


def test_a_url_needs_a_kind(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "test", "http://127.0.0.1:9")
    assert code == 2
    assert "no spec or recorded app says what it serves; pass --kind" in err


# -- bench --------------------------------------------------------------------------------


def test_bench_cold_then_warm_json(
    stand_in: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = stand_in("embedding")
    out_file = tmp_path / "bench.json"
    code, out, err = run(
        capsys, "bench", server.url, "--kind", "embedding", "-n", "8", "--json", str(out_file)
    )
    assert code == 0, err
    data = json.loads(out_file.read_text())
    assert data["warm_requests"] == 8 and len(data["warm_latencies_ms"]) == 8
    assert data["cold_start_ms"] >= COLD_DELAY * 1000
    assert data["warm_p50_ms"] <= data["warm_p95_ms"] <= data["warm_p99_ms"]
    assert data["warm_p99_ms"] <= data["warm_max_ms"] < data["cold_start_ms"]
    assert data["requests_per_s"] > 0 and data["items_per_s"] == pytest.approx(
        data["requests_per_s"], rel=0.01
    )
    assert data["item"] == "embeddings" and data["post_scaledown_cold_start_ms"] is None
    assert len(server.bodies) == 9
    assert "cold start" in out and "warm p95" in out and f"wrote {out_file}" in err


def test_bench_concurrency_overlaps_requests(
    stand_in: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = stand_in("chat", delay=0.03)
    out_file = tmp_path / "bench.json"
    argv = ["bench", server.url, "--kind", "chat", "-n", "12", "--concurrency", "4"]
    code, _, err = run(capsys, *argv, "--json", str(out_file))
    assert code == 0, err
    data = json.loads(out_file.read_text())
    assert data["concurrency"] == 4 and data["warm_requests"] == 12
    assert server.max_in_flight > 1
    # 12 requests of 30 ms, 4 at a time: well above the 33 requests/s of one at a time.
    assert data["requests_per_s"] > 45
    assert data["item"] == "tokens" and data["items_per_s"] == pytest.approx(
        7 * data["requests_per_s"], rel=0.01
    )


def test_bench_waits_out_the_scaledown_with_an_injected_clock(
    stand_in: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = stand_in("completion")
    clock = FakeClock(on_sleep=server.scale_down)
    monkeypatch.setattr(probe, "CLOCK", probe.Clock(now=clock.now, sleep=clock.sleep))
    argv = ["bench", server.url, "--kind", "completion", "-n", "3", "--wait-scaledown", "70"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert clock.slept == [30.0, 30.0, 10.0]
    assert "waiting for the scaledown window: 70s left" in err
    assert "waiting for the scaledown window: 10s left" in err
    after = re.search(r"after scaledown +([\d.]+) ms +\(waited 70s\)", out)
    assert after is not None and float(after[1]) >= COLD_DELAY * 1000


def test_bench_png_is_a_png(
    stand_in: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = stand_in("embed")
    chart = tmp_path / "latency.png"
    code, _, err = run(
        capsys, "bench", server.url, "--kind", "embed", "-n", "5", "--png", str(chart)
    )
    assert code == 0, err
    raw = chart.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    width, height = struct.unpack(">II", raw[16:24])
    assert (width, height) == (600, 400) and len(raw) > 5000


def test_bench_png_stays_600_px_wide_at_400_requests_with_the_cold_starts_marked(
    stand_in: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    pytest.importorskip("matplotlib")
    from modal_iac.commands import bench

    server = stand_in("embed")
    clock = FakeClock(on_sleep=server.scale_down)
    monkeypatch.setattr(probe, "CLOCK", probe.Clock(now=clock.now, sleep=clock.sleep))
    chart, out_file = tmp_path / "latency.png", tmp_path / "bench.json"
    argv = ["bench", server.url, "--kind", "embed", "-n", "400", "--wait-scaledown", "5"]
    code, _, err = run(capsys, *argv, "--png", str(chart), "--json", str(out_file))
    assert code == 0, err
    raw = chart.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    assert struct.unpack(">II", raw[16:24]) == (600, 400)  # one bar a request was 12,000 px
    data = json.loads(out_file.read_text())
    result = bench.Bench(
        url=server.url,
        kind="embed",
        model=None,
        concurrency=1,
        cold_start_ms=data["cold_start_ms"],
        warm_ms=data["warm_latencies_ms"],
        warm_seconds=1.0,
        warm_items=None,
        post_scaledown_cold_start_ms=data["post_scaledown_cold_start_ms"],
    )
    drawn = bench.distribution(result)
    assert len(drawn.warm_ms) == 400 and len(drawn.bins) == 41
    assert [value for _, value in drawn.cold_marks] == [
        data["cold_start_ms"],
        data["post_scaledown_cold_start_ms"],
    ]
    assert drawn.bins[0] <= min(drawn.warm_ms) and drawn.bins[-1] >= data["cold_start_ms"]
    assert drawn.log  # 250 ms cold starts against millisecond warm answers
    figure = bench.chart(result, tmp_path / "again.png")
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend[0] == "warm requests (400)"
    assert legend[1].startswith("cold start ") and legend[2].startswith("after scaledown ")
    assert (tmp_path / "again.png").read_bytes()[16:24] == raw[16:24]


def test_bench_png_without_matplotlib_is_one_line(
    stand_in: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = stand_in("embed")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run(capsys, "bench", server.url, "--kind", "embed", "--png", "x.png")
    assert code == 1
    assert err == "--png needs matplotlib: pip install 'modaliac[bench]' (or drop --png)\n"
    assert server.bodies == []  # checked before anything is sent


def test_bench_default_wait_needs_a_spec(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "bench", "http://127.0.0.1:9", "--kind", "chat", "--wait-scaledown")
    assert code == 2 and "give --wait-scaledown SECONDS" in err


# -- against the local Modal API: url, and specs and app names as targets ----------------

SPEC = """\
app: probe-embed
model:
  id: BAAI/bge-small-en-v1.5
  revision: 5c38ec7c405ec4b44b94cc5a9bb96e735b38267a
  task: embed
  served_name: bge-small
  embedding:
    dimension: 384
gpu: L4
scaling:
  scaledown_window: 90s
surfaces:
  http:
    api_key_secret: probe-key
"""


@pytest.fixture
def deployed(
    modal_api: LocalModalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Path:
    work = tmp_path / "work"
    (work / "specs").mkdir(parents=True)
    (work / "specs" / "probe.yaml").write_text(SPEC)
    modal_api.state.add_secret("probe-key", ("VLLM_API_KEY",))
    monkeypatch.chdir(work)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    code, _, err = run(capsys, "apply", "--yes")
    assert code == 0, err
    return work


def test_url_reads_the_endpoint_from_modal(
    deployed: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = "http://local--probe-embed-server-serve.localhost\n"
    assert run(capsys, "url", "specs/probe.yaml") == (0, expected, "")
    assert run(capsys, "url", "probe-embed") == (0, expected, "")
    assert run(capsys, "url", "probe-embed", "--env", "main") == (0, expected, "")
    code, _, err = run(capsys, "url", "probe-embed", "--env", "staging")
    assert (code, err) == (
        1,
        "Modal: Environment 'staging' not found; create it with: modal environment create "
        "staging (or choose another --env)\n",
    )
    code, _, err = run(capsys, "url", "not-deployed")
    assert (code, err) == (1, "app 'not-deployed' is not deployed\n")
    code, _, err = run(capsys, "url", "http://example.invalid")
    assert code == 2 and "url: name an app or a spec, not a URL" in err


def test_spec_and_app_targets_take_kind_model_key_and_window_from_the_spec(
    deployed: Path,
    modal_api: LocalModalServer,
    stand_in: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server = stand_in("embedding")
    modal_api.state.serve_web_url("probe-embed", "Server.serve", server.url)
    assert run(capsys, "url", "probe-embed") == (0, server.url + "\n", "")

    code, out, err = run(capsys, "test", "specs/probe.yaml")
    assert code == 0, err
    assert out.startswith(f"{server.url} embedding (bge-small): ok in ")
    assert server.bodies[-1]["model"] == "bge-small"

    code, out, err = run(capsys, "test", "probe-embed")  # the recorded app: same settings
    assert code == 0 and "embedding (bge-small)" in out, err

    clock = FakeClock(on_sleep=server.scale_down)
    monkeypatch.setattr(probe, "CLOCK", probe.Clock(now=clock.now, sleep=clock.sleep))
    server.scale_down()
    out_file = tmp_path / "bench.json"
    argv = ["bench", "specs/probe.yaml", "-n", "4", "--wait-scaledown", "--json", str(out_file)]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    data = json.loads(out_file.read_text())
    assert data["scaledown_wait_s"] == 90 + probe.SCALEDOWN_MARGIN and sum(clock.slept) == 120
    assert data["cold_start_ms"] > data["warm_p95_ms"]
    assert data["post_scaledown_cold_start_ms"] > data["warm_p95_ms"]
    assert data["model"] == "bge-small"

    monkeypatch.delenv("VLLM_API_KEY")
    code, _, err = run(capsys, "test", "specs/probe.yaml")
    assert (code, err) == (1, "$VLLM_API_KEY is not set: export the endpoint's API key in it\n")


def test_a_proxy_auth_app_server_end_to_end_apply_url_and_test(
    modal_api: LocalModalServer,
    stand_in: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """primitive: server with proxy_auth and a key: apply deploys an @app.server with proxy auth
    on, url reads its URL from Modal, and test sends both the Bearer key and the proxy token
    because the spec says so."""
    work = tmp_path / "work"
    (work / "specs").mkdir(parents=True)
    spec = SPEC.replace("app: probe-embed", "app: probe-server").replace(
        "    api_key_secret: probe-key\n",
        "    api_key_secret: probe-key\n    proxy_auth: true\n    primitive: server\n",
    )
    (work / "specs" / "probe.yaml").write_text(spec)
    modal_api.state.add_secret("probe-key", ("VLLM_API_KEY",))
    monkeypatch.chdir(work)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    code, _, err = run(capsys, "apply", "--yes")
    assert code == 0, err
    (server_fn,) = [
        r.function
        for r in modal_api.state.requests("FunctionCreate")
        if r.function.function_name == "Server"
    ]
    assert server_fn.is_server and not server_fn.http_config.unauthenticated

    server = stand_in("embedding", proxy=PROXY_TOKEN)
    modal_api.state.serve_web_url("probe-server", "Server", server.url)
    assert run(capsys, "url", "probe-server") == (0, server.url + "\n", "")
    code, _, err = run(capsys, "test", "specs/probe.yaml")
    assert code == 1 and "$MODAL_PROXY_TOKEN_ID is not set" in err
    monkeypatch.setenv("MODAL_PROXY_TOKEN_ID", PROXY_TOKEN[0])
    monkeypatch.setenv("MODAL_PROXY_TOKEN_SECRET", PROXY_TOKEN[1])
    code, out, err = run(capsys, "test", "specs/probe.yaml")
    assert code == 0, err
    assert out.startswith(f"{server.url} embedding (bge-small): ok in ")
    assert PROXY_TOKEN[1] not in out + err and KEY not in out + err


# -- where a key may go ---------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_key_goes_to_this_machine(
    stand_in: Any, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    server = stand_in("embedding", key=KEY)
    url = server.url.replace("127.0.0.1", host)
    code, _, err = run(capsys, "test", url, "--kind", "embedding")
    assert code == 0 and "note:" not in err, err


@pytest.mark.parametrize(
    "url",
    [
        "http://example.invalid",
        "http://10.0.0.1:8000/",
        "http://[2001:db8::1]/",
        "HTTP://Example.Org",
    ],
)
def test_plain_http_to_another_machine_is_refused(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    code, out, err = run(capsys, "test", url, "--kind", "chat")
    assert (code, out) == (1, "")
    assert err.endswith("sends the request unencrypted; use https, or pass --allow-http\n"), err
    assert KEY not in err


def test_the_default_key_is_not_sent_to_another_machine(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # TEST-NET-1 (RFC 5737) is never routed: the request fails, and the key was never offered.
    unsent = (
        "note: not sending $VLLM_API_KEY to 192.0.2.1: it is not an app's Modal URL nor this "
        "machine; name the variable with --api-key-env to send it there"
    )
    code, _, err = run(capsys, "test", "https://192.0.2.1:9", "--kind", "chat", "--timeout", "0.2")
    assert code == 1 and err.splitlines()[0] == unsent
    code, _, err = run(
        capsys, "test", "http://192.0.2.1:9", "--kind", "chat", "--allow-http", "--timeout", "0.2"
    )
    assert code == 1
    assert err.splitlines()[:2] == [
        "note: sending over plain http to 192.0.2.1 (--allow-http)",
        unsent,
    ]
    assert KEY not in err
    # Named with --api-key-env, the key goes where the user says.
    monkeypatch.setenv("MY_KEY", "named")
    code, _, err = run(
        capsys,
        "test",
        "https://192.0.2.1:9",
        "--kind",
        "chat",
        "--api-key-env",
        "MY_KEY",
        "--timeout",
        "0.2",
    )
    assert code == 1 and "note:" not in err
