"""``modaliac fmt``: canonical key order and layout, comments kept, meaning unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modal_iac.cli import main
from modal_iac.commands.fmt import format_text
from modal_iac.loading.load import find_spec_files, load_spec

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = [p for d in ("specs", "examples") for p in find_spec_files(ROOT / d)]

MESSY = """\
# about this spec
# yaml-language-server: $schema=../schema.json
scaling:   # scaling eol
  timeout: 5m  # t
  # about max
  max_containers: 1
gpu: A100-40GB   \n\
app: demo  # the name

# the model
model:
    task: embed
    # about the id
    id: org/m   # eol id
    embedding: {pooling: last, dimension: 8}
labels:
  z: "1"
  a: "2"
# about surfaces
surfaces:
  http: {api_key_secret: k}
"""

TIDY = """\
# yaml-language-server: $schema=../schema.json
# about this spec
app: demo  # the name
labels:
  z: "1"
  a: "2"

# the model
model:
  # about the id
  id: org/m     # eol id
  task: embed
  embedding: {dimension: 8, pooling: last}
gpu: A100-40GB
scaling:   # scaling eol
  # about max
  max_containers: 1
  timeout: 5m  # t
# about surfaces
surfaces:
  http: {api_key_secret: k}
"""


def test_keys_move_with_their_comments_and_user_keys_keep_their_order() -> None:
    assert format_text(MESSY) == TIDY


def test_formatting_is_idempotent() -> None:
    assert format_text(TIDY) == TIDY


def test_comments_above_a_key_that_moves_first_go_to_the_top() -> None:
    text = "gpu: L4\nmodel:\n  task: embed  # t\n  # about id\n  id: a/b\n\n# the name\napp: x\n"
    tidy = "# the name\napp: x\nmodel:\n  # about id\n  id: a/b\n  task: embed  # t\ngpu: L4\n"
    assert format_text(text) == tidy


def test_blank_lines_are_squeezed_but_not_inside_a_block_scalar() -> None:
    assert format_text("app: x\n\n\n\ngpu: L4\n\n") == "app: x\n\ngpu: L4\n"
    text = "app: x\nimage:\n  env:\n    A: |\n      a\n\n\n      b\n"
    assert format_text(text) == text


def test_environment_overrides_are_ordered_like_the_spec() -> None:
    text = (
        "environments:\n  dev:\n    scaling: {max_containers: 1, min_containers: 0}\n"
        "    gpu: L4\napp: x\n"
    )
    tidy = (
        "app: x\nenvironments:\n  dev:\n    gpu: L4\n"
        "    scaling: {min_containers: 0, max_containers: 1}\n"
    )
    assert format_text(text) == tidy


def test_unknown_keys_keep_their_place_after_the_known_ones() -> None:
    text = "zeta: 1\napp: a\nalpha: 2\nversion: 1\n"
    assert format_text(text) == "version: 1\napp: a\nzeta: 1\nalpha: 2\n"


def test_gateway_models_are_ordered_inside_the_list() -> None:
    text = "name: g\nkind: gateway\nmodels:\n- name: m  # short\n  id: org/m\n"
    tidy = "kind: gateway\nname: g\nmodels:\n  - id: org/m\n    name: m # short\n"
    assert format_text(text) == tidy


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: str(p.relative_to(ROOT)))
def test_bundled_specs_are_formatted_and_load_to_the_same_model(path: Path, tmp_path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    formatted = format_text(text, str(path))
    assert format_text(formatted) == formatted
    copy = tmp_path / path.name
    copy.write_text(formatted, encoding="utf-8")
    assert load_spec(copy).spec == load_spec(path).spec
    assert formatted == text, f"run `modaliac fmt {path.relative_to(ROOT)}`"


def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_lists_unformatted_files_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _spec(tmp_path, MESSY)
    assert main(["fmt", "--check", str(path)]) == 1
    assert capsys.readouterr().out == f"{path}\n"
    assert path.read_text(encoding="utf-8") == MESSY


def test_diff_prints_a_unified_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _spec(tmp_path, MESSY)
    assert main(["fmt", "--check", "--diff", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"--- a/{path}\n+++ b/{path}\n@@")
    assert "-gpu: A100-40GB   \n" in out and "+gpu: A100-40GB\n" in out


def test_fmt_rewrites_in_place_keeping_the_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _spec(tmp_path, MESSY)
    path.chmod(0o640)
    assert main(["fmt", str(tmp_path)]) == 0
    assert path.read_text(encoding="utf-8") == TIDY
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["s.yaml"]  # no temporary file left
    assert main(["fmt", "--check", str(path)]) == 0


def test_invalid_yaml_is_one_located_line_and_the_file_is_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "app: a\nmodel: [1, 2\n"
    path = _spec(tmp_path, text)
    assert main(["fmt", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{path}:2:"), err
    assert path.read_text(encoding="utf-8") == text


def test_fmt_of_a_copied_example_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    assert main(["fmt", "--check", str(tmp_path / "examples")]) == 0
