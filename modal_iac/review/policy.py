"""Policy checks: named rules about specs that validate but are risky or will fail on Modal.

Each rule has a stable id (``MDL001``...), a severity, and a fix hint; ``docs/policies.md``
describes every one (a test keeps the two lists equal). ``validate`` and ``plan`` run them
through ``load.py``: an error stops the command with a located line, a warning is shown.

A spec silences a rule with a reason, which reviewers see in the diff::

    policy:
      suppress:
        MDL001: "upstream publishes no commits for this repository"

An unknown id or an empty reason is itself an error. Checks that are hard validation errors
(because Modal or vLLM cannot run them at all) are not suppressible; their messages carry the
rule id so the documentation stays the one place that explains them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..spec.fields import (
    HF_TOKEN_KEY,
    IGNORED_HF_TOKEN_KEY,
    MODAL_MAX_TIMEOUT,
    MODAL_MIN_MEMORY_MIB,
    shown_duration,
)
from ..spec.gateway import FREE_TIER_WEB_ENDPOINTS, GatewaySpec, endpoints_other_layout
from ..spec.images import DEFAULT_BASE_IMAGE, engine_cuda_major, engine_torch, image_cuda_major
from ..spec.service import Spec
from ..tokens import shown

Severity = Literal["error", "warning"]
Loc = tuple[str | int, ...]

COMMIT = re.compile(r"^[0-9a-f]{40}$")
# What snapshot restore tolerates: above this fraction of GPU memory, restoring a GPU
# snapshot has too little room for the CUDA context and fragmentation, and restores fail
# back to cold starts. vLLM's own default (0.9) is the largest value modaliac accepts silently.
SNAPSHOT_MAX_GPU_MEMORY_UTILIZATION = 0.9
# Host RAM a container can count on without resources.memory: Modal guarantees only its
# default request (MODAL_MIN_MEMORY_MIB) and lends more while the worker has it free. Sleep
# level 1 keeps a copy of the weights in host memory; above this size it is refused outright
# (MDL003), below it the missing request is a warning (MDL010).
DEFAULT_HOST_MEMORY_GIB = 64
DTYPE_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4}
DEPRECATED_ENV = {
    "HF_HUB_ENABLE_HF_TRANSFER": "huggingface_hub 1.x downloads with hf_xet and ignores it",
}
DEPRECATED_ARGS = re.compile(r"^guided_")


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: Severity
    fix: str
    suppressible: bool = True


@dataclass(frozen=True)
class Finding:
    """One rule firing at one key path of one spec."""

    rule: Rule
    loc: Loc
    message: str

    def text(self) -> str:
        """``[MDL001] message (fix: ...)``: what follows the location on a line."""
        return f"[{self.rule.id}] {self.message} (fix: {self.rule.fix})"


RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule(
            "MDL001",
            "revision-not-pinned",
            "warning",
            "pin the revision to a 40-character commit hash",
        ),
        Rule(
            "MDL002",
            "snapshot-tensor-parallel",
            "error",
            "use one GPU per container or snapshot: none",
            suppressible=False,
        ),
        Rule(
            "MDL003",
            "sleep-host-memory",
            "error",
            "reserve resources.memory above the weights, or use engine.sleep_level: 2",
        ),
        Rule(
            "MDL004",
            "snapshot-gpu-memory-utilization",
            "warning",
            f"set engine.gpu_memory_utilization to {SNAPSHOT_MAX_GPU_MEMORY_UTILIZATION} or less",
        ),
        Rule(
            "MDL005",
            "scaling-contradiction",
            "warning",
            "raise scaling.max_containers or lower min_containers/buffer_containers",
        ),
        Rule(
            "MDL006",
            "timeout-above-maximum",
            "error",
            f"use at most {shown_duration(MODAL_MAX_TIMEOUT)}",
        ),
        Rule(
            "MDL007",
            "http-without-auth",
            "warning",
            "replace open: true with api_key_secret naming a Modal secret that holds the key, or "
            "suppress MDL007 saying why the endpoint may be public",
        ),
        Rule(
            "MDL008",
            "deprecated-setting",
            "warning",
            "remove the setting (see docs/policies.md for its replacement)",
        ),
        Rule(
            "MDL009",
            "web-endpoint-limit",
            "warning",
            "serve several models from a gateway spec, or suppress on a paid plan",
        ),
        Rule(
            "MDL010",
            "sleep-memory-not-reserved",
            "warning",
            "set resources.memory to hold the weights",
        ),
        Rule(
            "MDL011",
            "image-cuda-mismatch",
            "warning",
            "use an nvidia/cuda image of the engine's CUDA major version, such as the default "
            f"{DEFAULT_BASE_IMAGE}",
        ),
        Rule(
            "MDL012",
            "hf-token-variable",
            "warning",
            f"keep the token as {HF_TOKEN_KEY} in a Modal secret named by hf_token_secret",
        ),
        Rule(
            "MDL013",
            "router-timeout-contradiction",
            "warning",
            "lower router.upstream_timeout to scaling.timeout or less (or unset it), or raise "
            "scaling.timeout",
        ),
        Rule(
            "MDL014",
            "context-just-below-native",
            "warning",
            'write the length with a capital K ("32K" is 32768) or as the number itself',
        ),
    )
}


def _pinned(spec: Spec) -> list[Finding]:
    return _revision(spec.model.revision, ("model", "revision"))


def _revision(revision: str, loc: Loc) -> list[Finding]:
    if COMMIT.match(revision):
        return []
    return [
        Finding(
            RULES["MDL001"],
            loc,
            f"{shown(revision)} is not a commit; a moving revision silently invalidates snapshots "
            "and reproducibility",
        )
    ]


def weights_gib(spec: Spec) -> float | None:
    """Weights size from the stated parameter count and dtype (None when not stated)."""
    if spec.model.parameters is None:
        return None
    return spec.model.parameters * 1e9 * DTYPE_BYTES[spec.model.dtype] / 2**30


def _sleep_memory(spec: Spec) -> list[Finding]:
    """MDL003 and MDL010: sleep level 1 and the host memory that holds the weights."""
    if spec.snapshot != "sleep" or spec.engine.sleep_level != 1:
        return []
    size = weights_gib(spec)
    written = "sleep_level" in spec.engine.model_fields_set
    where: Loc = ("engine", "sleep_level") if written else ("snapshot",)
    reserved = spec.resources.memory
    weights = "the weights" if size is None else f"the weights ({size:.0f} GiB)"
    if reserved is not None:
        if size is None or size <= reserved / 1024:
            return []
        return [
            Finding(
                RULES["MDL003"],
                ("resources", "memory"),
                f"sleep level 1 keeps {weights} in host memory, more than resources.memory "
                f"reserves ({reserved / 1024:g} GiB)",
            )
        ]
    if size is not None and size > DEFAULT_HOST_MEMORY_GIB:
        return [
            Finding(
                RULES["MDL003"],
                where,
                f"sleep level 1 keeps {weights} in host memory, more than the "
                f"{DEFAULT_HOST_MEMORY_GIB} GiB a container can count on without resources.memory",
            )
        ]
    return [
        Finding(
            RULES["MDL010"],
            where,
            f"sleep level 1 keeps {weights} in host memory, but resources.memory reserves none: "
            f"Modal guarantees {MODAL_MIN_MEMORY_MIB} MiB and lends the rest only while the worker "
            "has it free",
        )
    ]


def _memory_utilization(spec: Spec) -> list[Finding]:
    value = spec.engine.gpu_memory_utilization
    if spec.snapshot not in ("gpu", "sleep") or value <= SNAPSHOT_MAX_GPU_MEMORY_UTILIZATION:
        return []
    return [
        Finding(
            RULES["MDL004"],
            ("engine", "gpu_memory_utilization"),
            f"{value} leaves too little GPU memory for restoring a {spec.snapshot} snapshot "
            f"(at most {SNAPSHOT_MAX_GPU_MEMORY_UTILIZATION})",
        )
    ]


def _thousands_not_kibi(model_id: str, length: int | None) -> int | None:
    """The native length (``32768``, "32K") a ``max_model_len`` of ``32000`` ("32k", x1000)
    falls just short of, when that is the model's; else None."""
    from .fit import native_length

    native = native_length(model_id)
    if length is None or native is None or native % 1024:
        return None
    return native if length == native // 1024 * 1000 else None


def _context_length(spec: Spec) -> list[Finding]:
    length = spec.model.max_model_len
    native = _thousands_not_kibi(spec.model.id, length)
    if native is None:
        return []
    return [
        Finding(
            RULES["MDL014"],
            ("model", "max_model_len"),
            f'{length} tokens ("{native // 1024}k" counts thousands) is just below the model\'s '
            f'native {native} ("{native // 1024}K", x1024)',
        )
    ]


def _scaling(spec: Spec | GatewaySpec) -> list[Finding]:
    scaling = spec.scaling
    top = scaling.max_containers
    if top is None or not scaling.buffer_containers:
        return []
    if scaling.min_containers + scaling.buffer_containers <= top:
        return []
    return [
        Finding(
            RULES["MDL005"],
            ("scaling", "buffer_containers"),
            f"min_containers ({scaling.min_containers}) plus buffer_containers "
            f"({scaling.buffer_containers}) exceed max_containers ({top}); the buffer can "
            "never be kept",
        )
    ]


def _timeouts(spec: Spec) -> list[Finding]:
    downloader = spec.surfaces.downloader
    if downloader is None or downloader.timeout <= MODAL_MAX_TIMEOUT:
        return []
    return [
        Finding(
            RULES["MDL006"],
            ("surfaces", "downloader", "timeout"),
            f"{shown_duration(downloader.timeout)} is above Modal's maximum function timeout "
            f"({shown_duration(MODAL_MAX_TIMEOUT)})",
        )
    ]


def _auth(spec: Spec) -> list[Finding]:
    http = spec.surfaces.http
    if http is None or not http.open:
        return []
    return [
        Finding(
            RULES["MDL007"],
            ("surfaces", "http", "open"),
            "the endpoint is served without an API key: it answers anyone who has its URL",
        )
    ]


def _deprecated_env(spec: Spec | GatewaySpec) -> list[Finding]:
    return [
        Finding(RULES["MDL008"], ("image", "env", name), f"{name} is deprecated: {why}")
        for name, why in DEPRECATED_ENV.items()
        if name in spec.image.env
    ]


def _deprecated(spec: Spec) -> list[Finding]:
    found = _deprecated_env(spec)
    found += [
        Finding(
            RULES["MDL008"],
            ("engine", "args", key),
            f"{key} is gone from vLLM {spec.engine_version}: structured outputs are "
            "configured with structured_outputs_config, and guided_* request fields are "
            "silently ignored",
        )
        for key in spec.engine.args
        if DEPRECATED_ARGS.match(key)
    ]
    return found


# Token variables of huggingface_hub that a spec must not set in the image: the value would be
# in the spec and the image, and HUGGINGFACE_TOKEN is not even read.
_HF_TOKEN_ENV = {
    IGNORED_HF_TOKEN_KEY: f"huggingface_hub ignores it (it reads {HF_TOKEN_KEY}), so gated "
    "downloads fail with 401",
    HF_TOKEN_KEY: "a token in the spec ends up in the image and in git",
    "HUGGING_FACE_HUB_TOKEN": "a token in the spec ends up in the image and in git",
}
# A secret name that says it holds a Hugging Face token (huggingface, hf-token, my-hf-wandb).
_HF_SECRET_NAME = re.compile(r"(^|[^a-z])hf([^a-z]|$)|hugging", re.IGNORECASE)


def _hf_token(spec: Spec | GatewaySpec) -> list[Finding]:
    """MDL012: the Hugging Face token where huggingface_hub does not find it, or unchecked."""
    found = [
        Finding(RULES["MDL012"], ("image", "env", name), f"{name} in image.env: {why}")
        for name, why in _HF_TOKEN_ENV.items()
        if name in spec.image.env
    ]
    if spec.hf_token_secret is None:
        found += [
            Finding(
                RULES["MDL012"],
                ("secrets", index),
                f"{shown(name)} looks like the Hugging Face token's secret, but nothing checks "
                f"that it holds {HF_TOKEN_KEY} (huggingface_hub ignores {IGNORED_HF_TOKEN_KEY}); "
                "move it to hf_token_secret",
            )
            for index, name in enumerate(spec.secrets)
            if _HF_SECRET_NAME.search(name)
        ]
    return found


def _router_timeout(spec: GatewaySpec) -> list[Finding]:
    """MDL013: the router waits for a model longer than Modal lets a model call run."""
    wait, limit = spec.router.upstream_timeout, spec.scaling.timeout
    if wait is None or wait <= limit:
        return []
    return [
        Finding(
            RULES["MDL013"],
            ("router", "upstream_timeout"),
            f"the router waits up to {shown_duration(wait)} for a model, but Modal cuts each "
            f"model call at scaling.timeout ({shown_duration(limit)}): past that the client "
            "gets Modal's timeout, never the router's 504",
        )
    ]


def _gateway_pinned(spec: GatewaySpec) -> list[Finding]:
    return [
        finding
        for index, model in enumerate(spec.models)
        for finding in _revision(model.revision, ("models", index, "revision"))
    ]


def _gateway_auth(spec: GatewaySpec) -> list[Finding]:
    if not spec.router.open:
        return []
    return [
        Finding(
            RULES["MDL007"],
            ("router", "open"),
            "every app's router is served without an API key: it answers anyone who has its URL",
        )
    ]


def _image_cuda(spec: Spec) -> list[Finding]:
    engine = spec.engine.name
    where: Loc = ("engine", "version") if spec.engine.version else ("image", "base")
    return _cuda_mismatch(spec, engine, spec.engine_version, where)


def _gateway_image_cuda(spec: GatewaySpec) -> list[Finding]:
    where: Loc = ("engine_version",) if "engine_version" in spec.model_fields_set else ("image",)
    return _cuda_mismatch(spec, "vllm", spec.engine_version, where)


def _cuda_mismatch(
    spec: Spec | GatewaySpec, engine: str, version: str, where: Loc
) -> list[Finding]:
    """MDL011: the toolkit of an nvidia/cuda base image and the CUDA the engine's torch is
    built for differ in major version. Other images carry no CUDA version modaliac can read."""
    image = spec.image.base
    have, need = image_cuda_major(image), engine_cuda_major(engine, version)
    if have is None or need is None or have == need:
        return []
    if "base" in spec.image.model_fields_set:
        where = ("image", "base")
    return [
        Finding(
            RULES["MDL011"],
            where,
            f"{shown(image)} carries CUDA {have}, but {engine} {version} runs torch "
            f"{engine_torch(engine, version)}, built for CUDA {need}: what the container compiles "
            "with the image's nvcc (FlashInfer's JIT kernels, CUDA extensions) would not match it",
        )
    ]


CHECKS: tuple[Callable[[Spec], list[Finding]], ...] = (
    _pinned,
    _sleep_memory,
    _memory_utilization,
    _scaling,
    _timeouts,
    _auth,
    _deprecated,
    _image_cuda,
    _hf_token,
    _context_length,
)
# A gateway has no snapshots, sleep mode or downloader: the other rules cannot fire.
GATEWAY_CHECKS: tuple[Callable[[GatewaySpec], list[Finding]], ...] = (
    _gateway_pinned,
    _scaling,
    _gateway_auth,
    _deprecated_env,
    _gateway_image_cuda,
    _hf_token,
    _router_timeout,
)


def check(spec: Spec | GatewaySpec) -> tuple[list[tuple[Loc, str]], list[Finding]]:
    """(problems with ``policy.suppress`` itself, findings that are not suppressed)."""
    problems: list[tuple[Loc, str]] = []
    suppress = spec.policy.suppress
    for rule_id, reason in suppress.items():
        rule = RULES.get(rule_id)
        if rule is None:
            problems.append(
                (
                    ("policy", "suppress", rule_id),
                    f"unknown rule {shown(rule_id)}; see docs/policies.md",
                )
            )
        elif not rule.suppressible:
            problems.append(
                (
                    ("policy", "suppress", rule_id),
                    f"{rule_id} cannot be suppressed: Modal cannot run such a spec",
                )
            )
        elif not reason.strip():
            problems.append(
                (("policy", "suppress", rule_id), "a suppression needs a reason; say why")
            )
    if isinstance(spec, GatewaySpec):
        findings = [f for run in GATEWAY_CHECKS for f in run(spec)]
    else:
        findings = [f for run in CHECKS for f in run(spec)]
    return problems, [f for f in findings if f.rule.id not in suppress]


def suppressed(spec: Spec | GatewaySpec, rule_id: str) -> bool:
    """Whether a spec silences a rule."""
    return rule_id in spec.policy.suppress


# -- across specs: Modal's free tier of web endpoints (MDL009) --------------------------------


def web_endpoints(spec: Spec | GatewaySpec) -> int:
    """How many Modal web endpoints the apps of a spec expose."""
    if isinstance(spec, GatewaySpec):
        return len(spec.apps())
    return 1 if spec.surfaces.http is not None else 0


@dataclass(frozen=True)
class EndpointUse:
    """What one spec adds to the web endpoints of the specs together (MDL009): its count and,
    for a gateway, its name and the count of its other layout. A plan keeps this in place of
    the spec, so the check needs no model once the specs are loaded."""

    endpoints: int
    gateway: str | None = None  # the gateway's name; None: a service
    other_layout: str = ""
    other_endpoints: int = 0


def endpoint_use(spec: Spec | GatewaySpec) -> EndpointUse | None:
    """What ``spec`` adds to the count (None: it suppresses MDL009, a paid plan say)."""
    if suppressed(spec, "MDL009"):
        return None
    if isinstance(spec, GatewaySpec):
        layout, count = endpoints_other_layout(spec)
        return EndpointUse(web_endpoints(spec), spec.name, layout, count)
    return EndpointUse(web_endpoints(spec))


def endpoint_warnings(specs: list[Spec | GatewaySpec]) -> list[str]:
    """A warning when the specs together need more web endpoints than Modal's free tier
    allows, naming the layout that would stay under the limit (policy rule MDL009)."""
    return endpoints_warnings([endpoint_use(spec) for spec in specs])


def endpoints_warnings(uses: list[EndpointUse | None]) -> list[str]:
    """``endpoint_warnings`` of the specs whose ``endpoint_use`` these are. A spec that
    suppresses MDL009 does not count towards the limit."""
    counted = [use for use in uses if use is not None]
    total = sum(use.endpoints for use in counted)
    limit = FREE_TIER_WEB_ENDPOINTS
    if total <= limit:
        return []
    message = (
        f"[MDL009] these specs expose {total} web endpoints; Modal's free tier allows {limit} per "
        "workspace, so deploys past it fail there"
    )
    hints = []
    for use in counted:
        if use.gateway is not None and use.other_endpoints < use.endpoints:
            rest = total - use.endpoints + use.other_endpoints
            fits = "then all stay under the limit" if rest <= limit else f"then {rest} in all"
            hints.append(
                f"layout: {use.other_layout} for gateway {shown(use.gateway)} "
                f"({use.other_endpoints} endpoints; {fits})"
            )
    if hints:
        return [message + "; use " + ", ".join(hints)]
    if any(use.gateway is None and use.endpoints for use in counted):
        hint = "a gateway spec (kind: gateway) serves several models behind one endpoint per GPU"
    else:
        hint = "every gateway already has one endpoint per GPU type: name fewer GPU types"
    return [f"{message}; {hint}"]
