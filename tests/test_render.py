"""Rendering details that the golden files do not cover: sleep levels of the class surface
and what --explain shows per engine."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from modal_iac.cli import main
from modal_iac.loading.load import load_spec
from modal_iac.render.app import render

ROOT = Path(__file__).resolve().parent.parent
SLEEPY = """\
app: sleepy
model: {{id: org/model, revision: 0123abcd, task: generate}}
engine: {{sleep_level: {level}}}
gpu: H100
snapshot: sleep
"""


def _wake_calls(source: str) -> list[str]:
    """The calls the class makes on ``self.llm`` after restore, in order."""
    tree = ast.parse(source)
    wake = next(
        node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "wake"
    )
    return [
        ast.unparse(node)
        for statement in wake.body
        for node in ast.walk(statement)
        if isinstance(node, ast.Call)
    ]


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (1, ["self.llm.wake_up()"]),
        (
            2,
            [
                "self.llm.wake_up(tags=['weights'])",
                "self.llm.collective_rpc('reload_weights')",
                "self.llm.wake_up(tags=['kv_cache'])",
            ],
        ),
    ],
)
def test_class_sleeps_and_wakes_at_the_spec_level(
    tmp_path: Path, level: int, expected: list[str]
) -> None:
    spec = tmp_path / "sleepy.yaml"
    spec.write_text(SLEEPY.format(level=level))
    source = render(load_spec(spec)).source
    assert f"SLEEP_LEVEL = {level}" in source
    assert "self.llm.sleep(level=SLEEP_LEVEL)" in source
    assert _wake_calls(source) == expected


def test_explain_shows_only_the_engine_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["render", "--explain", str(ROOT / "examples/multimodal-embedding-transformers.yaml")])
        == 0
    )
    out = capsys.readouterr().out
    assert "engine.batch_size" in out and 'engine.version                      = "5.20.2"' in out
    assert "gpu_memory_utilization" not in out and "vllm serve" not in out
    assert main(["render", "--explain", str(ROOT / "specs/kalm.yaml")]) == 0
    out = capsys.readouterr().out
    assert "engine.batch_size" not in out and "# vllm serve " in out
