"""The public Python API (``modal_iac.api``) end to end on the bundled examples: each call
gives, as values, what the CLI prints for the same input, and a broken spec raises the
located error the CLI prints."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import record_applied

from modal_iac import api
from modal_iac.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
MINILM = ROOT / "examples" / "small-embedding-no-snapshot.yaml"
GATEWAY = ROOT / "examples" / "gpu-gateway.yaml"
HF_TOKEN = "hf_" + "Xq7RvN2mKp9LtB4wZc8YdF3jHs6GaE1uQo"  # token-shaped, never a real one


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder, as cwd, whose specs/ holds every example (a gateway among them)."""
    (tmp_path / "specs").mkdir()
    for example in EXAMPLES:
        shutil.copy(example, tmp_path / "specs" / example.name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    monkeypatch.delenv("MODALIAC_PRICES", raising=False)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


# -- the public names ---------------------------------------------------------------------------


def test_every_public_name_exists_and_every_function_is_typed_and_documented() -> None:
    assert sorted(api.__all__) == api.__all__
    for name in api.__all__:
        value = getattr(api, name)
        if inspect.isfunction(value):
            assert value.__doc__, f"api.{name} has no docstring"
            hints = inspect.get_annotations(value)
            signature = inspect.signature(value)
            assert "return" in hints, f"api.{name} has no return type"
            assert all(p in hints for p in signature.parameters), f"api.{name}: an untyped arg"
    functions = {n for n in api.__all__ if inspect.isfunction(getattr(api, n))}
    assert functions == {"load", "validate", "render", "plan", "plan_json"}


def test_importing_the_package_stays_cheap() -> None:
    """``import modal_iac`` (every CLI start does it) loads no stage; the API is its own
    module, imported by whoever uses it."""
    code = "import json, sys, modal_iac; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported = set(json.loads(done.stdout))
    assert {"modal_iac.api", "pydantic", "jinja2", "ruamel"} & imported == set()
    assert sorted(m for m in imported if m.startswith("modal_iac.")) == []


# -- load -----------------------------------------------------------------------------------------


def test_load_gives_each_spec_validated_with_its_apps(project: Path) -> None:
    loaded = api.load("specs")
    assert [item.path for item in loaded] == [f"specs/{e.name}" for e in EXAMPLES]
    assert all(isinstance(item, api.LoadedSpec) for item in loaded)
    [gateway] = [item for item in loaded if item.path == f"specs/{GATEWAY.name}"]
    assert len(gateway.spec.app_names()) > 1  # one app per GPU type
    one = api.load(Path("specs") / MINILM.name)  # a single path, str or Path
    assert [item.path for item in one] == [f"specs/{MINILM.name}"]
    assert one[0].digest == next(i.digest for i in loaded if i.path == one[0].path)


def test_load_applies_the_environment_overrides(project: Path) -> None:
    spec = project / "specs" / MINILM.name
    spec.write_text(spec.read_text() + "environments:\n  prod:\n    gpu: H100\n")
    [base] = api.load(spec)
    [prod] = api.load(spec, env="prod")
    assert (base.env, base.spec.environment) == (None, None)
    assert (prod.env, prod.spec.environment) == ("prod", "prod")
    assert prod.spec.model_dump()["gpu"] != base.spec.model_dump()["gpu"]


# -- validate -------------------------------------------------------------------------------------


def test_validate_gives_what_validate_format_json_prints(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "validate", "--format", "json", "specs")
    assert code == 0, err
    found = api.validate("specs")
    assert found.ok
    assert found.json() == out
    document = json.loads(out)
    assert list(found.files) == document["files"] and list(found.problems) == document["problems"]
    assert found.problems and all(p["severity"] == "warning" for p in found.problems)


def test_validate_returns_a_broken_spec_s_errors_as_values(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(project / "specs" / MINILM.name, "task: embed", "task: chat")
    code, out, _ = cli(capsys, "validate", "--format", "json", "specs")
    assert code == 1
    found = api.validate("specs")  # nothing raised: the problem is a value
    assert not found.ok and found.files == ()
    assert found.json() == out
    [error] = [p for p in found.problems if p["severity"] == "error"]
    assert error["path"] == f"specs/{MINILM.name}" and error["key_path"] == "model.task"
    assert isinstance(error["line"], int) and isinstance(error["column"], int)


# -- render ---------------------------------------------------------------------------------------


def test_render_gives_the_files_modaliac_render_writes(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "render", "specs", "-o", "out")
    assert code == 0, err
    written = {p.name: p.read_text(encoding="utf-8") for p in (project / "out").iterdir()}
    rendered = {app.filename: app.source for item in api.load("specs") for app in api.render(item)}
    assert rendered == written
    assert len(rendered) > len(EXAMPLES)  # the gateway renders several apps


def test_render_of_one_spec_is_what_render_prints(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"specs/{MINILM.name}"
    code, out, err = cli(capsys, "render", target)
    assert code == 0, err
    [loaded] = api.load(target)
    [app] = api.render(loaded)
    assert isinstance(app, api.Rendered)
    assert app.source == out and app.filename == f"{loaded.spec.app}.py"


# -- plan -----------------------------------------------------------------------------------------


def test_plan_json_is_what_plan_offline_format_json_prints(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "plan", "--offline", "--format", "json", "specs")
    assert code == 0, err
    planned = api.plan("specs")
    assert isinstance(planned, api.Plan)
    assert not planned.online and planned.status == "changes"
    assert planned.counts["create"] == len(planned.changes) > len(EXAMPLES)
    assert api.plan_json(planned) == out
    assert api.plan_json(api.plan([])) == out  # no paths: the project's specs/, as the CLI


def test_plan_against_a_recorded_state_updates_deletes_and_replaces(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = project / "recorded.json"
    record_applied(state, *(f"specs/{e.name}" for e in EXAMPLES))
    edit(project / "specs" / MINILM.name, "gpu: L4", "gpu: A10")
    (project / "specs" / GATEWAY.name).unlink()
    [kept] = api.load(f"specs/{EXAMPLES[0].name}")
    replaced = kept.spec.app_names()[0]
    argv = ["plan", "--offline", "--format", "json", "--state", str(state), "specs"]
    code, out, err = cli(capsys, *argv, "--replace", replaced)
    assert code == 0, err
    planned = api.plan("specs", state, replace=[replaced])
    assert {c.action for c in planned.changes} == {"update", "delete", "replace", "no-op"}
    assert api.plan_json(planned) == out
    # The state's path as text plans the same as the Path.
    recorded = api.plan("specs", str(state), replace=[replaced])
    assert api.plan_json(recorded) == api.plan_json(planned)


def test_plan_takes_a_state_value(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = project / "recorded.json"
    record_applied(state, f"specs/{MINILM.name}")
    code, out, err = cli(capsys, "plan", "--offline", "--format", "json", "--state", str(state))
    assert code == 0, err
    from modal_iac.state.store import read_state

    assert api.plan_json(api.plan([], read_state(state))) == out
    assert api.plan([], api.State()).counts["no-op"] == 0


def test_plan_with_an_environment_and_prices(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = project / "specs" / MINILM.name
    spec.write_text(spec.read_text() + "environments:\n  prod:\n    gpu: H100\n")
    prices = project / "prices.json"
    prices.write_text(json.dumps({"prices": {"H100": {"per_hour": 9.0}}}))
    argv = ["plan", "--offline", "--format", "json", "--env", "prod", "--prices", str(prices)]
    code, out, err = cli(capsys, *argv, "--active-hours-per-day", "3", str(spec))
    assert code == 0, err
    planned = api.plan(spec, env="prod")
    [change] = planned.changes
    assert change.address == f"prod/{change.app}"
    assert api.plan_json(planned, prices=str(prices), active_hours_per_day=3) == out


def test_plan_never_asks_modal_even_with_credentials(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Credentials for a Modal API nobody answers: ``plan`` stays offline, as ``--offline``."""
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-test")
    monkeypatch.setenv("MODAL_SERVER_URL", "http://127.0.0.1:9")
    code, out, err = cli(capsys, "plan", "--offline", "--format", "json", "specs")
    assert code == 0, err
    planned = api.plan("specs")
    assert not planned.online and api.plan_json(planned) == out


# -- hostile input --------------------------------------------------------------------------------


def test_a_broken_spec_raises_the_located_error_the_cli_prints(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = project / "specs" / MINILM.name
    edit(spec, "task: embed", "task: chat")
    code, _, err = cli(capsys, "validate", "specs")
    assert code == 1
    for call in (lambda: api.load("specs"), lambda: api.plan("specs")):
        with pytest.raises(api.SpecErrors) as raised:
            call()
        [error] = raised.value.errors
        assert isinstance(error, api.SpecError) and isinstance(error, api.ModaliacError)
        assert (error.path, error.key_path) == (f"specs/{MINILM.name}", "model.task")
        assert error.line is not None and error.column is not None
        assert f"{raised.value}\n" == err
    assert re.match(rf"specs/{re.escape(MINILM.name)}:\d+:\d+: model\.task: ", err)


def test_a_pasted_token_is_refused_without_repeating_it(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = project / "specs" / MINILM.name
    spec.write_text(spec.read_text() + f"labels:\n  team: {HF_TOKEN}\n")
    code, _, err = cli(capsys, "validate", str(spec))
    assert code == 1
    with pytest.raises(api.SpecErrors) as raised:
        api.load(spec)
    assert f"{raised.value}\n" == err
    assert HF_TOKEN not in str(raised.value) and "labels.team" in str(raised.value)
    found = api.validate(spec)
    assert HF_TOKEN not in found.json() and not found.ok


def test_a_path_without_specs_raises_as_the_cli_says(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "empty").mkdir()
    code, _, err = cli(capsys, "validate", "empty")
    assert code == 1
    with pytest.raises(api.SpecError) as raised:
        api.load("empty")
    assert f"{raised.value}\n" == err
    with pytest.raises(api.UsageError):
        api.plan([], project=api.Project(project / "empty", project / "empty"))


# -- docs/api.md ----------------------------------------------------------------------------------


def test_the_example_in_docs_api_md_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The page's example, run in a project ``modaliac init`` wrote, prints what it says."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    assert main(["init"]) == 0
    capsys.readouterr()
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    [example] = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)
    exec(compile(example, "docs/api.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("['bge-small-en-v1-5']\n")
    assert "bge-small-en-v1-5.py " in out
    expected = re.search(r"# (broken\.yaml:\d+:\d+: .*)", example)
    assert expected is not None and out.endswith(expected[1] + "\n")
