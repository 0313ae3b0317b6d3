"""Gateway specs to Modal app sources: one file per app the spec yields.

Values are prepared here, as in ``vllm.py``; ``templates/gateway_app.py.j2`` only lays them
out. The router and the model containers' helpers are module-level functions of the generated
file, so the tests run them for real on a CPU.
"""

from __future__ import annotations

from typing import Any

from ..spec.app import HF_CACHE
from ..spec.gateway import SERVE_PORT, GatewayApp, GatewaySpec, serve_argv
from .context import endpoint_context, hf_token_context, scaling_context

TEMPLATE = "gateway_app.py.j2"
# The router's image (Modal's debian_slim with the spec's Python) needs only aiohttp: pinned,
# like every package of a generated image, and resolved with pip by tests/test_images.py.
ROUTER_PACKAGES = ("aiohttp==3.14.5",)


def gateway_context(spec: GatewaySpec, app: GatewayApp, header_text: str) -> dict[str, Any]:
    env = {"HF_HOME": HF_CACHE, "HF_XET_HIGH_PERFORMANCE": "1", **spec.image.env}
    return {
        "header": header_text,
        "app_name": app.name,
        "app_tags": dict(sorted(spec.labels.items())),
        "gpu": str(app.gpu),
        "models": {
            model.name: {
                "id": model.id,
                "revision": model.revision,
                "serve_args": serve_argv(model, SERVE_PORT),
                "concurrency": spec.pool_concurrency(model),
            }
            for model in app.models
        },
        "model_classes": [
            {"name": model.name, "id": model.id, "class_name": model.class_name}
            for model in app.models
        ],
        "volume_names": dict(sorted(spec.volumes.items())),
        "secret_names": list(spec.secrets),
        **hf_token_context(spec.hf_token_secret),
        "http": endpoint_context(spec.router),  # the router: the app's one public endpoint
        "upstream_timeout": spec.upstream_timeout,
        "router_timeout": spec.router_timeout,
        "vllm_url": f"http://127.0.0.1:{SERVE_PORT}",
        **scaling_context(spec.scaling, spec.image),
        **_runtime(spec),
        "pip_packages": [f"vllm=={spec.engine_version}", *spec.image.packages],
        "router_packages": list(ROUTER_PACKAGES),
        "image_env": dict(sorted(env.items())),
        "relay": True,  # the router relays the models' answers (templates/_http_guard.py.j2)
    }


def _runtime(spec: GatewaySpec) -> dict[str, Any]:
    """The runtime settings a gateway takes (templates/_runtime_*.py.j2): placement for the
    model pools and the router, the autoscaler's target for the pools. The router has no
    custom domains yet, and nothing of a gateway is retried."""
    return {
        "regions": spec.placement.region,
        "cloud": spec.placement.cloud,
        "routing_region": spec.placement.routing_region,
        "memory": None,  # the pools and the router take Modal's default memory and CPU
        "cpu": None,
        "ephemeral_disk": None,
        "retries": None,
        "target_concurrency": spec.scaling.target_concurrency,
        "custom_domains": None,
        "region_keyword": "region",
    }
