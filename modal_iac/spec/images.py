"""Which CUDA each engine needs from its container image, and which CUDA an image carries.

vLLM and the transformers engine bring their CUDA runtime as pip packages (torch's Linux
wheels depend on ``cuda-toolkit`` and ``nvidia-*-cuNN``); the base image adds the toolkit
that compiles kernels at run time (FlashInfer's JIT calls ``$CUDA_HOME/bin/nvcc``). The two
must share a CUDA major version: ``docs/images.md`` has the findings and their sources, and
``tests/test_images.py`` checks the tables below against PyPI's resolver.
"""

from __future__ import annotations

import re

# CUDA 13.0 toolkit (nvcc and headers for FlashInfer's JIT), no newer than the CUDA 13.0
# driver API Modal's GPU hosts provide; Ubuntu 22.04 has glibc 2.35, above the 2.28 that the
# vLLM and torch wheels need.
DEFAULT_BASE_IMAGE = "nvidia/cuda:13.0.3-devel-ubuntu22.04"

# The torch release each engine runs: vLLM pins one in its wheel's requirements (read from
# PyPI's wheels); the transformers engine runs modaliac's own pin (render_transformers).
VLLM_TORCH = {"0.33.0": "2.14.0", "0.32.0": "2.13.0", "0.11.0": "2.8.0"}
TRANSFORMERS_TORCH = "2.13.0"
# The CUDA major version PyPI's Linux wheels of each torch release are built for (their
# cuda-toolkit / nvidia-*-cuNN requirements).
TORCH_CUDA_MAJOR = {"2.8.0": 12, "2.13.0": 13, "2.14.0": 13}

# Docker Hub's and NGC's names for NVIDIA's CUDA images; the tag starts with the version.
_CUDA_IMAGE_NAMES = ("nvidia/cuda", "docker.io/nvidia/cuda", "nvcr.io/nvidia/cuda")
_CUDA_TAG = re.compile(r"^(\d+)\.\d+(?:\.\d+)?(?:-|$)")


def engine_torch(engine: str, version: str) -> str | None:
    """The torch release an engine release runs, where modaliac knows it."""
    if engine == "transformers":
        return TRANSFORMERS_TORCH
    return VLLM_TORCH.get(version)


def engine_cuda_major(engine: str, version: str) -> int | None:
    """The CUDA major version an engine release's torch is built for (None: not known)."""
    torch = engine_torch(engine, version)
    return TORCH_CUDA_MAJOR.get(torch) if torch is not None else None


def image_cuda_major(reference: str) -> int | None:
    """The CUDA major version of an ``nvidia/cuda`` image reference (None: another image,
    or a tag that names no version, such as ``latest``)."""
    name_and_tag = reference.split("@", 1)[0]
    name, _, tag = name_and_tag.rpartition(":")
    if "/" in tag or not name:  # the colon was a registry port: no tag
        return None
    if name.removeprefix("index.").removeprefix("registry-1.") not in _CUDA_IMAGE_NAMES:
        return None
    match = _CUDA_TAG.match(tag)
    return int(match.group(1)) if match else None
