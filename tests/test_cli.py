"""The CLI end to end: validate, render, plan (text, JSON, Markdown), exit codes and colour."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import record_applied

from modal_iac import __version__
from modal_iac.cli import main
from modal_iac.commands.console import wants_color as _wants_color
from modal_iac.loading.load import load_spec
from modal_iac.render.app import render
from modal_iac.spec.address import Project

ROOT = Path(__file__).resolve().parent.parent
KALM = ROOT / "specs" / "kalm.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder holding specs/ with the KaLM spec and one example, as cwd."""
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(KALM, specs / "kalm.yaml")
    shutil.copy(ROOT / "examples" / "small-embedding-no-snapshot.yaml", specs / "minilm.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


# -- help, version ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "validate",
        "render",
        "plan",
        "apply",
        "diff",
        "destroy",
        "import",
        "rollback",
        "state",
        "schema",
    ],
)
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: modaliac {command}" in capsys.readouterr().out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "--format", "yaml"])
    assert exit_info.value.code == 2


# -- validate -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-5", "soon", "inf"])
@pytest.mark.parametrize("option", ["--deploy-timeout", "--no-progress-timeout"])
def test_apply_timeouts_must_be_positive_seconds(
    capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["apply", option, value])
    assert exit_info.value.code == 2
    assert "seconds" in capsys.readouterr().err


# -- a reader that leaves early ---------------------------------------------------------------

THIS_CHECKOUT = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}


@pytest.mark.parametrize("lines", ["0", "1"])
def test_a_plan_piped_into_head_ends_quietly(workdir: Path, lines: str) -> None:
    """``modaliac plan | head -n N``: a reader that leaves before the plan is written (N = 0)
    or while it is (N = 1) ends modaliac as SIGPIPE ends other tools, with status 141 at
    worst, and never a traceback or an "internal error" on stderr."""
    example = (ROOT / "examples" / "small-embedding-no-snapshot.yaml").read_text()
    for i in range(40):  # a plan longer than a pipe holds, written while head reads
        name = f"app-{i:02d}"
        spec = example.replace("app: minilm-embedding", f"app: {name}", 1)
        (workdir / "specs" / f"{name}.yaml").write_text(spec)
    pipeline = (
        f"{shlex.quote(sys.executable)} -m modal_iac.cli plan --offline 2> err.txt | head -n "
        f'{lines}; echo "modaliac exited ${{PIPESTATUS[0]}}"'
    )
    result = subprocess.run(
        ["bash", "-c", pipeline], cwd=workdir, capture_output=True, text=True, env=THIS_CHECKOUT
    )
    *shown, status = result.stdout.splitlines()
    assert shown == ([] if lines == "0" else ["+ create app-00  (specs/app-00.yaml)"])
    assert status in ("modaliac exited 0", "modaliac exited 141")  # 0: it wrote all in time
    assert (workdir / "err.txt").read_text() == ""
    if lines == "0":
        assert status == "modaliac exited 141"


def test_validate_accepts_every_bundled_spec(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", str(ROOT / "examples"))
    assert code == 0, err
    assert out.count(": ok (") == len(EXAMPLES)


def test_validate_refuses_one_app_defined_twice(capsys: pytest.CaptureFixture[str]) -> None:
    # examples/ reproduces specs/kalm.yaml under the same app name: one workspace can't hold both.
    code, _, err = run(capsys, "validate", str(KALM), str(ROOT / "examples"))
    assert code == 1
    assert "app 'kalm-embedding' is also defined in" in err


def test_validate_missing_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", "nowhere.yaml")
    assert code == 1
    assert err == "nowhere.yaml: no such file\n"
    assert out == ""


# -- render -------------------------------------------------------------------------------


def test_render_to_stdout_is_the_generated_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "render", str(KALM))
    assert code == 0
    assert out == render(load_spec(str(KALM), project=Project.here())).source
    # the header names the spec as the project records it, however the user typed the path
    assert out.startswith('# Generated by modaliac 0.1.0 from "specs/kalm.yaml" (sha256:')
    assert "class VLLMEmbeddingSnapshot:" in out


def test_render_writes_one_file_per_app(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_dir = tmp_path / "build"
    code, out, _ = run(capsys, "render", str(KALM), str(EXAMPLES[0]), "-o", str(out_dir))
    assert code == 0
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == sorted([f"{load_spec(str(p)).spec.app}.py" for p in (KALM, EXAMPLES[0])])
    assert out.count("wrote ") == 2


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        ("app: kalm-embedding\nenvironment: dev", "app: kalm-embedding\nenvironment: prod", ""),
        ("app: kalm-embedding", "app: Kalm-Embedding", "one file on a case-insensitive disk"),
    ],
    ids=["one-app-two-environments", "names-differing-in-case"],
)
def test_render_refuses_two_apps_that_would_share_one_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, first: str, second: str, shared: str
) -> None:
    """The second file would replace the first (or be the same file on macOS): deploying
    it would deploy the other app's code. Nothing is written."""
    text = KALM.read_text(encoding="utf-8")
    assert text.count("app: kalm-embedding\n") == 1
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.yaml").write_text(text.replace("app: kalm-embedding", first), encoding="utf-8")
    (specs / "b.yaml").write_text(text.replace("app: kalm-embedding", second), encoding="utf-8")
    out_dir = tmp_path / "build"
    code, out, err = run(capsys, "render", str(specs), "-o", str(out_dir))
    assert code == 1 and out == ""
    [line] = err.splitlines()
    assert line.startswith(f"{specs / 'b.yaml'}: render: ")
    assert str(specs / "a.yaml") in line and "separate -o folders" in line
    assert shared in line
    if not shared:
        assert "prod/kalm-embedding and dev/kalm-embedding" in line
    assert not out_dir.exists()


def test_render_several_specs_to_stdout_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "render", str(KALM), str(EXAMPLES[0]))
    assert code == 2
    assert "-o DIR" in err


def test_render_explain_marks_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "render", "--explain", str(KALM))
    assert code == 0
    lines = {line.split(" = ")[0].strip(): line for line in out.splitlines() if " = " in line}
    assert lines["scaling.startup_timeout"].endswith('"20m"  (default)')
    # Resolved from snapshot: gpu, not written in the spec.
    assert lines["engine.enforce_eager"].endswith("true  (default)")
    assert lines["scaling.scaledown_window"].endswith('"5m"')  # set in the spec
    assert lines["model.embedding.pooling"].endswith('"last"')
    assert "# vllm serve tencent/KaLM-Embedding-Gemma3-12B-2511 " in out
    assert "--runner=pooling" in out and "--convert=embed" in out


BATCHING_SPEC = """\
app: chat
model: {id: org/chat, task: generate}
gpu: L4
hf_token_secret: hf
surfaces:
  http: {api_key_secret: chat-key}
"""


def explained(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[dict[str, str], str]:
    code, out, err = run(capsys, "render", "--explain", str(path))
    assert code == 0, err
    return {line.split(" = ")[0].strip(): line for line in out.splitlines() if " = " in line}, out


def test_explain_shows_the_server_concurrency_vllm_batches_and_the_secrets_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "chat.yaml"
    spec.write_text(BATCHING_SPEC)
    lines, out = explained(capsys, spec)
    assert lines["scaling.concurrency"].endswith("= 32  (default)")
    assert lines["surfaces.class"].endswith("= null  (default)")  # only listed ones render
    assert lines["surfaces.downloader"].endswith("= null  (default)")
    assert "# secret hf: must hold HF_TOKEN\n# secret chat-key: must hold VLLM_API_KEY\n" in out
    spec.write_text(BATCHING_SPEC + "engine: {max_num_seqs: 8}\nsecrets: [wandb]\n")
    lines, out = explained(capsys, spec)
    assert lines["scaling.concurrency"].endswith("= 8  (default)")
    assert "# secret wandb: keys not checked\n" in out
    spec.write_text(BATCHING_SPEC + "scaling: {concurrency: 4}\n")
    assert explained(capsys, spec)[0]["scaling.concurrency"].endswith("= 4")
    rendered = render(load_spec(spec)).source
    assert "@modal.concurrent(max_inputs=CONCURRENCY)" in rendered and "CONCURRENCY = 4" in rendered


def test_explain_marks_a_gateway_s_resolved_defaults(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "gw.yaml"
    spec.write_text(
        "kind: gateway\nname: gw\ngpus: [L4]\nhf_token_secret: hf\n"
        "models:\n  - {id: org/a, name: a}\n  - {id: org/b, name: b, max_num_seqs: 16}\n"
        "router: {api_key_secret: gw-key}\nscaling: {timeout: 4m}\n"
    )
    lines, out = explained(capsys, spec)
    assert lines["router.upstream_timeout"].endswith('= "4m"  (default)')
    assert lines["models.a.concurrency"].endswith("= 32  (default)")
    assert lines["models.b.concurrency"].endswith("= 16")  # from its max_num_seqs
    assert "# secret hf: must hold HF_TOKEN\n# secret gw-key: must hold API_KEY\n" in out


def test_explain_shows_each_pool_s_concurrency_the_router_wait_and_secret_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    service = tmp_path / "chat.yaml"
    service.write_text(BATCHING_SPEC)
    gateway = tmp_path / "gw.yaml"
    gateway.write_text(
        "kind: gateway\nname: gw\ngpus: [L4]\nhf_token_secret: hf\n"
        "models:\n  - {id: org/a, name: a}\n  - {id: org/b, name: b, max_num_seqs: 16}\n"
        "router: {api_key_secret: gw-key}\n"
    )
    code, out, err = run(capsys, "explain", str(service), str(gateway))
    assert code == 0, err
    assert (
        "  Serving:\n    HTTP server: 32 requests at once per container (default)\n"
        "    secret hf: must hold HF_TOKEN\n    secret chat-key: must hold VLLM_API_KEY\n"
    ) in out
    assert (
        "  Serving:\n    a: 32 requests at once per container (default)\n"
        "    b: 16 requests at once per container\n"
        "    router: waits 5m for a model, then 504 (default: scaling.timeout)\n"
        "    secret hf: must hold HF_TOKEN\n    secret gw-key: must hold API_KEY\n"
    ) in out


# -- plan ---------------------------------------------------------------------------------


def test_plan_with_empty_state_creates_everything(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    code, out, err = run(capsys, "plan", "--offline", "--detailed-exitcode")
    assert code == 2, err
    assert "+ create kalm-embedding  (specs/kalm.yaml)" in out
    assert "+ create minilm-embedding  (specs/minilm.yaml)" in out
    assert "    gpu                " in out or "    gpu " in out
    assert out.rstrip().endswith("Plan: 2 to create, 0 to update, 0 to replace, 0 to delete.")
    assert not (workdir / ".modaliac").exists(), "plan must not write state"


def test_plan_without_changes_exits_0(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    record_applied(workdir / ".modaliac" / "state.json", "specs/kalm.yaml", "specs/minilm.yaml")
    code, out, _ = run(capsys, "plan", "--offline", "--detailed-exitcode")
    assert code == 0
    assert "No changes." in out
    assert "Unchanged: kalm-embedding, minilm-embedding" in out


CREDENTIALS = "set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (or run `modal token new`)"


def test_plan_that_cannot_consult_modal_never_says_no_changes(
    capsys: pytest.CaptureFixture[str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without credentials (and no --offline) --detailed-exitcode fails as Terraform's does
    when it cannot refresh: exit 1, one line, nothing printed or saved. Without the flag the
    plan is offline, says so in every format, and says why on stderr (even with -q)."""
    from helpers import point_modal_at_closed_port

    record_applied(workdir / ".modaliac" / "state.json", "specs/kalm.yaml", "specs/minilm.yaml")
    refused = (
        "plan --detailed-exitcode: no Modal credentials, so the plan cannot tell whether Modal "
        f"matches the specs; {CREDENTIALS}, or pass --offline to compare the specs with the "
        "recorded state only\n"
    )
    for form in ("text", "json", "markdown"):
        argv = ["plan", "--detailed-exitcode", "--format", form, "-o", "plan.json"]
        assert run(capsys, *argv) == (1, "", refused), form
        assert not (workdir / "plan.json").exists()
    note = (
        "note: no Modal credentials, so this plan compares the specs with the recorded state "
        f"only, not with Modal; {CREDENTIALS}, or pass --offline to plan so on purpose\n"
    )
    assert run(capsys, "plan", "-q") == (0, "", note)
    code, out, err = run(capsys, "plan")
    assert (code, err) == (0, note)
    assert "No changes. The specs match the recorded state (Modal was not consulted)." in out
    code, out, err = run(capsys, "plan", "--format", "json")
    assert (code, err, json.loads(out)["online"]) == (0, note, False)
    code, out, err = run(capsys, "plan", "--format", "markdown")
    assert (code, err) == (0, note) and out.startswith("> **Offline plan**")
    # Asked for, an offline plan needs no note, and its exit code compares with the state.
    code, out, err = run(capsys, "plan", "--offline", "--detailed-exitcode")
    assert (code, err) == (0, "") and "Modal was not consulted" in out
    # With credentials but no Modal to reach, it is one line and exit 1, never "no changes".
    point_modal_at_closed_port(monkeypatch)
    code, out, err = run(capsys, "plan", "--detailed-exitcode")
    assert (code, out) == (1, "") and len(err.splitlines()) == 1, err
    assert "127.0.0.1" in err


def test_plan_update_lists_changed_fields(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    record_applied(workdir / ".modaliac" / "state.json", "specs/kalm.yaml", "specs/minilm.yaml")
    edit(workdir / "specs" / "minilm.yaml", "gpu: L4", "gpu: A10G")
    code, out, _ = run(capsys, "plan", "--offline", "--detailed-exitcode")
    assert code == 2
    assert "~ update minilm-embedding  (specs/minilm.yaml)" in out
    assert '    gpu : ["L4"] -> ["A10"]' in out
    assert "kalm-embedding" in out.split("Unchanged:")[1]
    assert "Plan: 0 to create, 1 to update, 0 to replace, 0 to delete." in out


def test_plan_snapshot_change_is_a_replace_but_labels_are_not(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    record_applied(workdir / ".modaliac" / "state.json", "specs/kalm.yaml")
    kalm = workdir / "specs" / "kalm.yaml"
    edit(kalm, "max_num_seqs: 256", "max_num_seqs: 128")
    _, out, _ = run(capsys, "plan", "specs/kalm.yaml")
    assert "-/+ replace kalm-embedding" in out
    assert "engine.max_num_seqs : 256 -> 128" in out
    assert "new memory snapshot" in out

    edit(kalm, "max_num_seqs: 128", "max_num_seqs: 256")
    edit(kalm, "team: search", "team: ranking")
    _, out, _ = run(capsys, "plan", "specs/kalm.yaml")
    assert "~ update kalm-embedding" in out
    assert 'labels : {"team": "search"} -> {"team": "ranking"}' in out


@pytest.mark.parametrize("output", ["text", "markdown"])
def test_plan_lines_never_repeat_a_token_a_state_recorded(
    capsys: pytest.CaptureFixture[str], workdir: Path, output: str
) -> None:
    """A spec holding a token no longer loads, but a state recorded by an older modaliac (it
    missed AWS key ids) may hold one: the plan names it instead of printing it."""
    token = "AKIA" + "IOSFODNN7EXAMPLE"
    state = workdir / ".modaliac" / "state.json"
    record_applied(state, "specs/kalm.yaml")
    recorded = json.loads(state.read_text())
    (record,) = recorded["apps"].values()
    record["settings"]["model.revision"] = token
    record["settings"]["labels"] = {"team": token}
    state.write_text(json.dumps(recorded))
    code, out, err = run(capsys, "plan", "--offline", "--format", output, "specs/kalm.yaml")
    assert code == 0, err
    assert "(a value that looks like an AWS access key, not shown)" in out
    assert token not in out + err


def test_plan_deletes_only_apps_whose_spec_left_the_planned_directory(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    record_applied(workdir / ".modaliac" / "state.json", "specs/kalm.yaml", "specs/minilm.yaml")
    (workdir / "specs" / "minilm.yaml").unlink()
    _, out, _ = run(capsys, "plan", "specs/kalm.yaml")
    assert "delete" not in out  # a single file is a targeted plan
    _, out, _ = run(capsys, "plan", "specs")
    assert "- delete minilm-embedding  (specs/minilm.yaml)" in out
    assert "Plan: 0 to create, 0 to update, 0 to replace, 1 to delete." in out


def test_plan_json_is_the_documented_format(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    record_applied(workdir / ".modaliac" / "state.json", "specs/kalm.yaml")
    edit(workdir / "specs" / "kalm.yaml", "timeout: 5m", "timeout: 10m")
    code, out, _ = run(capsys, "plan", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert document["format_version"] == 2
    assert document["modaliac_version"] == __version__
    assert (document["status"], document["online"]) == ("changes", False)
    assert document["inputs"] == {
        "targets": ["specs"],
        "env": None,
        "profile_environment": None,
        "replace": [],
        "refresh_only": False,
        "strategy": None,
        "verify": None,
    }
    assert document["summary"] == {"create": 1, "update": 0, "replace": 1, "delete": 0, "no-op": 0}
    by_app = {c["app"]: c for c in document["changes"]}
    kalm = by_app["kalm-embedding"]
    assert kalm["action"] == "replace"
    assert kalm["fields"] == [{"path": "scaling.timeout", "before": "5m", "after": "10m"}]
    assert kalm["spec"]["path"] == "specs/kalm.yaml"
    assert len(kalm["spec"]["sha256"]) == 64
    assert kalm["source_sha256"]["before"] != kalm["source_sha256"]["after"]
    assert kalm["strategy"] == "rolling"  # what apply deploys it with
    assert kalm["verify"] is None  # neither the spec nor the run asks for verification
    assert by_app["minilm-embedding"]["action"] == "create"


SERVER_SPEC = """\
app: chat-server
model: {id: org/chat, revision: 0123abc, task: generate}
gpu: L4
deploy: {strategy: recreate}
surfaces:
  class: false
  http: {api_key_secret: chat-key, proxy_auth: true, primitive: server}
"""


def test_explain_states_the_endpoint_trade_offs_and_the_strategy(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    (workdir / "specs" / "server.yaml").write_text(SERVER_SPEC)
    code, out, err = run(capsys, "explain", "specs/server.yaml")
    assert code == 0, err
    assert "primitive server: Modal's @app.server" in out
    assert "no request queue: while no container is ready" in out and "get 503" in out
    assert "a Bearer key from secret 'chat-key' (VLLM_API_KEY) and Modal's proxy auth" in out
    assert "Deploy: strategy recreate: the running containers are stopped" in out
    code, out, _ = run(capsys, "explain", "specs/kalm.yaml")
    assert "primitive cls: a Modal class" in out and "Deploy: strategy rolling" in out
    assert "no request queue" not in out


def test_settings_a_record_predates_are_no_change_while_the_code_is_the_same(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    """A state written before surfaces.http.proxy_auth and primitive existed: the same code,
    so no redeploy (a replace, for a snapshot app); a real change still lists them."""
    state_file = workdir / ".modaliac" / "state.json"
    record_applied(state_file, "specs/kalm.yaml")
    document = json.loads(state_file.read_text())
    (entry,) = document["apps"].values()
    for key in ("surfaces.http.proxy_auth", "surfaces.http.primitive"):
        del entry["settings"][key]
    state_file.write_text(json.dumps(document))
    code, out, _ = run(capsys, "plan", "--offline", "specs/kalm.yaml", "--detailed-exitcode")
    assert code == 0 and "No changes." in out
    edit(workdir / "specs" / "kalm.yaml", "    api_key_secret: kalm-api-key\n", "    open: true\n")
    code, out, _ = run(capsys, "plan", "specs/kalm.yaml")
    assert "surfaces.http.open" in out and "surfaces.http.proxy_auth" in out


def test_plan_says_what_a_new_primitive_or_proxy_auth_means_for_callers(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    record_applied(workdir / ".modaliac" / "state.json", "specs/kalm.yaml")
    edit(
        workdir / "specs" / "kalm.yaml",
        "    api_key_secret: kalm-api-key\n",
        "    api_key_secret: kalm-api-key\n    proxy_auth: true\n    primitive: server\n",
    )
    code, out, err = run(capsys, "plan", "specs/kalm.yaml")
    assert code == 0, err
    assert "-/+ replace kalm-embedding" in out  # a GPU snapshot app: a new snapshot
    assert re.search(r'surfaces.http.primitive +: "cls" -> "server"', out)
    assert "# the HTTP endpoint becomes Modal's @app.server: a new function with its own URL" in out
    assert "expect 503 rather than a queue while no container is ready" in out
    assert "# Modal's proxy auth goes on: callers without Modal-Key and Modal-Secret" in out


def test_plan_markdown_has_summary_first(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    _, out, _ = run(capsys, "plan", "--format", "markdown")
    first, blank, heading = out.splitlines()[:3]
    # Offline, the comment says so before anything else: no drift or blocker is known.
    assert first.startswith("> **Offline plan**: Modal was not consulted.") and blank == ""
    assert heading == "### modaliac plan: 2 to create, 0 to update, 0 to replace, 0 to delete."
    assert "| `+` | `kalm-embedding` | create | `specs/kalm.yaml` |" in out
    assert "<details><summary><code>kalm-embedding</code>: create" in out
    assert '+ model.id = "tencent/KaLM-Embedding-Gemma3-12B-2511"' in out


def test_plan_out_file(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    code, out, _err = run(capsys, "plan", "--format", "json", "-o", "plan.json")
    assert code == 0 and out == ""
    assert json.loads((workdir / "plan.json").read_text())["summary"]["create"] == 2


def test_plan_warns_about_an_open_http_endpoint(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    edit(workdir / "specs" / "kalm.yaml", "    api_key_secret: kalm-api-key\n", "    open: true\n")
    code, out, _ = run(capsys, "plan")
    assert code == 0
    assert "Warning: kalm-embedding: specs/kalm.yaml:" in out
    assert "surfaces.http.open: [MDL007] the endpoint is served without an API key" in out


def test_plan_with_a_broken_state_file_is_one_line(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    state = workdir / ".modaliac" / "state.json"
    state.parent.mkdir()
    state.write_text("{not json")
    code, _out, err = run(capsys, "plan")
    assert code == 1
    assert (
        err == f"{Path('.modaliac/state.json')}:1:2: the state is not valid JSON "
        "(Expecting property name enclosed in double quotes)\n"
    )


def test_plan_without_specs_directory_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "plan")
    assert code == 2
    assert "no specs/ directory" in err


def test_spec_error_in_plan_is_one_line_and_debug_shows_traceback(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    edit(workdir / "specs" / "kalm.yaml", "snapshot: gpu", "snapshot: gpuu")
    code, out, err = run(capsys, "plan")
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("specs/kalm.yaml:")
    assert 'snapshot: expected one of "none", "memory", "gpu", "sleep"' in err
    with pytest.raises(Exception, match="snapshot"):
        main(["--debug", "plan"])


# -- colour -------------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_color_follows_tty_and_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert _wants_color(_Tty(), "auto") is True
    assert _wants_color(io.StringIO(), "auto") is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert _wants_color(_Tty(), "auto") is False
    assert _wants_color(_Tty(), "always") is True


def test_color_always_paints_the_plan(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    _, out, _ = run(capsys, "--color", "always", "plan")
    assert "\x1b[32m+ create kalm-embedding\x1b[0m" in out
    _, out, _ = run(capsys, "--color", "never", "plan")
    assert "\x1b[" not in out


# -- diff ---------------------------------------------------------------------------------


def test_diff_against_the_recorded_state(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    record_applied(workdir / ".modaliac" / "state.json", "specs/kalm.yaml", "specs/minilm.yaml")
    code, out, _ = run(capsys, "diff", "--exit-code")
    assert code == 0 and "No differences." in out
    edit(workdir / "specs" / "minilm.yaml", "gpu: L4", "gpu: T4")
    code, out, _ = run(capsys, "diff", "--exit-code")
    assert code == 2
    assert '-GPU = "L4"' in out and '+GPU = "T4"' in out
    assert "1 app differs." in out


def test_diff_against_a_git_revision_needs_no_state(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "specs"], check=True)
    subprocess.run([*git, "commit", "-qm", "specs"], check=True)
    edit(workdir / "specs" / "kalm.yaml", "max_num_seqs: 256", "max_num_seqs: 64")
    code, out, err = run(capsys, "diff", "--base", "HEAD")
    assert code == 0, err
    assert '-    "max_num_seqs": 256,' in out and '+    "max_num_seqs": 64,' in out
    assert not (workdir / ".modaliac").exists()
    code, _, err = run(capsys, "diff", "--base", "no-such-ref")
    assert code == 1 and "no-such-ref" in err and len(err.splitlines()) == 1
