"""The built wheel works on its own: installed into a fresh venv, run away from the repo.

One wheel build and one venv per session (both in a session temp dir). The wheel is built
with ``python -m build --wheel`` (an isolated build: hatchling comes from the package
registry) and installed with its dependencies (from the registry) into a new
``python -m venv``; pip's cache is left on so a second run downloads nothing. Every command
runs from a directory outside the repo with a clean environment, so nothing can be read
from the checkout by accident.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KALM = REPO / "specs" / "kalm.yaml"
TEMPLATE = "vllm_app.py.j2"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    elsewhere: Path  # the working directory of every command: not the repo

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def modaliac(self) -> Path:
        return self.venv / "bin" / "modaliac"


def _clean_env() -> dict[str, str]:
    """The caller's environment without anything that could point Python at the checkout, or
    at Modal credentials (plans here are offline)."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "MODALIAC_STATE"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MODAL_")}
    env["MODAL_CONFIG_PATH"] = os.devnull
    env["PYTHONNOUSERSITE"] = "1"
    env["NO_COLOR"] = "1"
    return env


def _run(
    argv: Sequence[str | Path], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, argv))} exited {done.returncode}\n"
        f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    )
    return done


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    dist = root / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, REPO], elsewhere, 600)
    wheels = sorted(dist.glob("modaliac-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {dist}, found {wheels}"
    venv = root / "venv"
    result = Installed(wheels[0], venv, elsewhere)
    # A venv without pip, filled by this interpreter's pip (--python): saves the ~3 s that
    # ensurepip takes. pip's cache stays on, so repeated runs download nothing.
    _run([sys.executable, "-m", "venv", "--without-pip", venv], elsewhere, 300)
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", result.python]
    _run([*pip, "install", "--quiet", wheels[0]], elsewhere, 600)
    return result


def test_wheel_holds_templates_and_schema(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert f"modal_iac/templates/{TEMPLATE}" in names
    assert "modal_iac/schema.json" in names
    assert "modal_iac/data/vllm_args.json" in names  # validate reads vLLM's table from it
    assert "modal_iac/cli.py" in names
    # Nothing outside the package (a stray top-level templates/ would clash with other wheels).
    tops = {name.split("/")[0] for name in names}
    assert all(top == "modal_iac" or top.endswith(".dist-info") for top in tops), tops


def test_installed_package_resolves_inside_the_venv(installed: Installed) -> None:
    code = (
        "import json, importlib.resources, modal_iac, modal_iac.render.app as r\n"
        "print(json.dumps({\n"
        "  'package': modal_iac.__file__,\n"
        "  'template_dir': str(r.template_dir()),\n"
        "  'schema': str(importlib.resources.files('modal_iac') / 'schema.json'),\n"
        "}))\n"
    )
    found = json.loads(_run([installed.python, "-c", code], installed.elsewhere).stdout)
    venv = installed.venv.resolve()
    for key, value in found.items():
        path = Path(value).resolve()
        assert str(REPO) not in value, f"{key} resolves into the repo: {value}"
        assert path.is_relative_to(venv), f"{key} is not inside the venv: {value}"
    assert (Path(found["template_dir"]) / TEMPLATE).is_file()
    shipped_schema = Path(found["schema"])
    assert shipped_schema.is_file()
    assert shipped_schema.read_text(encoding="utf-8") == (REPO / "schema.json").read_text(
        encoding="utf-8"
    )


def test_shipped_schema_is_what_the_shipped_code_generates(installed: Installed) -> None:
    generated = _run([installed.modaliac, "schema"], installed.elsewhere).stdout
    code = "import importlib.resources as r; print(r.files('modal_iac').joinpath('schema.json'))"
    shipped = Path(_run([installed.python, "-c", code], installed.elsewhere).stdout.strip())
    assert generated == shipped.read_text(encoding="utf-8")


def test_plan_runs_from_another_directory(installed: Installed) -> None:
    state = installed.elsewhere / "no-state.json"  # never created: an empty state
    out = _run(
        [installed.modaliac, "plan", KALM, "--state", state, "--format", "json"],
        installed.elsewhere,
    ).stdout
    plan = json.loads(out)
    assert plan["summary"]["create"] == 1
    assert [c["app"] for c in plan["changes"]] == ["kalm-embedding"]
    text = _run([installed.modaliac, "plan", KALM, "--state", state], installed.elsewhere).stdout
    assert "create kalm-embedding" in text


def test_render_runs_from_another_directory(installed: Installed) -> None:
    source = _run([installed.modaliac, "render", KALM], installed.elsewhere).stdout
    compile(source, "kalm-embedding.py", "exec")  # valid Python
    assert "kalm-embedding" in source
    assert "app = modal.App(" in source
    out_dir = installed.elsewhere / "rendered"
    _run([installed.modaliac, "render", KALM, "-o", out_dir], installed.elsewhere)
    assert (out_dir / "kalm-embedding.py").read_text(encoding="utf-8") == source


def test_init_runs_from_the_wheel(installed: Installed) -> None:
    """init's templates and the GitOps workflow it copies ship inside the package."""
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert "modal_iac/templates/init/spec.yaml.j2" in names
    assert "modal_iac/data/gitops-workflow.yml" in names
    target = installed.elsewhere / "new-repo"
    _run([installed.modaliac, "init", target, "--gitops", "--pre-commit"], installed.elsewhere)
    workflow = REPO / "examples" / "gitops" / ".github" / "workflows" / "modaliac.yml"
    assert (target / ".github" / "workflows" / "modaliac.yml").read_text(
        encoding="utf-8"
    ) == workflow.read_text(encoding="utf-8")
    assert (target / "schema.json").read_text(encoding="utf-8") == (REPO / "schema.json").read_text(
        encoding="utf-8"
    )
    _run([installed.modaliac, "validate", "specs"], target)
    _run([installed.modaliac, "fmt", "--check", "specs"], target)


def test_offline_plan_does_not_import_modal(installed: Installed) -> None:
    """The pinned Modal SDK is installed with the wheel, but a plan without credentials never
    imports it (it costs a third of a second)."""
    state = installed.elsewhere / "no-modal-state.json"
    code = (
        "import sys\n"
        "from modal_iac.cli import main\n"
        f"code = main(['plan', {str(KALM)!r}, '--state', {str(state)!r}])\n"
        "print('modal-imported', 'modal' in sys.modules, code)"
    )
    out = _run([installed.python, "-c", code], installed.elsewhere).stdout
    assert out.strip().splitlines()[-1] == "modal-imported False 0"
    has_modal = "import importlib.util; print(importlib.util.find_spec('modal') is not None)"
    assert _run([installed.python, "-c", has_modal], installed.elsewhere).stdout.strip() == "True"
