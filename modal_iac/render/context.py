"""The shared context: what every kind of generated app prints the same way.

The bottom of the render room. Each app shape's builder (``vllm``, ``transformers``,
``gateway``) takes from here what it shares with the others; nothing here knows a shape's
template.
"""

from __future__ import annotations

from typing import Any

from ..spec.app import HF_CACHE, Image
from ..spec.fields import HF_TOKEN_KEY
from ..spec.gateway import Router
from ..spec.scaling import Scaling
from ..spec.service import Spec
from ..spec.surfaces import HttpSurface

MIB = 1024 * 1024


def scaling_context(scaling: Scaling, image: Image) -> dict[str, Any]:
    """Time limits, autoscaling and the image base: the same in every kind of generated app."""
    return {
        "timeout": scaling.timeout,
        "startup_timeout": scaling.startup_timeout,
        "scaledown_window": scaling.scaledown_window,
        "min_containers": scaling.min_containers,
        "max_containers": scaling.max_containers,
        "buffer_containers": scaling.buffer_containers,
        "base_image": image.base,
        "python_version": image.python,
    }


def common_context(spec: Spec, header_text: str) -> dict[str, Any]:
    """What every engine's template prints the same way: names, model, GPU, storage, scaling."""
    downloader = None
    if spec.surfaces.downloader is not None:
        downloader = {
            "name": spec.surfaces.downloader.name,
            "timeout": spec.surfaces.downloader.timeout,
        }
    return {
        "header": header_text,
        "app_name": spec.app,
        "app_tags": dict(sorted(spec.labels.items())),
        "model_id": spec.model.id,
        "model_revision": spec.model.revision,
        "gpu": gpu_argument(spec),
        "volume_names": dict(sorted(spec.volumes.items())),
        "hf_cache": HF_CACHE,
        "secret_names": list(spec.secrets),
        **hf_token_context(spec.hf_token_secret),
        "snapshot": spec.snapshot,
        "memory": spec.resources.memory,
        "cpu": spec.resources.cpu,
        **scaling_context(spec.scaling, spec.image),
        **runtime_context(spec),
        "concurrency": spec.concurrency,
        "image_env": image_env(spec),
        "downloader": downloader,
    }


def runtime_context(spec: Spec) -> dict[str, Any]:
    """Placement, scratch disk, retries, the autoscaler's target and custom domains: each
    None when the spec leaves it to Modal, so the generated file names only what is set
    (templates/_runtime_settings.py.j2 and _runtime_args.py.j2)."""
    retries = None
    if spec.retries is not None:  # modal.Retries' keyword arguments, delays in seconds
        retries = {
            "max_retries": spec.retries.max_retries,
            "backoff_coefficient": spec.retries.backoff_coefficient,
            "initial_delay": float(spec.retries.initial_delay),
            "max_delay": float(spec.retries.max_delay),
        }
    http = spec.surfaces.http
    return {
        "regions": spec.placement.region,
        "cloud": spec.placement.cloud,
        "routing_region": spec.placement.routing_region,
        "ephemeral_disk": spec.resources.ephemeral_disk,
        "retries": retries,
        "target_concurrency": spec.scaling.target_concurrency,
        "custom_domains": http.custom_domains if http is not None else None,
        "region_keyword": "region",  # @app.server calls it compute_region (vllm.server_context)
    }


def endpoint_context(endpoint: HttpSurface | Router) -> dict[str, Any]:
    """The API key and the body limit of a public endpoint, for templates/_http_guard.py.j2."""
    proxy_auth = isinstance(endpoint, HttpSurface) and endpoint.proxy_auth
    return {
        "open": endpoint.open,
        "bearer": endpoint.api_key_secret is not None,  # the guard checks a Bearer key
        "proxy_auth": proxy_auth,  # Modal checks a proxy token before the container
        "api_key_secret": endpoint.api_key_secret,
        "api_key_env": endpoint.api_key_env,
        "max_body": endpoint.max_body * MIB,
        "asgi_arguments": asgi_arguments(endpoint),
    }


def asgi_arguments(endpoint: HttpSurface | Router) -> str:
    """``@modal.asgi_app(...)``'s arguments: Modal's proxy auth and custom domains, when set."""
    if not isinstance(endpoint, HttpSurface):
        return ""
    arguments = []
    if endpoint.proxy_auth:
        arguments.append("requires_proxy_auth=True")
    if endpoint.custom_domains is not None:
        arguments.append("custom_domains=CUSTOM_DOMAINS")
    return ", ".join(arguments)


def hf_token_context(hf_token_secret: str | None) -> dict[str, Any]:
    """The Hugging Face token's secret, attached with the key huggingface_hub reads."""
    return {"hf_token_secret": hf_token_secret, "hf_token_key": HF_TOKEN_KEY}


def gpu_argument(spec: Spec) -> str | list[str]:
    """Modal's ``gpu=``: one string, or the ordered fallback list."""
    choices = [str(g) for g in spec.gpu]
    return choices[0] if len(choices) == 1 else choices


def image_env(spec: Spec) -> dict[str, str]:
    env = {"HF_XET_HIGH_PERFORMANCE": "1"}
    if spec.snapshot in ("gpu", "sleep"):
        # Multi-threaded inductor compilation does not survive a GPU snapshot (FACTS.md).
        env["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    env.update(spec.image.env)
    return dict(sorted(env.items()))
