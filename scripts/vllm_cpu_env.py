"""Build the CPU-only vLLM environment the fidelity tests check engine arguments with.

vLLM's wheel pins a CUDA build of torch (a 9.4 GB environment). Argument checking needs
none of that: this script installs the CPU build of torch, vLLM without its dependencies,
then vLLM's own requirements minus the CUDA-only ones (the recipe in shared/FACTS.md).

    python scripts/vllm_cpu_env.py [--print-python]

The environment lives in $MODALIAC_VLLM_ENV (default ~/.cache/modaliac/vllm-<version>-cpu)
and is rebuilt only when it is missing or does not import.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

VLLM_VERSION = "0.33.0"
TORCH_CPU = "torch==2.13.0"
NO_DEPS_EXTRAS = ("xgrammar==0.2.8", "apache-tvm-ffi==0.1.11")
# Requirements that only make sense with CUDA, or that are installed separately above.
CUDA_ONLY = re.compile(
    r"^(torch.*|flashinfer.*|nvidia-.*|tilelang|quack.*|humming.*|tokenspeed.*|pynvvideocodec"
    r"|fastsafetensors|instanttensor|numba|compressed-tensors|xgrammar|apache-tvm-ffi|nvtx)$",
    re.IGNORECASE,
)
CHECK = "import vllm.engine.arg_utils, vllm.entrypoints.common.cli_args"


def env_dir() -> Path:
    default = Path.home() / ".cache" / "modaliac" / f"vllm-{VLLM_VERSION}-cpu"
    return Path(os.environ.get("MODALIAC_VLLM_ENV", default))


def python_of(env: Path) -> Path:
    return env / "bin" / "python"


def healthy(env: Path) -> bool:
    python = python_of(env)
    if not python.exists():
        return False
    result = subprocess.run(
        [str(python), "-c", CHECK],
        env={**os.environ, "VLLM_TARGET_DEVICE": "cpu"},
        capture_output=True,
    )
    return result.returncode == 0


def pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *args], check=True)


def cpu_requirements(python: Path) -> list[str]:
    """vLLM's declared requirements for this platform, minus the CUDA-only ones."""
    code = (
        "import json, importlib.metadata as m; "
        "print(json.dumps(m.distribution('vllm').requires or []))"
    )
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True)
    import json

    from packaging.requirements import Requirement  # pip vendors packaging; so does build

    keep = []
    for line in json.loads(out.stdout):
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if CUDA_ONLY.match(req.name):
            continue
        req.marker = None
        keep.append(str(req))
    return keep


def build(env: Path) -> None:
    print(f"building the CPU-only vLLM {VLLM_VERSION} environment in {env}", file=sys.stderr)
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    python = python_of(env)
    pip(python, TORCH_CPU)
    pip(python, "--no-deps", f"vllm=={VLLM_VERSION}")
    constraints = env / "constraints.txt"
    constraints.write_text(TORCH_CPU + "\n")
    pip(python, "-c", str(constraints), *cpu_requirements(python))
    pip(python, "--no-deps", *NO_DEPS_EXTRAS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print-python", action="store_true", help="print the interpreter path")
    args = parser.parse_args()
    env = env_dir()
    if not healthy(env):
        build(env)
        if not healthy(env):
            print(f"the vLLM environment in {env} does not import", file=sys.stderr)
            return 1
    if args.print_python:
        print(python_of(env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
