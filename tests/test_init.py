"""Getting started: ``modaliac init``, the schema line editors follow, and validate's hints
(MDL014's 32k against a native 32K, GPU aliases), all through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from modal_iac.cli import main
from modal_iac.local_api import LocalModalServer
from modal_iac.spec.schema import schema_text

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "examples" / "gitops" / ".github" / "workflows" / "modaliac.yml"
SCHEMA_LINE = "# yaml-language-server: $schema="


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_init_writes_a_repository_that_validates_and_is_formatted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "repo"
    assert main(["init", str(target)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    spec = target / "specs" / "bge-small-en-v1-5.yaml"
    assert out.splitlines() == [
        f"wrote {spec}",
        f"wrote {target / 'schema.json'}",
        f"wrote {target / '.gitignore'}",
        f"next: modaliac validate {spec.as_posix()} && modaliac plan {spec.as_posix()}",
    ]
    assert files_under(target) == [".gitignore", "schema.json", "specs/bge-small-en-v1-5.yaml"]
    assert (target / "schema.json").read_text(encoding="utf-8") == schema_text()
    assert ".modaliac/" in (target / ".gitignore").read_text(encoding="utf-8").splitlines()
    text = spec.read_text(encoding="utf-8")
    first = text.splitlines()[0]
    assert first == f"{SCHEMA_LINE}../schema.json"
    assert (spec.parent / first.removeprefix(SCHEMA_LINE)).resolve() == target / "schema.json"
    assert "# " in text.splitlines()[1]  # commented for a new reader

    monkeypatch.chdir(target)
    assert main(["validate", "specs"]) == 0
    out, err = capsys.readouterr()
    assert out == "specs/bge-small-en-v1-5.yaml: ok (bge-small-en-v1-5)\n"
    assert "schema line" not in err  # only the unpinned revision (MDL001) is mentioned
    assert [line for line in err.splitlines() if "MDL001" not in line] == []
    assert main(["fmt", "--check", "specs"]) == 0


def test_init_takes_model_task_and_gpu_and_writes_the_gpu_canonically(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["init", str(tmp_path), "--model", "Qwen/Qwen3-8B", "--task", "generate"]
    assert main([*args, "--gpu", "h100-80gb:2"]) == 0
    capsys.readouterr()
    data = YAML(typ="safe").load((tmp_path / "specs" / "qwen3-8b.yaml").read_text("utf-8"))
    assert data["app"] == "qwen3-8b"
    assert data["model"] == {"id": "Qwen/Qwen3-8B", "task": "generate"}
    assert data["gpu"] == "H100:2"
    assert main(["validate", str(tmp_path / "specs")]) == 0


def test_init_gitops_copies_the_shipped_workflow_and_writes_pre_commit_hooks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(tmp_path), "--gitops", "--pre-commit", "--app", "search"]) == 0
    capsys.readouterr()
    copied = tmp_path / ".github" / "workflows" / "modaliac.yml"
    assert copied.read_bytes() == WORKFLOW.read_bytes()
    config = YAML(typ="safe").load((tmp_path / ".pre-commit-config.yaml").read_text("utf-8"))
    hooks = config["repos"][0]["hooks"]
    assert [(h["id"], h["entry"]) for h in hooks] == [
        ("modaliac-validate", "modaliac validate"),
        ("modaliac-fmt", "modaliac fmt --check"),
    ]
    assert all(h["files"] == r"^specs/.*\.ya?ml$" for h in hooks)
    assert (tmp_path / "specs" / "search.yaml").is_file()


def test_init_refuses_to_overwrite_and_then_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".gitignore").write_text("node_modules/\n", encoding="utf-8")
    assert main(["init", str(tmp_path), "--gitops"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"init: {tmp_path / '.gitignore'} already exists; init writes only new files "
        "(nothing was written)\n"
    )
    assert files_under(tmp_path) == [".gitignore"]
    assert (tmp_path / ".gitignore").read_text(encoding="utf-8") == "node_modules/\n"


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (
            ["--gpu", "H100-NVL"],
            2,
            "modaliac: error: init: --gpu: unknown GPU type 'H100-NVL'; did you mean 'H100'? "
            "Modal offers T4, L4, A10, L40S, A100, A100-40GB, A100-80GB, RTX-PRO-6000, H100, "
            "H100!, H200, B200, B200+",
        ),
        (
            ["--model", "org/m"],
            2,
            "modaliac: error: init: --model needs --task embed or --task generate",
        ),
        (
            ["--model", "not a model", "--task", "embed"],
            2,
            "modaliac: error: init: --model: 'not a model' is not a Hugging Face id like "
            '"org/name"',
        ),
        (
            ["--model", "google/gemma-3-27b-it", "--task", "generate", "--gpu", "T4"],
            1,
            "init: the spec would not validate: gpu: google/gemma-3-27b-it does not fit T4",
        ),
    ],
    ids=["unknown-gpu", "model-without-task", "bad-model-id", "model-does-not-fit"],
)
def test_init_refuses_bad_options_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    status: int,
    message: str,
) -> None:
    target = tmp_path / "repo"
    assert main(["init", str(target), *args]) == status
    out, err = capsys.readouterr()
    assert out == ""
    last = err.splitlines()[-1]
    assert last.startswith(message)
    assert "Traceback" not in err
    assert not target.exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("repo\x1b[2J", "repo?[2J' holds a control character"),
        ("hf_" + "iKZWeqhFWCEPyYngFbyBMWXaSCrUZoLgub", "init: (a value that looks like a Hugging"),
    ],
    ids=["escape-sequence", "token-shaped"],
)
def test_init_refuses_a_folder_name_it_could_not_print(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, message: str
) -> None:
    """init prints the folder in the commands to run next: a name with an escape sequence
    or shaped like a secret is refused, and nothing is made."""
    assert main(["init", str(tmp_path / name)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("init: ") and message in err and "iKZW" not in err
    assert list(tmp_path.iterdir()) == []


SPEC = """\
# yaml-language-server: $schema=../schema.json
app: demo
model:
  id: BAAI/bge-small-en-v1.5
  revision: 5c38ec7c405ec4b44b94cc5a9bb96e735b38267a
  task: embed
gpu: L4
"""


def test_a_schema_line_that_finds_nothing_is_warned_about_and_fmt_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "schema.json").write_text(schema_text(), encoding="utf-8")
    spec = tmp_path / "specs" / "chat" / "demo.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text(SPEC, encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    assert main(["validate", "specs/chat/demo.yaml"]) == 0
    out, err = capsys.readouterr()
    assert out == "specs/chat/demo.yaml: ok (demo)\n"
    assert err == (
        "warning: specs/chat/demo.yaml:1:33: the schema line names ../schema.json, which does "
        "not exist: editors check nothing; run modaliac fmt to point it at ../../schema.json\n"
    )
    assert main(["fmt", "--check", "specs"]) == 1
    assert capsys.readouterr().out == "specs/chat/demo.yaml\n"
    assert main(["fmt", "specs"]) == 0
    capsys.readouterr()
    assert spec.read_text(encoding="utf-8") == SPEC.replace("../schema.json", "../../schema.json")
    assert main(["validate", "specs/chat/demo.yaml"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["fmt", "--check", "specs"]) == 0


def test_without_a_schema_anywhere_validate_says_how_to_write_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "demo.yaml").write_text(SPEC, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "specs/demo.yaml"]) == 0
    err = capsys.readouterr().err
    assert err.endswith(
        "editors check nothing; write the schema with modaliac schema -o schema.json at the "
        "project root\n"
    )
    assert main(["fmt", "--check", "specs"]) == 0  # nothing to point it at: left alone


@pytest.mark.parametrize(
    ("written", "warned"), [("40k", True), ("40K", False), ("40960", False), ("32k", False)]
)
def test_mdl014_warns_of_thousands_just_below_a_native_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], written: str, warned: bool
) -> None:
    spec = tmp_path / "qwen.yaml"
    text = SPEC.replace("BAAI/bge-small-en-v1.5", "Qwen/Qwen3-8B").replace("embed", "generate")
    spec.write_text(
        text.replace("gpu: L4", f"  max_model_len: {written}\ngpu: H100").replace(
            "../schema.json", str(ROOT / "schema.json")
        ),
        encoding="utf-8",
    )
    assert main(["validate", str(spec)]) == 0
    err = capsys.readouterr().err
    expected = (
        f'warning: {spec}:7:18: model.max_model_len: [MDL014] 40000 tokens ("40k" counts '
        'thousands) is just below the model\'s native 40960 ("40K", x1024) (fix: write the '
        'length with a capital K ("32K" is 32768) or as the number itself)\n'
    )
    assert err == (expected if warned else "")


@pytest.mark.parametrize(
    ("written", "rendered"),
    [
        ("H100-80GB", "H100"),
        ("a100-80g", "A100-80GB"),
        ("A10G", "A10"),
        ("RTX6000", "RTX-PRO-6000"),
    ],
)
def test_gpu_aliases_render_as_modal_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], written: str, rendered: str
) -> None:
    spec = tmp_path / "demo.yaml"
    spec.write_text(SPEC.replace("gpu: L4", f"gpu: {written}"), encoding="utf-8")
    assert main(["render", str(spec)]) == 0
    source = capsys.readouterr().out
    assert f'GPU = "{rendered}"' in source.splitlines()
    assert written not in source or written == rendered


def test_plan_for_an_environment_the_workspace_lacks_says_how_to_create_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    modal_api: LocalModalServer,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "demo.yaml").write_text(
        SPEC.replace("../schema.json", str(ROOT / "schema.json")), encoding="utf-8"
    )
    assert main(["plan", "--env", "dev"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "Modal: Environment 'dev' not found; create it with: modal environment create dev "
        "(or choose another --env)\n"
    )
    # The client named the environment; the local API answered NOT_FOUND for it, as Modal does.
    asked = modal_api.state.requests("AppList")  # observing starts by listing its apps
    assert [r.environment_name for r in asked] == ["dev"]
    modal_api.state.add_environment("dev")
    assert main(["plan", "--env", "dev"]) == 0
    assert "create dev/demo" in capsys.readouterr().out
