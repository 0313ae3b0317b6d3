"""schema.json: generated from the models, committed up to date, and in agreement with them.

Editors validate specs with schema.json (through the ``# yaml-language-server`` line every
spec starts with); modaliac validates them with the pydantic models. The two must accept the
checked-in specs and refuse the same malformed ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError
from ruamel.yaml import YAML

from modal_iac.cli import main
from modal_iac.spec.fields import GPU_ALIASES, GPU_TYPES
from modal_iac.spec.gateway import GatewaySpec
from modal_iac.spec.schema import schema_text
from modal_iac.spec.service import Spec

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "schema.json"
SPEC_FILES = sorted([*(ROOT / "specs").glob("*.yaml"), *(ROOT / "examples").glob("*.yaml")])
SCHEMA_LINE = "# yaml-language-server: $schema="


def read_yaml(text: str) -> Any:
    # The pure-Python parser: libyaml refuses `[H100:2]` in flow lists, which YAML 1.2 allows.
    return YAML(typ="safe", pure=True).load(text)


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(validator: Draft202012Validator, data: Any) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)
    ]


def test_schema_json_is_generated_from_the_models() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "schema.json is stale; regenerate it with: modaliac schema -o schema.json"
    )


def test_schema_is_draft_2020_12() -> None:
    schema = json.loads(schema_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$defs"]["Spec"]["additionalProperties"] is False
    assert schema["$defs"]["GatewaySpec"]["additionalProperties"] is False


def test_there_are_specs_to_check() -> None:
    assert {p.parent.name for p in SPEC_FILES} == {"specs", "examples"}


@pytest.mark.parametrize("path", SPEC_FILES, ids=[f"{p.parent.name}/{p.name}" for p in SPEC_FILES])
def test_every_spec_validates_against_schema_json(
    path: Path, validator: Draft202012Validator
) -> None:
    text = path.read_text(encoding="utf-8")
    first = text.splitlines()[0]
    assert first.startswith(SCHEMA_LINE), f"{path.name} must start with {SCHEMA_LINE}<path>"
    target = (path.parent / first.removeprefix(SCHEMA_LINE).strip()).resolve()
    assert target == SCHEMA_FILE, f"{path.name} points its editor at {target}"
    data = read_yaml(text)
    assert schema_errors(validator, data) == []
    (GatewaySpec if data.get("kind") == "gateway" else Spec).model_validate(data)


def test_gateway_errors_are_refused_by_both(validator: Draft202012Validator) -> None:
    data = {"kind": "gateway", "name": "gw", "models": [{"id": "a/b", "name": "b"}], "gpus": "L4"}
    assert schema_errors(validator, data) == []
    GatewaySpec.model_validate(data)
    for bad in ({"layout": "per-gpu"}, {"modles": []}, {"gpus": "H100:9"}, {"models": [{}]}):
        assert schema_errors(validator, {**data, **bad}), bad
        with pytest.raises(ValidationError):
            GatewaySpec.model_validate({**data, **bad})


# Each edit of a valid spec breaks it in a way both validators must see.
VALID = {"app": "demo", "model": {"id": "BAAI/bge-small-en-v1.5", "task": "embed"}, "gpu": "L4"}
INVALID = {
    "unknown-top-level-key": {"gpus": "L4"},
    "unknown-nested-key": {"scaling": {"scaledown_windw": "5m"}},
    "bad-task": {"model": {"id": "BAAI/bge-small-en-v1.5", "task": "embedd"}},
    "missing-task": {"model": {"id": "BAAI/bge-small-en-v1.5"}},
    "bad-duration": {"scaling": {"timeout": "5 minutes"}},
    "duration-without-unit": {"scaling": {"scaledown_window": 5}},
    "gpu-count-too-high": {"gpu": "H100:9"},
    "gpu-count-not-a-number": {"gpu": ["H100:x"]},
    "gpu-unknown-type": {"gpu": "H100-NVL"},
    "gpu-unknown-in-a-list": {"gpu": ["L4", "X100"]},
    "string-for-int": {"engine": {"max_num_seqs": "256"}},
    "list-for-mapping": {"scaling": [1, 2]},
    "string-for-bool": {"model": {"id": "a/b", "task": "embed", "trust_remote_code": "yes"}},
    "app-name": {"app": "my demo!"},
    "class-name-not-camel-case": {"surfaces": {"class": {"name": "embedder"}}},
    "negative-min-containers": {"scaling": {"min_containers": -1}},
    "mount-path-not-absolute": {"volumes": {"root/cache": "my-cache"}},
    "label-key": {"labels": {"team name": "search"}},
    "env-key": {"image": {"env": {"HF-TOKEN": "x"}}},
    "secret-name": {"secrets": ["my secret"]},
    "engine-shorthand-unknown": {"engine": "tgi"},
    "version-2": {"version": 2},
}
VALID_SPELLINGS = {
    "gpu-list": {"gpu": ["H100:2", "A100-80GB:2"]},
    "gpu-alias": {"gpu": "H100-80GB"},
    "gpu-alias-lower-case-with-count": {"gpu": "a10g:2"},
    "gpu-strict-and-plus": {"gpu": ["H100!:2", "B200+:2"]},
    "engine-shorthand": {"engine": "vllm"},
    "surfaces-switches": {"surfaces": {"class": True, "http": False, "downloader": False}},
    "open-http-with-body-limit": {"surfaces": {"http": {"open": True, "max_body": "256MiB"}}},
    "durations": {
        "scaling": {"timeout": "90s", "scaledown_window": "1h", "startup_timeout": "1h30m"}
    },
    "token-count": {"model": {"id": "a/b", "task": "generate", "max_model_len": "32k"}},
}


def with_changes(changes: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(VALID))
    data.update(changes)
    return data


@pytest.mark.parametrize("changes", list(INVALID.values()), ids=list(INVALID))
def test_invalid_specs_are_refused_by_both(
    changes: dict[str, Any], validator: Draft202012Validator
) -> None:
    data = with_changes(changes)
    assert schema_errors(validator, data), "schema.json accepts it"
    with pytest.raises(ValidationError):
        Spec.model_validate(data)


@pytest.mark.parametrize("changes", list(VALID_SPELLINGS.values()), ids=list(VALID_SPELLINGS))
def test_valid_spellings_are_accepted_by_both(
    changes: dict[str, Any], validator: Draft202012Validator
) -> None:
    data = with_changes(changes)
    assert schema_errors(validator, data) == []
    Spec.model_validate(data)


def test_an_endpoint_with_neither_key_nor_open_is_refused_by_both(
    validator: Draft202012Validator,
) -> None:
    """``http: true`` (an endpoint with defaults) names no key: schema.json refuses it, and so
    does validation, through Spec.problems() (the message is in test_spec_errors.py)."""
    data = with_changes({"surfaces": {"http": True}})
    assert schema_errors(validator, data)
    assert [where for where, _ in Spec.model_validate(data).problems()] == [("surfaces", "http")]
    too_large = with_changes({"surfaces": {"http": {"open": True, "max_body": 2048}}})
    assert schema_errors(validator, too_large)
    with pytest.raises(ValidationError):
        Spec.model_validate(too_large)


def test_schema_check_passes_on_the_committed_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--check", str(SCHEMA_FILE)]) == 0
    assert capsys.readouterr() == ("", "")


def test_schema_check_fails_on_a_stale_copy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stale = tmp_path / "schema.json"
    schema = json.loads(schema_text())
    del schema["$defs"]["Spec"]["properties"]["gpu"]
    stale.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    assert main(["schema", "--check", str(stale)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{stale}: stale; regenerate it with: modaliac schema -o {stale}\n"

    stale.unlink()
    assert main(["schema", "--check", str(stale)]) == 1


def test_schema_output_is_what_check_expects(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "schema.json"
    assert main(["schema", "-o", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == SCHEMA_FILE.read_text(encoding="utf-8")
    assert main(["schema", "--check", str(target)]) == 0
    capsys.readouterr()


def _properties_without_description(node: Any, where: str = "") -> list[str]:
    """Every property, at any depth of the schema, that carries no description."""
    if isinstance(node, list):
        return [
            m for i, item in enumerate(node) for m in _properties_without_description(item, where)
        ]
    if not isinstance(node, dict):
        return []
    missing = [
        f"{where}.{name}"
        for name, prop in node.get("properties", {}).items()
        if isinstance(prop, dict) and "description" not in prop
    ]
    for key, value in node.items():
        missing += _properties_without_description(value, f"{where}/{key}" if where else key)
    return missing


def test_every_field_has_a_description() -> None:
    """Every field of every model (the ``if`` of the kind switch is a condition, not a field)."""
    defs = json.loads(schema_text())["$defs"]
    assert _properties_without_description(defs) == []
    # The walk sees nested properties: it would notice one taken away.
    del defs["Scaling"]["properties"]["min_containers"]["description"]
    assert _properties_without_description(defs) == ["Scaling.min_containers"]


def test_gpu_is_an_enum_of_modal_types_with_counts_and_lists() -> None:
    gpu = json.loads(schema_text())["$defs"]["Spec"]["properties"]["gpu"]
    one, many = gpu["anyOf"]
    names = next(choice["enum"] for choice in one["anyOf"] if "enum" in choice)
    assert names == list(GPU_TYPES)
    assert many["type"] == "array" and many["items"] == one
    assert (
        "32K"
        in json.loads(schema_text())["$defs"]["Model"]["properties"]["max_model_len"]["description"]
    )


@pytest.mark.parametrize("name", [*GPU_TYPES, *GPU_ALIASES])
def test_every_gpu_spelling_validation_takes_the_schema_takes(
    name: str, validator: Draft202012Validator
) -> None:
    for spelling in (name, name.lower(), f"{name}:2"):
        data = with_changes({"gpu": spelling})
        assert schema_errors(validator, data) == []
        Spec.model_validate(data)
