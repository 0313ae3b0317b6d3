"""``diff``: generated-code and settings diffs against the state and against git revisions.

Every test works in a throw-away git repository; nothing needs Modal, credentials or network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import modal_iac.plan.diff as diff_module
from modal_iac.errors import ModaliacError, SpecError, SpecErrors
from modal_iac.loading.load import LoadedSpec, load_specs
from modal_iac.plan.diff import AppDiff, diff_git, diff_recorded, format_diff
from modal_iac.plan.plan import Desired
from modal_iac.render.app import render
from modal_iac.state.records import State
from modal_iac.state.store import read_state, write_state

ROOT = Path(__file__).resolve().parent.parent
KALM = "specs/kalm.yaml"
MINILM = "examples/small-embedding-no-snapshot.yaml"
KALM_CHANGES = {
    ("-", 'GPU = "A100-40GB"'),
    ("+", 'GPU = "H100"'),
    ("-", '    "--max-num-seqs=256",'),  # vllm serve
    ("+", '    "--max-num-seqs=128",'),
    ("-", '    "max_num_seqs": 256,'),  # LLM(...) keyword arguments
    ("+", '    "max_num_seqs": 128,'),
}


def git(repo: Path, *args: str) -> None:
    identity = ["-c", "user.name=modaliac tests", "-c", "user.email=tests@example.invalid"]
    subprocess.run(
        ["git", *identity, "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull},
    )


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with the project's specs and examples committed once, as cwd."""
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    (tmp_path / "examples").mkdir()
    for example in (ROOT / "examples").glob("*.yaml"):
        shutil.copy(example, tmp_path / "examples" / example.name)
    git(tmp_path, "init", "-q")
    commit(tmp_path, "specs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def change_kalm(repo: Path) -> None:
    edit(repo / KALM, "gpu: A100-40GB", "gpu: H100")
    edit(repo / KALM, "max_num_seqs: 256", "max_num_seqs: 128")


def changed_lines(diff: AppDiff) -> set[tuple[str, str]]:
    body = [line for line in diff.lines if not line.startswith(("---", "+++", "@@"))]
    return {(line[0], line[1:]) for line in body if line[:1] in "+-"}


def by_path(diffs: list[AppDiff]) -> dict[str, AppDiff]:
    return {d.spec_path: d for d in diffs}


def desired(*paths: str) -> list[Desired]:
    return [Desired(item, render(item)) for item in load_specs(list(paths))]


# -- against a git revision ----------------------------------------------------------------


def test_git_shows_exactly_the_changed_constants_and_settings(repo: Path) -> None:
    change_kalm(repo)
    [diff] = diff_git("HEAD", [KALM], repo)
    assert (diff.address, diff.status, diff.differs) == ("kalm-embedding", "changed", True)
    assert diff.lines[:2] == (
        "--- kalm-embedding.py (HEAD:specs/kalm.yaml)",
        "+++ kalm-embedding.py (specs/kalm.yaml)",
    )
    assert changed_lines(diff) == KALM_CHANGES  # the header's new spec hash is not a change
    assert {(f.path, str(f.before), str(f.after)) for f in diff.fields} == {
        ("gpu", "['A100-40GB']", "['H100']"),
        ("engine.max_num_seqs", "256", "128"),
    }
    assert diff.notes == ()


def test_git_hunk_line_numbers_are_those_of_the_generated_files(repo: Path) -> None:
    edit(repo / KALM, "gpu: A100-40GB", "gpu: H100")
    [diff] = diff_git("HEAD", [KALM], repo)
    [hunk] = [line for line in diff.lines if line.startswith("@@")]
    source = render(load_specs([KALM])[0]).source.splitlines()
    start = int(hunk.split("+")[1].split(",")[0])
    assert source[start - 1 + 3] == 'GPU = "H100"'  # after three lines of context


def test_git_directories_show_added_removed_and_unchanged_apps(repo: Path) -> None:
    change_kalm(repo)
    (repo / MINILM).unlink()
    added = (ROOT / MINILM).read_text().replace("app: minilm-embedding", "app: minilm-two")
    (repo / "examples" / "minilm-two.yaml").write_text(added)
    diffs = by_path(diff_git("HEAD", ["specs", "examples"], repo))

    assert diffs[KALM].status == "changed"
    removed = diffs[MINILM]
    assert (removed.address, removed.status) == ("minilm-embedding", "removed")
    assert removed.lines[:2] == (f"--- minilm-embedding.py (HEAD:{MINILM})", "+++ /dev/null")
    assert all(line.startswith("-") for line in removed.lines[3:])
    new = diffs["examples/minilm-two.yaml"]
    assert (new.address, new.status) == ("minilm-two", "added")
    assert new.lines[:2] == ("--- /dev/null", "+++ minilm-two.py (examples/minilm-two.yaml)")
    assert new.lines[3] == (
        '+# Generated by modaliac 0.1.0 from "examples/minilm-two.yaml" '
        f"(sha256:{load_specs(['examples/minilm-two.yaml'])[0].digest[:16]})."
    )
    assert '+APP_NAME = "minilm-two"' in new.lines
    unchanged = [d for d in diffs.values() if d.status == "unchanged"]
    others = len(list((ROOT / "examples").glob("*.yaml"))) - 1  # every example but MiniLM
    assert len(unchanged) == others and all(not d.lines and not d.fields for d in unchanged)


def test_git_compares_committed_revisions_by_name(repo: Path) -> None:
    change_kalm(repo)
    commit(repo, "H100")
    git(repo, "tag", "h100")
    assert diff_git("HEAD", [KALM], repo)[0].status == "unchanged"
    [diff] = diff_git("HEAD~1", [KALM], repo)
    assert changed_lines(diff) == KALM_CHANGES
    assert diff.lines[0] == "--- kalm-embedding.py (HEAD~1:specs/kalm.yaml)"


def test_git_header_only_change_is_a_note_not_a_difference(repo: Path) -> None:
    (repo / KALM).write_text((repo / KALM).read_text() + "# reviewed\n")
    [diff] = diff_git("HEAD", [KALM], repo)
    assert (diff.status, diff.lines, diff.fields) == ("unchanged", (), ())
    assert diff.notes == (
        "only the header differs (spec path, spec hash or modaliac version); "
        "the generated code is the same",
    )
    text, differs = format_diff([diff])
    assert not differs
    assert "# only the header differs" in text
    assert text.endswith("No differences.\n")


def test_git_settings_that_leave_the_code_alone_still_differ(repo: Path) -> None:
    edit(repo / KALM, "parameters: 11.76B", "parameters: 12B")
    [diff] = diff_git("HEAD", [KALM], repo)
    assert (diff.status, diff.lines) == ("changed", ())
    assert [(f.path, f.after) for f in diff.fields] == [("model.parameters", 12.0)]


def test_bad_ref_is_one_clear_line(repo: Path) -> None:
    for ref in ("no-such-branch", "--output=x", ""):
        with pytest.raises(ModaliacError) as caught:
            diff_git(ref, ["specs"], repo)
        assert str(caught.value) == (
            f"{ref!r} is not a commit, branch or tag in this git repository"
        )


def test_outside_a_git_work_tree_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ModaliacError, match=r"not inside a git work tree; --base needs one$"):
        diff_git("HEAD", ["specs"], tmp_path)


def test_spec_invalid_at_the_base_ref_is_reported_in_one_line(repo: Path) -> None:
    edit(repo / KALM, "gpu: A100-40GB", "gpu: A100-13GB")
    commit(repo, "broken")
    edit(repo / KALM, "gpu: A100-13GB", "gpu: H100")
    [diff] = diff_git("HEAD", [KALM], repo)
    assert (diff.address, diff.status) == ("kalm-embedding", "added")
    [note] = diff.notes
    assert note.startswith("specs/kalm.yaml is not a valid spec at HEAD: specs/kalm.yaml:25:")
    assert "\n" not in note and "/tmp" not in note
    assert diff.lines[:2] == ("--- /dev/null", "+++ kalm-embedding.py (specs/kalm.yaml)")


def test_spec_invalid_on_disk_is_an_error_naming_the_spec(repo: Path) -> None:
    edit(repo / KALM, "gpu: A100-40GB", "gpu: A100-13GB")
    with pytest.raises(SpecErrors) as caught:
        diff_git("HEAD", ["specs"], repo)
    assert str(caught.value).startswith("specs/kalm.yaml:25:6: gpu")


def test_targets_deleted_missing_or_outside(repo: Path, tmp_path: Path) -> None:
    (repo / KALM).unlink()
    [diff] = diff_git("HEAD", [KALM], repo)
    assert diff.status == "removed"
    with pytest.raises(ModaliacError, match=r"^specs/nope.yaml: no spec files there, neither"):
        diff_git("HEAD", ["specs/nope.yaml"], repo)
    with pytest.raises(ModaliacError, match=r"^\.\./elsewhere: outside "):
        diff_git("HEAD", ["../elsewhere"], repo)


def test_paths_are_relative_to_the_given_directory_of_the_work_tree(repo: Path) -> None:
    change_kalm(repo)
    [diff] = diff_git("HEAD", ["kalm.yaml"], repo / "specs")
    assert diff.spec_path == "kalm.yaml"
    assert diff.lines[0] == "--- kalm-embedding.py (HEAD:kalm.yaml)"
    assert changed_lines(diff) == KALM_CHANGES


def test_targets_may_be_absolute_or_unnormalised(repo: Path) -> None:
    change_kalm(repo)
    for target in (str(repo / "specs"), "./specs/", "examples/../specs"):
        [diff] = diff_git("HEAD", [target], repo)
        assert diff.spec_path == KALM and changed_lines(diff) == KALM_CHANGES


def test_a_spec_unchanged_since_the_base_is_loaded_and_rendered_once(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    change_kalm(repo)
    loads: list[str] = []
    real_load = diff_module.load_spec

    def counting_load(path: str | Path, *args: Any, **kwargs: Any) -> LoadedSpec:
        loads.append(Path(path).name)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(diff_module, "load_spec", counting_load)
    skipped = diff_git("HEAD", ["specs", "examples"], repo)
    examples = sorted(p.name for p in (repo / "examples").glob("*.yaml"))
    assert sorted(loads) == sorted(["kalm.yaml", "kalm.yaml", *examples])  # kalm: both sides

    loads.clear()
    monkeypatch.setattr(diff_module, "_sha256", lambda raw: "never the digest on disk")
    rendered_twice = diff_git("HEAD", ["specs", "examples"], repo)
    assert sorted(loads) == sorted(["kalm.yaml", *examples] * 2)
    assert skipped == rendered_twice  # the same diffs, notes and settings either way
    assert {d.status for d in skipped if d.spec_path != KALM} == {"unchanged"}


def test_an_unchanged_spec_is_not_loaded_from_the_base_even_when_that_would_fail(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_load = diff_module.load_spec

    def disk_only(path: str | Path, *args: Any, **kwargs: Any) -> LoadedSpec:
        if not Path(path).resolve().is_relative_to(repo.resolve()):
            raise SpecError(str(path), "the base side was loaded")
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(diff_module, "load_spec", disk_only)
    [diff] = diff_git("HEAD", [KALM], repo)
    assert (diff.status, diff.notes) == ("unchanged", ())
    (repo / KALM).write_text((repo / KALM).read_text() + "# reviewed\n")
    [diff] = diff_git("HEAD", [KALM], repo)  # bytes differ: the base side is loaded, and fails
    assert diff.status == "added"
    [note] = diff.notes
    assert note.endswith("is not a valid spec at HEAD: specs/kalm.yaml: the base side was loaded")


# -- against the recorded state ------------------------------------------------------------


def record(state_path: Path, *paths: str) -> State:
    state = State()
    for item in desired(*paths):
        state.apps[item.address] = item.record()
    write_state(state_path, state)
    return read_state(state_path)


def test_recorded_state_matches_unchanged_specs(repo: Path) -> None:
    state = record(repo / ".modaliac" / "state.json", KALM, MINILM)
    diffs = diff_recorded(desired(KALM, MINILM), state)
    assert [(d.address, d.status) for d in diffs] == [
        ("kalm-embedding", "unchanged"),
        ("minilm-embedding", "unchanged"),
    ]
    assert format_diff(diffs) == (
        "Unchanged: kalm-embedding, minilm-embedding\nNo differences.\n",
        False,
    )


def test_recorded_state_against_an_edited_spec(repo: Path) -> None:
    state = record(repo / ".modaliac" / "state.json", KALM)
    change_kalm(repo)
    [diff] = diff_recorded(desired(KALM), state)
    assert diff.status == "changed"
    assert diff.lines[:2] == (
        "--- kalm-embedding.py (recorded)",
        "+++ kalm-embedding.py (specs/kalm.yaml)",
    )
    assert changed_lines(diff) == KALM_CHANGES
    assert {f.path for f in diff.fields} == {"gpu", "engine.max_num_seqs"}


def test_record_without_source_says_so(repo: Path) -> None:
    state = record(repo / ".modaliac" / "state.json", MINILM)
    state.apps["minilm-embedding"] = replace(state.apps["minilm-embedding"], source="")
    [diff] = diff_recorded(desired(MINILM), state)
    assert (diff.status, diff.fields) == ("changed", ())
    assert diff.lines[:2] == (
        "--- minilm-embedding.py (recorded)",
        f"+++ minilm-embedding.py ({MINILM})",
    )
    assert diff.notes == ("the state holds no generated source for this app",)


def test_unrecorded_app_diffs_against_an_empty_file(repo: Path) -> None:
    [diff] = diff_recorded(desired(MINILM), State())
    assert diff.status == "added"
    assert diff.lines[:3] == (
        "--- /dev/null",
        f"+++ minilm-embedding.py ({MINILM})",
        f"@@ -0,0 +1,{len(render(load_specs([MINILM])[0]).source.splitlines())} @@",
    )


def test_recorded_app_whose_spec_is_gone_shows_only_within_the_scope(repo: Path) -> None:
    state = record(repo / ".modaliac" / "state.json", KALM, MINILM)
    assert [d.address for d in diff_recorded(desired(KALM), state)] == ["kalm-embedding"]
    diffs = diff_recorded(desired(KALM), state, delete_scope=[Path("examples")])
    gone = diffs[1]
    assert (gone.address, gone.status, gone.spec_path) == ("minilm-embedding", "removed", MINILM)
    assert gone.lines[:2] == ("--- minilm-embedding.py (recorded)", "+++ /dev/null")
    assert gone.notes == ("its spec was removed",)


# -- terminal text -------------------------------------------------------------------------


def test_format_lists_diffs_settings_and_a_summary(repo: Path) -> None:
    change_kalm(repo)
    (repo / MINILM).unlink()
    text, differs = format_diff(diff_git("HEAD", [KALM, MINILM], repo))
    assert differs
    lines = text.splitlines()
    assert "~ kalm-embedding  (specs/kalm.yaml)" in lines
    assert f"- minilm-embedding  ({MINILM})" in lines
    assert '-GPU = "A100-40GB"' in lines and '+GPU = "H100"' in lines
    assert "    engine.max_num_seqs : 256 -> 128" in lines
    assert '    gpu                 : ["A100-40GB"] -> ["H100"]' in lines
    assert lines[-1] == "2 apps differ."
    assert "\x1b[" not in text


def test_format_colours_only_when_asked(repo: Path) -> None:
    change_kalm(repo)
    diffs = diff_git("HEAD", [KALM], repo)
    text, _ = format_diff(diffs, color=True)
    assert '\x1b[31m-GPU = "A100-40GB"\x1b[0m' in text
    assert '\x1b[32m+GPU = "H100"\x1b[0m' in text
    assert "\x1b[36m@@ " in text
    assert text.endswith("1 app differs.\n")
