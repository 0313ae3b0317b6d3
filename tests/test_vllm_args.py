"""The vLLM arguments modaliac generates, fed to the real vLLM 0.33.0 parser and EngineArgs.

vLLM runs in a separate CPU-only environment (scripts/vllm_cpu_env.py builds it once);
tests/vllm_check.py does the checking there, in one process for every case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from modal_iac.loading.load import load_spec
from modal_iac.render.engine import engine_kwargs, serve_argv
from modal_iac.spec import vllm_args
from modal_iac.spec.engine import Engine
from modal_iac.spec.gateway import GatewaySpec
from modal_iac.spec.gateway import serve_argv as gateway_argv
from modal_iac.spec.service import Spec

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parents[1]
CHECK = Path(__file__).with_name("vllm_check.py")
KALM = ROOT / "specs" / "kalm.yaml"
SPEC_FILES = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "examples").glob("*.yaml"))
# Specs of engine transformers give vLLM nothing to parse: test_transformers_engine.py runs them.
# Gateway specs are service-less (their vllm serve lines are checked in test_gateway.py).
SPEC_NAMES = [
    p.relative_to(ROOT).as_posix()
    for p in SPEC_FILES
    if isinstance(spec := load_spec(p).spec, Spec) and spec.engine.name == "vllm"
]
GATEWAY = load_spec(ROOT / "examples" / "gpu-gateway.yaml").spec
assert isinstance(GATEWAY, GatewaySpec)
HTTP_SPEC_NAMES = [
    name for name in SPEC_NAMES if load_spec(ROOT / name).spec.surfaces.http is not None
]
# Fields both the serve namespace and EngineArgs carry: the two paths must agree on them.
SHARED_FIELDS = (
    "model",
    "runner",
    "convert",
    "pooler_config",
    "hf_overrides",
    "max_model_len",
    "enforce_eager",
    "trust_remote_code",
    "dtype",
    "revision",
    "gpu_memory_utilization",
    "max_num_seqs",
    "tensor_parallel_size",
)

# Tiny weightless stand-ins for the checkpoints (their config.json), by model id. Each one's
# sentence-transformers pooling deliberately disagrees with the spec (MEAN, no Normalize
# module), so the spec's explicit pooler_config must win for the assertions to pass.
ST_MEAN_POOLING = {"pooling_mode_mean_tokens": True}
TINY_GEMMA3 = {
    "architectures": ["Gemma3ForCausalLM"],
    "model_type": "gemma3_text",
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "max_position_embeddings": 131072,
    "sliding_window": 512,
    "torch_dtype": "bfloat16",
}
TINY_BERT = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "vocab_size": 128,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
}
TINY_XLM_ROBERTA = {
    "architectures": ["XLMRobertaModel"],
    "model_type": "xlm-roberta",
    "vocab_size": 128,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 8194,
    "position_embedding_type": "absolute",
    "type_vocab_size": 1,
    "pad_token_id": 1,
}
STAND_INS = {
    "tencent/KaLM-Embedding-Gemma3-12B-2511": TINY_GEMMA3,
    "sentence-transformers/all-MiniLM-L6-v2": TINY_BERT,
    "BAAI/bge-m3": TINY_XLM_ROBERTA,
}
DEEP_SPEC_NAMES = [name for name in SPEC_NAMES if load_spec(ROOT / name).spec.model.id in STAND_INS]

# Flags and keywords from the seed documents that vLLM 0.33 no longer has (or never had), each
# with its 0.33 replacement: (bad, good, words vLLM's error must contain). Both go after a
# bare model id, so a rejection can only come from the bad part.
MODEL_ID = "tencent/KaLM-Embedding-Gemma3-12B-2511"
BAD_ARGV: dict[str, tuple[list[str], list[str], str]] = {
    "stale-task": (
        ["--task", "embed"],
        ["--runner", "pooling", "--convert", "embed"],
        "unrecognized arguments: --task embed",
    ),
    "stale-override-pooler": (
        ["--override-pooler-config", '{"pooling_type":"LAST"}'],
        ["--pooler-config", '{"pooling_type":"LAST"}'],
        "unrecognized arguments: --override-pooler-config",
    ),
    "dtype-bf16": (["--dtype", "bf16"], ["--dtype", "bfloat16"], "invalid choice: 'bf16'"),
    "bool-with-value": (
        ["--enforce-eager", "true"],
        ["--enforce-eager"],
        "unrecognized arguments: true",
    ),
    "pooler-normalize": (
        ["--pooler-config", '{"normalize":true}'],
        ["--pooler-config", '{"use_activation":true}'],
        "`normalize` was removed",
    ),
}
BAD_KWARGS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "stale-task": (
        {"task": "embed"},
        {"runner": "pooling", "convert": "embed"},
        "unexpected keyword argument 'task'",
    ),
    "stale-override-pooler": (
        {"override_pooler_config": {"pooling_type": "LAST"}},
        {"pooler_config": {"pooling_type": "LAST"}},
        "unexpected keyword argument 'override_pooler_config'",
    ),
    "pooler-normalize": (
        {"pooler_config": {"pooling_type": "LAST", "normalize": True}},
        {"pooler_config": {"pooling_type": "LAST", "use_activation": True}},
        "`normalize` was removed",
    ),
}

# vllm serve options that EngineArgs (so LLM(...)) does not take.
SERVE_ONLY_ARGS = {"enable_auto_tool_choice": True, "tool_call_parser": "hermes"}
# Engine arguments whose serve flag has no ``--no-`` form, and those a one-GPU spec can turn on
# (the multi-port one needs data parallelism).
SWITCHES = sorted(
    name
    for name, arg in vllm_args.table().args.items()
    if arg.kind == "switch" and arg.engine_field
)
SWITCHES_ON = [key for key in SWITCHES if key != "data_parallel_multi_port_external_lb"]
# specs/kalm.yaml with top-level keys replaced.
DERIVED: dict[str, dict[str, Any]] = {
    "unknown-flag": {"engine": {"args": {"no_such_flag": 1}}},
    "serve-only": {
        "engine": {"args": {**SERVE_ONLY_ARGS, "enable_prefix_caching": True}},
        "surfaces": {"class": False, "http": {"open": True}},
    },
    "sleep": {"snapshot": "sleep"},
    "switches-off": {"engine": {"args": dict.fromkeys(SWITCHES, False)}},
    "switches-on": {"engine": {"args": dict.fromkeys(SWITCHES_ON, True)}},
}


# Values that try to add arguments to ``vllm serve`` (id, engine.args name, value). modaliac
# either refuses one or renders it so that vLLM's parser changes that argument only.
HOSTILE: list[tuple[str, str, Any]] = [
    ("flags-in-a-list", "uvicorn_log_level", ["info", "--host", "0.0.0.0", "--api-key", "open"]),
    ("abbreviation", "api_ke", "x"),
    ("flag-as-value", "chat_template", "--host"),
    ("flag-with-value", "chat_template", "--api-key=open"),
    ("value-with-flag", "chat_template", "x=--api-key"),
    ("spaces", "tokenizer", "x --api-key y"),
    ("newline", "chat_template", "{{ messages }}\n--host 0.0.0.0"),
    ("empty", "chat_template", ""),
    ("negative-int", "seed", -1),
    ("negative-float", "watermark", -0.5),
    ("dotted-value", "tokenizer", "org/name.v1"),
    ("list-with-flags", "ignore_patterns", ["*.bin", "--api-key", "k"]),
    ("list-one-flag", "ignore_patterns", ["--host"]),
    ("list-dotted-dash", "ignore_patterns", ["-x.y"]),
    ("list", "ignore_patterns", ["*.pt", "original/**"]),
    ("list-one", "ignore_patterns", ["*.pt"]),
    ("list-negative", "cudagraph_capture_sizes", [1, -2]),
    ("int-list", "cudagraph_capture_sizes", [1, 2, 4]),
    ("json-with-flags", "model_loader_extra_config", {"a": "--host 0.0.0.0", "b": ["--api-key"]}),
    ("json-list", "allowed_origins", ["--host", "x"]),
    ("text-or-json-flag", "additional_config", "--port"),
    ("human-int", "max_num_batched_tokens", "32k"),
    ("boolean-off", "enable_prefix_caching", False),
    ("inverse-off", "disable_sliding_window", False),
    ("switch-on", "disable_log_stats", True),
    ("bool-as-text", "enable_prefix_caching", "--host"),
    ("repeated", "middleware", ["a.b", "c.d"]),
    ("repeated-flag", "middleware", ["--host"]),
    ("config-file", "config", "/tmp/more-args.yaml"),
]
# Refused values whose old rendering (flag, then the value's words) vLLM's parser reads as
# other arguments: the danger is real, the refusal is not for show.
NAIVE_INJECTS = ("flags-in-a-list", "abbreviation", "list-with-flags")


SWITCHES_AND_BOOLEANS = sorted(
    name for name, arg in vllm_args.table().args.items() if arg.kind in ("switch", "boolean")
)


def modaliac_accepts(name: str, value: Any) -> bool:
    try:
        Engine.model_validate({"args": {name: value}})
    except ValidationError:
        return False
    return True


def naive_words(name: str, value: Any) -> list[str]:
    """How engine.args rendered before the table: the flag, then each value as a word."""
    words = value if isinstance(value, list) else [value]
    return ["--" + name.replace("_", "-"), *(str(word) for word in words)]


def hostile_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = [
        {"name": "baseline", "serve_argv": [MODEL_ID], "fields": ["*"], "parse_only": True}
    ]
    for case_id, name, value in HOSTILE:
        words = vllm_args.argv_words(name, value) if modaliac_accepts(name, value) else None
        cases.append(
            {
                "name": f"hostile:{case_id}",
                "serve_argv": None if words is None else [MODEL_ID, *words],
                "fields": ["*"],
                "parse_only": True,
            }
        )
        naive = [MODEL_ID, *naive_words(name, value)]
        cases.append(
            {"name": f"naive:{case_id}", "serve_argv": naive, "fields": ["*"], "parse_only": True}
        )
    return cases


def spec_of(name: str) -> Spec:
    return load_spec(ROOT / name).spec


def spec_case(name: str, spec: Spec, model_dir: Path | None = None) -> dict[str, Any]:
    http = spec.surfaces.http
    return {
        "name": name,
        "serve_argv": None if http is None else serve_argv(spec, http.port),
        "engine_kwargs": engine_kwargs(spec),
        "model_dir": None if model_dir is None else str(model_dir),
        "fields": sorted(spec.engine.args),
    }


def write_model(folder: Path, config: dict[str, Any]) -> Path:
    """A weightless model folder: config.json plus a sentence-transformers pooling module."""
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    pooling = {"word_embedding_dimension": config["hidden_size"], **ST_MEAN_POOLING}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


def derived_spec(tmp: Path, name: str, change: dict[str, Any]) -> Path:
    """specs/kalm.yaml with top-level keys replaced, written under tmp."""
    yaml = YAML(typ="safe")
    data = yaml.load(KALM.read_text())
    data.update(change)
    path = tmp / f"{name}.yaml"
    with path.open("w") as out:
        yaml.dump(data, out)
    return path


def accepted(results: dict[str, Any], name: str, part: str) -> dict[str, Any]:
    """The parsed values of one accepted case part; fails with vLLM's message otherwise."""
    assert "load_error" not in results[name], results[name]["load_error"]
    got = results[name][part]
    what = "vllm serve" if part == "serve" else "EngineArgs"
    assert got is not None, f"{name} has no {part} check"
    assert got["ok"], f"{what} rejects the arguments of {name}: {got['error']}"
    return got["values"]


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """The CPU-only vLLM env's interpreter, building the env if it is missing."""
    script = ROOT / "scripts" / "vllm_cpu_env.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--print-python"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not Path(lines[-1]).exists():
        pytest.fail(
            f"could not build or find the CPU-only vLLM env ({script} --print-python exited "
            f"{proc.returncode}); its stderr ends:\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return lines[-1]


@pytest.fixture(scope="session")
def results(vllm_python: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case checked by the real vLLM in one run, by case name."""
    tmp = tmp_path_factory.mktemp("vllm-args")
    cases = []
    for name in SPEC_NAMES:
        spec = spec_of(name)
        stand_in = STAND_INS.get(spec.model.id)
        model_dir = None if stand_in is None else write_model(tmp / name, stand_in)
        cases.append(spec_case(name, spec, model_dir))
    kalm = spec_of("specs/kalm.yaml")
    short = write_model(tmp / "gemma3-8k", {**TINY_GEMMA3, "max_position_embeddings": 8192})
    cases.append(spec_case("kalm-on-8k-model", kalm, short))
    load_errors = {}
    for name, change in DERIVED.items():
        try:
            spec = load_spec(derived_spec(tmp, name, change)).spec
        except Exception as exc:  # reported by the test that needs it
            load_errors[name] = {"name": name, "load_error": f"{type(exc).__name__}: {exc}"}
        else:
            cases.append(spec_case(name, spec))
    cases.append({"name": "parser", "switches": True})
    for model in GATEWAY.models:
        cases.append(
            {
                "name": f"gateway:{model.name}",
                "serve_argv": gateway_argv(model),
                "fields": ["tool_call_parser", "enable_auto_tool_choice", "revision"],
            }
        )
    cases.append({"name": "raw-unknown-flag", "serve_argv": [MODEL_ID, "--no-such-flag=1"]})
    cases.append(
        {"name": "raw-unknown-kwarg", "engine_kwargs": {"model": MODEL_ID, "no_such_flag": 1}}
    )
    cases.extend(hostile_cases())
    for value in (True, False):
        words = [w for name in SWITCHES_AND_BOOLEANS for w in vllm_args.argv_words(name, value)]
        cases.append(
            {
                "name": f"table:{value}",
                "serve_argv": [MODEL_ID, *words],
                "fields": ["*"],
                "parse_only": True,
            }
        )
    for name, (bad, good, _) in BAD_ARGV.items():
        cases.append({"name": f"argv:{name}", "serve_argv": [MODEL_ID, *bad]})
        cases.append({"name": f"argv:{name}:fixed", "serve_argv": [MODEL_ID, *good]})
    for name, (bad_kw, good_kw, _) in BAD_KWARGS.items():
        cases.append({"name": f"kwargs:{name}", "engine_kwargs": {"model": MODEL_ID, **bad_kw}})
        cases.append(
            {"name": f"kwargs:{name}:fixed", "engine_kwargs": {"model": MODEL_ID, **good_kw}}
        )

    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu"}
    env.pop("HF_HUB_OFFLINE", None)  # vllm_check.py goes offline for the model check only
    proc = subprocess.run(
        [vllm_python, str(CHECK)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"{CHECK.name} failed:\n{proc.stderr[-4000:]}", pytrace=False)
    answers = json.loads(proc.stdout)
    assert [a["name"] for a in answers] == [c["name"] for c in cases]
    return {**load_errors, **{a["name"]: a for a in answers}}


def test_specs_found() -> None:
    assert "specs/kalm.yaml" in SPEC_NAMES
    assert len(SPEC_NAMES) >= 5
    assert HTTP_SPEC_NAMES, "no spec has surfaces.http: the serve checks would test nothing"


@pytest.mark.parametrize("name", HTTP_SPEC_NAMES)
def test_serve_argv_accepted(results: dict[str, Any], name: str) -> None:
    accepted(results, name, "serve")


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_engine_kwargs_accepted(results: dict[str, Any], name: str) -> None:
    accepted(results, name, "kwargs")


@pytest.mark.parametrize("name", HTTP_SPEC_NAMES)
def test_serve_and_python_paths_agree(results: dict[str, Any], name: str) -> None:
    """The HTTP server and the Python class configure the same engine."""
    serve, kwargs = accepted(results, name, "serve"), accepted(results, name, "kwargs")
    for field in SHARED_FIELDS:
        assert serve[field] == kwargs[field], field
    for field in spec_of(name).engine.args:
        assert serve[field] == kwargs[field], field


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_engine_args_reach_vllm(results: dict[str, Any], name: str) -> None:
    """Free-form ``engine.args`` arrive with the spec's values, whatever their type."""
    spec = spec_of(name)
    for part in ("serve", "kwargs"):
        if results[name][part] is None:
            continue
        values = accepted(results, name, part)
        for key, value in spec.engine.args.items():
            assert values[key] == value, (part, key)


def test_kalm_serve_values(results: dict[str, Any]) -> None:
    spec = spec_of("specs/kalm.yaml")
    values = accepted(results, "specs/kalm.yaml", "serve")
    assert values["model"] == "tencent/KaLM-Embedding-Gemma3-12B-2511"
    assert values["runner"] == "pooling"
    assert values["convert"] == "embed"
    assert values["pooler_config"]["pooling_type"] == "LAST"
    assert values["pooler_config"]["seq_pooling_type"] == "LAST"
    assert values["pooler_config"]["use_activation"] is True
    assert values["hf_overrides"] == {
        "is_matryoshka": True,
        "matryoshka_dimensions": [3840, 2048, 1024, 512, 256, 128, 64],
    }
    assert values["max_model_len"] == 32000
    assert values["enforce_eager"] is True
    assert values["trust_remote_code"] is True
    assert values["dtype"] == "bfloat16"
    assert values["revision"] == spec.model.revision
    assert values["served_model_name"] == [spec.model.served_name or spec.model.id]
    assert values["gpu_memory_utilization"] == 0.9
    assert values["max_num_seqs"] == 256
    assert values["tensor_parallel_size"] == 1
    assert values["enable_sleep_mode"] is False
    assert values["host"] == "127.0.0.1"
    assert values["port"] == spec.surfaces.http.port


def test_chat_serve_values(results: dict[str, Any]) -> None:
    """Generation, tensor parallelism and the ``--no-...`` spelling of false booleans."""
    values = accepted(results, "examples/chat-gpu-fallback.yaml", "serve")
    assert values["runner"] == "generate"
    assert values["convert"] == "auto"
    assert values["pooler_config"] is None
    assert values["tensor_parallel_size"] == 2
    assert values["served_model_name"] == ["gemma-3-27b"]
    assert values["trust_remote_code"] is False
    assert values["enforce_eager"] is False
    assert values["limit_mm_per_prompt"] == {"image": 0}


def test_sleep_mode_only_with_snapshot_sleep(results: dict[str, Any]) -> None:
    """With snapshot: sleep both the class and the server sleep before their snapshot;
    otherwise neither enables sleep mode (it would open vLLM's dev endpoints for nothing)."""
    assert accepted(results, "sleep", "kwargs")["enable_sleep_mode"] is True
    assert accepted(results, "sleep", "serve")["enable_sleep_mode"] is True
    for name in VLLM_SERVER_NAMES:
        sleeping = spec_of(name).snapshot == "sleep"
        assert accepted(results, name, "serve")["enable_sleep_mode"] is sleeping, name


VLLM_SERVER_NAMES = [name for name in HTTP_SPEC_NAMES if spec_of(name).engine.name == "vllm"]


@pytest.mark.parametrize("model", GATEWAY.models, ids=[m.name for m in GATEWAY.models])
def test_gateway_serve_argv_accepted(results: dict[str, Any], model: Any) -> None:
    """Each model of the seed 004 gateway: its ``vllm serve`` line as vLLM 0.33 parses it."""
    values = accepted(results, f"gateway:{model.name}", "serve")
    assert values["host"] == "127.0.0.1"
    assert values["served_model_name"] == [model.id]
    assert values["revision"] == model.revision
    assert values["max_model_len"] == model.max_model_len
    assert values["enforce_eager"] is True
    assert values["gpu_memory_utilization"] == model.gpu_memory_utilization
    if model.tool_call_parser:
        assert values["tool_call_parser"] == model.tool_call_parser
        assert values["enable_auto_tool_choice"] is True


@pytest.mark.parametrize("name", VLLM_SERVER_NAMES)
def test_server_listens_on_loopback_only(results: dict[str, Any], name: str) -> None:
    """The public endpoint is the proxy; vLLM itself is reachable only inside the container."""
    spec = spec_of(name)
    assert spec.surfaces.http is not None
    values = accepted(results, name, "serve")
    assert values["host"] == "127.0.0.1"
    assert values["port"] == spec.surfaces.http.port


def test_sleeping_examples_parse(results: dict[str, Any]) -> None:
    """Seeds 002 and 003: sleep mode, no enforce_eager (compiled graphs go in the snapshot)."""
    chat = accepted(results, "examples/qwen-chat-sleep-snapshot.yaml", "serve")
    assert (chat["runner"], chat["served_model_name"]) == ("generate", ["qwen3.6-27b"])
    assert chat["enable_sleep_mode"] is True and chat["enforce_eager"] is False
    assert chat["max_model_len"] == 32000
    embed = accepted(results, "examples/netra-multimodal-embedding-sleep.yaml", "serve")
    assert (embed["runner"], embed["convert"]) == ("pooling", "embed")
    assert embed["enable_sleep_mode"] is True and embed["enforce_eager"] is False
    assert (embed["gpu_memory_utilization"], embed["max_num_seqs"]) == (0.6, 8)
    assert embed["served_model_name"] == ["bigemma3"]


@pytest.mark.parametrize("name", list(BAD_ARGV))
def test_stale_or_wrong_flags_rejected(results: dict[str, Any], name: str) -> None:
    """The check can fail: vLLM refuses the seeds' flags and accepts their replacements."""
    serve = results[f"argv:{name}"]["serve"]
    assert not serve["ok"], f"vllm serve accepted {BAD_ARGV[name][0]}"
    assert BAD_ARGV[name][2] in serve["error"]
    accepted(results, f"argv:{name}:fixed", "serve")


@pytest.mark.parametrize("name", list(BAD_KWARGS))
def test_stale_keywords_rejected(results: dict[str, Any], name: str) -> None:
    """``LLM(task="embed")`` and friends fail in ``EngineArgs``; the 0.33 names pass."""
    kwargs = results[f"kwargs:{name}"]["kwargs"]
    assert not kwargs["ok"], f"EngineArgs accepted {BAD_KWARGS[name][0]}"
    assert BAD_KWARGS[name][2] in kwargs["error"]
    accepted(results, f"kwargs:{name}:fixed", "kwargs")


def test_switch_only_list_matches_vllm(results: dict[str, Any]) -> None:
    """engine.py's list of flags without a ``--no-`` form is the parser's list."""
    assert results["parser"]["switches"] == SWITCHES


@pytest.mark.parametrize("value", [False, True])
def test_switch_only_flags(results: dict[str, Any], value: bool) -> None:
    """``engine.args: {disable_log_stats: false}`` must not become ``--no-disable-log-stats``."""
    name, keys = ("switches-on", SWITCHES_ON) if value else ("switches-off", SWITCHES)
    for part in ("serve", "kwargs"):
        values = accepted(results, name, part)
        assert {key: values[key] for key in keys} == dict.fromkeys(keys, value), part


def test_unknown_engine_arg_rejected(results: dict[str, Any]) -> None:
    """A typo in ``engine.args`` fails ``validate`` (vLLM's own table), as vLLM would fail."""
    assert "not a vLLM 0.33.0 engine argument" in results["unknown-flag"]["load_error"]
    serve = results["raw-unknown-flag"]["serve"]
    assert not serve["ok"]
    assert "unrecognized arguments: --no-such-flag=1" in serve["error"]
    kwargs = results["raw-unknown-kwarg"]["kwargs"]
    assert not kwargs["ok"]
    assert kwargs["error"].startswith("TypeError")
    assert "no_such_flag" in kwargs["error"]


def test_serve_only_args_reach_vllm_serve_only(results: dict[str, Any], tmp_path: Path) -> None:
    """``enable_auto_tool_choice`` and ``tool_call_parser`` reach ``vllm serve``; ``LLM(...)``
    gets the EngineArgs fields only, so it no longer raises TypeError at every start."""
    serve = accepted(results, "serve-only", "serve")
    assert {key: serve[key] for key in SERVE_ONLY_ARGS} == SERVE_ONLY_ARGS
    assert serve["enable_prefix_caching"] is True
    kwargs = accepted(results, "serve-only", "kwargs")
    assert kwargs["enable_prefix_caching"] is True
    spec = load_spec(derived_spec(tmp_path, "serve-only", DERIVED["serve-only"])).spec
    assert not set(SERVE_ONLY_ARGS) & set(engine_kwargs(spec))


@pytest.mark.parametrize("name", DEEP_SPEC_NAMES)
def test_model_config_resolves(results: dict[str, Any], name: str) -> None:
    """Against a weightless stand-in model: pooling, context and Matryoshka as the spec says."""
    spec = spec_of(name)
    model = results[name]["model"]
    assert model["ok"], f"create_model_config fails for {name}: {model['error']}"
    assert model["runner_type"] == "pooling"
    assert model["convert_type"] == "embed"
    assert model["seq_pooling_type"] == spec.embedding.pooling.upper()
    assert model["use_activation"] is spec.embedding.normalize
    expected_len = spec.model.max_model_len or STAND_INS[spec.model.id]["max_position_embeddings"]
    assert model["max_model_len"] == expected_len
    widths = list(spec.embedding.matryoshka or [])
    assert model["is_matryoshka"] is bool(widths)
    assert (model["matryoshka_dimensions"] or []) == widths


def test_kalm_model_config(results: dict[str, Any]) -> None:
    model = results["specs/kalm.yaml"]["model"]
    assert model["ok"], model["error"]
    assert model["architectures"] == ["Gemma3ForCausalLM"]
    assert model["runner_type"] == "pooling"
    assert model["convert_type"] == "embed"
    assert model["pooling_type"] == "LAST"
    assert model["use_activation"] is True
    assert model["max_model_len"] == 32000
    assert model["is_matryoshka"] is True
    assert model["matryoshka_dimensions"] == [3840, 2048, 1024, 512, 256, 128, 64]
    assert model["dtype"] == "torch.bfloat16"


def test_context_longer_than_model_rejected(results: dict[str, Any]) -> None:
    """The deeper check can fail: 32k tokens on a model with 8192 positions."""
    model = results["kalm-on-8k-model"]["model"]
    assert not model["ok"]
    assert "max_model_len (32000)" in model["error"]


def changed(results: dict[str, Any], name: str) -> dict[str, Any]:
    """The parsed fields a case's argv changed from a bare ``vllm serve <model>``."""
    base = results["baseline"]["serve"]["values"]
    got = results[name]["serve"]
    assert got["ok"], f"{name}: vllm serve rejects it: {got['error']}"
    return {k: v for k, v in got["values"].items() if base.get(k, MISSING) != v}


MISSING = object()


@pytest.mark.parametrize(("case_id", "name", "value"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_no_value_adds_an_argument(
    results: dict[str, Any], case_id: str, name: str, value: Any
) -> None:
    """Through vLLM's own parser: an accepted value changes only its own argument."""
    if results[f"hostile:{case_id}"]["serve"] is None:  # refused by validate
        assert not modaliac_accepts(name, value)
        return
    assert set(changed(results, f"hostile:{case_id}")) <= {name}


def test_hostile_values_land_as_written(results: dict[str, Any]) -> None:
    """The accepted hostile values arrive whole: one word, not split into arguments."""
    assert changed(results, "hostile:value-with-flag") == {"chat_template": "x=--api-key"}
    assert changed(results, "hostile:newline") == {
        "chat_template": "{{ messages }}\n--host 0.0.0.0"
    }
    assert changed(results, "hostile:negative-float") == {"watermark": -0.5}
    assert changed(results, "hostile:list") == {"ignore_patterns": ["*.pt", "original/**"]}
    assert changed(results, "hostile:list-one") == {"ignore_patterns": ["*.pt"]}
    assert changed(results, "hostile:human-int") == {"max_num_batched_tokens": 32000}
    assert changed(results, "hostile:boolean-off") == {"enable_prefix_caching": False}
    assert changed(results, "hostile:json-with-flags") == {
        "model_loader_extra_config": {"a": "--host 0.0.0.0", "b": ["--api-key"]}
    }
    refused = [h[0] for h in HOSTILE if results[f"hostile:{h[0]}"]["serve"] is None]
    assert set(NAIVE_INJECTS) <= set(refused)
    assert "flag-as-value" in refused and "config-file" in refused


@pytest.mark.parametrize("case_id", NAIVE_INJECTS)
def test_old_rendering_injected_arguments(results: dict[str, Any], case_id: str) -> None:
    """Without the table the same values reach other arguments (the check can fail)."""
    name = next(h[1] for h in HOSTILE if h[0] == case_id)
    others = set(changed(results, f"naive:{case_id}")) - {name}
    assert others & {"host", "api_key"}, others


def test_arg_table_is_current(vllm_python: str) -> None:
    """modal_iac/data/vllm_args.json is what scripts/vllm_arg_table.py makes from this vLLM."""
    script = ROOT / "scripts" / "vllm_arg_table.py"
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu"}
    proc = subprocess.run(
        [vllm_python, str(script), "--check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("value", [True, False])
def test_every_switch_and_boolean_renders_as_vllm_reads_it(
    results: dict[str, Any], value: bool
) -> None:
    """The table's on and off flags, all of them in one argv, parse to true and false."""
    got = results[f"table:{value}"]["serve"]
    assert got["ok"], got["error"]
    values = got["values"]
    wrong = [name for name in SWITCHES_AND_BOOLEANS if values[name] is not value]
    assert not wrong, wrong
