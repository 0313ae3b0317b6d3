"""Names a spec may not give an identifier of a generated module.

A spec chooses a few identifiers of the generated file: a service's class and downloader, a
gateway's model classes (``GatewayModel.class_name``). Each must not be a Python keyword (the
file would not parse), a builtin (the generated code uses them) or a module-level name the
generated file of its kind defines (the spec's name would rebind it). The module names are
literal data, so validation never renders a template; ``tests/test_reserved.py`` renders every
bundled spec and checks that each module-level name of the output is listed here.
"""

from __future__ import annotations

import builtins
import keyword
from typing import Literal

BUILTINS = frozenset(dir(builtins))

# templates/_http_guard.py.j2, included by every template with a public endpoint: the guard,
# the body reader and the relay (only where an upstream answers), with their constants.
GUARD_NAMES = frozenset(
    {"JSON_HEADERS", "MAX_BODY_BYTES", "OPEN_PATHS", "api_key_from_secret", "error_json"}
    | {"guard", "read_body", "relay", "respond", "_BodyTooLarge", "_Guard", "_digest"}
    | {"_replay"}
)

# templates/_json_body.py.j2, included by every template whose endpoint parses JSON itself:
# the one JSON body parser and the one excerpt of a hostile value in an error.
JSON_BODY_NAMES = frozenset(
    {"EXCERPT_CHARS", "MAX_JSON_DEPTH", "JsonBodyError", "parse_json_object"}
    | {"field_param", "printable_excerpt", "_json_check", "_json_constant", "_json_float"}
    | {"_json_object", "_json_text", "_TOO_DEEP"}
)

# templates/_loopback.py.j2 and templates/_vllm_process.py.j2, included by every template that
# runs vLLM: starting it, waiting for its health, stopping it.
VLLM_PROCESS_NAMES = frozenset({"_loopback", "start_vllm", "stop_vllm", "wait_healthy"})

# templates/vllm_app.py.j2 with templates/vllm_server.py.j2 (the HTTP server), every surface
# and snapshot mode.
VLLM_NAMES = frozenset(
    {"app", "image", "modal", "secrets", "volumes", "_pooling_params"}
    | {"API_KEY_ENV", "API_KEY_SECRET", "APP_NAME", "APP_TAGS", "BASE_IMAGE"}
    | {"BUFFER_CONTAINERS", "CONCURRENCY", "CPU", "DOWNLOAD_TIMEOUT", "ENGINE_KWARGS", "GPU"}
    | {"HF_CACHE", "IMAGE_ENV", "MATRYOSHKA_DIMENSIONS", "MAX_CONTAINERS", "MEMORY"}
    | {"MIN_CONTAINERS", "MODEL_ID", "MODEL_REVISION", "MULTIMODAL", "PIP_PACKAGES"}
    | {"PYTHON_VERSION", "SCALEDOWN_WINDOW", "SECRET_NAMES", "SERVED_MODEL_NAME", "SERVE_ARGS"}
    | {"SLEEP_LEVEL", "STARTUP_TIMEOUT", "TASK", "TIMEOUT", "VLLM_ENV", "VLLM_URL"}
    | {"VOLUME_NAMES", "HF_TOKEN_KEY", "HF_TOKEN_SECRET"}
    # The HTTP server: its imports, constants, class and helpers.
    | {"asyncio", "b64encode", "hashlib", "hmac", "json", "os", "subprocess", "time"}
    | {"token_urlsafe", "urllib", "zlib"}
    | {"HOP_BY_HOP", "NOT_FORWARDED", "PUBLIC_PREFIX", "Server", "_Proxy", "build_proxy"}
    | {"sleep_engine", "tiny_png", "wake_engine", "warm_up", "warm_up_requests", "_call"}
    | {"_is_sleeping", "_public"}
    # primitive server (Modal's @app.server): the guard's own listener.
    | {"PUBLIC_PORT", "listen_public", "signal", "threading"}
    | GUARD_NAMES
    | VLLM_PROCESS_NAMES
)

# templates/transformers_app.py.j2; its class is named Server when the class surface is off.
TRANSFORMERS_NAMES = frozenset(
    {"app", "image", "modal", "secrets", "volumes", "Server"}
    | {"API_KEY_ENV", "API_KEY_SECRET", "APP_NAME", "APP_TAGS", "BASE_IMAGE", "BATCH_SIZE"}
    | {"BUFFER_CONTAINERS", "CONCURRENCY", "CPU", "DEVICE", "DOWNLOAD_TIMEOUT", "DTYPE"}
    | {"EMBED_FIELDS", "ERROR_TYPES", "EXPECTED_DIMENSION", "GPU", "HF_CACHE", "IMAGE_ENV"}
    | {"MATRYOSHKA_DIMENSIONS", "MAX_CONTAINERS", "MAX_MODEL_LEN", "MEMORY", "MIN_CONTAINERS"}
    | {"MODEL_ID", "MODEL_REVISION", "MULTIMODAL", "NORMALIZE", "PIP_PACKAGES", "POOLING"}
    | {"PYTHON_VERSION", "SCALEDOWN_WINDOW", "SECRET_NAMES", "STARTUP_TIMEOUT", "TIMEOUT"}
    | {"TRUST_REMOTE_CODE", "VOLUME_NAMES", "HF_TOKEN_KEY", "HF_TOKEN_SECRET"}
    | {"InputError", "TransformersEmbedder", "create_app", "decode_image", "load_model"}
    | {"parse_embed_request", "pool", "_context_length", "_embed_request", "_features"}
    | {"_strings", "hashlib", "hmac", "json", "os", "MAX_IMAGE_PIXELS", "_pillow"}
    | GUARD_NAMES
    | JSON_BODY_NAMES
)

# templates/gateway_app.py.j2.
GATEWAY_NAMES = frozenset(
    {"app", "image", "modal", "router_image", "secrets", "volumes"}
    | {"asyncio", "hashlib", "hmac", "json", "os", "subprocess", "time", "token_urlsafe"}
    | {"urllib"}
    | {"API_KEY_ENV", "API_KEY_SECRET", "APP_NAME", "APP_TAGS", "BASE_IMAGE"}
    | {"BUFFER_CONTAINERS", "GPU", "GUIDED_REPLACEMENTS", "IMAGE_ENV"}
    | {"MAX_CONTAINERS", "MIN_CONTAINERS", "MODELS", "MODEL_CLASSES", "PIP_PACKAGES"}
    | {"PYTHON_VERSION", "ROUTED_PATHS", "SCALEDOWN_WINDOW", "SECRET_NAMES", "STARTUP_TIMEOUT"}
    | {"ROUTER_PACKAGES", "ROUTER_TIMEOUT", "HF_TOKEN_KEY", "HF_TOKEN_SECRET"}
    | {"TIMEOUT", "UPSTREAM_TIMEOUT", "VLLM_URL", "VOLUME_NAMES", "Router", "build_router"}
    | {"http_exchange", "http_sender", "modal_sender", "router"}
    | GUARD_NAMES
    | JSON_BODY_NAMES
    | VLLM_PROCESS_NAMES
)

# An environment may switch a service's engine, so its names avoid both engines' files.
SERVICE_NAMES = VLLM_NAMES | TRANSFORMERS_NAMES

_MODULES = {
    "service": (SERVICE_NAMES, "a name a generated service module defines itself"),
    "gateway": (GATEWAY_NAMES, "a name the generated gateway module defines itself"),
}


def clash(name: str, kind: Literal["service", "gateway"]) -> str | None:
    """Why ``name`` cannot be an identifier of a generated module of ``kind``, worded to
    follow the name ("'app' is ..."), or None when it can."""
    module_names, defined = _MODULES[kind]
    if keyword.iskeyword(name):
        return "a Python keyword"
    if name in module_names:
        return defined
    if name in BUILTINS:
        return "a Python builtin the generated code must not shadow"
    return None


# Environment variables the container's own software reads: the shell and loader, Python,
# Hugging Face, Modal, vLLM, PyTorch and CUDA, TLS and proxies. An API key read from one of
# them would change how the server starts (LD_PRELOAD, PYTHONPATH) or leak into a library
# that sends it on (HF_TOKEN); api_key_env must name a variable of its own.
RESERVED_ENV = frozenset(
    {"PATH", "HOME", "USER", "SHELL", "PWD", "TERM", "LANG", "TZ", "TMPDIR", "HOSTNAME"}
    | {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "OMP_NUM_THREADS", "IFS", "ENV"}
)
RESERVED_ENV_PREFIXES = (
    *("LD_", "LC_", "PYTHON", "PIP_", "UV_", "HF_", "HUGGING_FACE_", "HUGGINGFACE_", "MODAL_"),
    *("VLLM_", "TRANSFORMERS_", "TOKENIZERS_", "TORCH", "PYTORCH_", "CUDA_", "NCCL_"),
    *("NVIDIA_", "CUBLAS_", "CUDNN_", "TRITON_", "OMP_", "MKL_", "SSL_", "REQUESTS_", "CURL_"),
    *("XDG_", "BASH_"),
)
OWN_KEY_NAMES = frozenset({"VLLM_API_KEY"})  # vLLM's own API key: a key is what it holds


def reserved_env(name: str) -> bool:
    """Whether the container's own software reads the environment variable ``name``."""
    upper = name.upper()
    if upper in OWN_KEY_NAMES:
        return False
    return upper in RESERVED_ENV or upper.startswith(RESERVED_ENV_PREFIXES)
