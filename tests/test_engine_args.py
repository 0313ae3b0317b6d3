"""engine.args against vLLM's own argument table, with no vLLM installed.

A property test draws values for the table's arguments: each one ``validate`` accepts renders
into ``vllm serve`` words that an argparse model of the table (abbreviations on, as vLLM's
parser has them) reads as that argument only. tests/test_vllm_args.py checks hostile values
through vLLM's real parser.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from modal_iac.cli import main
from modal_iac.spec import vllm_args
from modal_iac.spec.engine import DEFAULT_VLLM_VERSION, MANAGED_ENGINE_ARGS, Engine

TABLE = vllm_args.table()
NAMES = sorted(name for name in TABLE.args if name not in MANAGED_ENGINE_ARGS)
MODEL = "org/model"
# Managed names vLLM 0.33 no longer has (or never had): validate still points at the spec key.
GONE = {"task", "override_pooler_config", "device"}


def table_parser() -> argparse.ArgumentParser:
    """The table as an argparse parser, values kept as text: what argv words reach which dest."""
    parser = argparse.ArgumentParser(prog="vllm serve", allow_abbrev=True, exit_on_error=False)
    parser.add_argument("model_tag", nargs="?")
    for name, arg in TABLE.args.items():
        if arg.kind == "switch":
            parser.add_argument(arg.on, dest=name, action="store_true")
        elif arg.kind == "boolean":
            assert arg.off is not None
            parser.add_argument(arg.on, dest=name, action="store_const", const=True)
            parser.add_argument(arg.off, dest=name, action="store_const", const=False)
        elif arg.repeat:
            parser.add_argument(arg.on, dest=name, action="append")
        else:
            parser.add_argument(arg.on, dest=name, nargs="+" if arg.list else None)
    return parser


PARSER = table_parser()
DEFAULTS = vars(PARSER.parse_args([MODEL]))


def parsed_changes(words: list[str]) -> dict[str, Any]:
    try:
        values = vars(PARSER.parse_args([MODEL, *words]))
    except (argparse.ArgumentError, SystemExit) as exc:
        pytest.fail(f"the table's parser refuses {words}: {exc}")
    return {k: v for k, v in values.items() if DEFAULTS[k] != v}


def accepts(name: str, value: Any) -> bool:
    try:
        Engine.model_validate({"args": {name: value}})
    except ValidationError:
        return False
    return True


# Text that tries every way into argv: leading dashes, '=', spaces, line breaks, dots.
WORDS = st.one_of(
    st.sampled_from(
        ["--host", "-O3", "--api-key=x", "x=--port", "a b", "a\nb", "-1.5", "--", "-", "", "32k"]
    ),
    st.text(alphabet="-=. \nabc01kK/", max_size=12),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(-5, 5), WORDS)
VALUES = st.one_of(
    SCALARS,
    st.lists(st.one_of(st.integers(-3, 64), WORDS), max_size=4),
    st.dictionaries(st.sampled_from(["a", "b"]), SCALARS, max_size=2),
)


def typed(name: str) -> st.SearchStrategy[Any]:
    """Values of the argument's own type (most pass the type check), or anything."""
    arg = TABLE.args[name]
    one: st.SearchStrategy[Any] = {
        "int": st.integers(-3, 10**6),
        "float": st.floats(-5, 5),
        "human_int": st.one_of(st.integers(-3, 10**6), WORDS),
        "human_int_or_auto": st.one_of(st.integers(-3, 10**6), WORDS),
        "json": st.dictionaries(st.sampled_from(["a", "b"]), SCALARS, max_size=2),
        "json_or_str": st.one_of(WORDS, st.dictionaries(st.just("a"), WORDS, max_size=1)),
    }.get(arg.type or "str", WORDS)
    if arg.choices:
        one = st.one_of(st.sampled_from(arg.choices), one)
    if arg.kind != "value":
        one = st.booleans()
    elif arg.list:
        one = st.lists(one, max_size=4)
    return st.one_of(one, VALUES)


LIST_NAMES = [name for name in NAMES if TABLE.args[name].list]
NAMED_VALUES = st.one_of(st.sampled_from(NAMES), st.sampled_from(LIST_NAMES)).flatmap(
    lambda name: st.tuples(st.just(name), typed(name))
)


@settings(max_examples=800, deadline=None)
@given(named=NAMED_VALUES)
def test_an_accepted_value_changes_only_its_own_argument(named: tuple[str, Any]) -> None:
    name, value = named
    if not accepts(name, value):
        return
    words = vllm_args.argv_words(name, value)
    arg = TABLE.args[name]
    if not arg.list and words:
        assert len(words) == 1 and words[0].split("=", 1)[0] in (arg.on, arg.off), words
    assert set(parsed_changes(words)) <= {name}, (name, value, words)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("seed", -1, ["--seed=-1"]),
        ("chat_template", "x=--api-key", ["--chat-template=x=--api-key"]),
        ("enable_prefix_caching", False, ["--disable-prefix-caching"]),
        ("disable_sliding_window", False, ["--enable-sliding-window"]),
        ("trust_request_chat_template", False, ["--no-trust-request-chat-template"]),
        ("disable_log_stats", False, []),
        ("disable_log_stats", True, ["--disable-log-stats"]),
        ("ignore_patterns", ["*.pt"], ["--ignore-patterns=*.pt"]),
        ("ignore_patterns", ["*.pt", "a/**"], ["--ignore-patterns", "*.pt", "a/**"]),
        ("middleware", ["a.b", "c.d"], ["--middleware=a.b", "--middleware=c.d"]),
        ("compilation_config", {"mode": 3}, ['--compilation-config={"mode":3}']),
        ("gpu_memory_utilization", 0.5, ["--gpu-memory-utilization=0.5"]),
        ("seed", None, []),
    ],
)
def test_argv_words(name: str, value: Any, words: list[str]) -> None:
    assert vllm_args.argv_words(name, value) == words
    assert set(parsed_changes(words)) <= {name}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("uvicorn_log_level", ["info", "--host", "0.0.0.0", "--api-key", "open"]),
        ("chat_template", "--host"),
        ("ignore_patterns", ["*.bin", "--api-key", "k"]),
        ("ignore_patterns", "*.bin"),
        ("cudagraph_capture_sizes", [1, -2]),
        ("enable_prefix_caching", "true"),
        ("max_lora_rank", 7),
        ("uvicorn_log_level", "loud"),
        ("seed", 1.5),
        ("compilation_config", "-O3"),
    ],
)
def test_values_that_would_add_arguments_or_mistype_are_refused(name: str, value: Any) -> None:
    assert not accepts(name, value)


def test_the_table_is_for_the_default_vllm() -> None:
    assert TABLE.vllm == DEFAULT_VLLM_VERSION
    assert len(TABLE.args) > 300
    missing = {name for name in MANAGED_ENGINE_ARGS if vllm_args.lookup(name) is None}
    assert missing == GONE  # a managed name vLLM dropped is dead weight in the list


def test_another_vllm_pin_skips_the_name_check_but_not_the_argv_check() -> None:
    engine = Engine.model_validate({"version": "0.34.0", "args": {"brand_new_flag": 1}})
    assert engine.args == {"brand_new_flag": 1}
    assert vllm_args.argv_words("brand_new_flag", 1) == ["--brand-new-flag=1"]
    with pytest.raises(ValidationError, match="read as a flag of its own"):
        Engine.model_validate({"version": "0.34.0", "args": {"brand_new_flag": ["a", "-b"]}})


SPEC = """\
app: demo
model:
  id: BAAI/bge-small-en-v1.5
  revision: 5c38ec7c405ec4b44b94cc5a9bb96e735b38267a
  task: embed
gpu: L4
engine:
  args:
    enable_prefix_caching: true
    uvicorn_log_level: debug
    seed: -1
surfaces:
  class: true
  http:
    open: true
"""


def _assigned(source: str, name: str) -> Any:
    tree = ast.parse(source)
    node = next(
        n
        for n in tree.body
        if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == name for t in n.targets)
    )
    return ast.literal_eval(node.value)


def test_render_sends_serve_only_args_to_vllm_serve_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Through the CLI: the class gets EngineArgs fields, vllm serve gets everything."""
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    assert main(["render", str(path)]) == 0
    source = capsys.readouterr().out
    serve, kwargs = _assigned(source, "SERVE_ARGS"), _assigned(source, "ENGINE_KWARGS")
    assert "--uvicorn-log-level=debug" in serve
    assert "--enable-prefix-caching" in serve and "--seed=-1" in serve
    assert "uvicorn_log_level" not in kwargs
    assert kwargs["enable_prefix_caching"] is True and kwargs["seed"] == -1


def test_validate_refuses_a_serve_only_arg_the_class_would_need(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("    seed: -1\n", "    tool_call_parser: hermes\n"))
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "engine.args.tool_call_parser: tool_call_parser is a `vllm serve` option" in err
    path.write_text(
        SPEC.replace("    seed: -1\n", "    tool_call_parser: hermes\n").replace(
            "  class: true\n",
            "",  # only the listed surfaces render: the HTTP server alone
        )
    )
    assert main(["validate", str(path)]) == 0
