"""Placement and runtime settings (region, cloud, ephemeral disk, retries, the autoscaler's
target concurrency, custom domains) end to end: the spec through the CLI's apply to the local
Modal API, asserting on what the real modal client sent in FunctionCreate; the plan's notes
and region-priced cost rows; and the price arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modal_iac.cli import main
from modal_iac.local_api import LocalModalServer
from modal_iac.review.cost import app_cost, describe, load_prices
from modal_iac.spec.placement import billed_memory_mib, region_kind, region_multiplier

PLACED = """\
app: placed-embedding
model:
  id: BAAI/bge-small-en-v1.5
  revision: 5c38ec7c405ec4b44b94cc5a9bb96e735b38267a
  task: embed
gpu: L4
placement:
  region: [eu-west, uk]
  cloud: aws
  routing_region: eu-west
resources:
  memory: 16GiB
  ephemeral_disk: 500GiB
retries:
  max_retries: 4
  backoff_coefficient: 2
  initial_delay: 2s
  max_delay: 30s
scaling:
  concurrency: 16
  target_concurrency: 12
surfaces:
  class: true
  http:
    api_key_secret: emb-key
    custom_domains: [embed.example.com, api.example.org]
"""

TRANSFORMERS = """\
app: placed-transformers
model:
  id: BAAI/bge-small-en-v1.5
  revision: 5c38ec7c405ec4b44b94cc5a9bb96e735b38267a
  task: embed
engine: {name: transformers}
gpu: L4
placement: {region: us, cloud: gcp}
resources: {ephemeral_disk: 40GiB}
retries: 2
scaling: {concurrency: 8, target_concurrency: 6}
surfaces:
  class: {name: Embedder}
  http: {open: true, custom_domains: [embed.example.com]}
"""


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), confirm=lambda question: True)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def project(modal_api: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    (work / "specs").mkdir(parents=True)
    (work / "specs" / "placed.yaml").write_text(PLACED)
    modal_api.state.add_secret("emb-key", ("VLLM_API_KEY",))
    monkeypatch.chdir(work)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    return work


def sent(api: LocalModalServer) -> dict[str, object]:
    """The last Function definition the client sent, by function name."""
    return {r.function.function_name: r.function for r in api.state.requests("FunctionCreate")}


def test_an_app_server_gets_the_placement_as_compute_region_and_the_target_below_the_limit(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """On Modal's @app.server the spec's regions are compute_region, and a target concurrency
    is target_concurrency with concurrency as the hard max_concurrency."""
    spec = project / "specs" / "placed.yaml"
    text = PLACED.replace("  class: true\n", "").replace(
        "    custom_domains: [embed.example.com, api.example.org]\n", "    primitive: server\n"
    )
    spec.write_text(
        text.replace(
            "retries:\n  max_retries: 4\n  backoff_coefficient: 2\n"
            "  initial_delay: 2s\n  max_delay: 30s\n",
            "",
        )
    )
    code, _, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    server = sent(modal_api)["Server"]
    assert server.is_server  # type: ignore[attr-defined]
    assert list(server.scheduler_placement.regions) == ["eu-west", "uk"]  # type: ignore[attr-defined]
    assert server.cloud_provider_str == "aws"  # type: ignore[attr-defined]
    assert server.resources.ephemeral_disk_mb == 500 * 1024  # type: ignore[attr-defined]
    assert server.autoscaler_settings.target_concurrency_float == 12  # type: ignore[attr-defined]
    assert server.max_concurrent_inputs == 16  # type: ignore[attr-defined]


def test_apply_sends_placement_disk_retries_target_and_domains(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "plan")
    assert code == 0, err
    assert "+ create placed-embedding" in out
    # Pinned to regions of both kinds: Modal applies the smaller multiplier (broad, 1.5x).
    assert "in eu-west, uk on aws (region price x1.5)" in out
    assert "custom_domains change: Modal serves the endpoint on each listed domain" in out

    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    functions = sent(modal_api)
    klass, server = functions["Model.*"], functions["Server.*"]
    for fn in (klass, server):
        assert list(fn.scheduler_placement.regions) == ["eu-west", "uk"]  # type: ignore[attr-defined]
        assert fn.cloud_provider_str == "aws"  # type: ignore[attr-defined]
        assert fn.routing_region == "eu-west"  # type: ignore[attr-defined]
        assert fn.resources.ephemeral_disk_mb == 500 * 1024  # type: ignore[attr-defined]
        assert fn.resources.memory_mb == 16 * 1024  # type: ignore[attr-defined]
    policy = klass.retry_policy  # type: ignore[attr-defined]
    assert (policy.retries, policy.backoff_coefficient) == (4, 2.0)
    assert (policy.initial_delay_ms, policy.max_delay_ms) == (2000, 30000)
    assert not server.HasField("retry_policy")  # type: ignore[attr-defined]  # no HTTP retries
    assert server.max_concurrent_inputs == 16  # type: ignore[attr-defined]
    assert server.target_concurrent_inputs == 12  # type: ignore[attr-defined]
    assert klass.target_concurrent_inputs == 0  # type: ignore[attr-defined]
    webhook = server.method_definitions["serve"].webhook_config  # type: ignore[attr-defined]
    assert [d.name for d in webhook.custom_domains] == ["embed.example.com", "api.example.org"]
    # Read back from Modal: the endpoint answers on each custom domain.
    deployed = modal_api.state.function("placed-embedding", "Server.*").data
    assert deployed is not None
    urls = [i.url for i in deployed.method_definitions["serve"].custom_domain_info]
    assert urls == ["https://embed.example.com", "https://api.example.org"]
    assert not any(
        d.webhook_config.custom_domains
        for d in klass.method_definitions.values()  # type: ignore[attr-defined]
    )


def test_a_region_change_is_an_update_priced_at_the_new_multiplier(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", "--yes")[0] == 0
    spec = project / "specs" / "placed.yaml"
    spec.write_text(PLACED.replace("region: [eu-west, uk]", "region: eu-west"))
    code, out, err = cli(capsys, "plan", "--detailed-exitcode")
    assert code == 2, err
    assert "~ update placed-embedding" in out
    assert "placement.region" in out and '["eu-west", "uk"] -> ["eu-west"]' in out
    assert "placement changes: Modal starts the new containers in the new region" in out
    assert "region price x1.75" in out  # narrow only now
    assert "custom_domains change" not in out  # unchanged settings add no note
    assert cli(capsys, "apply", "--yes")[0] == 0
    assert list(sent(modal_api)["Server.*"].scheduler_placement.regions) == ["eu-west"]  # type: ignore[attr-defined]

    # Unpinning takes the multiplier away; dropping the retries sends no retry policy.
    text = PLACED.replace("  region: [eu-west, uk]\n  cloud: aws\n", "")
    text = text.split("retries:")[0] + "scaling:" + text.split("scaling:")[1]
    spec.write_text(text)
    code, out, err = cli(capsys, "plan")
    assert code == 0, err
    assert "region price" not in out
    assert "retries change: the policy applies to calls made after the deploy" in out
    assert cli(capsys, "apply", "--yes")[0] == 0
    klass = sent(modal_api)["Model.*"]
    assert not klass.HasField("retry_policy")  # type: ignore[attr-defined]
    assert list(klass.scheduler_placement.regions) == []  # type: ignore[attr-defined]
    assert klass.cloud_provider_str == ""  # type: ignore[attr-defined]


def test_transformers_class_gets_them_on_its_one_class(
    modal_api: LocalModalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "t.yaml").write_text(TRANSFORMERS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    code, _, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    fn = sent(modal_api)["Embedder.*"]
    assert list(fn.scheduler_placement.regions) == ["us"]  # type: ignore[attr-defined]
    assert fn.cloud_provider_str == "gcp"  # type: ignore[attr-defined]
    assert fn.resources.ephemeral_disk_mb == 40 * 1024  # type: ignore[attr-defined]
    # retries: 2 is Modal's retries=2: a fixed one-second delay.
    policy = fn.retry_policy  # type: ignore[attr-defined]
    assert (policy.retries, policy.backoff_coefficient, policy.initial_delay_ms) == (2, 1.0, 1000)
    assert (fn.max_concurrent_inputs, fn.target_concurrent_inputs) == (8, 6)  # type: ignore[attr-defined]
    webhook = fn.method_definitions["serve"].webhook_config  # type: ignore[attr-defined]
    assert [d.name for d in webhook.custom_domains] == ["embed.example.com"]


def test_explain_names_the_multiplier_and_the_domains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "placed.yaml"
    path.write_text(PLACED)
    code, out, err = cli(capsys, "render", "--explain", str(path))
    assert code == 0, err
    assert 'placement.region                    = ["eu-west", "uk"]' in out
    assert "# region eu-west, uk: Modal multiplies GPU, CPU and memory rates (x1.5" in out
    assert "# custom domain api.example.org: add and verify it" in out


def test_cloud_names_are_modal_cloud_providers() -> None:
    """The spec's cloud names are the CloudProvider values of Modal's API (modal_proto)."""
    from typing import get_args

    from modal_proto import api_pb2

    from modal_iac.spec.placement import CLOUDS
    from modal_iac.spec.runtime import Placement

    literal = get_args(Placement.model_fields["cloud"].annotation)[0]
    assert get_args(literal) == CLOUDS
    providers = {
        name.removeprefix("CLOUD_PROVIDER_").lower()
        for name in api_pb2.CloudProvider.DESCRIPTOR.values_by_name
    }
    assert set(CLOUDS) == providers - {"unspecified"}


# -- prices ----------------------------------------------------------------------------------


def test_region_kinds_and_modal_multiplier_rule() -> None:
    table = {"broad": 1.5, "narrow": 1.75}
    assert [region_kind(c) for c in ("us", "us-west", "jp", "us-east-1", "us-east4", "mars")] == [
        "broad",
        "narrow",
        "narrow",
        "narrow",
        "narrow",
        None,
    ]
    assert region_multiplier([], table) == 1.0
    assert region_multiplier(["us-west"], table) == 1.75
    assert region_multiplier(["us-west", "eu"], table) == 1.5  # the smaller of the two
    assert region_multiplier(["us"], {"narrow": 1.75}) is None  # no row: no price


def test_a_disk_request_bills_a_twentieth_of_it_as_memory() -> None:
    assert billed_memory_mib(None, None) is None
    assert billed_memory_mib(1024, None) == 1024
    assert billed_memory_mib(None, 20 * 1024) == 1024
    assert billed_memory_mib(4096, 20 * 1024) == 4096
    assert billed_memory_mib(None, 21) == 2  # rounded up


def test_cost_of_a_pinned_app_multiplies_gpu_and_host_rates() -> None:
    prices = load_prices()
    base = {"gpu": ["L4"], "surfaces.class.name": "Model", "resources.memory": "16GiB"}
    plain = app_cost(base, prices)
    pinned = app_cost({**base, "placement.region": ["us-west"]}, prices)
    assert plain is not None and pinned is not None
    assert plain.hourly is not None and pinned.hourly is not None
    assert pinned.hourly == pytest.approx(plain.hourly * 1.75)
    assert "in us-west (region price x1.75)" in describe(pinned)
    disk = app_cost({**base, "resources.ephemeral_disk": "1TiB"}, prices)
    assert disk is not None and disk.hourly is not None
    memory_gib_hour = prices.host["memory_gib"] * 3600
    billed_gib = 52429 / 1024  # 1 TiB / 20, rounded up to a whole MiB
    assert disk.hourly == pytest.approx(plain.hourly + (billed_gib - 16) * memory_gib_hour)
    assert f"{billed_gib:g} GiB (1/20 of the disk), 1024 GiB disk reserved" in describe(disk)


def test_a_price_file_may_set_region_multipliers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"regions": {"narrow": {"multiplier": 2}}}))
    prices = load_prices(str(path))
    assert prices.regions == {"broad": 1.5, "narrow": 2.0}
    path.write_text(json.dumps({"regions": {"tiny": {"multiplier": 2}}}))
    with pytest.raises(Exception, match=r"regions.tiny: expected one of broad, narrow"):
        load_prices(str(path))
    path.write_text(json.dumps({"regions": {"broad": {"multiplier": 0.5}}}))
    with pytest.raises(Exception, match=r"regions.broad: expected a multiplier of at least 1"):
        load_prices(str(path))


def test_json_and_markdown_plans_carry_the_region_multiplier(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import jsonschema

    code, out, err = cli(capsys, "plan", "--format", "json")
    assert code == 0, err
    plan = json.loads(out)
    schema = json.loads((Path(__file__).parent.parent / "docs/plan.schema.json").read_text())
    jsonschema.validate(plan, schema)
    (app,) = plan["cost"]["apps"]
    assert app["region_multiplier"] == 1.5
    assert app["hourly"] == pytest.approx(sum(p["hourly"] for p in app["pools"]))
    code, out, err = cli(capsys, "plan", "--format", "markdown")
    assert code == 0, err
    assert "in eu-west, uk on aws (region price x1.5)" in out


GATEWAY = {
    "kind": "gateway",
    "name": "gw",
    "models": [{"id": "org/alpha", "name": "alpha"}, {"id": "org/beta", "name": "beta"}],
    "gpus": ["L4"],
    "router": {"open": True},
    "placement": {"region": "eu", "cloud": "oci"},
    "scaling": {"concurrency": 32, "target_concurrency": 24},
}


def test_gateway_pins_its_pools_and_router_and_targets_the_pools(
    modal_api: LocalModalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "gw.yaml").write_text(json.dumps(GATEWAY))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODALIAC_STATE", raising=False)
    code, out, err = cli(capsys, "plan")
    assert code == 0, err
    assert "in eu on oci (region price x1.5)" in out
    code, _, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    functions = sent(modal_api)
    assert set(functions) == {"router", "Alpha.*", "Beta.*"}
    for name, fn in functions.items():
        assert list(fn.scheduler_placement.regions) == ["eu"], name  # type: ignore[attr-defined]
        assert fn.cloud_provider_str == "oci", name  # type: ignore[attr-defined]
    for name in ("Alpha.*", "Beta.*"):
        pool = functions[name]
        assert (pool.max_concurrent_inputs, pool.target_concurrent_inputs) == (32, 24)  # type: ignore[attr-defined]
    assert functions["router"].target_concurrent_inputs == 0  # type: ignore[attr-defined]


def test_gateway_target_concurrency_above_concurrency_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(json.dumps({**GATEWAY, "scaling": {"concurrency": 2, "target_concurrency": 4}}))
    code, out, err = cli(capsys, "validate", str(path))
    assert (code, out) == (1, "")
    assert "scaling.target_concurrency: 4 is above concurrency" in err
    # Unset, each pool's concurrency is what vLLM batches (32): a target above it is refused.
    path.write_text(json.dumps({**GATEWAY, "scaling": {"target_concurrency": 64}}))
    code, out, err = cli(capsys, "validate", str(path))
    assert (code, out) == (1, "")
    assert "scaling.target_concurrency: 64 is above model " in err
    assert "(32 by default: what vLLM batches)" in err


def test_a_routing_region_change_blocks_the_plan_as_modal_refuses_it(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Modal takes a function's routing region at its first deploy only: the plan says so
    (a blocker, exit 1 with --detailed-exitcode), apply refuses, and the local API refuses
    such a redeploy like Modal."""
    assert cli(capsys, "apply", "--yes")[0] == 0
    spec = project / "specs" / "placed.yaml"
    spec.write_text(PLACED.replace("routing_region: eu-west", "routing_region: us-west"))
    code, out, err = cli(capsys, "plan", "--detailed-exitcode")
    assert code == 1, err
    assert (
        "placement.routing_region changes from eu-west to us-west, but Modal fixes a "
        "function's routing region at its first deploy"
    ) in out
    before = len(modal_api.state.requests("AppPublish"))
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 1
    assert len(modal_api.state.requests("AppPublish")) == before  # nothing deployed

    # Dropping it goes back to Modal's default, us-east: a change too.
    spec.write_text(PLACED.replace("  routing_region: eu-west\n", ""))
    code, out, _ = cli(capsys, "plan")
    assert "from eu-west to us-east" in out


def test_the_local_api_refuses_a_redeploy_with_another_routing_region(
    modal_api: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modal
    import modal.runner
    from helpers import import_file

    from modal_iac.loading.load import load_spec
    from modal_iac.render.app import render

    spec = tmp_path / "placed.yaml"
    modal_api.state.add_secret("emb-key", ("VLLM_API_KEY",))
    for attempt, region in enumerate(("eu-west", "ap-south")):
        spec.write_text(PLACED.replace("routing_region: eu-west", f"routing_region: {region}"))
        target = tmp_path / f"placed_{attempt}.py"
        target.write_text(render(load_spec(spec)).source)
        module = import_file(target, f"placed_{attempt}", monkeypatch)
        if attempt == 0:
            modal.runner.deploy_app(module.app, name="placed-embedding")
            continue
        with pytest.raises(modal.exception.Error, match="routing_region can only be set"):
            modal.runner.deploy_app(module.app, name="placed-embedding")
