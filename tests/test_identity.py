"""One identity per app, through the CLI against the local Modal API.

One world: a git project whose spec ``minilm`` is applied three times, to the workspace's
default environment, to ``dev`` and to ``prod`` (all recorded in one state), each app at v2.
Every target form (name, address, spec path) x ``--env`` (none, matching, other) x working
directory (project root, ``specs/``) runs ``destroy`` and ``rollback`` against that world, and
the test asserts which app Modal stopped or rolled back: the one named, or none and one error.
Then planning and diffing from anywhere agree, and names that used to collide stay apart.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from modal_proto import api_pb2

from modal_iac.cli import main
from modal_iac.local_api import LocalModalServer, reset_modal_client
from modal_iac.spec.address import Address
from modal_iac.state.store import read_state

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
app: minilm
model:
  id: sentence-transformers/all-MiniLM-L6-v2
  revision: c9745ed1d9f207416be6d2e6f8de32d1f16199bf
  task: embed
gpu: L4
labels: {round: "1"}
environments:
  dev:
    scaling:
      max_containers: 2
  prod:
    gpu: H100
"""
ENVS = (None, "dev", "prod")
ADDRESSES = {None: "minilm", "dev": "dev/minilm", "prod": "prod/minilm"}
MODAL_ENV = {None: "main", "dev": "dev", "prod": "prod"}  # the local API's default is "main"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), confirm=lambda question: True)
    out, err = capsys.readouterr()
    return code, out, err


def git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=folder,
        check=True,
        capture_output=True,
    )


@dataclass
class World:
    """The arranged world: the project, the server, and how to put both back."""

    root: Path
    api: LocalModalServer
    modal: dict[str, Any]
    state: bytes

    def reset(self) -> None:
        self.api.state.restore(self.modal)
        (self.root / ".modaliac/state.json").write_bytes(self.state)
        self.api.state.clear_calls()

    def deployed(self) -> dict[str | None, tuple[str, int]]:
        """Per environment: the app's state on Modal and its current deployment type."""
        found = {}
        for env in ENVS:
            app = self.api.state.app("minilm", MODAL_ENV[env])
            kind = app.current.deployment_type if app.current else 0
            found[env] = (api_pb2.AppState.Name(app.state), kind)
        return found


UNTOUCHED = {env: ("APP_STATE_DEPLOYED", api_pb2.DEPLOYMENT_TYPE_STANDARD) for env in ENVS}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("identity") / "project"
    (root / "specs").mkdir(parents=True)
    (root / "specs/minilm.yaml").write_text(SPEC)
    git(root, "init", "-q")
    with pytest.MonkeyPatch.context() as mp, LocalModalServer() as api:
        from helpers import isolate_modal_config

        isolate_modal_config(mp, root.parent / "home")
        for key, value in api.env().items():
            mp.setenv(key, value)
        mp.setenv("MODAL_CONFIG_PATH", str(root.parent / "no-modal.toml"))
        mp.delenv("MODALIAC_STATE", raising=False)
        mp.chdir(root)
        reset_modal_client()
        for name in ("dev", "prod"):
            api.state.add_environment(name)
        for label in ("1", "2"):  # two versions of each app, so there is one to roll back to
            (root / "specs/minilm.yaml").write_text(SPEC.replace('"1"', f'"{label}"'))
            for env in ENVS:
                code = main(["apply", "--yes", *(["--env", env] if env else [])])
                assert code == 0, f"apply --env {env} (round {label})"
        reset_modal_client()
        yield World(root, api, api.state.snapshot(), (root / ".modaliac/state.json").read_bytes())
    reset_modal_client()


@pytest.fixture
def world(built: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[World]:
    """The built world, put back as it was, with this test's environment pointing at it."""
    from helpers import isolate_modal_config

    isolate_modal_config(monkeypatch, tmp_path / "home")
    for key, value in built.api.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    built.reset()
    reset_modal_client()
    yield built
    reset_modal_client()
    assert not built.api.state.errors, built.api.state.errors


def test_the_world_holds_three_apps_of_one_spec(world: World) -> None:
    recorded = read_state(world.root / ".modaliac/state.json").apps
    assert {a: r.deployed_version for a, r in recorded.items()} == {
        "minilm": 2,
        "dev/minilm": 2,
        "prod/minilm": 2,
    }
    assert {a: r.spec_path for a, r in recorded.items()} == dict.fromkeys(
        recorded, "specs/minilm.yaml"
    )
    assert world.deployed() == UNTOUCHED


# -- destroy and rollback: target form x --env x working directory --------------------------

SPEC_ERROR = "no environment 'staging' here; this spec defines dev, prod"
CASES = [
    # (target form, target, --env, the environment acted on, or the error's start)
    ("name", "minilm", None, None),
    ("name", "minilm", "dev", "dev"),
    (
        "name",
        "minilm",
        "staging",
        "staging/minilm: not recorded in the state; recorded in environment staging: nothing "
        "(the same app name is recorded as dev/minilm, minilm, prod/minilm)",
    ),
    ("address", "dev/minilm", None, "dev"),
    ("address", "prod/minilm", "prod", "prod"),
    (
        "address",
        "dev/minilm",
        "prod",
        "dev/minilm: the address names environment 'dev' and --env names 'prod'; give one",
    ),
    ("spec", "SPEC", None, None),
    ("spec", "SPEC", "prod", "prod"),
    ("spec", "SPEC", "staging", "SPEC:8:1: environments: " + SPEC_ERROR),
]


def _case_ids() -> list[str]:
    return [f"{form}-{env or 'no-env'}" for form, _, env, _ in CASES]


@pytest.mark.parametrize("where", ["root", "specs"])
@pytest.mark.parametrize(("form", "target", "env", "expected"), CASES, ids=_case_ids())
@pytest.mark.parametrize("command", ["destroy", "rollback"])
def test_a_target_acts_on_exactly_the_app_it_names(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    form: str,
    target: str,
    env: str | None,
    expected: str | None,
    where: str,
) -> None:
    cwd = world.root if where == "root" else world.root / "specs"
    monkeypatch.chdir(cwd)
    spec = os.path.relpath(world.root / "specs/minilm.yaml", cwd)
    target = target.replace("SPEC", spec)
    argv = [command, target, *(["--env", env] if env else [])]
    if command == "destroy":
        argv.append("--yes")
    code, out, err = cli(capsys, *argv)
    after = read_state(world.root / ".modaliac/state.json").apps
    if expected is not None and expected not in ENVS:  # an error: nothing anywhere changed
        assert (code, err) == (1, expected.replace("SPEC", spec) + "\n"), out
        assert world.deployed() == UNTOUCHED
        assert set(after) == set(ADDRESSES.values())
        assert world.api.state.requests("AppStop") == []
        assert world.api.state.requests("AppRollback") == []
        return
    assert code == 0, err
    acted = expected
    wanted = dict(UNTOUCHED)
    if command == "destroy":
        wanted[acted] = ("APP_STATE_STOPPED", api_pb2.DEPLOYMENT_TYPE_STANDARD)
        assert set(after) == set(ADDRESSES.values()) - {ADDRESSES[acted]}
    else:
        wanted[acted] = ("APP_STATE_DEPLOYED", api_pb2.DEPLOYMENT_TYPE_ROLLBACK)
        assert after[ADDRESSES[acted]].deployed_version == 3
    assert world.deployed() == wanted
    assert out.splitlines()[-1].startswith(f"{ADDRESSES[acted]}: ")


def test_destroy_of_a_gone_app_never_falls_back_to_another_environment(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "destroy", "minilm", "--env", "dev", "--yes")[0] == 0
    code, _, err = cli(capsys, "destroy", "minilm", "--env", "dev", "--yes")
    assert code == 1
    assert err == (
        "dev/minilm: not recorded in the state; recorded in environment dev: nothing (the same "
        "app name is recorded as minilm, prod/minilm)\n"
    )
    assert world.deployed()[None] == UNTOUCHED[None]  # the default environment's app runs on
    assert world.deployed()["prod"] == UNTOUCHED["prod"]


def test_state_show_and_url_name_the_same_app(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(world.root / "specs")
    for argv, address in (
        (["state", "show", "minilm.yaml", "--env", "prod"], "prod/minilm"),
        (["state", "show", "prod/minilm"], "prod/minilm"),
        (["state", "show", "minilm"], "minilm"),
    ):
        code, out, err = cli(capsys, *argv)
        assert code == 0, err
        shown = json.loads(out)
        assert str((shown["environment"] + "/" if shown["environment"] else "") + "minilm") == (
            address
        )
    code, _, err = cli(capsys, "state", "show", "minilm", "--env", "staging")
    assert code == 1 and err.startswith("staging/minilm: not recorded in the state")
    # url looks the address up on Modal as it is, in its own environment
    code, _, err = cli(capsys, "url", "minilm.yaml", "--env", "dev")
    assert (code, err) == (1, "dev/minilm: no web endpoint (is surfaces.http on?)\n")
    code, _, err = cli(capsys, "url", "other", "--env", "dev")
    assert (code, err) == (1, "app 'dev/other' is not deployed\n")


# -- planning and diffing from anywhere -------------------------------------------------------


@pytest.mark.parametrize("where", ["root", "specs"])
@pytest.mark.parametrize("env", ENVS)
def test_planning_from_a_subfolder_plans_the_same_and_never_deletes_other_environments(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
    env: str | None,
) -> None:
    monkeypatch.chdir(world.root if where == "root" else world.root / "specs")
    target = "specs" if where == "root" else "."
    flag = ["--env", env] if env else []
    code, out, err = cli(capsys, "plan", target, *flag, "--format", "json", "--detailed-exitcode")
    assert code == 0, err + out
    plan = json.loads(out)
    assert [(c["action"], c["address"]) for c in plan["changes"]] == [("no-op", ADDRESSES[env])]
    assert plan["changes"][0]["spec"]["path"] == "specs/minilm.yaml"
    code, out, err = cli(capsys, "diff", target, *flag, "--exit-code")
    assert (code, out) == (0, f"Unchanged: {ADDRESSES[env]}\nNo differences.\n"), err


@pytest.mark.parametrize("chosen_by", ["--env", "MODAL_ENVIRONMENT", "profile"])
def test_a_removed_spec_is_deleted_in_the_planned_environment_only(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    chosen_by: str,
) -> None:
    """However the run's environment is chosen (the flag, Modal's variable or its profile),
    a removed spec's app goes in that environment and in no other."""
    (world.root / "specs/minilm.yaml").rename(world.root / "minilm.yaml.away")
    # keep.yaml has no environments: entries: under MODAL_ENVIRONMENT=dev, a dev: entry would
    # put its app at the base's address (refused: one app, one address).
    keep_spec = SPEC.split("environments:")[0].replace("app: minilm", "app: keep")
    (world.root / "specs/keep.yaml").write_text(keep_spec)
    try:
        monkeypatch.chdir(world.root / "specs")
        for env in ENVS:
            flag = ["--env", env] if env and chosen_by == "--env" else []
            monkeypatch.delenv("MODAL_ENVIRONMENT", raising=False)
            if env and chosen_by == "MODAL_ENVIRONMENT":
                monkeypatch.setenv("MODAL_ENVIRONMENT", env)
            if chosen_by == "profile":
                config = tmp_path / "modal.toml"
                config.write_text(f'[p]\nactive = true\nenvironment = "{env or ""}"\n')
                monkeypatch.setenv("MODAL_CONFIG_PATH", str(config))
            code, out, err = cli(capsys, "plan", ".", *flag, "--format", "json")
            assert code == 0, err
            actions = {c["address"]: c["action"] for c in json.loads(out)["changes"]}
            keep = f"{env}/keep" if env else "keep"
            assert actions == {keep: "create", ADDRESSES[env]: "delete"}
            _, out, _ = cli(capsys, "diff", ".", *flag)
            assert f"- {ADDRESSES[env]}  (minilm.yaml)" in out
            others = set(ADDRESSES.values()) - {ADDRESSES[env]}
            assert not any(f"- {other} " in out for other in others)
    finally:
        (world.root / "specs/keep.yaml").unlink()
        (world.root / "minilm.yaml.away").rename(world.root / "specs/minilm.yaml")


def test_a_removed_spec_that_named_its_environment_is_deleted_there_by_runs_without_env(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The spec chose prod; once it is gone, a run over its folder that chooses no
    environment of its own (--env) deletes it, even when no other spec names prod."""
    monkeypatch.chdir(world.root)
    pinned = world.root / "specs/pinned.yaml"
    pinned.write_text(
        SPEC.split("environments:")[0].replace("app: minilm", "app: pinned") + "environment: prod\n"
    )
    try:
        assert cli(capsys, "apply", "--yes", "specs/pinned.yaml")[0] == 0
    finally:
        pinned.unlink()
    for how, flag, expected in (
        ("plain", [], "delete"),
        ("profile", [], "delete"),
        ("--env", ["--env", "dev"], None),
    ):
        monkeypatch.delenv("MODAL_ENVIRONMENT", raising=False)
        if how == "profile":  # not dev: minilm.yaml's dev entry would share the base's address
            world.api.state.add_environment("staging")
            monkeypatch.setenv("MODAL_ENVIRONMENT", "staging")
        code, out, err = cli(capsys, "plan", "specs", *flag, "--format", "json")
        assert code == 0, err
        actions = {c["address"]: c["action"] for c in json.loads(out)["changes"]}
        assert actions.get("prod/pinned") == expected, how
        assert not any(a == "delete" for k, a in actions.items() if k != "prod/pinned"), how


@pytest.mark.parametrize("where", ["specs/.drafts/x.yaml", "specs/X.YAML", "specs/linked/x.yaml"])
def test_a_spec_the_folder_scan_skips_is_never_planned_for_deletion(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    where: str,
) -> None:
    """A spec applied by name from where a folder's scan does not look (a hidden folder, an
    upper-case suffix, a linked folder) is still there: planning the folder keeps its app
    and says why, rather than stopping it."""
    monkeypatch.chdir(world.root)
    spec = SPEC.split("environments:")[0].replace("app: minilm", "app: aside")
    if where.startswith("specs/linked/"):
        (tmp_path / "outside").mkdir()
        (tmp_path / "outside/x.yaml").write_text(spec)
        (world.root / "specs/linked").symlink_to(tmp_path / "outside")
    else:
        (world.root / where).parent.mkdir(exist_ok=True)
        (world.root / where).write_text(spec)
    try:
        code, out, err = cli(capsys, "apply", "--yes", where)
        assert code == 0, err + out
        code, out, err = cli(capsys, "plan", "specs", "--format", "json", "--detailed-exitcode")
        assert code == 0, err + out
        plan = json.loads(out)
        assert [c["action"] for c in plan["changes"]] == ["no-op"]
        [warning] = [w for w in plan["warnings"] if w["address"] == "aside"]
        assert warning["code"] == "out-of-view"
        assert f"its spec {where} is still there" in warning["message"]
        code, out, err = cli(capsys, "apply", "--yes", "specs")
        assert code == 0, err + out
        assert world.api.state.app("aside", "main").state == api_pb2.APP_STATE_DEPLOYED
        _, out, _ = cli(capsys, "diff", "specs")
        assert "- aside" not in out
    finally:
        for made in ("specs/.drafts", "specs/linked"):
            path = world.root / made
            if path.is_symlink():
                path.unlink()
            elif path.exists():
                shutil.rmtree(path)
        (world.root / "specs/X.YAML").unlink(missing_ok=True)


def test_a_stray_state_in_a_subfolder_is_named_and_not_used(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stray = world.root / "specs/.modaliac"
    stray.mkdir()
    (stray / "state.json").write_text('{"format": "modaliac-state", "version": 2, "apps": {}}')
    try:
        monkeypatch.chdir(world.root / "specs")
        code, out, err = cli(capsys, "plan", ".", "--offline")
        assert code == 0
        assert "Unchanged: minilm" in out
        assert err == (
            "warning: .modaliac/state.json is not this project's state; using "
            "../.modaliac/state.json (the project root's); pass --state to use the other\n"
        )
    finally:
        shutil.rmtree(stray)


# -- names that used to collide ---------------------------------------------------------------

TWIN = """\
app: {app}
model:
  id: {model}
  revision: c9745ed1d9f207416be6d2e6f8de32d1f16199bf
  task: embed
gpu: L4
{extra}"""


def test_apps_whose_names_differ_in_punctuation_or_environment_keep_their_own_code(
    modal_api: LocalModalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    modal_api.state.add_environment("dev")
    twins = {
        ("emb-a", None): "org/model-dash",
        ("emb_a", None): "org/model-underscore",
        ("emb.a", None): "org/model-dot",
        ("Emb-a", None): "org/model-capital",
        ("emb-a", "dev"): "org/model-dev",
    }
    (tmp_path / "specs").mkdir()
    for index, ((app, env), model) in enumerate(twins.items()):
        extra = f"environment: {env}\n" if env else ""
        text = TWIN.format(app=app, model=model, extra=extra)
        (tmp_path / f"specs/s{index}.yaml").write_text(text)
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err + out
    for (app, env), model in twins.items():
        files = modal_api.state.app_files(app, env or "")
        sources = [data.decode() for name, data in files.items() if name.endswith(".py")]
        assert len(sources) == 1, (app, env, list(files))
        assert f'MODEL_ID = "{model}"' in sources[0], (app, env)
    built = sorted(p.name for p in (tmp_path / ".modaliac/build").iterdir())
    assert len(built) == len(twins) == len({name.lower() for name in built})
    code, out, _ = cli(capsys, "plan", "--detailed-exitcode")
    assert code == 0 and "No changes." in out


# -- the module name is an injective encoding of the address ----------------------------------

_DECODE = {"0": "_", "1": "-", "2": "."}


def _decoded(module: str) -> tuple[str | None, str]:
    """Read a module name back into (environment, app): the encoding is invertible."""
    body = module.removeprefix("modaliac_")
    parts: list[str] = [""]
    index = 0
    while index < len(body):
        char = body[index]
        if char != "_":
            parts[-1] += char
            index += 1
            continue
        code = body[index + 1]
        if code == "_":
            parts.append("")
        else:
            parts[-1] += _DECODE.get(code) or code.upper()
        index += 2
    environment, app = parts
    return environment or None, app


_APP = st.from_regex(r"\A[a-zA-Z0-9._-]{1,64}\Z")
_ENV = st.none() | st.from_regex(r"\A[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}\Z")


@settings(max_examples=400, deadline=None)
@given(_ENV, _APP, _ENV, _APP)
def test_module_names_are_unique_per_address_even_ignoring_case(
    env_a: str | None, app_a: str, env_b: str | None, app_b: str
) -> None:
    a, b = Address(env_a, app_a), Address(env_b, app_b)
    for address in (a, b):
        name = address.module_name
        assert name.isidentifier() and len(name) <= 150
        if "__" in name:  # the readable encoding; a name too long for a file is a hash
            assert _decoded(name) == (address.environment, address.app)
        else:
            assert name.startswith("modaliac_h") and len(str(address)) > 60
    if a != b:
        assert a.module_name.lower() != b.module_name.lower()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MODAL_ENVIRONMENT", "../prod", "MODAL_ENVIRONMENT: '../prod' is not a Modal environment"),
        ("MODAL_ENVIRONMENT", "a" * 65, "MODAL_ENVIRONMENT: 'aaaaaaaa"),
        ("MODAL_ENVIRONMENT", "dev\nprod", "MODAL_ENVIRONMENT: 'dev?prod' is not a Modal"),
        (
            "MODAL_ENVIRONMENT",
            "sk-" + "AbCdEf0123456789XyZ!",
            "MODAL_ENVIRONMENT: (a value that looks like an API key (sk-...), not shown) is not",
        ),
        ("MODALIAC_STATE", "state\x1b[2J.json", "MODALIAC_STATE: 'state?[2J.json' holds a co"),
        ("MODALIAC_STATE", "state\n.json", "MODALIAC_STATE: 'state?.json' holds a control ch"),
    ],
    ids=["path", "too-long", "newline", "token", "state-escape", "state-newline"],
)
def test_a_hostile_profile_environment_is_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs/minilm.yaml").write_text(SPEC)
    monkeypatch.setenv(variable, value)
    for argv in (["plan", "--offline"], ["state", "rm", "minilm"], ["state", "show", "x"]):
        code, out, err = cli(capsys, *argv)
        assert (code, out) == (1, ""), argv
        assert err.startswith(expected) and len(err.splitlines()) == 1, (argv, err)
        assert "sk-AbCd" not in err


def test_the_profile_environment_places_apps_that_name_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Modal profile's environment is the last resort, read as modal 1.6.4 reads it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs/minilm.yaml").write_text(SPEC.split("environments:")[0])
    config = tmp_path / "modal.toml"
    config.write_text(
        '[work]\nactive = true\nenvironment = "staging"\n[other]\nenvironment = "x"\n'
    )
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(config))
    _, out, _ = cli(capsys, "plan", "--offline", "--format", "json")
    assert [c["address"] for c in json.loads(out)["changes"]] == ["staging/minilm"]
    monkeypatch.setenv("MODAL_PROFILE", "other")
    _, out, _ = cli(capsys, "plan", "--offline", "--format", "json")
    assert [c["address"] for c in json.loads(out)["changes"]] == ["x/minilm"]
    monkeypatch.setenv("MODAL_ENVIRONMENT", "dev")  # the variable wins, as it does for Modal
    _, out, _ = cli(capsys, "plan", "--offline", "--format", "json")
    assert [c["address"] for c in json.loads(out)["changes"]] == ["dev/minilm"]
    code, out, err = cli(capsys, "plan", "--offline", "--env", "prod", "--format", "json")
    assert code == 0, err  # --env names the environment outright
    assert [c["address"] for c in json.loads(out)["changes"]] == ["prod/minilm"]


def cli_or_usage(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``cli``, or argparse's exit status where it refuses the arguments (a usage error)."""
    try:
        return cli(capsys, *argv)
    except SystemExit as exc:
        out, err = capsys.readouterr()
        return int(exc.code or 0), out, err


HF_SHAPED = "hf_" + "iKZWeqhFWCEPyYngFbyBMWXaSCrUZoLgub"  # letters, digits and "_": a valid name


@pytest.mark.parametrize(
    ("argv", "environment", "status"),
    [
        (["plan", "--offline", "--env", HF_SHAPED], None, 2),
        (["plan", "--offline"], HF_SHAPED, 1),
        (["state", "show", HF_SHAPED], None, 1),
        (["state", "rm", f"dev/{HF_SHAPED}"], None, 1),
        (["state", "show", f"{HF_SHAPED}/minilm"], None, 1),
        (["plan", "--offline", f"specs/{HF_SHAPED}.yaml"], None, 1),
        ([HF_SHAPED], None, 2),
        (["plan", "--offline", "--format", HF_SHAPED], None, 2),
    ],
    ids=[
        "--env",
        "MODAL_ENVIRONMENT",
        "app",
        "address",
        "environment",
        "path",
        "command",
        "choice",
    ],
)
def test_a_token_shaped_name_is_refused_and_never_echoed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    environment: str | None,
    status: int,
) -> None:
    """A secret pasted where a name goes is a valid-looking Modal name: it is refused (or not
    found) in one line that names its kind, never repeats it, and writes nothing."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs/minilm.yaml").write_text(SPEC)
    if environment is not None:
        monkeypatch.setenv("MODAL_ENVIRONMENT", environment)
    code, out, err = cli_or_usage(capsys, *argv)
    assert (code, out) == (status, ""), err
    assert HF_SHAPED not in err and HF_SHAPED[3:20] not in err
    last = err.splitlines()[-1]
    assert "a Hugging Face token" in last, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["specs"]


def test_error_lines_never_carry_control_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file name or an argument holding escape sequences cannot clear the screen, retitle
    the terminal or rewrite the line through an error message."""
    monkeypatch.chdir(tmp_path)
    hostile = "\x1b]0;owned\x07\x1b[2J\rspecs\x9b"
    for argv in (["plan", "--offline", hostile], [hostile], ["state", "show", hostile]):
        code, out, err = cli_or_usage(capsys, *argv)
        assert code in (1, 2) and out == "", argv
        assert not any(c in err for c in "\x1b\x07\r\x9b"), (argv, err)
        assert "owned" in err, (argv, err)  # shown, harmless: "?" or argparse's repr escapes


@pytest.mark.parametrize(
    "argv",
    [
        ["destroy", "bad%name", "--yes"],
        ["destroy", "nothere", "--yes"],
        ["rollback", "dev/nothere", "--yes"],
        ["state", "rm", "nothere"],
        ["state", "mv", "nothere", "elsewhere"],
        ["import", "nothere"],
        ["apply", "--yes", "specs/nope.yaml"],
        ["apply", "--yes", "--replace", "nothere"],
    ],
    ids=lambda argv: "-".join(argv[:2]),
)
def test_a_refused_target_writes_nothing_not_even_the_lock(
    modal_api: LocalModalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    """What needs no lock is checked before it is taken: a new project keeps no .modaliac/
    after a mistyped target, and Modal is asked to change nothing."""
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    (project / "specs/minilm.yaml").write_text(SPEC)
    monkeypatch.chdir(project)
    code, _, err = cli_or_usage(capsys, *argv)
    assert code == 1 and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in project.iterdir()) == ["specs"]
    for rpc in ("AppStop", "AppRollback", "AppCreate", "AppPublish"):
        assert modal_api.state.requests(rpc) == [], rpc


@pytest.mark.parametrize("command", [["plan", "--offline"], ["validate"], ["fmt", "--check"]])
def test_a_spec_file_named_with_an_escape_sequence_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    """Plans print the spec's path (and PR comments carry it): a file name holding control
    characters is one line naming it with "?" and nothing else is printed."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "a\x1b[31mb.yaml").write_text(SPEC)
    code, out, err = cli_or_usage(capsys, *command, "specs")
    assert (code, out) == (1, ""), (out, err)
    assert err == "specs/a?[31mb.yaml: the file's name holds a control character; rename the file\n"


def test_a_spec_file_named_like_a_secret_is_refused_without_repeating_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON reports carry a spec's path as it is: a file named like a token is refused, the
    token named by its kind there too."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / f"{HF_SHAPED}.yaml").write_text(SPEC)
    code, out, err = cli_or_usage(capsys, "validate", "--format", "json", "specs")
    assert code == 1 and HF_SHAPED[3:20] not in out + err
    [problem] = json.loads(out)["problems"]
    assert problem["path"] == "specs/(a value that looks like a Hugging Face token, not shown).yaml"
    assert "rename it" in problem["message"]


# -- what is a spec path ----------------------------------------------------------------------


def test_a_file_named_like_an_address_never_shadows_the_address(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target is a spec path by its suffix alone: a stray file ``prod/minilm`` in the
    working directory does not turn the address into a path."""
    (world.root / "prod").mkdir()
    (world.root / "prod/minilm").write_text(SPEC)
    try:
        code, out, err = cli(capsys, "state", "show", "prod/minilm")
        assert code == 0, err
        assert json.loads(out)["environment"] == "prod"
        code, _, err = cli(capsys, "state", "show", "prod/other")
        assert code == 1
        assert err.startswith("prod/other: not recorded in the state")
        (world.root / "prod/other").write_text(SPEC)
        code, _, err = cli(capsys, "state", "show", "prod/other")
        assert code == 1
        assert err.endswith(
            "('prod/other' on disk is not read: a spec file's name ends in .yaml or .yml)\n"
        )
    finally:
        shutil.rmtree(world.root / "prod")


@pytest.mark.parametrize("target", ["", " "])
@pytest.mark.parametrize("command", ["plan", "diff", "state show"])
def test_an_empty_target_is_a_usage_error(
    world: World, capsys: pytest.CaptureFixture[str], command: str, target: str
) -> None:
    code, out, err = cli(capsys, *command.split(), target)
    assert code == 2, out + err
    assert "an empty target" in err and "Traceback" not in err


def test_a_folder_named_like_a_spec_is_refused_not_skipped(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder ``specs/minilm.yaml`` (the applied spec's name) is an error, never a spec
    quietly gone whose apps the plan would delete."""
    spec = world.root / "specs/minilm.yaml"
    text = spec.read_text()
    spec.unlink()
    spec.mkdir()
    try:
        for argv in (["plan"], ["plan", "specs/minilm.yaml"], ["diff"]):
            code, out, err = cli(capsys, *argv)
            assert code == 1, (argv, out, err)
            assert "directory" in err and "delete" not in out, (argv, out, err)
    finally:
        spec.rmdir()
        spec.write_text(text)


@pytest.mark.parametrize("name", [".", ".."])
def test_an_app_named_like_a_folder_is_refused(
    world: World, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    spec = world.root / "specs/dots.yaml"
    spec.write_text(SPEC.split("environments:")[0].replace("app: minilm", f'app: "{name}"'))
    try:
        code, _, err = cli(capsys, "validate", "specs/dots.yaml")
        assert (code, err) == (
            1,
            f"specs/dots.yaml:1:6: app: {name!r} names a folder, not an app; name the app in "
            "letters or digits\n",
        )
    finally:
        spec.unlink()
    for target in (name, f"prod/{name}"):
        code, _, err = cli(capsys, "state", "show", target)
        assert code == 1 and err.startswith(f"{target!r}: not an app name or address"), err
        assert "never '.' or '..' alone" in err


# -- an app name ending like a spec path could never be named on the command line ------------

SPEC_LIKE = "'{name}' ends in {suffix}, and a command-line target ending in .yaml or .yml is a "
SPEC_LIKE += "spec file's path, so no command could name this app; "


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project of its own: one spec, nothing applied, no Modal."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs/minilm.yaml").write_text(SPEC)
    git(tmp_path, "init", "-q")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    return tmp_path


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_a_spec_cannot_name_an_app_like_a_spec_path(
    bare: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    spec = bare / "specs/minilm.yaml"
    name = f"minilm{suffix}"
    spec.write_text(SPEC.replace("app: minilm", f"app: {name}"))
    code, out, err = cli(capsys, "plan", "--offline")
    advice = "name the app without .yaml or .yml\n"
    assert (code, out, err) == (
        1,
        "",
        f"specs/minilm.yaml:1:6: app: {SPEC_LIKE.format(name=name, suffix=suffix)}{advice}",
    )
    # ... nor can an environment's override (located there), nor a gateway's app_name pattern
    spec.write_text(SPEC.replace("    gpu: H100\n", f"    app: prod{suffix}\n"))
    code, _, err = cli(capsys, "validate", "specs/minilm.yaml")
    assert code == 1
    assert err == (
        f"specs/minilm.yaml:13:10: environments.prod.app: "
        f"{SPEC_LIKE.format(name='prod' + suffix, suffix=suffix)}{advice}"
    )
    gateway = (ROOT / "examples/gpu-gateway.yaml").read_text()
    spec.write_text(
        gateway.replace("name: vllm\n", f'name: vllm\napp_name: "{{name}}-{{gpu}}{suffix}"\n')
    )
    code, _, err = cli(capsys, "validate", "specs/minilm.yaml")
    assert code == 1
    assert err.startswith("specs/minilm.yaml:10:11: app_name: 'vllm-rtx-pro-6000")
    assert f"ends in {suffix}," in err and err.endswith("; change the pattern\n")


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_import_and_state_mv_cannot_record_an_app_named_like_a_spec_path(
    bare: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    from helpers import record_applied

    state = bare / ".modaliac/state.json"
    record_applied(state, "specs/minilm.yaml")
    before = state.read_bytes()
    for argv, role, advice in [
        (["import", f"hand{suffix}"], "import", "modaliac cannot manage an app of that name"),
        (["import", f"dev/hand{suffix}"], "import", "modaliac cannot manage an app of that name"),
        (["state", "mv", "minilm", f"minilm{suffix}"], "state mv NEW", "name the app without"),
    ]:
        code, out, err = cli(capsys, *argv)
        name = argv[-1].rpartition("/")[2]
        assert (code, out) == (1, ""), err
        assert err.startswith(f"{role}: {SPEC_LIKE.format(name=name, suffix=suffix)}{advice}")
        assert err.count("\n") == 1
        assert state.read_bytes() == before  # nothing recorded
    # A state an older modaliac wrote may hold such a name: state mv OLD still moves it away.
    document = json.loads(before)
    document["apps"] = {f"minilm{suffix}": document["apps"]["minilm"] | {"app": f"minilm{suffix}"}}
    state.write_text(json.dumps(document))
    code, out, err = cli(capsys, "state", "mv", f"minilm{suffix}", "minilm")
    assert code == 0, err
    assert set(read_state(state).apps) == {"minilm"}
