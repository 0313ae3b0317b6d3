"""Output for scripts and CI, through the CLI: ``validate --format json|github``, shell
completion, ``plan -o`` that saves and prints, ``--debug`` after the subcommand."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import record_applied

from modal_iac.cli import main
from modal_iac.commands.formats import as_github, problem
from modal_iac.errors import SpecError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "small-embedding-no-snapshot.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "specs").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "specs" / "minilm.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    return tmp_path


def _break(path: Path) -> None:
    text = path.read_text()
    assert "task: embed" in text
    path.write_text(text.replace("task: embed", "task: chat", 1))


# -- validate --format json | github ------------------------------------------------------


def test_validate_json_lists_files_and_apps(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    code, out, err = run(capsys, "validate", "--format", "json", "specs")
    assert code == 0, err
    document = json.loads(out)
    assert document["ok"] is True
    assert [f["path"] for f in document["files"]] == ["specs/minilm.yaml"]
    assert document["files"][0]["apps"] and all(
        p["severity"] == "warning" for p in document["problems"]
    )


def test_validate_json_reports_an_error_located_and_exits_1(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    _break(workdir / "specs" / "minilm.yaml")
    code, out, err = run(capsys, "validate", "--format", "json", "specs")
    assert code == 1 and err == ""
    document = json.loads(out)
    assert document["ok"] is False and document["files"] == []
    [found] = document["problems"]
    assert found["severity"] == "error" and found["path"] == "specs/minilm.yaml"
    assert isinstance(found["line"], int) and isinstance(found["column"], int)
    assert found["key_path"] == "model.task" and "generate" in found["message"]


def test_validate_github_prints_one_annotation_per_problem(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    _break(workdir / "specs" / "minilm.yaml")
    code, out, _ = run(capsys, "validate", "--format", "github", "specs")
    assert code == 1
    [line] = out.splitlines()
    assert line.startswith("::error file=specs/minilm.yaml,line=")
    assert ",col=" in line and "::model.task: " in line


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("100% sure", "100%25 sure"),
        ("two\nlines", "two%0Alines"),
        ("cr\r\nlf", "cr%0D%0Alf"),
        ("a, b: c", "a, b: c"),  # , and : are escaped in properties only
    ],
)
def test_github_annotations_escape_messages(message: str, expected: str) -> None:
    line = as_github([problem(SpecError("s.yaml", message, line=3, column=5), "warning")])
    assert line == f"::warning file=s.yaml,line=3,col=5::{expected}\n"


def test_github_annotations_escape_properties() -> None:
    line = as_github([problem(SpecError("C:/a,b%.yaml", "m"), "error")])
    assert line == "::error file=C%3A/a%2Cb%25.yaml::m\n"


def test_an_error_outside_any_file_has_no_properties() -> None:
    assert as_github([problem(SpecError("", "boom"), "error")]) == "::error::boom\n"


# -- completion ---------------------------------------------------------------------------


def test_bash_completion_is_valid_and_knows_the_commands(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "completion", "bash")
    assert code == 0
    script = tmp_path / "modaliac.bash"
    script.write_text(out)
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    for command in ("validate", "plan", "apply", "rollback", "completion", "state"):
        assert command in out
    assert "--detailed-exitcode" in out


@pytest.mark.parametrize(("shell", "marker"), [("zsh", "#compdef modaliac"), ("fish", "complete")])
def test_zsh_and_fish_completion_are_produced(
    capsys: pytest.CaptureFixture[str], shell: str, marker: str
) -> None:
    code, out, _ = run(capsys, "completion", shell)
    assert code == 0
    assert marker in out and "rollback" in out


def test_completion_refuses_an_unknown_shell(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["completion", "csh"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# -- plan -o / --output -------------------------------------------------------------------


def test_plan_markdown_with_a_saved_plan_writes_json_and_prints_markdown(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    code, out, err = run(capsys, "plan", "--offline", "--format", "markdown", "-o", "plan.json")
    assert code == 0, err
    saved = json.loads((workdir / "plan.json").read_text())
    assert saved["summary"]["create"] == 1
    assert "<details><summary>" in out and not out.lstrip().startswith("{")
    assert "wrote plan.json" in err


def test_plan_output_prints_text_by_default_and_quiet_silences_it(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    code, out, _ = run(capsys, "plan", "--offline", "--output", "plan.json")
    assert code == 0 and "create" in out and not out.lstrip().startswith("{")
    code, out, _ = run(capsys, "plan", "--offline", "--output", "plan.json", "--quiet")
    assert code == 0 and out == ""
    assert json.loads((workdir / "plan.json").read_text())["summary"]["create"] == 1


def test_plan_output_to_another_name_writes_the_format_there(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    code, out, _ = run(capsys, "plan", "--offline", "--format", "markdown", "-o", "plan.md")
    assert code == 0 and out == ""
    assert "<details><summary>" in (workdir / "plan.md").read_text()


def test_the_old_out_spelling_still_works_but_is_not_shown(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    code, _, _ = run(capsys, "plan", "--offline", "--out", "plan.json", "-q")
    assert code == 0 and (workdir / "plan.json").exists()
    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    shown = capsys.readouterr().out
    assert "-o FILE, --output FILE" in shown and "--out " not in shown


# -- --debug after the subcommand ---------------------------------------------------------


def test_debug_after_the_subcommand_shows_the_traceback(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    _break(workdir / "specs" / "minilm.yaml")
    assert run(capsys, "validate", "specs")[0] == 1
    from modal_iac.errors import ModaliacError

    with pytest.raises(ModaliacError):
        main(["validate", "specs", "--debug"])
    with pytest.raises(ModaliacError):
        main(["--debug", "validate", "specs"])


# -- explain and state list --format json -------------------------------------------------


def test_explain_json_has_the_fit_and_the_cost_of_every_app(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = str(ROOT / "specs" / "kalm.yaml")
    code, out, err = run(capsys, "explain", "--format", "json", spec, "--active-hours-per-day", "8")
    assert code == 0, err
    document = json.loads(out)
    [item] = document["specs"]
    assert item["path"] == spec
    [fit] = item["fits"]
    assert fit["gpu"] == "A100-40GB" and fit["fits"] is True and fit["context"] > 0
    [app] = item["apps"]
    assert app["app"] == "kalm-embedding" and app["hourly_usd"] > 0
    assert app["active_hours_per_day"] == 8 and app["month_usd"] >= app["idle_month_usd"]
    assert document["prices"]["source"]


def test_state_list_json_lists_the_recorded_apps(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    assert json.loads(run(capsys, "state", "list", "--format", "json")[1]) == {"apps": []}
    record_applied(workdir / ".modaliac" / "state.json", "specs/minilm.yaml")
    code, out, _ = run(capsys, "state", "list", "--format", "json")
    assert code == 0
    [app] = json.loads(out)["apps"]
    assert app["spec"] == "specs/minilm.yaml" and app["address"] == app["app"]
    assert app["environment"] is None


def test_every_output_option_is_spelled_o_output() -> None:
    """One spelling everywhere: an option that names where the output goes is -o/--output
    (plan keeps --out, hidden, for scripts written before)."""
    import argparse

    from modal_iac.cli import build_parser

    def subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    found += [sub, *subparsers(sub)]
        return found

    seen = 0
    for sub in subparsers(build_parser()):
        for action in sub._actions:
            if action.dest in ("out", "output") and action.help != argparse.SUPPRESS:
                assert action.option_strings == ["-o", "--output"], sub.prog
                seen += 1
    assert seen >= 4  # render, export, plan, schema


def test_validate_reports_warnings_in_both_formats_and_exits_0(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    spec = workdir / "specs" / "minilm.yaml"
    lines = [line for line in spec.read_text().splitlines() if "$schema=" not in line]
    spec.write_text("# yaml-language-server: $schema=../nowhere.json\n" + "\n".join(lines) + "\n")
    code, out, _ = run(capsys, "validate", "--format", "json", "specs")
    assert code == 0
    document = json.loads(out)
    assert document["ok"] is True and document["files"]
    [warning] = [p for p in document["problems"] if "nowhere.json" in p["message"]]
    assert warning["severity"] == "warning" and warning["line"] == 1
    code, out, _ = run(capsys, "validate", "--format", "github", "specs")
    assert code == 0
    assert "::warning file=specs/minilm.yaml,line=1" in out and "nowhere.json" in out
