"""One spec, several Modal environments: ``environments:`` overrides selected with --env,
through the CLI, with located errors, and a plan/apply of two environments against the local
Modal API (two apps, two environments, one state entry each)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from modal_iac.cli import main
from modal_iac.local_api import LocalModalServer
from modal_iac.state.store import read_state

ROOT = Path(__file__).resolve().parent.parent
SPEC = """\
app: minilm
model:
  id: sentence-transformers/all-MiniLM-L6-v2
  revision: c9745ed1d9f207416be6d2e6f8de32d1f16199bf
  task: embed
gpu: L4
environments:
  dev:
    scaling:
      max_containers: 2
  prod:
    gpu: H100
    scaling:
      min_containers: 1
"""


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    path = tmp_path / "specs" / "minilm.yaml"
    path.parent.mkdir()
    path.write_text(SPEC)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), confirm=lambda question: True)
    out, err = capsys.readouterr()
    return code, out, err


def constant(source: str, name: str) -> str:
    return next(line for line in source.splitlines() if line.startswith(f"{name} = "))


def test_render_per_environment(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rendered = {}
    for env in (None, "dev", "prod"):
        code, out, err = run(capsys, "render", str(spec), *(["--env", env] if env else []))
        assert code == 0, err
        rendered[env] = out
    assert constant(rendered["dev"], "GPU") == 'GPU = "L4"'
    assert constant(rendered["prod"], "GPU") == 'GPU = "H100"'
    assert constant(rendered["dev"], "MIN_CONTAINERS") == "MIN_CONTAINERS = 0"
    assert constant(rendered["prod"], "MIN_CONTAINERS") == "MIN_CONTAINERS = 1"
    assert constant(rendered["dev"], "MAX_CONTAINERS") == "MAX_CONTAINERS = 2"
    assert constant(rendered["prod"], "MAX_CONTAINERS") == "MAX_CONTAINERS = None"
    # without --env the base renders: the L4, and no environment of its own
    assert constant(rendered[None], "GPU") == 'GPU = "L4"'
    assert constant(rendered[None], "MAX_CONTAINERS") == "MAX_CONTAINERS = None"


def test_validate_per_environment(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for env in ("dev", "prod"):
        assert run(capsys, "validate", "--env", env, str(spec)) == (0, f"{spec}: ok (minilm)\n", "")


def test_plan_names_the_environment(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "plan", "--offline", "--env", "prod", "--format", "json")
    assert code == 0, err
    plan = json.loads(out)
    jsonschema.validate(plan, json.loads((ROOT / "docs" / "plan.schema.json").read_text()))
    [change] = plan["changes"]
    assert (change["address"], change["environment"]) == ("prod/minilm", "prod")
    code, out, err = run(capsys, "plan", "--offline", "--env", "dev")
    assert code == 0 and "+ create dev/minilm" in out


def test_the_override_can_name_another_modal_environment(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec.write_text(SPEC.replace("  prod:\n", "  prod:\n    environment: main\n"))
    code, out, err = run(capsys, "plan", "--offline", "--env", "prod")
    assert code == 0 and "+ create main/minilm" in out, err


def test_an_error_in_an_override_is_located_there(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec.write_text(SPEC.replace("      min_containers: 1", "      min_containers: many"))
    for argv in (["validate", str(spec)], ["render", "--env", "dev", str(spec)]):
        code, out, err = run(capsys, *argv)
        assert (code, out) == (1, "")
        assert err == (
            f"{spec}:14:23: environments.prod.scaling.min_containers: expected a whole number, "
            'got "many"\n'
        )


def test_an_unknown_key_in_an_override_gets_a_did_you_mean(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec.write_text(SPEC.replace("    gpu: H100", "    gpus: H100"))
    code, _, err = run(capsys, "validate", str(spec))
    assert code == 1
    assert err.startswith(f'{spec}:12:5: environments.prod.gpus: unknown key "gpus"')
    assert 'did you mean "gpu"' in err


def test_a_combination_the_override_breaks_is_named(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec.write_text(SPEC.replace("gpu: L4\n", "gpu: L4\nsnapshot: gpu\n").replace("H100", "H100:2"))
    code, _, err = run(capsys, "validate", str(spec))
    assert code == 1
    assert err.startswith(f"{spec}:7:11: snapshot: with environment prod: snapshot gpu with 2")


def test_an_override_cannot_set_policy_or_environments(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec.write_text(SPEC + "    policy: {}\n")
    code, _, err = run(capsys, "validate", str(spec))
    assert (code, err) == (
        1,
        f"{spec}:15:5: environments.prod.policy: policy cannot be set per environment\n",
    )


def test_an_unknown_environment_is_one_line(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("validate", "render", "plan"):
        code, out, err = run(capsys, command, "--env", "staging", str(spec))
        assert (code, out) == (1, "")
        assert err == (
            f"{spec}:7:1: environments: no environment 'staging' here; "
            "this spec defines dev, prod\n"
        )


def test_a_spec_without_environments_deploys_to_the_env_named(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec.write_text(SPEC.split("environments:")[0])
    code, out, err = run(capsys, "plan", "--offline", "--env", "prod")
    assert code == 0, err
    assert "+ create prod/minilm" in out
    assert re.search(r"\n    environment += \"prod\"\n", out)
    # A spec that names its own environment is never moved to another one by --env.
    spec.write_text(SPEC.split("environments:")[0] + "environment: staging\n")
    code, out, err = run(capsys, "plan", "--offline", "--env", "prod")
    assert (code, out) == (1, "")
    assert err == (
        f"{spec.relative_to(spec.parent.parent)}:7:14: environment: this spec deploys to "
        "environment 'staging' only, and --env names 'prod'; add an environments: entry for "
        "'prod', or leave --env out\n"
    )
    code, out, err = run(capsys, "plan", "--offline", "--env", "staging")
    assert code == 0 and "+ create staging/minilm" in out, err


# -- one app, one address: two documents of one spec never share one -------------------------

ONE_ADDRESS = "one app has one address"


def test_two_entries_at_one_address_are_refused_naming_both(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """staging deploys to Modal's prod environment, where prod deploys too: every run (any
    --env, or none) refuses the spec, since the two would overwrite each other's settings."""
    spec.write_text(SPEC.replace("  prod:\n", "  staging:\n    environment: prod\n  prod:\n"))
    expected = (
        "specs/minilm.yaml:13:3: environments.prod: deploys prod/minilm, as "
        f"environments.staging does; {ONE_ADDRESS}: give each entry its own environment (or app)\n"
    )
    for argv in (
        ["validate", "specs/minilm.yaml"],
        ["plan", "--offline"],
        ["plan", "--offline", "--env", "dev"],
        ["plan", "--offline", "--env", "prod"],
        ["render", "--env", "staging", "specs/minilm.yaml"],
    ):
        assert run(capsys, *argv) == (1, "", expected), argv
    # The same environment under another app name is another address: nothing to refuse.
    spec.write_text(
        SPEC.replace("  prod:\n", "  staging:\n    environment: prod\n    app: minilm-s\n  prod:\n")
    )
    code, out, err = run(capsys, "plan", "--offline", "--env", "staging")
    assert code == 0 and "+ create prod/minilm-s" in out, err


@pytest.mark.parametrize("chosen_by", ["MODAL_ENVIRONMENT", "profile"])
def test_a_run_without_env_at_an_entrys_address_is_refused(
    spec: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    chosen_by: str,
) -> None:
    """Without --env the base deploys to the environment Modal's settings name; when that is
    dev, the base and the dev: entry would deploy dev/minilm by turns, each undoing the other."""
    if chosen_by == "MODAL_ENVIRONMENT":
        monkeypatch.setenv("MODAL_ENVIRONMENT", "dev")
    else:
        config = tmp_path / "modal.toml"
        config.write_text('[p]\nactive = true\nenvironment = "dev"\n')
        monkeypatch.setenv("MODAL_CONFIG_PATH", str(config))
    code, out, err = run(capsys, "plan", "--offline")
    assert (code, out) == (1, "")
    assert err == (
        "specs/minilm.yaml:8:3: environments.dev: deploys dev/minilm, as a run without --env "
        f"does here (MODAL_ENVIRONMENT or the Modal profile names dev); {ONE_ADDRESS}: pass "
        "--env dev, or choose another environment for runs without --env\n"
    )
    assert not (spec.parent.parent / ".modaliac").exists()
    # With --env the base is not deployed: each entry has its own address.
    for env in ("dev", "prod"):
        code, out, err = run(capsys, "plan", "--offline", "--env", env)
        assert code == 0 and f"+ create {env}/minilm" in out, err


def test_a_base_that_names_an_entrys_environment_is_refused(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec.write_text(SPEC.replace("gpu: L4\n", "gpu: L4\nenvironment: prod\n"))
    expected = (
        "specs/minilm.yaml:12:3: environments.prod: deploys prod/minilm, as a run without --env "
        f"does (the spec's environment is prod); {ONE_ADDRESS}: give the entry another "
        "environment (or app), or leave environment out of the base\n"
    )
    assert run(capsys, "plan", "--offline") == (1, "", expected)
    code, out, err = run(capsys, "plan", "--offline", "--env", "dev")
    assert code == 0 and "+ create dev/minilm" in out, err


def test_the_schema_checks_overrides_like_the_base() -> None:
    schema = json.loads((ROOT / "schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    base = {"app": "a", "model": {"id": "o/m", "task": "embed"}, "gpu": "L4"}
    good = {**base, "environments": {"prod": {"gpu": "H100", "model": {"revision": "abc"}}}}
    assert not list(validator.iter_errors(good))
    bad = {**base, "environments": {"prod": {"gpus": "H100"}}}
    assert list(validator.iter_errors(bad))
    bad = {**base, "environments": {"prod": {"scaling": {"min_containers": "x"}}}}
    assert list(validator.iter_errors(bad))


def test_plan_and_apply_two_environments(
    spec: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    modal_api.state.add_secret("huggingface", ("HF_TOKEN",))
    for env in ("dev", "prod"):  # environments exist in a workspace before deploys use them
        modal_api.state.add_environment(env)
    for env in ("dev", "prod"):
        code, out, err = run(capsys, "apply", "--yes", "--env", env)
        assert code == 0, err
        assert f"create {env}/minilm" in out
    state = read_state(spec.parent.parent / ".modaliac" / "state.json")
    assert sorted(state.apps) == ["dev/minilm", "prod/minilm"]
    creates = modal_api.state.requests("AppCreate")
    assert sorted(r.environment_name for r in creates) == ["dev", "prod"]
    gpus = {
        r.function.resources.gpu_config.gpu_type
        for r in modal_api.state.requests("FunctionCreate")
        if r.function.resources.gpu_config.gpu_type
    }
    assert gpus == {"L4", "H100"}
    # each environment's plan sees only its own app: nothing to change, nothing to delete
    for env in ("dev", "prod"):
        code, out, err = run(capsys, "plan", "--env", env, "--detailed-exitcode")
        assert code == 0, out + err
        assert "delete" not in out
