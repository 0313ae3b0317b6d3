"""Each kind of generated image's package set resolves on PyPI for the image's Python and
platform, with the torch, vLLM and transformers versions and the CUDA major version the
image is built around (modal_iac/images.py). A pin bump that breaks resolution fails here,
not in Modal's image build.

The package lists come from the render context functions, exactly as the templates print
them. pip resolves them with ``--dry-run`` (nothing is installed) and ``--only-binary=:all:``
(nothing is built: a package that has only an sdist for the platform fails the resolve and is
named in pip's message). One pip run per distinct (packages, Python, platform), all started at
once; pip reads each wheel's requirements (the whole wheel where the index serves no separate
metadata) and installs nothing. Timings and reasons: docs/images.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modal_iac.loading.load import load_spec
from modal_iac.render.gateway import gateway_context
from modal_iac.render.transformers import TORCHVISION_VERSION, transformers_context
from modal_iac.render.vllm import vllm_context as context
from modal_iac.spec import images
from modal_iac.spec.gateway import GatewaySpec
from modal_iac.spec.service import Spec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PYPI = "https://pypi.org/simple"
# glibc of the images' Linux distributions: the newest manylinux tag their wheels may carry.
GLIBC = {"ubuntu22.04": 35, "ubuntu24.04": 39}
# Modal's debian_slim (the router's image): bookworm (glibc 2.36) for image builder 2025.06,
# trixie (2.41) for 2026.10 (modal/builder/base-images.json); the older one bounds both.
DEBIAN_SLIM_GLIBC = 36
# The torch wheels' own CUDA dependencies: `cuda-toolkit[...]==13.0.3` and `nvidia-*-cu13`.
CUDA_REQUIREMENT = re.compile(r"^(?:cuda-toolkit\b\S*==(\d+)\.|nvidia-[a-z-]+-cu(\d+)\b)")


@dataclass(frozen=True)
class ImageKind:
    """One generated image: what the renderer installs, on which Python and glibc."""

    packages: tuple[str, ...]
    python: str
    glibc: int
    cuda: int | None  # the base image's CUDA major version (None: no CUDA image)


def _glibc(base: str) -> int:
    distribution = base.rsplit("-", 1)[-1]
    assert distribution in GLIBC, f"no glibc known for {base}: add it to GLIBC"
    return GLIBC[distribution]


def _service(path: str) -> Spec:
    spec = load_spec(ROOT / path).spec
    assert isinstance(spec, Spec)
    return spec


def _gateway() -> GatewaySpec:
    spec = load_spec(ROOT / "examples/gpu-gateway.yaml").spec
    assert isinstance(spec, GatewaySpec)
    return spec


def _kind(ctx: dict[str, Any], packages_key: str = "pip_packages") -> ImageKind:
    base = ctx["base_image"]
    return ImageKind(
        tuple(ctx[packages_key]),
        ctx["python_version"],
        _glibc(base),
        images.image_cuda_major(base),
    )


def image_kinds() -> dict[str, ImageKind]:
    gateway = _gateway()
    pools = {_kind(gateway_context(gateway, app, "")) for app in gateway.apps()}
    assert len(pools) == 1, "every GPU's app of a gateway installs the same image"
    router = gateway_context(gateway, gateway.apps()[0], "")
    return {
        "vllm": _kind(context(_service("examples/small-embedding-no-snapshot.yaml"))),
        "transformers": _kind(
            transformers_context(_service("examples/multimodal-embedding-transformers.yaml"))
        ),
        "gateway-pool": pools.pop(),
        "gateway-router": ImageKind(
            tuple(router["router_packages"]), router["python_version"], DEBIAN_SLIM_GLIBC, None
        ),
    }


def pip_command(kind: ImageKind, report: Path, target: Path) -> list[str]:
    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(kind.glibc, 4, -1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--disable-pip-version-check",
        "--report",
        str(report),
        "--target",  # pip 23 wants one with --platform, even for a dry run
        str(target),
        "--index-url",
        PYPI,
        "--python-version",
        kind.python,
        "--implementation",
        "cp",
        *[flag for platform in platforms for flag in ("--platform", platform)],
        "--only-binary=:all:",
        *kind.packages,
    ]


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """The pip report of each image kind (identical sets resolve once, all concurrently)."""
    kinds = image_kinds()
    folder = tmp_path_factory.mktemp("resolve")
    runs: dict[ImageKind, tuple[Path, subprocess.Popen[str]]] = {}
    for index, kind in enumerate(dict.fromkeys(kinds.values())):
        report = folder / f"report-{index}.json"
        command = pip_command(kind, report, folder / f"target-{index}")
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        runs[kind] = (report, process)
    reports: dict[ImageKind, dict[str, Any]] = {}
    failures = []
    try:
        for kind, (report, process) in runs.items():
            output, _ = process.communicate(timeout=900)
            if process.returncode != 0:
                failures.append(f"{' '.join(kind.packages)} (Python {kind.python}):\n{output}")
            else:
                reports[kind] = json.loads(report.read_text())
    finally:
        for _, process in runs.values():
            if process.poll() is None:
                process.kill()
    assert not failures, "pip could not resolve:\n" + "\n".join(failures)
    yield {name: reports[kind] for name, kind in kinds.items()}


def versions(report: dict[str, Any]) -> dict[str, str]:
    return {
        re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["metadata"]["version"]
        for item in report["install"]
    }


def torch_cuda_majors(report: dict[str, Any]) -> set[int]:
    """The CUDA major versions torch's own CUDA requirements name, and of the CUDA runtime
    that resolved."""
    (torch,) = [i for i in report["install"] if i["metadata"]["name"] == "torch"]
    majors = set()
    for requirement in torch["metadata"].get("requires_dist") or []:
        if match := CUDA_REQUIREMENT.match(requirement):
            majors.add(int(match.group(1) or match.group(2)))
    runtime = versions(report)["nvidia-cuda-runtime"]
    majors.add(int(runtime.split(".")[0]))
    return majors


def sdists(report: dict[str, Any]) -> list[str]:
    """What would be built rather than unpacked (``--only-binary`` should make it empty)."""
    return [
        i["download_info"]["url"]
        for i in report["install"]
        if not i["download_info"]["url"].endswith(".whl")
    ]


def test_the_vllm_service_image_resolves(resolved: dict[str, dict[str, Any]]) -> None:
    kind = image_kinds()["vllm"]
    found = versions(resolved["vllm"])
    version = kind.packages[0].removeprefix("vllm==")
    assert found["vllm"] == version == "0.33.0"
    assert found["torch"] == images.VLLM_TORCH[version] == "2.14.0"
    major = kind.cuda
    assert major == images.TORCH_CUDA_MAJOR[found["torch"]] == 13
    assert torch_cuda_majors(resolved["vllm"]) == {major}
    assert found["flashinfer-python"] == "0.7.2.post1"
    assert found["transformers"].startswith("5.")
    assert sdists(resolved["vllm"]) == []


def test_the_transformers_service_image_resolves(resolved: dict[str, dict[str, Any]]) -> None:
    kind = image_kinds()["transformers"]
    found = versions(resolved["transformers"])
    assert f"transformers=={found['transformers']}" in kind.packages
    assert found["torch"] == images.TRANSFORMERS_TORCH == "2.13.0"
    assert found["torchvision"] == TORCHVISION_VERSION
    assert "vllm" not in found
    assert kind.cuda == images.TORCH_CUDA_MAJOR[found["torch"]] == 13
    assert torch_cuda_majors(resolved["transformers"]) == {kind.cuda}
    assert sdists(resolved["transformers"]) == []


def test_the_gateway_pool_image_resolves_like_the_service(
    resolved: dict[str, dict[str, Any]],
) -> None:
    found = versions(resolved["gateway-pool"])
    assert found["vllm"] == "0.33.0" and found["torch"] == "2.14.0"
    assert torch_cuda_majors(resolved["gateway-pool"]) == {image_kinds()["gateway-pool"].cuda}


def test_the_gateway_router_image_resolves(resolved: dict[str, dict[str, Any]]) -> None:
    kind = image_kinds()["gateway-router"]
    found = versions(resolved["gateway-router"])
    assert [f"aiohttp=={found['aiohttp']}"] == list(kind.packages)
    assert "torch" not in found  # the router runs on a CPU: no CUDA stack
    assert sdists(resolved["gateway-router"]) == []


def test_the_platform_flags_follow_the_image_s_glibc() -> None:
    kind = ImageKind(("x",), "3.12", 35, 13)
    command = pip_command(kind, Path("r.json"), Path("t"))
    platforms = [command[i + 1] for i, word in enumerate(command) if word == "--platform"]
    assert platforms[0] == "manylinux_2_35_x86_64" and "manylinux_2_28_x86_64" in platforms
    assert "manylinux_2_36_x86_64" not in platforms and platforms[-1] == "manylinux1_x86_64"
    assert command[command.index("--python-version") + 1] == "3.12"
    assert _glibc(images.DEFAULT_BASE_IMAGE) == 35
