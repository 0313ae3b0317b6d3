"""The real bill, end to end through the CLI against the local Modal API: plans priced with
the workspace's own rates (``Workspace.billing.rates()``), the shipped table as the offline
fallback, and ``modaliac cost`` summing Modal's billing report per managed app beside the
estimate for the same period."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modal_iac.cli import main
from modal_iac.local_api import LocalModalServer
from modal_iac.plan.present import as_json
from modal_iac.plan.saved import load_plan

ROOT = Path(__file__).resolve().parent.parent
# Modal's names are Modal's: the matching is loose, storage is no compute rate and is ignored.
RATES = {"gpu.L4": "0.90", "H100": "4.00", "cpu": "0.036", "memory": "0.0072", "storage": "0.1"}


@pytest.fixture
def project(modal_api: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    (work / "specs").mkdir(parents=True)
    shutil.copy(ROOT / "specs" / "kalm.yaml", work / "specs" / "kalm.yaml")
    shutil.copy(
        ROOT / "examples" / "small-embedding-no-snapshot.yaml", work / "specs" / "minilm.yaml"
    )
    modal_api.state.add_secret("huggingface", ("HF_TOKEN",))
    modal_api.state.add_secret("kalm-api-key", ("VLLM_API_KEY",))
    modal_api.state.billing.rates.update(RATES)
    monkeypatch.chdir(work)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    monkeypatch.delenv("MODALIAC_PRICES", raising=False)
    return work


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), confirm=lambda question: True)
    out, err = capsys.readouterr()
    return code, out, err


def test_an_online_plan_prices_with_modals_rates(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "plan", "--format", "json")
    assert code == 0, err
    cost = json.loads(out)["cost"]
    assert cost["prices"]["source"] == "modal"
    assert cost["prices"]["read_at"].endswith("Z")
    # A100-40GB is not among the rates: the table's row, and the plan says so
    assert "A100-40GB" in cost["prices"]["from_table"]
    assert "L4" not in cost["prices"]["from_table"]
    apps = {app["address"]: app for app in cost["apps"]}
    assert apps["minilm-embedding"]["hourly"] == 0.90  # Modal's L4 rate, not the table's 0.80
    assert apps["kalm-embedding"]["pools"][0]["hourly"] == pytest.approx(0.000583 * 3600)
    assert modal_api.state.rpc_names().count("WorkspaceBillingRates") == 1

    code, out, err = cli(capsys, "plan")
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("prices: "))
    assert line.startswith("prices: Modal's rates read at ")
    # only the rows this plan reads are named: kalm's A100-40GB, not every GPU type
    assert line.endswith(
        "; not in Modal's rates, priced from the shipped table of 2026-07-01: A100-40GB"
    )
    assert "    # cost: L4: $0.90 per running hour" in out
    code, out, err = cli(capsys, "plan", "--format", "markdown")
    assert "(GPUs and reserved CPU/memory, Modal's rates of " in out


def test_offline_or_with_a_price_file_the_table_prices_and_modal_is_not_asked(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "plan", "--offline")
    assert code == 0, err
    assert "prices: shipped table dated 2026-07-01 (offline fallback)" in out
    assert "    # cost: L4: $0.80 per running hour" in out
    prices = project / "prices.json"
    prices.write_text(json.dumps({"date": "2030-01-01", "prices": {"L4": {"per_hour": 0.5}}}))
    code, out, err = cli(capsys, "plan", "--prices", str(prices), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["cost"]["prices"]["source"] == "file"
    assert "WorkspaceBillingRates" not in modal_api.state.rpc_names()


def test_rates_that_cannot_be_read_fall_back_to_the_table_with_a_note(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    modal_api.state.faults.add("WorkspaceBillingRates", "PERMISSION_DENIED")
    code, out, err = cli(capsys, "plan")
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("prices: "))
    assert line.startswith("prices: shipped table dated 2026-07-01 (offline fallback); ")
    assert "Modal's rates could not be read" in line


def test_a_saved_plan_applies_when_the_rates_changed_since(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "plan", "-o", "plan.json")[0] == 0
    saved = (project / "plan.json").read_text()
    # the saved plan carries its prices: read back, it shows what was reviewed
    assert as_json(load_plan(saved)) == saved
    assert json.loads(saved)["cost"]["prices"]["per_second"]["L4"] == 0.90 / 3600
    modal_api.state.billing.rates["gpu.L4"] = "1.10"  # rates read at apply time differ
    code, out, err = cli(capsys, "apply", "--yes", "plan.json")
    assert code == 0, err + out
    tags = [dict(request.tags) for request in modal_api.state.requests("AppSetTags")]
    assert {t["modaliac-app"] for t in tags} == {"kalm-embedding", "minilm-embedding"}
    assert all(t["managed-by"] == "modaliac" for t in tags)


def _day(days_ago: int) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def test_cost_sums_the_billing_report_per_managed_app_beside_the_estimate(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert "\nprices: Modal's rates read at " in out  # the plan apply shows is priced the same
    billing = modal_api.state.billing
    minilm = {"managed-by": "modaliac", "modaliac-app": "minilm-embedding", "team": "x"}
    billing.add_item(object_id="ap-1", start=_day(1), cost="2.00", tags=minilm)
    billing.add_item(object_id="ap-1", start=_day(2), cost="1.50", tags=minilm)
    billing.add_item(object_id="ap-1", start=_day(3), cost="9.00", tags=minilm)  # before
    billing.add_item(object_id="ap-1", start=_day(0), cost="9.00", tags=minilm)  # partial day
    gone = {"managed-by": "modaliac", "modaliac-app": "old-app"}
    billing.add_item(object_id="ap-2", start=_day(1), cost="0.25", tags=gone)
    billing.add_item(object_id="ap-3", start=_day(1), cost="7.00", tags={"team": "other"})

    code, out, err = cli(
        capsys, "cost", "--since", "2d", "--active-hours-per-day", "2", "--format", "json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert (report["start"], report["end"]) == (
        _day(2).strftime("%Y-%m-%dT00:00:00Z"),
        _day(0).strftime("%Y-%m-%dT00:00:00Z"),
    )
    assert report["hours"] == 48
    apps = {app["address"]: app for app in report["apps"]}
    assert apps["minilm-embedding"]["billed"] == "3.50"
    # one L4 container busy 2 h a day for 2 days at Modal's $0.90/h
    assert apps["minilm-embedding"]["estimated"] == 3.60
    assert apps["minilm-embedding"]["difference"] == -0.10
    # nothing billed; two A100-40GB pools (class and Server) at the table's $2.0988/h, 4 h each
    assert apps["kalm-embedding"]["billed"] == "0"
    assert apps["kalm-embedding"]["estimated"] == round(2 * 0.000583 * 3600 * 4, 2)
    assert report["unrecorded"] == [{"address": "main/old-app", "billed": "0.25"}]
    assert report["unmanaged"] == "7.00"
    sent = modal_api.state.requests("WorkspaceBillingReport")[-1]
    assert set(sent.tag_names) == {"managed-by", "modaliac-app"}
    assert sent.resolution == "d"
    assert sent.start_timestamp.ToDatetime() == _day(2).replace(tzinfo=None)
    assert sent.end_timestamp.ToDatetime() == _day(0).replace(tzinfo=None)

    code, out, err = cli(capsys, "cost", "--since", "2d")
    assert code == 0, err
    assert "Cost from " in out and "(2 days, Modal's billing report)" in out
    row = next(line for line in out.splitlines() if "minilm-embedding" in line)
    assert row.split()[:4] == ["minilm-embedding", "$3.50", "$0.00", "+$3.50"]
    assert row.endswith("  idle floor (min_containers: Model 0)")
    assert "Billed as modaliac's but not in the state: main/old-app $0.25" in out
    assert "Not managed by modaliac (not listed): $7.00" in out
    code, out, err = cli(capsys, "cost", "--since", "2d", "--format", "markdown")
    assert "| `minilm-embedding` | $3.50 | $0.00 | +$3.50 |" in out


def test_cost_of_one_environment_only(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    modal_api.state.add_environment("dev")
    assert cli(capsys, "apply", "--yes", "--env", "dev", "specs/minilm.yaml")[0] == 0
    tags = {"managed-by": "modaliac", "modaliac-app": "minilm-embedding"}
    modal_api.state.billing.add_item(
        object_id="ap-1", start=_day(1), cost="1.25", environment="dev", tags=tags
    )
    modal_api.state.billing.add_item(
        object_id="ap-9", start=_day(1), cost="5.00", environment="main", tags=tags
    )
    code, out, err = cli(capsys, "cost", "--env", "dev", "--since", "1d", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert [(a["address"], a["billed"]) for a in report["apps"]] == [
        ("dev/minilm-embedding", "1.25")
    ]
    assert report["unrecorded"] == [] and report["unmanaged"] == "0"


def test_cost_without_credentials_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "cost")
    assert (code, out) == (1, "")
    assert err.strip().splitlines() == [
        "no Modal credentials: run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"
    ]


@pytest.mark.parametrize(
    ("since", "message"),
    [
        ("30", "'30': expected a duration like"),
        ("5m", "'5m': expected a duration like"),
        ("yesterday", "'yesterday': expected a duration like"),
        ("2026-13-01", "--since 2026-13-01: not a date"),
        ("2999-01-01", "--since 2999-01-01: covers no whole day before now"),
    ],
)
def test_a_bad_since_is_a_usage_error(
    since: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        code, _, err = cli(capsys, "cost", "--since", since)
    except SystemExit as exit_info:  # argparse refuses the value itself
        code, err = int(str(exit_info.code)), capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("source", "guess", "cost.prices.source: expected one of modal, table, file"),
        ("per_second", {"L4": "cheap"}, "cost.prices.per_second: expected an object of numbers"),
        ("notes", "none", "cost.prices.notes: expected a list of strings"),
        (
            "per_second",
            {"L4": float("nan")},
            "cost.prices.per_second: expected an object of numbers",
        ),
        ("host", {"cpu_core": -1.0}, "cost.prices.host: expected an object of numbers"),
    ],
)
def test_a_saved_plan_with_broken_prices_is_refused_in_one_line(
    field: str,
    value: object,
    message: str,
    project: Path,
    modal_api: LocalModalServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli(capsys, "plan", "-o", "plan.json")[0] == 0
    document = json.loads((project / "plan.json").read_text())
    document["cost"]["prices"][field] = value
    (project / "plan.json").write_text(json.dumps(document))
    code, _, err = cli(capsys, "apply", "--yes", "plan.json")
    assert code == 1
    assert err.strip().splitlines() == [f"plan.json: {message}; make the plan again"]
    assert "AppPublish" not in modal_api.state.rpc_names()
