"""Policy rules (modal_iac/policy.py): each firing and not, suppression, located lines, the
plan's three formats, and docs/policies.md listing exactly the rules the code has."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from modal_iac.cli import main
from modal_iac.errors import SpecErrors
from modal_iac.loading.load import load_spec
from modal_iac.loading.parse import round_trip
from modal_iac.review.policy import RULES

ROOT = Path(__file__).resolve().parent.parent
COMMIT = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
BASE = f"""\
app: demo
model:
  id: org/model
  revision: {COMMIT}
  task: embed
gpu: L4
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def rule_ids(tmp_path: Path, text: str) -> list[str]:
    """Ids of the policy warnings a spec raises (errors raise; GPU fit warnings are not rules)."""
    loaded = load_spec(write(tmp_path, text))
    found = (re.search(r"\[(MDL\d{3})\]", w.message) for w in loaded.warnings)
    return [match.group(1) for match in found if match]


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SpecErrors) as info:
        load_spec(write(tmp_path, text))
    return [str(e) for e in info.value.errors]


def test_a_clean_spec_has_no_findings(tmp_path: Path) -> None:
    assert rule_ids(tmp_path, BASE) == []


def test_mdl001_moving_revision(tmp_path: Path) -> None:
    assert rule_ids(tmp_path, BASE.replace(COMMIT, "main")) == ["MDL001"]
    loaded = load_spec(write(tmp_path, BASE.replace(COMMIT, "main")))
    assert str(loaded.warnings[0]).startswith(
        f"{tmp_path / 'spec.yaml'}:4:13: model.revision: [MDL001] 'main' is not a commit"
    )
    assert "(fix: pin the revision to a 40-character commit hash)" in str(loaded.warnings[0])


def test_mdl002_is_the_validation_error_with_its_id(tmp_path: Path) -> None:
    found = errors(tmp_path, BASE.replace("gpu: L4", "gpu: H100:2\nsnapshot: gpu"))
    assert found == [
        f"{tmp_path / 'spec.yaml'}:7:11: snapshot: snapshot gpu with 2 GPUs per container "
        "(tensor parallel) is not supported by GPU memory snapshots; use one GPU or "
        "snapshot: none [MDL002]"
    ]
    text = BASE + "policy:\n  suppress:\n    MDL002: because\n"
    assert any("MDL002 cannot be suppressed" in e for e in errors(tmp_path, text))


SLEEP = BASE.replace("gpu: L4", "gpu: B200\nsnapshot: sleep").replace(
    "  task: embed\n", "  task: generate\n  parameters: 40B\n"
)


def test_mdl003_sleep_level_1_beyond_host_memory(tmp_path: Path) -> None:
    found = errors(tmp_path, SLEEP)
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'spec.yaml'}:8:11: snapshot: [MDL003]")
    assert "weights (75 GiB)" in found[0] and "64 GiB" in found[0]
    assert rule_ids(tmp_path, SLEEP + "engine:\n  sleep_level: 2\n") == []


def test_mdl003_measures_the_weights_against_reserved_memory(tmp_path: Path) -> None:
    assert rule_ids(tmp_path, SLEEP + "resources:\n  memory: 80GiB\n") == []
    (found,) = errors(tmp_path, SLEEP + "resources:\n  memory: 70GiB\n")
    assert found.startswith(f"{tmp_path / 'spec.yaml'}:10:11: resources.memory: [MDL003]")
    assert "weights (75 GiB) in host memory, more than resources.memory reserves (70 GiB)" in found
    assert "(fix: reserve resources.memory above the weights" in found


def test_mdl010_sleep_level_1_without_reserved_memory(tmp_path: Path) -> None:
    warnings = load_spec(write(tmp_path, SLEEP.replace("40B", "20B"))).warnings
    (warning,) = [w for w in warnings if w.code != "context-unchecked"]  # org/model: no shapes
    assert str(warning).startswith(f"{tmp_path / 'spec.yaml'}:8:11: snapshot: [MDL010]")
    assert "weights (37 GiB)" in str(warning)
    unknown = SLEEP.replace("  parameters: 40B\n", "")
    assert rule_ids(tmp_path, unknown) == ["MDL010"]  # size unknown: still not reserved
    assert rule_ids(tmp_path, unknown + "resources:\n  memory: 16GiB\n") == []
    assert rule_ids(tmp_path, BASE.replace("gpu: L4", "gpu: L4\nsnapshot: gpu")) == []


def test_mdl003_points_at_sleep_level_when_it_is_written(tmp_path: Path) -> None:
    found = errors(tmp_path, SLEEP + "engine:\n  sleep_level: 1\n")
    assert found[0].startswith(f"{tmp_path / 'spec.yaml'}:10:16: engine.sleep_level: [MDL003]")


def test_mdl004_memory_utilization_with_snapshots(tmp_path: Path) -> None:
    high = "engine:\n  gpu_memory_utilization: 0.95\n"
    assert rule_ids(tmp_path, BASE + "snapshot: gpu\n" + high) == ["MDL004"]
    assert (
        rule_ids(tmp_path, BASE + "snapshot: gpu\nengine:\n  gpu_memory_utilization: 0.9\n") == []
    )
    assert rule_ids(tmp_path, BASE + high) == []  # no snapshot to restore


def test_mdl005_buffer_beyond_max_containers(tmp_path: Path) -> None:
    scaling = "scaling:\n  min_containers: 1\n  max_containers: 2\n  buffer_containers: {}\n"
    assert rule_ids(tmp_path, BASE + scaling.format(2)) == ["MDL005"]
    assert rule_ids(tmp_path, BASE + scaling.format(1)) == []


def test_mdl006_downloader_timeout_beyond_24h(tmp_path: Path) -> None:
    found = errors(tmp_path, BASE + "surfaces:\n  downloader:\n    timeout: 25h\n")
    assert found == [
        f"{tmp_path / 'spec.yaml'}:9:14: surfaces.downloader.timeout: [MDL006] 25h is above "
        "Modal's maximum function timeout (24h) (fix: use at most 24h)"
    ]
    assert rule_ids(tmp_path, BASE + "surfaces:\n  downloader:\n    timeout: 24h\n") == []


def test_mdl007_warns_for_an_endpoint_the_spec_declares_open(tmp_path: Path) -> None:
    opened = BASE + "surfaces:\n  http:\n    open: true\n"
    (warning,) = load_spec(write(tmp_path, opened)).warnings
    assert str(warning) == (
        f"{tmp_path / 'spec.yaml'}:9:11: surfaces.http.open: [MDL007] the endpoint is served "
        "without an API key: it answers anyone who has its URL (fix: replace open: true with "
        "api_key_secret naming a Modal secret that holds the key, or suppress MDL007 saying why "
        "the endpoint may be public)"
    )
    keyed = BASE + "surfaces:\n  http:\n    api_key_secret: demo-key\n"
    assert rule_ids(tmp_path, keyed) == []
    silenced = opened + 'policy:\n  suppress:\n    MDL007: "a public demo of a public model"\n'
    assert rule_ids(tmp_path, silenced) == []
    # Neither a key nor open: true is no warning but an error (tests/test_spec_errors.py).
    (error,) = errors(tmp_path, BASE + "surfaces:\n  http: {}\n")
    assert "surfaces.http: has no api_key_secret" in error


def test_mdl008_deprecated_settings(tmp_path: Path) -> None:
    env = "image:\n  env:\n    HF_HUB_ENABLE_HF_TRANSFER: '1'\n"
    assert rule_ids(tmp_path, BASE + env) == ["MDL008"]
    # With the default vLLM the table has no guided_* argument: a validation error instead.
    args = "engine:\n  args:\n    guided_decoding_backend: xgrammar\n"
    (error,) = errors(tmp_path, BASE + args)
    assert "guided_decoding_backend: not a vLLM 0.33.0 engine argument" in error
    pinned = "engine:\n  version: 0.34.0\n  args:\n    guided_decoding_backend: xgrammar\n"
    assert rule_ids(tmp_path, BASE + pinned) == ["MDL008"]
    assert rule_ids(tmp_path, BASE + "engine:\n  args:\n    enable_prefix_caching: true\n") == []


def test_mdl009_endpoint_limit_through_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for index in range(9):
        text = BASE.replace("app: demo", f"app: demo{index}") + (
            "surfaces:\n  http:\n    api_key_secret: k\n"
        )
        (tmp_path / f"s{index}.yaml").write_text(text)
    assert main(["validate", str(tmp_path)]) == 0
    assert "[MDL009] these specs expose 9 web endpoints" in capsys.readouterr().err
    first = tmp_path / "s0.yaml"
    first.write_text(first.read_text() + "policy:\n  suppress:\n    MDL009: paid plan\n")
    assert main(["validate", str(tmp_path)]) == 0
    assert "MDL009" not in capsys.readouterr().err


def test_mdl014_the_hugging_face_token_where_the_hub_does_not_read_it(tmp_path: Path) -> None:
    # seed 002: the token stored as HUGGINGFACE_TOKEN, which huggingface_hub ignores
    text = BASE + "image:\n  env:\n    HUGGINGFACE_TOKEN: from-ci\n"
    (warning,) = load_spec(write(tmp_path, text)).warnings
    assert str(warning).startswith(
        f"{tmp_path / 'spec.yaml'}:9:24: image.env.HUGGINGFACE_TOKEN: [MDL012] HUGGINGFACE_TOKEN "
        "in image.env: huggingface_hub ignores it (it reads HF_TOKEN)"
    )
    assert "(fix: keep the token as HF_TOKEN in a Modal secret named by hf_token_secret)" in str(
        warning
    )
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        in_env = BASE + f"image:\n  env:\n    {name}: x\n"
        assert rule_ids(tmp_path, in_env) == ["MDL012"]
    assert rule_ids(tmp_path, BASE + "image:\n  env:\n    HF_HOME: /cache\n") == []


@pytest.mark.parametrize("name", ["huggingface", "hf-token", "adithya-hf-wandb", "HuggingFace2"])
def test_mdl014_a_hugging_face_secret_under_secrets_is_unchecked(tmp_path: Path, name: str) -> None:
    loaded = load_spec(write(tmp_path, BASE + f"secrets: [wandb, {name}]\n"))
    (warning,) = loaded.warnings
    assert f":7:18: secrets[1]: [MDL012] '{name}' looks like the Hugging Face token's" in str(
        warning
    )
    assert "move it to hf_token_secret" in str(warning)
    moved = BASE + f"secrets: [wandb]\nhf_token_secret: {name}\n"
    assert rule_ids(tmp_path, moved) == []


@pytest.mark.parametrize("name", ["wandb", "shfl", "graphql-key", "chf"])
def test_mdl014_other_secret_names_are_left_alone(tmp_path: Path, name: str) -> None:
    assert rule_ids(tmp_path, BASE + f"secrets: [{name}]\n") == []


# -- suppression ---------------------------------------------------------------------------


def test_suppression_with_a_reason_silences_the_rule(tmp_path: Path) -> None:
    text = BASE.replace(COMMIT, "main") + "policy:\n  suppress:\n    MDL001: tags are immutable\n"
    assert rule_ids(tmp_path, text) == []


def test_suppression_silences_an_error_rule(tmp_path: Path) -> None:
    text = SLEEP + "policy:\n  suppress:\n    MDL003: 'the container has 256 GiB'\n"
    assert rule_ids(tmp_path, text) == []
    text = SLEEP + "resources:\n  memory: 70GiB\n" + "policy:\n  suppress:\n    MDL003: 'ok'\n"
    assert rule_ids(tmp_path, text) == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('MDL001: ""', "policy.suppress.MDL001: a suppression needs a reason; say why"),
        ("MDL001: '  '", "policy.suppress.MDL001: a suppression needs a reason; say why"),
        ("MDL999: why", "policy.suppress.MDL999: unknown rule 'MDL999'; see docs/policies.md"),
    ],
)
def test_a_bad_suppression_is_a_located_error(tmp_path: Path, entry: str, message: str) -> None:
    found = errors(tmp_path, BASE + "policy:\n  suppress:\n    " + entry + "\n")
    assert found == [f"{tmp_path / 'spec.yaml'}:9:5: {message}"]


def test_a_suppression_id_must_look_like_one(tmp_path: Path) -> None:
    schema = json.loads((ROOT / "schema.json").read_text())
    document = {"app": "a", "model": {"id": "o/m", "task": "embed"}, "gpu": "L4"}
    document["policy"] = {"suppress": {"nope": "x"}}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(document))


# -- commands ------------------------------------------------------------------------------


def test_validate_prints_warnings_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, BASE.replace(COMMIT, "main"))
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok (demo)\n"
    assert err.startswith(f"warning: {path}:4:13: model.revision: [MDL001] ")


def test_validate_and_plan_exit_1_on_an_error_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, SLEEP)
    assert main(["validate", str(path)]) == 1
    assert "spec.yaml:8:11: snapshot: [MDL003]" in capsys.readouterr().err
    assert main(["plan", "--offline", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "[MDL003]" in err


@pytest.mark.parametrize("form", ["text", "json", "markdown"])
def test_plan_shows_warnings_in_every_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, BASE.replace(COMMIT, "main"))
    assert main(["plan", "--offline", "--format", form, str(path)]) == 0
    out = capsys.readouterr().out
    assert "[MDL001]" in out
    if form == "json":
        plan = json.loads(out)
        schema = json.loads((ROOT / "docs" / "plan.schema.json").read_text())
        jsonschema.validate(plan, schema)
        (warning,) = [w for w in plan["warnings"] if w["code"] == "MDL001"]
        assert warning["address"] == "demo" and "[MDL001]" in warning["message"]
        assert warning["fix"] == "pin the revision to a 40-character commit hash"


def test_examples_and_specs_raise_no_policy_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "examples")]) == 0
    assert main(["validate", str(ROOT / "specs")]) == 0


def test_the_doc_lists_every_rule_and_only_those() -> None:
    text = (ROOT / "docs" / "policies.md").read_text()
    documented = re.findall(r"^### (MDL\d{3}) ([a-z-]+) \((error|warning)", text, re.MULTILINE)
    assert [rule_id for rule_id, _, _ in documented] == sorted(RULES)
    for rule_id, name, severity in documented:
        assert (RULES[rule_id].name, RULES[rule_id].severity) == (name, severity)


@pytest.mark.parametrize(
    "path",
    sorted(
        str(p)
        for folder in ("specs", "examples")
        for p in (Path(__file__).resolve().parent.parent / folder).glob("*.yaml")
    ),
)
def test_fast_path_locates_warnings_like_the_positioned_path(path: str) -> None:
    """Specs that only warn stay on the fast path (a key scan instead of the round-trip
    parse), and the lines it reports are the ones the round-trip parser would give."""
    from modal_iac.loading import load

    fast = [str(w) for w in load.load_spec(path).warnings]
    text = Path(path).read_text(encoding="utf-8")
    _, slow, *_ = load._validated(round_trip(text, path), path, None)
    assert fast == [str(w) for w in slow]


# -- gateways -----------------------------------------------------------------------------------

GATEWAY = f"""\
kind: gateway
name: gw
models:
  - id: google/gemma-3-12b-it
    name: small
    revision: {COMMIT}
  - id: google/gemma-3-27b-it
    name: big
    revision: {COMMIT}
gpus: [H100]
router:
  api_key_secret: gw-key
"""


def test_a_clean_gateway_has_no_findings(tmp_path: Path) -> None:
    assert rule_ids(tmp_path, GATEWAY) == []


def test_gateway_moving_revisions_are_located_per_model(tmp_path: Path) -> None:
    text = GATEWAY.replace(f"revision: {COMMIT}\ngpus", "revision: v1\ngpus")
    loaded = load_spec(write(tmp_path, text))
    (warning,) = loaded.warnings
    assert str(warning).startswith(
        f"{tmp_path / 'spec.yaml'}:9:15: models[1].revision: [MDL001] 'v1' is not a commit"
    )


def test_gateway_router_declared_open(tmp_path: Path) -> None:
    text = GATEWAY.replace("  api_key_secret: gw-key\n", "  open: true\n")
    (warning,) = load_spec(write(tmp_path, text)).warnings
    assert ":12:9: router.open: [MDL007] every app's router is served without an API key" in str(
        warning
    )
    silenced = text + 'policy:\n  suppress:\n    MDL007: "a public demo"\n'
    assert rule_ids(tmp_path, silenced) == []
    (error,) = errors(tmp_path, GATEWAY.replace("router:\n  api_key_secret: gw-key\n", ""))
    assert 'missing key "router"' in error


def test_gateway_scaling_and_deprecated_env(tmp_path: Path) -> None:
    text = GATEWAY + (
        "scaling:\n  max_containers: 1\n  buffer_containers: 1\n  min_containers: 1\n"
        "image:\n  env:\n    HF_HUB_ENABLE_HF_TRANSFER: '1'\n"
    )
    assert rule_ids(tmp_path, text) == ["MDL005", "MDL008"]


def test_mdl015_a_router_that_waits_past_the_model_call_timeout(tmp_path: Path) -> None:
    text = GATEWAY + "  upstream_timeout: 10m\nscaling:\n  timeout: 5m\n"
    (warning,) = load_spec(write(tmp_path, text)).warnings
    assert str(warning).startswith(
        f"{tmp_path / 'spec.yaml'}:13:21: router.upstream_timeout: [MDL013] the router waits up "
        "to 10m for a model, but Modal cuts each model call at scaling.timeout (5m)"
    )
    # equal, shorter, or unset (then it is scaling.timeout): nothing contradicts
    for wait in ("5m", "90s"):
        agreeing = GATEWAY + f"  upstream_timeout: {wait}\nscaling:\n  timeout: 5m\n"
        assert rule_ids(tmp_path, agreeing) == []
    assert rule_ids(tmp_path, GATEWAY + "scaling:\n  timeout: 1m\n") == []
    # the default scaling.timeout (5m) counts too
    assert rule_ids(tmp_path, GATEWAY + "  upstream_timeout: 6m\n") == ["MDL013"]
    silenced = GATEWAY + "  upstream_timeout: 6m\n" + 'policy:\n  suppress:\n    MDL013: "why"\n'
    assert rule_ids(tmp_path, silenced) == []


def test_the_router_default_wait_follows_the_model_call_timeout(tmp_path: Path) -> None:
    from modal_iac.spec.gateway import GatewaySpec

    spec = load_spec(write(tmp_path, GATEWAY + "scaling:\n  timeout: 4m\n")).spec
    assert isinstance(spec, GatewaySpec)
    assert (spec.upstream_timeout, spec.router_timeout) == (240, 270)
    spec = load_spec(write(tmp_path, GATEWAY + "  upstream_timeout: 1m\n")).spec
    assert isinstance(spec, GatewaySpec)
    assert (spec.upstream_timeout, spec.router_timeout) == (60, 90)


def test_a_gateway_suppresses_with_a_reason(tmp_path: Path) -> None:
    text = GATEWAY.replace(f"revision: {COMMIT}\ngpus", "revision: v1\ngpus")
    silenced = text + 'policy:\n  suppress:\n    MDL001: "v1 is an immutable release tag"\n'
    assert rule_ids(tmp_path, silenced) == []
    (error,) = errors(tmp_path, text + 'policy:\n  suppress:\n    MDL001: " "\n')
    assert "policy.suppress.MDL001: a suppression needs a reason" in error


def test_plan_lists_a_gateway_s_warnings_once_with_the_fit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = GATEWAY.replace("gpus: [H100]", "gpus: [L40S, A100-80GB]")
    text = text.replace("google/gemma-3-27b-it", "google/gemma-3-4b-it")
    text = text.replace("    name: small\n", "    name: small\n    gpu_memory_utilization: 0.59\n")
    text = text.replace(f"revision: {COMMIT}\ngpus", "revision: main\ngpus")
    write(tmp_path, text)
    assert main(["plan", "spec.yaml", "--format", "json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert [(w["address"], w["code"]) for w in warnings] == [
        ("gw-l40s", "tight-fit"),
        ("gw-l40s", "MDL001"),
    ]
    assert (
        "spec.yaml:11:8: gpus[0]: google/gemma-3-12b-it fits L40S tightly" in warnings[0]["message"]
    )
    assert "models[1].revision: [MDL001] 'main' is not a commit" in warnings[1]["message"]


# -- MDL011: the base image's CUDA and the engine's ---------------------------------------------

CUDA12 = "nvidia/cuda:12.8.1-devel-ubuntu22.04"


@pytest.mark.parametrize(
    "base",
    [
        CUDA12,
        "docker.io/nvidia/cuda:12.4.1-runtime-ubuntu22.04",
        "nvcr.io/nvidia/cuda:11.8.0-base-ubuntu22.04",
        "nvidia/cuda:12.9.1-cudnn-devel-ubuntu24.04",
    ],
)
def test_mdl011_a_cuda_base_image_of_another_major_version(tmp_path: Path, base: str) -> None:
    (warning,) = load_spec(write(tmp_path, BASE + f"image:\n  base: {base}\n")).warnings
    have = base.split(":", 2)[1].split(".")[0]
    assert str(warning) == (
        f"{tmp_path / 'spec.yaml'}:8:9: image.base: [MDL011] {base!r} carries CUDA {have}, but "
        "vllm 0.33.0 runs torch 2.14.0, built for CUDA 13: what the container compiles with the "
        "image's nvcc (FlashInfer's JIT kernels, CUDA extensions) would not match it (fix: use "
        "an nvidia/cuda image of the engine's CUDA major version, such as the default "
        "nvidia/cuda:13.0.3-devel-ubuntu22.04)"
    )


@pytest.mark.parametrize(
    "base",
    [
        "nvidia/cuda:13.0.3-devel-ubuntu22.04",
        "nvidia/cuda:13.0.1-devel-ubuntu24.04",
        "nvidia/cuda:latest",  # no version in the tag
        "nvidia/cuda",
        "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-devel",  # not NVIDIA's CUDA image
        "localhost:5000/nvidia/cuda:12.8.1-devel-ubuntu22.04",  # a mirror: unknown
    ],
)
def test_mdl011_is_quiet_for_a_matching_or_unknown_image(tmp_path: Path, base: str) -> None:
    assert rule_ids(tmp_path, BASE + f"image:\n  base: {base}\n") == []


def test_mdl011_reads_the_tag_of_a_reference_with_a_digest(tmp_path: Path) -> None:
    digest = f"@sha256:{'a' * 64}"
    assert rule_ids(tmp_path, BASE + f"image:\n  base: {CUDA12}{digest}\n") == ["MDL011"]
    assert rule_ids(tmp_path, BASE + f"image:\n  base: nvidia/cuda{digest}\n") == []


def test_mdl011_the_default_image_matches_every_pinned_engine(tmp_path: Path) -> None:
    assert rule_ids(tmp_path, BASE) == []
    transformers = BASE + "engine:\n  name: transformers\n"
    assert rule_ids(tmp_path, transformers) == []
    (warning,) = load_spec(write(tmp_path, transformers + f"image:\n  base: {CUDA12}\n")).warnings
    assert f"[MDL011] '{CUDA12}' carries CUDA 12, but " in str(warning)
    assert "transformers 5.20.2 runs torch 2.13.0, built for CUDA 13" in str(warning)
    # An older vLLM pinned on the default image: located at the pin, quiet on a CUDA 12 image.
    older = BASE + "engine:\n  version: 0.11.0\n"
    (warning,) = load_spec(write(tmp_path, older)).warnings
    assert f"{tmp_path / 'spec.yaml'}:8:12: engine.version: [MDL011] " in str(warning)
    assert "carries CUDA 13, but vllm 0.11.0 runs torch 2.8.0, built for CUDA 12" in str(warning)
    assert rule_ids(tmp_path, older + f"image:\n  base: {CUDA12}\n") == []
    assert rule_ids(tmp_path, BASE + "engine:\n  version: 0.32.0\n") == []
    # An engine release modaliac has no torch entry for is not guessed at.
    other = BASE + f"engine:\n  version: 0.34.0\nimage:\n  base: {CUDA12}\n"
    assert rule_ids(tmp_path, other) == []


def test_mdl011_suppressed_with_a_reason(tmp_path: Path) -> None:
    text = BASE + f"image:\n  base: {CUDA12}\n"
    silenced = text + 'policy:\n  suppress:\n    MDL011: "no JIT kernels: FLASHINFER off"\n'
    assert rule_ids(tmp_path, silenced) == []


def test_mdl011_in_a_gateway_and_through_validate_and_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, GATEWAY + f"image:\n  base: {CUDA12}\n")
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {path}:14:9: image.base: [MDL011] '{CUDA12}' carries CUDA 12" in err
    assert main(["plan", "--offline", "--format", "json", str(path)]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert [(w["address"], w["code"]) for w in warnings] == [("gw-h100", "MDL011")]
    assert "vllm 0.33.0 runs torch 2.14.0, built for CUDA 13" in warnings[0]["message"]
    (older,) = load_spec(write(tmp_path, GATEWAY + "engine_version: 0.11.0\n")).warnings
    assert f"{path}:13:17: engine_version: [MDL011] " in str(older)


def test_mdl011_located_alike_on_the_fast_and_the_positioned_path(tmp_path: Path) -> None:
    from modal_iac.loading import load

    path = write(tmp_path, BASE + f"image:\n  python: '3.12'\n  base: {CUDA12}\n")
    fast = [str(w) for w in load.load_spec(path).warnings]
    text = path.read_text(encoding="utf-8")
    _, slow, *_ = load._validated(round_trip(text, str(path)), str(path), None)
    assert fast == [str(w) for w in slow]
    assert ":9:9: image.base: [MDL011]" in fast[0]
