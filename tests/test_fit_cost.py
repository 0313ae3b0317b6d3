"""GPU fit and cost: the seeds' real cases, the located error, explain, and plan costs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import record_applied

from modal_iac.cli import main
from modal_iac.loading.load import load_spec
from modal_iac.review import fit
from modal_iac.review.cost import HOURS_PER_MONTH, load_prices
from modal_iac.spec.gateway import GatewaySpec
from modal_iac.spec.gpu import Gpu
from modal_iac.spec.service import Spec

ROOT = Path(__file__).resolve().parent.parent
KALM = ROOT / "specs" / "kalm.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
PRICES = load_prices()
A100_40 = PRICES.per_second["A100-40GB"] * 3600
# specs/kalm.yaml runs two GPU pools, each with its own containers: the Python class and the
# HTTP server. Every figure of the app is the sum of the two.
KALM_POOLS = ("VLLMEmbeddingSnapshot", "Server")
KALM_HOURLY = A100_40 * len(KALM_POOLS)

BIG_ON_L40S = """\
app: big-chat
model:
  id: google/gemma-3-27b-it
  task: generate
  dtype: bfloat16
  max_model_len: 32k
gpu: L40S
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def service(**changes: object) -> Spec:
    data: dict[str, object] = {
        "app": "x",
        "model": {"id": "google/gemma-3-27b-it", "task": "generate", "dtype": "bfloat16"},
        "gpu": "A100-80GB",
    }
    data.update(changes)
    return Spec.model_validate(data)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(KALM, specs / "kalm.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    monkeypatch.delenv("MODALIAC_PRICES", raising=False)
    return tmp_path


def price_file(folder: Path, date: str, a100_40gb: object, name: str = "prices.json") -> Path:
    """A user price table with one row, A100-40GB (KaLM's GPU)."""
    path = folder / name
    path.write_text(json.dumps({"date": date, "prices": {"A100-40GB": a100_40gb}}))
    return path


# -- fit: the seeds' cases ------------------------------------------------------------------


def test_kalm_12b_bf16_fits_an_a100_40gb() -> None:
    """Seed 000: 11.76B x 2 bytes = 23.5 GB; 0.9 x 40 GB = 36 GB; 11 GB left for the KV cache."""
    ((loc, result),) = fit.spec_fits(load_spec(KALM).spec)
    assert loc == ("gpu", 0)
    assert result.fits and not result.tight
    assert round(result.weights_gb, 1) == 23.5 and round(result.kv_gb, 1) == 11.0
    assert result.context is not None and result.context >= 32_000
    assert fit.problems(load_spec(KALM).spec) == []


def test_a_27b_bf16_does_not_fit_an_l40s_and_the_error_names_the_fix() -> None:
    """Seed 003's size: 27B x 2 bytes = 54 GB of weights against 0.9 x 48 GB = 43.2 GB."""
    spec = service(gpu="L40S", model={"id": "org/qwen-27b", "task": "generate", "parameters": 27})
    ((loc, message),) = fit.problems(spec)
    assert loc == ("gpu", 0)
    assert "needs 54.0 GB of weights" in message and "43.2 GB" in message
    # L40S:2 fits too, but costs $3.90 an hour against the A100-80GB's $2.50.
    assert message.endswith("use A100-80GB (the cheapest that fits, $2.50 per running hour)")


# Seed 004: gemma-3-12b (12.19B), gemma-3-27b (27.43B), qwen3-vl-30b (31.07B: a mixture of
# experts keeps all its weights resident), BF16, gpu_memory_utilization 0.9, 32k context.
# L40S gives 43.2 GB: 12B (24.4 GB) fits, 27B (54.9 GB) and 30B (62.1 GB) do not.
# A100-80GB and H100 give 72 GB: all three fit; Qwen keeps 8.4 GB of KV cache (12%, not tight).
# H200 (126.9 GB) and B200 (172.8 GB) hold all three with room to spare.
SEED_004 = {
    "L40S": {"gemma-3-12b-it": True, "gemma-3-27b-it": False, "Qwen3-VL-30B-A3B-Instruct": False},
    "A100-80GB": dict.fromkeys(
        ("gemma-3-12b-it", "gemma-3-27b-it", "Qwen3-VL-30B-A3B-Instruct"), True
    ),
    "H100": dict.fromkeys(("gemma-3-12b-it", "gemma-3-27b-it", "Qwen3-VL-30B-A3B-Instruct"), True),
    "H200": dict.fromkeys(("gemma-3-12b-it", "gemma-3-27b-it", "Qwen3-VL-30B-A3B-Instruct"), True),
    "B200": dict.fromkeys(("gemma-3-12b-it", "gemma-3-27b-it", "Qwen3-VL-30B-A3B-Instruct"), True),
}


def seed_004(gpus: list[str]) -> GatewaySpec:
    models = [
        {"id": "google/gemma-3-12b-it", "name": "gemma-3-12b", "max_model_len": "32k"},
        {"id": "google/gemma-3-27b-it", "name": "gemma-3-27b", "max_model_len": "32k"},
        {"id": "Qwen/Qwen3-VL-30B-A3B-Instruct", "name": "qwen3-vl-30b", "max_model_len": "32k"},
    ]
    return GatewaySpec.model_validate(
        {"kind": "gateway", "name": "vllm", "models": models, "gpus": gpus}
    )


def test_seed_004_three_models_on_its_five_gpu_types() -> None:
    spec = seed_004(list(SEED_004))
    outcome: dict[str, dict[str, bool]] = {}
    for (_, index), result in fit.spec_fits(spec):
        gpu = spec.gpus[int(index)].type
        outcome.setdefault(gpu, {})[result.model.split("/")[1]] = result.fits
        assert not result.tight
    assert outcome == SEED_004
    problems = fit.problems(spec)
    assert [loc for loc, _ in problems] == [("gpus", 0), ("gpus", 0)]
    # The gateway runs one card per model (no tensor parallelism), so no count is suggested.
    cheapest = "use A100-80GB (the cheapest that fits, $2.50 per running hour)"
    assert all(message.endswith(cheapest) for _, message in problems)


def test_unknown_parameter_count_is_not_checked() -> None:
    spec = service(model={"id": "someone/mystery", "task": "generate"}, gpu="T4")
    assert fit.spec_fits(spec) == [] and fit.problems(spec) == []


def test_a_tight_fit_is_a_warning() -> None:
    """27.43B (54.9 GB) on 0.8 x 80 GB = 64 GB: 7.6 GB of KV cache, 12%; at 0.77, 5.2 GB, 9%."""
    assert fit.warnings(service(engine={"gpu_memory_utilization": 0.8})) == []
    (warning,) = fit.warnings(service(engine={"gpu_memory_utilization": 0.77}))
    assert warning.startswith("x: google/gemma-3-27b-it fits A100-80GB tightly: 5.2 GB")


def test_a_context_longer_than_the_kv_cache_holds_does_not_fit() -> None:
    """Qwen3-VL-30B on an A100-80GB holds about 85k tokens of KV cache; 128k does not fit."""
    model = {"id": "Qwen/Qwen3-VL-30B-A3B-Instruct", "task": "generate"}
    assert fit.problems(service(model={**model, "max_model_len": "64k"})) == []
    ((_, message),) = fit.problems(service(model={**model, "max_model_len": "128k"}))
    assert "a KV cache for max_model_len 128,000" in message
    assert message.endswith("use RTX-PRO-6000 (the cheapest that fits, $3.03 per running hour)")


def test_config_json_in_the_local_cache_gives_layer_shapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = tmp_path / "models--acme--tiny" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    config = {"num_hidden_layers": 10, "num_attention_heads": 8, "hidden_size": 1024}
    (snapshot / "config.json").write_text(json.dumps({**config, "num_key_value_heads": 2}))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    arch = fit.architecture("acme/tiny", 1.0)
    assert arch is not None and (arch.layers, arch.kv_heads, arch.head_dim) == (10, 2, 128)
    assert arch.kv_bytes(1000) == 2 * 2 * 128 * 2 * 10 * 1000


@pytest.mark.parametrize(
    "content",
    [
        '{"num_hidden_layers": "ten", "num_attention_heads": 8, "hidden_size": "x"}',
        '{"text_config": [1, 2], "num_hidden_layers": 10}',
        '{"hidden_size": 1024, "num_attention_heads": 0}',
        "[" * 100_000,
        "not json",
        '{"num_hidden_layers": ' + "9" * 5000 + "}",
    ],
)
def test_a_hostile_cached_config_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    snapshot = tmp_path / "models--acme--odd" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(content)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    arch = fit.architecture("acme/odd", 1.0)
    assert arch is None or all(
        value is None or (type(value) is int and value > 0)
        for value in (arch.layers, arch.kv_heads, arch.head_dim)
    )


def test_a_price_file_that_is_a_pipe_is_refused_unread(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    pipe = workdir / "prices.json"
    os.mkfifo(pipe)
    code, out, err = run(capsys, "plan", "--prices", str(pipe))
    assert (code, out) == (1, "")
    assert err == f"{pipe}: is not a regular file (a pipe or a device), so not a price file\n"


def test_fit_knows_every_modal_gpu_type() -> None:
    from modal_iac.spec.fields import GPU_TYPES

    assert set(fit.GPU_MEMORY_GB) == set(GPU_TYPES) == set(PRICES.per_second)
    assert (
        fit.Fit("m", Gpu(type="H200"), fit.Architecture(1), "bfloat16", 1, None, True).gpu_gb == 141
    )


# -- validation through the CLI -----------------------------------------------------------------


def test_validate_fails_with_one_located_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "big.yaml"
    spec.write_text(BIG_ON_L40S)
    code, out, err = run(capsys, "validate", str(spec))
    assert code == 1 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith(f"{spec}:7:6: gpu: google/gemma-3-27b-it does not fit L40S")
    assert line.endswith("use A100-80GB (the cheapest that fits, $2.50 per running hour)")


def test_plan_fails_on_a_misfit_too(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    (workdir / "specs" / "big.yaml").write_text(BIG_ON_L40S)
    code, _, err = run(capsys, "plan")
    assert code == 1 and "specs/big.yaml:7:6: gpu: " in err


@pytest.mark.parametrize("path", [*EXAMPLES, KALM], ids=lambda p: p.name)
def test_every_bundled_spec_still_validates(path: Path) -> None:
    assert fit.problems(load_spec(path).spec) == []


# -- explain ----------------------------------------------------------------------------------


def test_explain_shows_the_arithmetic_and_the_cost(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    code, out, _ = run(capsys, "explain", "specs/kalm.yaml", "--active-hours-per-day", "8")
    assert code == 0
    assert "tencent/KaLM-Embedding-Gemma3-12B-2511 on A100-40GB: fits" in out
    assert "11.76B parameters x 2 bytes (bfloat16) = 23.5 GB of weights" in out
    assert "0.9 x 40 GB = 36.0 GB; less 1.5 GB reserve leaves 11.0 GB for the KV cache" in out
    assert f"A100-40GB: ${KALM_HOURLY:,.2f} per running hour, idle floor $0.00/month" in out
    assert f"over 2 GPU pools (VLLMEmbeddingSnapshot ${A100_40:,.2f}/h, min_containers 0" in out
    assert f"at 8 h/day about ${KALM_HOURLY * 8 * HOURS_PER_MONTH / 24:,.2f}/month" in out
    assert f"Prices: {PRICES.date}" in out


def test_explain_with_a_user_price_file(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    prices = price_file(workdir, "2030-01-01", {"per_hour": 1})
    _, out, _ = run(capsys, "explain", "specs/kalm.yaml", "--prices", str(prices))
    assert "A100-40GB: $2.00 per running hour" in out  # $1.00 for each of its two pools
    assert "Prices: 2030-01-01" in out


# -- costs in plans ----------------------------------------------------------------------------


def test_plan_shows_cost_per_app_and_idle_floor(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    kalm = workdir / "specs" / "kalm.yaml"
    kalm.write_text(kalm.read_text().replace("scaling:\n", "scaling:\n  min_containers: 1\n", 1))
    _, out, _ = run(capsys, "plan")
    floor = KALM_HOURLY * HOURS_PER_MONTH  # min_containers 1 keeps one container per pool
    assert (
        f"# cost: A100-40GB: ${KALM_HOURLY:,.2f} per running hour, idle floor ${floor:,.2f}" in out
    )
    assert (
        f"over 2 GPU pools (VLLMEmbeddingSnapshot ${A100_40:,.2f}/h, min_containers 1, "
        f"Server ${A100_40:,.2f}/h, min_containers 1)"
    ) in out


def test_plan_update_shows_the_delta_against_what_is_deployed(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    record_applied(workdir / ".modaliac" / "state.json", "specs/kalm.yaml")
    kalm = workdir / "specs" / "kalm.yaml"
    kalm.write_text(kalm.read_text().replace("gpu: A100-40GB", "gpu: A100-80GB"))
    _, out, _ = run(capsys, "plan")
    a100_80 = PRICES.per_second["A100-80GB"] * 3600
    assert f"A100-80GB: ${2 * a100_80:,.2f} per running hour" in out
    assert f"(+${2 * (a100_80 - A100_40):,.2f}/h, $0.00/month idle vs deployed)" in out


def test_markdown_plan_opens_with_the_cost_summary(
    capsys: pytest.CaptureFixture[str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = price_file(workdir, "2030-01-01", 0.001)
    monkeypatch.setenv("MODALIAC_PRICES", str(prices))
    kalm = workdir / "specs" / "kalm.yaml"
    kalm.write_text(kalm.read_text().replace("scaling:\n", "scaling:\n  min_containers: 1\n", 1))
    _, out, _ = run(capsys, "plan", "--format", "markdown")
    lines = out.splitlines()
    assert lines[0].startswith("> **Offline plan**")  # offline: said before anything else
    assert lines[2].startswith("### modaliac plan:")
    pool = 0.001 * 3600 * HOURS_PER_MONTH  # $2,628.00 a month for one idle container
    floor = 2 * pool  # one idle container in each of the two pools
    assert lines[4] == (
        "**Cost** (GPUs and reserved CPU/memory, 2030-01-01 prices): "
        f"idle floor ${floor:,.2f}/month (+${floor:,.2f} vs deployed)"
    )
    assert out.index("**Cost**") < out.index("| app | action | spec |")
    row = f"| `kalm-embedding` | A100-40GB | $7.20 | ${floor:,.2f} | +${floor:,.2f} (idle) |"
    assert row in out
    # each pool is priced on its own row, and the app's figures are their sum
    assert f"| ↳ pool `VLLMEmbeddingSnapshot` | | $3.60 | ${pool:,.2f} | |" in out
    assert f"| ↳ pool `Server` | | $3.60 | ${pool:,.2f} | |" in out


def test_a_broken_price_file_is_one_error(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    prices = workdir / "prices.json"
    prices.write_text('{"prices": {"H100": "cheap"}}')
    code, _, err = run(capsys, "explain", "specs/kalm.yaml", "--prices", str(prices))
    assert code == 1
    assert err.strip().endswith("prices.H100: expected per_second or per_hour in USD")


def test_validate_warns_about_a_tight_fit_at_the_gpu(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "tight.yaml"
    spec.write_text(
        BIG_ON_L40S.replace("gpu: L40S", "engine:\n  gpu_memory_utilization: 0.77\ngpu: A100-80GB")
    )
    code, out, err = run(capsys, "validate", str(spec))
    assert code == 0 and "ok (big-chat)" in out
    assert f"warning: {spec}:9:6: gpu: google/gemma-3-27b-it fits A100-80GB tightly: 5.2 GB" in err


def test_json_plan_carries_the_cost_and_matches_the_schema(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    from jsonschema import Draft202012Validator

    record_applied(workdir / ".modaliac" / "state.json", "specs/kalm.yaml")
    kalm = workdir / "specs" / "kalm.yaml"
    kalm.write_text(kalm.read_text().replace("gpu: A100-40GB", "gpu: H100"))
    _, out, _ = run(capsys, "plan", "--format", "json")
    document = json.loads(out)
    schema = json.loads((ROOT / "docs" / "plan.schema.json").read_text())
    Draft202012Validator(schema).validate(document)
    h100 = PRICES.per_second["H100"] * 3600
    (app,) = document["cost"]["apps"]
    assert app["gpu"] == "H100" and app["hourly"] == round(2 * h100, 4)
    assert app["hourly_delta"] == round(2 * (h100 - A100_40), 4)
    assert app["pools"] == [
        {
            "name": name,
            "kind": "gpu",
            "min_containers": 0,
            "buffer_containers": 0,
            "hourly": round(h100, 4),
            "idle_month": 0,
        }
        for name in KALM_POOLS
    ]
    assert document["cost"]["idle_floor_month"] == 0 == document["cost"]["idle_floor_delta_month"]


# -- usage estimates ---------------------------------------------------------------------------


def with_usage(workdir: Path, text: str) -> Path:
    kalm = workdir / "specs" / "kalm.yaml"
    kalm.write_text(kalm.read_text() + text)
    return kalm


def monthly(hourly: float, hours: float) -> str:
    return f"${hourly * hours * HOURS_PER_MONTH / 24:,.2f}"


def test_a_spec_usage_estimate_prices_the_month_in_the_plan(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    with_usage(workdir, "usage:\n  active_hours_per_day: 6\n")
    code, out, _ = run(capsys, "plan")
    assert code == 0
    assert f"; at 6 h/day about {monthly(KALM_HOURLY, 6)}/month" in out


def test_a_run_estimate_overrides_the_spec(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    with_usage(workdir, "usage:\n  active_hours_per_day: 6\n")
    _, out, _ = run(capsys, "plan", "--active-hours-per-day", "2.5")
    assert f"; at 2.5 h/day about {monthly(KALM_HOURLY, 2.5)}/month" in out
    assert "at 6 h/day" not in out


def test_the_idle_floor_bounds_the_estimate_from_below(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    kalm = with_usage(workdir, "usage:\n  active_hours_per_day: 1\n")
    kalm.write_text(kalm.read_text().replace("scaling:\n", "scaling:\n  min_containers: 1\n", 1))
    _, out, _ = run(capsys, "plan")
    floor = f"${KALM_HOURLY * HOURS_PER_MONTH:,.2f}"
    assert f"idle floor {floor}/month over 2 GPU pools" in out
    assert f"min_containers 1); at 1 h/day about {floor}/month" in out


def test_changing_only_the_estimate_changes_no_app(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    record_applied(workdir / ".modaliac" / "state.json", "specs/kalm.yaml")
    with_usage(workdir, "usage:\n  active_hours_per_day: 12\n")
    code, out, _ = run(capsys, "plan", "--offline", "--detailed-exitcode")
    assert code == 0, out
    assert "No changes." in out


def test_markdown_adds_an_estimate_column_only_with_an_estimate(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    _, plain, _ = run(capsys, "plan", "--format", "markdown")
    assert "estimate / month" not in plain
    with_usage(workdir, "usage:\n  active_hours_per_day: 8\n")
    _, out, _ = run(capsys, "plan", "--format", "markdown")
    estimate = monthly(KALM_HOURLY, 8)
    assert f"; about {estimate}/month at the usage estimates" in out
    columns = ["app", "GPU", "per running hour", "idle floor / month", "change / month"]
    header = "| " + " | ".join([*columns, "estimate / month"]) + " |"
    assert header in out
    assert out.splitlines()[out.splitlines().index(header) + 1] == "|---|---|---:|---:|---:|---:|"
    assert f"| {estimate} (8 h/day) |" in out
    # the change column prices the month at the estimate, and says so
    assert f"| +{estimate} (at 8 h/day) | {estimate} (8 h/day) |" in out


def test_plan_prices_flag_replaces_bundled_rows(
    capsys: pytest.CaptureFixture[str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_prices = price_file(workdir, "2029-01-01", 9, name="env-prices.json")
    monkeypatch.setenv("MODALIAC_PRICES", str(env_prices))
    prices = price_file(workdir, "2030-01-01", {"per_hour": 2})
    _, out, _ = run(capsys, "plan", "--prices", str(prices), "--format", "markdown")
    assert "(GPUs and reserved CPU/memory, 2030-01-01 prices)" in out
    assert "| `kalm-embedding` | A100-40GB | $4.00 |" in out


def test_json_plan_carries_the_estimate_and_loads_back(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    from jsonschema import Draft202012Validator

    from modal_iac.plan.present import as_json
    from modal_iac.plan.saved import load_plan

    with_usage(workdir, "usage:\n  active_hours_per_day: 4\n")
    _, out, _ = run(capsys, "plan", "--format", "json")
    document = json.loads(out)
    Draft202012Validator(json.loads((ROOT / "docs" / "plan.schema.json").read_text())).validate(
        document
    )
    (app,) = document["cost"]["apps"]
    expected = round(KALM_HOURLY * 4 * HOURS_PER_MONTH / 24, 4)
    assert app["active_hours_per_day"] == 4 and app["month_estimate"] == expected
    assert document["cost"]["month_estimate"] == expected
    assert document["changes"][0]["usage"] == {"active_hours_per_day": 4}
    assert json.loads(as_json(load_plan(out))) == document


def test_an_estimate_out_of_range_is_one_located_error(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    kalm = with_usage(workdir, "usage:\n  active_hours_per_day: 25\n")
    code, _, err = run(capsys, "plan")
    line = len(kalm.read_text().splitlines())
    assert code == 1
    assert err.startswith(f"specs/kalm.yaml:{line}:25: usage.active_hours_per_day: ")
    assert "24" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as usage_error:
        main(["plan", "--active-hours-per-day", "30"])
    assert usage_error.value.code == 2
    assert "expected 0 to 24 hours, got '30'" in capsys.readouterr().err


def test_environments_override_the_estimate(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    with_usage(
        workdir,
        "usage:\n  active_hours_per_day: 2\n"
        "environments:\n  prod:\n    usage:\n      active_hours_per_day: 20\n",
    )
    _, dev, _ = run(capsys, "plan")
    _, prod, _ = run(capsys, "plan", "--env", "prod")
    assert "at 2 h/day" in dev and f"at 20 h/day about {monthly(KALM_HOURLY, 20)}/month" in prod


def test_explain_uses_the_spec_estimate(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    with_usage(workdir, "usage:\n  active_hours_per_day: 3\n")
    _, out, _ = run(capsys, "explain", "specs/kalm.yaml")
    assert f"at 3 h/day about {monthly(KALM_HOURLY, 3)}/month" in out


# -- reserved host resources --------------------------------------------------------------------

RESERVED = "resources:\n  memory: 64GiB\n  cpu: 4\n"


def reserved_hourly(gib: float, cores: float) -> float:
    return (gib * PRICES.host["memory_gib"] + cores * PRICES.host["cpu_core"]) * 3600


def test_reserved_memory_and_cpu_are_priced_with_the_gpu(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    kalm = with_usage(workdir, RESERVED)
    kalm.write_text(kalm.read_text().replace("scaling:\n", "scaling:\n  min_containers: 1\n", 1))
    _, out, _ = run(capsys, "plan")
    hourly = KALM_HOURLY + 2 * reserved_hourly(64, 4)  # each pool's containers reserve it
    assert reserved_hourly(64, 4) > 0.5  # 64 GiB and 4 cores: over half a dollar an hour
    assert (
        f"# cost: A100-40GB + 64 GiB, 4 cores reserved: ${hourly:,.2f} per running hour, "
        f"idle floor ${hourly * HOURS_PER_MONTH:,.2f}/month"
    ) in out
    _, markdown, _ = run(capsys, "plan", "--format", "markdown")
    assert f"| `kalm-embedding` | A100-40GB + 64 GiB, 4 cores | ${hourly:,.2f} |" in markdown


def test_a_larger_reservation_is_a_cost_delta(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    with_usage(workdir, "resources:\n  memory: 32GiB\n")
    record_applied(workdir / ".modaliac" / "state.json", "specs/kalm.yaml")
    kalm = workdir / "specs" / "kalm.yaml"
    kalm.write_text(kalm.read_text().replace("memory: 32GiB", "memory: 96GiB"))
    _, out, _ = run(capsys, "plan")
    assert 'resources.memory : "32GiB" -> "96GiB"' in out
    assert f"(+${2 * reserved_hourly(64, 0):,.2f}/h, $0.00/month idle vs deployed)" in out


def test_a_user_file_can_price_host_resources(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    with_usage(workdir, RESERVED)
    prices = workdir / "host.json"
    prices.write_text(json.dumps({"host": {"memory_gib": {"per_hour": 0.01}, "cpu_core": 0}}))
    _, out, _ = run(capsys, "explain", "specs/kalm.yaml", "--prices", str(prices))
    hourly = KALM_HOURLY + 2 * 0.64
    assert f"A100-40GB + 64 GiB, 4 cores reserved: ${hourly:,.2f} per running hour" in out
    prices.write_text(json.dumps({"host": {"disk_gib": 1}}))
    code, _, err = run(capsys, "explain", "specs/kalm.yaml", "--prices", str(prices))
    assert code == 1
    assert err.strip().endswith("host.disk_gib: expected one of cpu_core, memory_gib")


def test_a_broken_price_file_stops_plan_before_anything_is_written(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    prices = workdir / "prices.json"
    prices.write_text("{not json")
    code, out, err = run(capsys, "plan", "--prices", str(prices), "-o", "plan.md")
    assert code == 1 and out == ""
    assert err.startswith(f"{prices}:1:2: the price file is not valid JSON (Expecting property")
    assert len(err.strip().splitlines()) == 1
    assert not (workdir / "plan.md").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"prices": {"A100-40GB": {"per_hour": NaN}}}', "expected a finite rate above 0"),
        ('{"prices": {"A100-40GB": Infinity}}', "expected a finite rate above 0"),
        ('{"prices": {"A100-40GB": {"per_second": 1e999}}}', "expected a finite rate above 0"),
        ('{"prices": {"A100-40GB": {"per_hour": 0}}}', "expected a finite rate above 0"),
        ('{"prices": {"A100-40GB": -1}}', "expected a finite rate above 0"),
        ('{"prices": {"A100-40GB": {"per_hour": 3, "per_second": 0.001}}}', "not both"),
        ('{"prices": {"A100-40GB": {"per_hour": "3.95"}}}', "expected per_second or per_hour"),
        ('{"prices": {"A100-40GB": true}}', "expected per_second or per_hour"),
        ('{"prices": {"A100-40GB": {"per_minute": 1}}}', "expected per_second or per_hour"),
        ('{"host": {"cpu_core": NaN}}', "expected a finite rate 0 or more"),
        ('{"regions": {"broad": {"multiplier": NaN}}}', "expected a multiplier of at least 1"),
    ],
)
def test_a_price_file_with_a_rate_that_is_no_price_is_one_located_error(
    capsys: pytest.CaptureFixture[str], workdir: Path, text: str, message: str
) -> None:
    prices = workdir / "prices.json"
    prices.write_text(text)
    code, out, err = run(capsys, "plan", "--prices", str(prices), "--format", "json")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"{prices}: ") and message in err
    assert "Traceback" not in err


def test_a_free_host_row_is_a_price(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    prices = workdir / "prices.json"
    prices.write_text('{"host": {"cpu_core": 0, "memory_gib": {"per_hour": 0}}}')
    code, out, _ = run(capsys, "plan", "--prices", str(prices), "--format", "json")
    assert code == 0
    assert json.loads(out)["cost"]["prices"]["host"] == {"cpu_core": 0.0, "memory_gib": 0.0}


def test_a_gpu_fallback_list_is_priced_at_its_dearest_with_the_range(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    kalm = workdir / "specs" / "kalm.yaml"
    kalm.write_text(kalm.read_text().replace("gpu: A100-40GB", "gpu: [A100-40GB, H100]"))
    kalm.write_text(kalm.read_text().replace("scaling:\n", "scaling:\n  min_containers: 1\n", 1))
    h100 = PRICES.per_second["H100"] * 3600 * len(KALM_POOLS)
    _, out, _ = run(capsys, "plan")
    assert (
        f"# cost: A100-40GB or H100 (priced at the dearest, H100): ${KALM_HOURLY:,.2f} to "
        f"${h100:,.2f} per running hour, idle floor up to ${h100 * HOURS_PER_MONTH:,.2f}/month"
    ) in out
    _, out, _ = run(capsys, "plan", "--format", "json")
    (app,) = json.loads(out)["cost"]["apps"]
    assert app["gpu"] == "H100" and app["gpu_fallback"] == ["A100-40GB", "H100"]
    assert app["hourly"] == round(h100, 4) and app["hourly_low"] == round(KALM_HOURLY, 4)
    assert json.loads(out)["cost"]["idle_floor_month"] == round(h100 * HOURS_PER_MONTH, 4)


def test_buffer_containers_are_priced_in_the_busy_hours(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    kalm = workdir / "specs" / "kalm.yaml"
    text = kalm.read_text().replace("max_containers: 1\n", "max_containers: 4\n")
    kalm.write_text(text.replace("scaling:\n", "scaling:\n  buffer_containers: 2\n", 1))
    _, out, _ = run(capsys, "plan", "--active-hours-per-day", "8")
    assert (
        f"over 2 GPU pools (VLLMEmbeddingSnapshot ${A100_40:,.2f}/h, min_containers 0, "
        f"buffer_containers 2 while busy, Server ${A100_40:,.2f}/h"
    ) in out
    # busy, each pool runs its one container and two buffer containers beside it
    assert f"at 8 h/day about {monthly(KALM_HOURLY * 3, 8)}/month" in out
    _, out, _ = run(capsys, "plan", "--format", "json", "--active-hours-per-day", "8")
    (app,) = json.loads(out)["cost"]["apps"]
    assert [pool["buffer_containers"] for pool in app["pools"]] == [2, 2]
    assert app["idle_month"] == 0


# A gateway's router is a function on CPU that asks for no CPU or memory: Modal bills it at
# least its default request, 0.125 cores and 128 MiB.
ROUTER_HOURLY = (0.125 * PRICES.host["cpu_core"] + 0.125 * PRICES.host["memory_gib"]) * 3600


def test_a_gateway_router_is_priced_at_modals_default_request(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    from jsonschema import Draft202012Validator

    gateway = {
        "kind": "gateway",
        "name": "gw",
        "models": [{"id": "org/alpha", "name": "alpha"}, {"id": "org/beta", "name": "beta"}],
        "gpus": ["H100"],
        "router": {"api_key_secret": "gw-key"},
        "placement": {"region": "us"},  # broad: x1.5 on the router's rates as on the GPUs'
    }
    spec = workdir / "specs" / "gw.yaml"
    spec.write_text(json.dumps(gateway), encoding="utf-8")
    h100 = PRICES.per_second["H100"] * 3600
    hourly = (2 * h100 + ROUTER_HOURLY) * 1.5
    _, out, _ = run(capsys, "plan", str(spec), "--active-hours-per-day", "8")
    assert f"# cost: H100 in us (region price x1.5): ${hourly:,.2f} per running hour" in out
    assert (
        f"over 2 GPU pools and 1 CPU pool (Alpha ${h100 * 1.5:,.2f}/h, min_containers 0, "
        f"Beta ${h100 * 1.5:,.2f}/h, min_containers 0, router ${ROUTER_HOURLY * 1.5:,.2f}/h on "
        "CPU at Modal's default request (0.125 cores, 128 MiB), min_containers 0)"
    ) in out
    assert f"at 8 h/day about {monthly(hourly, 8)}/month" in out
    _, out, _ = run(capsys, "plan", str(spec), "--format", "json")
    document = json.loads(out)
    Draft202012Validator(json.loads((ROOT / "docs" / "plan.schema.json").read_text())).validate(
        document
    )
    (app,) = document["cost"]["apps"]
    assert [pool["kind"] for pool in app["pools"]] == ["gpu", "gpu", "cpu"]
    assert app["pools"][-1] == {
        "name": "router",
        "kind": "cpu",
        "min_containers": 0,
        "buffer_containers": 0,
        "hourly": round(ROUTER_HOURLY * 1.5, 4),
        "idle_month": 0,
        "request": {"cpu": 0.125, "memory_mib": 128, "modal_default": True},
    }
    assert app["hourly"] == round(hourly, 4) == app["hourly_low"]
    _, out, _ = run(capsys, "plan", str(spec), "--format", "markdown")
    router = f"${ROUTER_HOURLY * 1.5:,.2f}"
    assert f"| ↳ pool `router` (CPU, Modal's default request) | | {router} | $0.00 | |" in out
