"""The reserved names of ``modal_iac/reserved.py`` against what the templates really define.

Validation checks a spec's identifiers against literal sets, so it never renders a template;
these tests render every bundled spec and keep the sets in step with the generated files.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Literal

import pytest
from helpers import import_file

from modal_iac.loading.load import load_spec
from modal_iac.render.app import render_all
from modal_iac.render.transformers import SERVER_CLASS
from modal_iac.spec.gateway import GatewaySpec
from modal_iac.spec.reserved import GATEWAY_NAMES, TRANSFORMERS_NAMES, VLLM_NAMES, clash

ROOT = Path(__file__).resolve().parent.parent
refresh = import_file(ROOT / "scripts" / "refresh_golden.py", "modaliac_refresh_golden")
SPEC_PATHS: list[str] = refresh.spec_paths()

NAMES = {"vllm": VLLM_NAMES, "transformers": TRANSFORMERS_NAMES, "gateway": GATEWAY_NAMES}
# The partials every kind includes (templates/_*.py.j2), then each kind's own.
SHARED = ("_scaling_settings.py.j2", "_runtime_settings.py.j2", "_app_image.py.j2")
SHARED += ("_volumes_secrets.py.j2", "_container_args.py.j2", "_runtime_args.py.j2")
SHARED += ("_guard_settings.py.j2", "_http_guard.py.j2", "_image_settings.py.j2")
SERVICE = ("_service_settings.py.j2", "_snapshot_args.py.j2", "_endpoint_secrets.py.j2")
SERVICE += ("_retries_arg.py.j2", "_concurrent.py.j2", "_api_key.py.j2", "_downloader.py.j2")
TEMPLATES = {
    "vllm": (
        "vllm_app.py.j2",
        "vllm_server.py.j2",
        "_loopback.py.j2",
        "_vllm_process.py.j2",
        *SERVICE,
        *SHARED,
    ),
    "transformers": ("transformers_app.py.j2", "_json_body.py.j2", *SERVICE, *SHARED),
    "gateway": (
        "gateway_app.py.j2",
        "_json_body.py.j2",
        "_loopback.py.j2",
        "_vllm_process.py.j2",
        *SHARED,
    ),
}


def module_names(source: str) -> set[str]:
    """Every name a module binds at its top level: assign targets, defs, classes, imports."""
    found: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            found.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                found.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        else:
            # Anything else that binds (if, for, with, try) would need collecting too.
            assert isinstance(node, ast.Expr), f"unexpected top-level {type(node).__name__}"
    return found


def rendered_modules(spec_path: str) -> list[tuple[str, set[str], set[str]]]:
    """(kind, names the spec chose, module-level names) of each file the spec renders to."""
    loaded = load_spec(ROOT / spec_path)
    spec = loaded.spec
    found = []
    for item in render_all(loaded):
        if isinstance(spec, GatewaySpec):
            kind = "gateway"
            chosen = {model.class_name for model in spec.app(item.app).models}
        else:
            kind = spec.engine.name
            surfaces = spec.surfaces
            chosen = {surfaces.class_.name} if surfaces.class_ is not None else set()
            chosen |= {surfaces.downloader.name} if surfaces.downloader is not None else set()
        found.append((kind, chosen, module_names(item.source)))
    return found


def test_every_kind_is_rendered() -> None:
    kinds = {kind for path in SPEC_PATHS for kind, _, _ in rendered_modules(path)}
    assert kinds == set(NAMES)


@pytest.mark.parametrize("spec_path", SPEC_PATHS)
def test_every_module_level_name_is_reserved(spec_path: str) -> None:
    for kind, chosen, names in rendered_modules(spec_path):
        assert chosen <= names, f"{spec_path}: the spec's own names are not in the file"
        missing = names - chosen - NAMES[kind]
        assert not missing, f"{spec_path} defines names modal_iac/reserved.py lacks: {missing}"


@pytest.mark.parametrize("kind", sorted(NAMES))
def test_no_reserved_name_is_gone_from_its_templates(kind: str) -> None:
    """The other direction: a name the templates no longer hold would refuse specs for nothing
    (some names are defined only in branches no bundled spec takes, so this is by text)."""
    text = "\n".join((ROOT / "templates" / name).read_text() for name in TEMPLATES[kind])
    text += f"\nclass {SERVER_CLASS}:" if kind == "transformers" else ""
    gone = {name for name in NAMES[kind] if not re.search(rf"\b{re.escape(name)}\b", text)}
    assert not gone, f"reserved for {kind} but not in its templates: {sorted(gone)}"


@pytest.mark.parametrize(
    ("name", "kind", "reason"),
    [
        ("None", "gateway", "a Python keyword"),
        ("class", "service", "a Python keyword"),
        ("Router", "gateway", "a name the generated gateway module defines itself"),
        ("Server", "service", "a name a generated service module defines itself"),
        ("Exception", "gateway", "a Python builtin the generated code must not shadow"),
        ("open", "service", "a Python builtin the generated code must not shadow"),
        ("Qwen38b", "gateway", None),
        ("download_weights", "service", None),
    ],
)
def test_clash(name: str, kind: Literal["service", "gateway"], reason: str | None) -> None:
    assert clash(name, kind) == reason
