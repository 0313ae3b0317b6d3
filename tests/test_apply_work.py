"""What apply does once per app, not more: each generated file rendered once, and imported
when its app's turn comes (so the first apps deploy while the rest are imported), against
the local Modal API with the real ``modal`` client."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from modal_iac.cli import main
from modal_iac.local_api import LocalModalServer
from modal_iac.spec.address import Address
from modal_iac.state.store import read_state

ROOT = Path(__file__).resolve().parent.parent
SMALL_SPEC = ROOT / "examples" / "small-embedding-no-snapshot.yaml"


@pytest.fixture
def two_apps(modal_api: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    (work / "specs").mkdir(parents=True)
    shutil.copy(SMALL_SPEC, work / "specs" / "minilm.yaml")
    other = SMALL_SPEC.read_text().replace("app: minilm-embedding", "app: tiny", 1)
    (work / "specs" / "tiny.yaml").write_text(other)
    monkeypatch.chdir(work)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    return work


def apply(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(["apply", "--yes", *argv], confirm=lambda question: True)
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_apply_renders_each_generated_file_once_and_records_what_it_deployed(
    two_apps: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modal_iac.plan import plan

    rendered: list[str] = []
    real = plan.render_app

    def counted(loaded: Any, app: str) -> Any:
        rendered.append(app)
        return real(loaded, app)

    monkeypatch.setattr(plan, "render_app", counted)
    out = apply(capsys)
    assert "Apply finished: 2 succeeded, 0 failed." in out
    # The plan hashed each file when it rendered the specs; apply makes it again once.
    assert sorted(rendered) == ["minilm-embedding", "tiny"]
    apps = read_state(two_apps / ".modaliac" / "state.json").apps
    assert sorted(apps) == ["minilm-embedding", "tiny"]
    for address, record in apps.items():
        built = two_apps / ".modaliac" / "build" / f"{Address.parse(address).module_name}.py"
        assert record.source == built.read_text(encoding="utf-8"), address


def test_a_generated_file_is_imported_when_its_apps_turn_comes(
    two_apps: Path,
    modal_api: LocalModalServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modal_iac.modal import deploy

    published_before: dict[str, int] = {}  # app -> apps Modal had published when it imported
    real = deploy._import

    def noted(job: deploy.DeployJob, build_dir: Path) -> Any:
        published_before[job.app] = modal_api.state.rpc_names().count("AppPublish")
        return real(job, build_dir)

    monkeypatch.setattr(deploy, "_import", noted)
    out = apply(capsys, "--parallel", "1")
    assert "Apply finished: 2 succeeded, 0 failed." in out
    # One at a time: the second file is imported only once the first app has published.
    assert sorted(published_before.values()) == [0, 1]
