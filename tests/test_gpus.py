"""GPU advice you can act on: the unchecked context said, model.architecture, the catalogue,
the cheapest fix, and ``modaliac gpus SPEC`` (through the CLI, no Hugging Face cache)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modal_iac.cli import main
from modal_iac.review.cost import HOURS_PER_MONTH, load_prices

PRICES = load_prices()
HOURLY = {name: rate * 3600 for name, rate in PRICES.per_second.items()}
# A model no catalogue knows: the weights can be checked, the context cannot (no shapes).
PRIVATE_8B = """\
app: private
model:
  id: acme/private-8b
  task: generate
  parameters: 8.19B
  max_model_len: 32k
gpu: L4
"""
# Qwen3-8B's config.json: 36 layers, 8 KV heads, head_dim 128 (the catalogue's entry too).
QWEN3_8B_SHAPES = "  architecture: {layers: 36, kv_heads: 8, head_dim: 128}\n"
QWEN3_8B_ON_L4 = """\
app: chat
model:
  id: Qwen/Qwen3-8B
  task: generate
  max_model_len: 32k
gpu: L4
scaling:
  min_containers: 1
"""
# Qwen3-14B (29.6 GB of weights) on one card: A100-40GB is the smallest that fits, L40S the
# cheapest ($1.95 against $2.10 an hour).
GATEWAY_14B = """\
kind: gateway
name: gw
models:
  - id: Qwen/Qwen3-14B
    name: qwen14
    max_model_len: 8k
gpus: [L4]
router:
  open: true
"""


@pytest.fixture(autouse=True)
def no_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CI runner's view: an empty Hugging Face cache, no price file."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("MODALIAC_PRICES", raising=False)
    monkeypatch.chdir(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_without_layer_shapes_explain_says_the_context_is_not_checked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = write(tmp_path, "private.yaml", PRIVATE_8B)
    code, out, _ = run(capsys, "explain", spec)
    assert code == 0
    assert "acme/private-8b on L4: fits weights; context not checked: no layer shapes" in out
    assert "acme/private-8b on L4: fits\n" not in out


def test_without_layer_shapes_validate_warns_at_the_gpu(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = write(tmp_path, "private.yaml", PRIVATE_8B)
    code, _, err = run(capsys, "validate", spec)
    assert code == 0
    assert (
        f"warning: {spec}:7:6: gpu: acme/private-8b on L4: the weights fit, context not "
        "checked: no layer shapes; set model.architecture {layers, kv_heads, head_dim} from "
        "its config.json to check it"
    ) in err.splitlines()


def test_shapes_in_the_spec_check_the_context(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """8.19B on an L4 leaves 3.7 GB: 36 x 8 x 128 x 4 bytes a token is about 25k, not 32k."""
    text = PRIVATE_8B.replace("  max_model_len: 32k\n", "  max_model_len: 32k\n" + QWEN3_8B_SHAPES)
    spec = write(tmp_path, "private.yaml", text)
    code, out, err = run(capsys, "validate", spec)
    assert (code, out) == (1, "")
    (line,) = err.splitlines()
    assert line.startswith(f"{spec}:8:6: gpu: acme/private-8b does not fit L4: it needs a KV ")
    assert "max_model_len 32,000 (about 25,227 fit)" in line
    shorter = text.replace("max_model_len: 32k", "max_model_len: 16k")
    code, out, err = run(capsys, "explain", write(tmp_path, "short.yaml", shorter))
    assert code == 0 and "acme/private-8b on L4: fits\n" in out and "not checked" not in out


def test_the_catalogue_knows_qwen3_8b_without_a_cache(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The issue's case: Qwen3-8B at 32k on an L4 "fitted" without config.json; it does not.
    The fix is the cheapest choice that fits, two T4s, not the smallest card (A100-40GB)."""
    spec = write(tmp_path, "chat.yaml", QWEN3_8B_ON_L4)
    code, _, err = run(capsys, "validate", spec)
    assert code == 1
    (line,) = err.splitlines()
    assert "Qwen/Qwen3-8B does not fit L4: it needs a KV cache for max_model_len 32,000" in line
    t4 = HOURLY["T4"] * 2
    assert line.endswith(f"use T4:2 (the cheapest that fits, ${t4:.2f} per running hour)")


def test_without_max_model_len_the_native_length_is_checked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """vLLM sizes the KV cache for max_position_embeddings (40,960) when no length is set."""
    spec = write(tmp_path, "chat.yaml", QWEN3_8B_ON_L4.replace("  max_model_len: 32k\n", ""))
    code, _, err = run(capsys, "validate", spec)
    assert code == 1
    assert "max_model_len 40,960 (the model's default; set model.max_model_len)" in err


def test_a_misfit_suggests_the_cheapest_card_not_the_smallest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = write(tmp_path, "gw.yaml", GATEWAY_14B)
    code, _, err = run(capsys, "validate", spec)
    assert code == 1
    assert HOURLY["L40S"] < HOURLY["A100-40GB"]
    assert err.rstrip().endswith(
        f"use L40S (the cheapest that fits, ${HOURLY['L40S']:.2f} per running hour)"
    )


def test_gpus_lists_every_fitting_choice_cheapest_first(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = write(tmp_path, "chat.yaml", QWEN3_8B_ON_L4)  # a misfit: the table is the help
    code, out, _ = run(capsys, "gpus", "--format", "json", spec)
    assert code == 0
    (model,) = json.loads(out)["specs"][0]["models"]
    assert model["model"] == "Qwen/Qwen3-8B" and model["context_checked"]
    offers = model["offers"]
    prices = [offer["per_hour"] for offer in offers]
    assert prices == sorted(prices) and offers[0]["gpu"] == "T4:2"
    shown = {offer["gpu"] for offer in offers}
    assert "L4" not in shown and "A10" not in shown  # neither holds 32k of context
    assert {"L40S", "A100-40GB", "H100:8", "B200:8"} <= shown and "A10:8" not in shown
    assert all(32_000 <= o["context"] <= 40_960 <= o["kv_cache_tokens"] for o in offers)
    l40s = next(offer for offer in offers if offer["gpu"] == "L40S")
    assert l40s["kv_cache_gb"] == round(0.9 * 48 - 1.5 - 8.19 * 2, 1)
    # min_containers 1 on both pools of the app (the class and the HTTP server).
    pools = l40s["idle_floor_month"] / (HOURLY["L40S"] * HOURS_PER_MONTH)
    # Reserved CPU and memory add a little; the GPUs are all but the whole of it.
    assert pools == pytest.approx(round(pools), rel=1e-3) and round(pools) >= 1


def test_gpus_text_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = write(tmp_path, "private.yaml", PRIVATE_8B)
    code, out, _ = run(capsys, "gpus", spec)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"{spec}:"
    assert "context not checked: no layer shapes" in lines[2]
    assert lines[3].split() == [
        "GPU",
        "KV",
        "cache",
        "context",
        "per",
        "hour",
        "idle",
        "floor/month",
    ]
    assert lines[4].split() == [
        "L4",
        "3.7",
        "GB",
        "not",
        "checked",
        f"${HOURLY['L4']:.2f}",
        "$0.00",
    ]
    assert lines[-1].startswith(f"Prices: {PRICES.date}")


def test_gpus_of_a_gateway_uses_one_card_per_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = write(tmp_path, "gw.yaml", GATEWAY_14B)
    code, out, _ = run(capsys, "gpus", "--format", "json", spec)
    assert code == 0
    (model,) = json.loads(out)["specs"][0]["models"]
    assert [o["count"] for o in model["offers"]] == [1] * len(model["offers"])
    assert model["offers"][0]["gpu"] == "L40S"
    assert all(o["idle_floor_month"] is None for o in model["offers"])


def test_gpus_is_a_listed_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "gpus" in capsys.readouterr().out


def test_catalogue_entries_carry_full_layer_shapes() -> None:
    """Every entry added from a published config.json can check the context; Llama 3.1 8B
    keeps 32 layers x 8 KV heads x 128 x 2 (K, V) x 2 bytes = 128 KiB a token."""
    from modal_iac.review.fit import CATALOGUE

    added = [arch for name, arch in CATALOGUE.items() if arch.native_len is not None]
    assert len(added) >= 20 and all(arch.has_shapes for arch in added)
    llama = CATALOGUE["meta-llama/llama-3.1-8b-instruct"]
    assert llama.kv_bytes(1) == 32 * 8 * 128 * 2 * 2 == 128 * 1024
    assert CATALOGUE["qwen/qwen2.5-7b-instruct"] == CATALOGUE["qwen/qwen2.5-7b"]


def test_a_gateway_model_takes_its_shapes_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Qwen3.6-27B is in the catalogue by size only (a hybrid attention, shapes not recorded)."""
    text = GATEWAY_14B.replace("Qwen/Qwen3-14B", "Qwen/Qwen3.6-27B").replace("[L4]", "[H100]")
    code, _, err = run(capsys, "validate", write(tmp_path, "gw.yaml", text))
    assert code == 0
    assert "context not checked: no layer shapes; set models[0].architecture" in err
    shaped = text.replace(
        "    max_model_len: 8k\n",
        "    max_model_len: 8k\n    architecture: {layers: 64, kv_heads: 4, head_dim: 256}\n",
    )
    code, out, err = run(capsys, "explain", write(tmp_path, "shaped.yaml", shaped))
    assert code == 0 and "Qwen/Qwen3.6-27B on H100: fits\n" in out and "not checked" not in err
