"""A plan over many specs keeps each app's generated file as the way to make it, not as text
(``deferred.DeferredText``), no validated model (a spec is loaded again from its file when a
source is read), a create's settings as its record's rather than as rows, and is printed a
change at a time: what is read stays exactly what the spec renders."""

from __future__ import annotations

import gc
import io
import json
import tracemalloc
import weakref
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import pytest

import modal_iac.loading.load
from modal_iac.cli import build_parser
from modal_iac.commands.console import Console
from modal_iac.commands.plan import cmd_plan
from modal_iac.errors import ModaliacError
from modal_iac.loading.load import LoadedSpec, load_spec
from modal_iac.plan.changes import AllSettings, FieldChange
from modal_iac.plan.plan import Desired, make_plan
from modal_iac.plan.present import as_json, as_text, text_chunks
from modal_iac.plan.saved import load_plan
from modal_iac.plan.targets import desired_apps
from modal_iac.render.app import Rendered, render, render_all, render_app
from modal_iac.spec.address import Project
from modal_iac.state.records import AppRecord, State

ROOT = Path(__file__).resolve().parent.parent
KALM = ROOT / "specs" / "kalm.yaml"
GATEWAY = ROOT / "examples" / "gpu-gateway.yaml"


def specs(tmp_path: Path, count: int) -> list[Desired]:
    text = KALM.read_text()
    desired = []
    for index in range(count):
        path = tmp_path / f"spec-{index}.yaml"
        path.write_text(text.replace("app: kalm-embedding", f"app: kalm-{index}"))
        loaded = load_spec(path, default_environment=None)
        desired.append(Desired(loaded, render(loaded)))
    return desired


def test_the_plan_reads_back_exactly_the_rendered_sources(tmp_path: Path) -> None:
    [item] = specs(tmp_path, 1)
    expected = render(item.loaded.again())
    assert not isinstance(item.rendered.__dict__["_source_text"], str)  # not kept as text
    assert item.rendered == expected  # app, filename and source
    assert item.rendered.body_hash == expected.body_hash
    [change] = make_plan([item], State()).changes
    record = change.record
    assert record is not None and record.source == expected.source
    assert asdict(record)["source"] == expected.source
    assert replace(record, deployed_version=3).source == expected.source
    saved = json.loads(as_json(make_plan([item], State()), None))
    assert saved["changes"][0]["record"]["source"] == expected.source


def test_each_app_of_a_gateway_renders_again_as_itself() -> None:
    loaded = load_spec(GATEWAY, default_environment=None)
    files = render_all(loaded)
    assert len(files) > 1
    for rendered in files:
        assert render_app(loaded, rendered.app) == rendered
        assert Desired(loaded, rendered).record().source == rendered.source


def test_a_record_given_text_or_a_maker_is_the_same_record() -> None:
    made = AppRecord("a", None, "s.yaml", "d", "h", {}, source=lambda: "print()\n")
    kept = AppRecord("a", None, "s.yaml", "d", "h", {}, source="print()\n")
    assert made == kept and repr(made) == repr(kept) and asdict(made) == asdict(kept)
    assert AppRecord("a", None, "s.yaml", "d", "h", {}).source == ""  # the default


def test_a_planned_app_keeps_far_less_than_its_generated_file(tmp_path: Path) -> None:
    """Allocation sizes, not time: the file is ~27 KiB, which a plan used to hold for each
    app; beyond its loaded spec, a planned app now keeps less than half of that."""
    make_plan(specs(tmp_path, 2), State())  # warm caches
    size = len(render(load_spec(KALM, default_environment=None)).source)

    def kept(tmp: Path, work: Callable[[list[Desired]], object]) -> float:
        tmp.mkdir()
        held: object = None
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            held = work(specs(tmp, 20))
            return (tracemalloc.get_traced_memory()[0] - before) / 20
        finally:
            del held
            tracemalloc.stop()

    loaded = kept(tmp_path / "loads", lambda desired: [item.loaded for item in desired])
    planned = kept(tmp_path / "plan", lambda desired: make_plan(desired, State()))
    assert planned - loaded < size / 2, f"{planned - loaded:.0f} bytes an app, the file {size}"


def test_a_source_made_again_must_hash_as_planned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan's hash is the contract: a file that renders differently when read again (a
    template replaced while the run went on) is refused, never deployed in its place."""
    import modal_iac.plan.plan

    [item] = specs(tmp_path, 1)
    record = item.record()

    def drifted(loaded: LoadedSpec, app: str) -> Rendered:
        made = render_app(loaded, app)
        return Rendered(made.app, made.filename, made.source + "print('not reviewed')\n")

    monkeypatch.setattr(modal_iac.plan.plan, "render_app", drifted)
    with pytest.raises(ModaliacError, match="changed since the plan was made; plan again"):
        _ = record.source


def _copies(directory: Path, count: int) -> list[str | Path]:
    """``count`` specs in ``directory``: KaLM and the gateway in turn, each app named apart."""
    directory.mkdir()
    kalm, gateway = KALM.read_text(), GATEWAY.read_text()
    files: list[str | Path] = []
    for index in range(count):
        path = directory / f"spec-{index:02d}.yaml"
        if index % 2:
            path.write_text(gateway.replace("name: vllm", f"name: vllm-{index}", 1))
        else:
            path.write_text(kalm.replace("app: kalm-embedding", f"app: kalm-{index}"))
        files.append(path)
    return files


def test_no_validated_model_outlives_its_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Specs are loaded and reduced one at a time, and the plan keeps no model: the run held
    every model (about 11 KiB a spec) until the plan was printed. A source read is the spec
    loaded again, and reads what was rendered."""
    alive: list[weakref.ref[object]] = []
    most = 0
    real = modal_iac.loading.load.load_spec

    def counted(*args: object, **kwargs: object) -> LoadedSpec:
        nonlocal most
        gc.collect()
        most = max(most, sum(ref() is not None for ref in alive))
        loaded = real(*args, **kwargs)  # type: ignore[arg-type]
        alive.append(weakref.ref(loaded.spec))
        return loaded

    monkeypatch.setattr(modal_iac.loading.load, "load_spec", counted)
    files = _copies(tmp_path / "specs", 6)
    plan = make_plan(desired_apps(files, None, Project.here()), State())
    gc.collect()
    assert len(alive) == 6 and most <= 1, f"{most} models alive at once"
    assert not [ref for ref in alive if ref() is not None], "the plan keeps a model"
    kalm, gateway = plan.changes[0], plan.changes[-1]
    for change in (kalm, gateway):
        assert change.record is not None
        loaded = real(tmp_path / "specs" / Path(change.spec_path).name, default_environment=None)
        assert change.record.source == render_app(loaded, change.app).source
    assert len(alive) == 8  # each read loaded its spec again


def test_a_plan_keeps_a_few_kib_a_spec(tmp_path: Path) -> None:
    """Allocation sizes, not time: what a plan of creates keeps of the specs it was made
    from, KaLM and the gateway (5 apps) in turn: 26 KiB a spec while it kept the models
    (measured), 12 KiB without them."""
    make_plan(desired_apps(_copies(tmp_path / "warm", 2), None, Project.here()), State())
    files = _copies(tmp_path / "specs", 20)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        plan = make_plan(desired_apps(files, None, Project.here()), State())
        gc.collect()
        kept = (tracemalloc.get_traced_memory()[0] - before) / 20
    finally:
        tracemalloc.stop()
    assert len(plan.changes) == 60
    assert kept < 18 * 1024, f"{kept:.0f} bytes a spec"


def test_a_changed_spec_file_is_refused_when_its_source_is_read(tmp_path: Path) -> None:
    """The spec is loaded again from its file: a file edited after the plan (here only a
    comment, which renders the same) is refused in one line, as a source that renders
    differently is, never rendered in its place; so is a file gone."""
    [item] = specs(tmp_path, 1)
    record = item.record()
    path = tmp_path / "spec-0.yaml"
    path.write_text(path.read_text() + "# edited after the plan\n")
    with pytest.raises(ModaliacError, match=r"spec-0\.yaml: the spec changed since the plan was"):
        _ = record.source
    path.unlink()
    with pytest.raises(ModaliacError, match="the spec changed since the plan was made; plan again"):
        _ = item.rendered.source


def test_a_plan_keeps_a_create_as_its_record_not_a_row_a_setting(tmp_path: Path) -> None:
    """Allocation sizes, not time: beyond what the specs hold, a plan of creates used to keep
    ~7.4 KiB an app (a row for each of ~120 settings, beside the record's settings they
    repeat); it now keeps ~3.5 KiB, the record and its settings."""
    make_plan(specs(tmp_path, 2), State())  # warm caches
    desired = specs(tmp_path, 20)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        plan = make_plan(desired, State())
        kept = (tracemalloc.get_traced_memory()[0] - before) / 20
    finally:
        tracemalloc.stop()
    assert kept < 5 * 1024, f"{kept:.0f} bytes an app"
    assert all(isinstance(change.fields, AllSettings) for change in plan.changes)


def test_a_create_reads_as_every_setting_from_nothing(tmp_path: Path) -> None:
    [item] = specs(tmp_path, 1)
    [change] = make_plan([item], State()).changes
    rows = tuple(FieldChange(k, None, v) for k, v in item.settings().items())
    assert change.fields == rows and rows == change.fields
    assert len(change.fields) == len(rows) and change.fields[3] == rows[3]
    assert change.fields[-2:] == rows[-2:] and repr(change.fields) == repr(rows)
    assert change.fields != rows[1:]
    gone = AllSettings({"gpu": "L4"}, created=False)
    assert list(gone) == [FieldChange("gpu", "L4", None)] and gone != change.fields


def test_a_saved_plan_reads_back_as_the_plan(tmp_path: Path) -> None:
    plan = make_plan(specs(tmp_path, 2), State())
    again = load_plan(as_json(plan))
    assert again.changes == plan.changes  # read back as tuples of rows
    assert as_json(again) == as_json(plan)


class _Writes(io.StringIO):
    """An output that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []

    def write(self, text: str) -> int:
        self.chunks.append(text)
        return super().write(text)


def test_the_plan_text_is_printed_a_change_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Printing never joins the whole text: each create is written on its own (a plan over
    5000 specs held ~6 KiB of text an app until the end), and the bytes are as_text's."""
    desired = specs(tmp_path, 3)
    plan = make_plan(desired, State())
    chunks = list(text_chunks(plan))
    assert len(chunks) == 4 and "".join(chunks) == as_text(plan)
    assert all(chunk.startswith("+ create ") for chunk in chunks[:3])
    monkeypatch.chdir(tmp_path)
    out = _Writes()
    argv = ["plan", ".", "--state", "none.json", "--offline"]
    assert cmd_plan(build_parser().parse_args(argv), Console(out, _Writes(), color=False)) == 0
    assert len(out.chunks) == 4 and out.chunks[0].startswith("+ create kalm-0  (spec-0.yaml)")
    saved = build_parser().parse_args([*argv, "-o", "plan.txt"])  # as_text, written whole
    assert cmd_plan(saved, Console(_Writes(), _Writes(), color=False)) == 0
    assert "".join(out.chunks) == Path("plan.txt").read_text()
