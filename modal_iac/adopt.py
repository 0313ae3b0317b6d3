"""``modaliac import APP --generate-spec FILE``: a spec from what Modal reports about an app.

Modal reports each function's definition (FunctionGet): GPU, autoscaler, timeouts, volume
mounts, secret ids, web endpoints, snapshot flags. Those become spec keys; what Modal cannot
say (the model id, the engine's settings) is marked with comments, and the model id is a
placeholder that ``validate`` refuses until it is filled in. The record the import writes holds
the settings the written spec resolves to, so the first plan shows the model id and the code
modaliac generates, not a replacement of everything.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from .fields import IMPORT_PLACEHOLDER

# What the generated spec cannot know, said once at the top of the file.
HEADER = (
    "# Written by `modaliac import {app} --generate-spec` from what Modal reports about the\n"
    "# deployed app. Modal does not report the model or the engine's settings: fill in model.id,\n"
    "# check model.task, and add engine settings (vLLM arguments) the app was started with.\n"
)
PAGE = 100  # items per SecretList / VolumeList page, as the SDK asks
STANDIN_ID = "imported/model"  # validates like a real id; replaced by the placeholder after
MODALIAC_TAGS = ("managed-by", "modaliac-")
HF_NAMES = ("huggingface", "hugging-face", "hf-", "hf_")  # a secret likely to hold HF_TOKEN


@dataclass(frozen=True)
class Function:
    """One deployed function as FunctionGet reports it (plain values)."""

    tag: str
    gpu: str = ""
    gpu_count: int = 0
    min_containers: int = 0
    max_containers: int | None = None
    buffer_containers: int = 0
    scaledown_window: int = 0
    timeout: int = 0
    startup_timeout: int = 0
    concurrency: int = 0
    memory_snapshot: bool = False
    gpu_snapshot: bool = False
    volumes: dict[str, str] = field(default_factory=dict)  # mount path -> volume name
    secrets: tuple[str, ...] = ()
    web: bool = False
    proxy_auth: bool = False
    custom_domains: tuple[str, ...] = ()

    @property
    def is_class(self) -> bool:
        return self.tag.endswith(".*")


def read_functions(app: str, environment: str | None) -> list[Function]:
    """Every function of a deployed app, from its layout and one FunctionGet each, with volume
    and secret ids named through VolumeList and SecretList."""
    from modal_proto import api_pb2

    from .modal_api import run

    env = environment or ""

    async def make(client: Any) -> list[Function]:
        stub = client._stub
        found = await stub.AppGetByDeploymentName(
            api_pb2.AppGetByDeploymentNameRequest(name=app, environment_name=env)
        )
        layout, secrets, volumes = await asyncio.gather(
            stub.AppGetLayout(api_pb2.AppGetLayoutRequest(app_id=found.app_id)),
            _listed(stub.SecretList, api_pb2.SecretListRequest, env),
            _listed(stub.VolumeList, api_pb2.VolumeListRequest, env),
        )
        secret_names = {item.secret_id: item.label for item in secrets}
        volume_names = {item.volume_id: item.label for item in volumes}
        tags = sorted(layout.app_layout.function_ids)
        answers = await asyncio.gather(
            *(
                stub.FunctionGet(
                    api_pb2.FunctionGetRequest(app_name=app, object_tag=tag, environment_name=env)
                )
                for tag in tags
            )
        )
        return [
            _function(tag, answer.function, secret_names, volume_names)
            for tag, answer in zip(tags, answers, strict=True)
        ]

    return run(make)


async def _listed(call: Any, request: Any, env: str) -> list[Any]:
    """Every item of a SecretList / VolumeList, page by page as the SDK reads them (pages of
    100, each older than the last item of the one before)."""
    from modal_proto import api_pb2

    items: list[Any] = []
    before = 0.0
    while True:
        page = api_pb2.ListPagination(max_objects=PAGE, created_before=before)
        answer = await call(request(environment_name=env, pagination=page))
        items.extend(answer.items)
        last = answer.items[-1].metadata.creation_info.created_at if answer.items else 0.0
        if len(answer.items) < PAGE or not last or last == before:
            return items
        before = last


def _function(
    tag: str, data: Any, secret_names: dict[str, str], volume_names: dict[str, str]
) -> Function:
    ranked = data.ranked_functions[0].function if data.ranked_functions else None
    gpu = ranked.resources.gpu_config if ranked is not None else None
    scaler = data.autoscaler_settings
    webhooks = [data.webhook_config] if data.webhook_config.type else []
    methods = data.method_definitions.values()
    webhooks += [m.webhook_config for m in methods if m.webhook_config.type]
    return Function(
        tag=tag,
        gpu=gpu.gpu_type if gpu is not None else "",
        gpu_count=gpu.count if gpu is not None else 0,
        min_containers=scaler.min_containers,
        max_containers=scaler.max_containers if scaler.HasField("max_containers") else None,
        buffer_containers=scaler.buffer_containers,
        scaledown_window=scaler.scaledown_window,
        timeout=data.timeout_secs,
        startup_timeout=data.startup_timeout_secs,
        concurrency=ranked.max_concurrent_inputs if ranked is not None else 0,
        memory_snapshot=bool(ranked is not None and ranked.checkpointing_enabled),
        gpu_snapshot=data.experimental_options.get("enable_gpu_snapshot", "").lower() == "true"
        or data._experimental_enable_gpu_snapshot,
        volumes={
            m.mount_path: volume_names.get(m.volume_id, m.volume_id)
            for m in (ranked.volume_mounts if ranked is not None else ())
        },
        secrets=tuple(
            secret_names.get(s, s) for s in (ranked.secret_ids if ranked is not None else ())
        ),
        web=bool(webhooks),
        proxy_auth=any(w.requires_proxy_auth for w in webhooks),
        custom_domains=tuple(d for w in webhooks for d in w.custom_domains),
    )


def spec_text(app: str, environment: str | None, tags: dict[str, str], fns: list[Function]) -> str:
    """The spec, as YAML text with comments (``fmt`` puts it in canonical order)."""
    serving = [f for f in fns if f.gpu] or list(fns)
    main = next((f for f in serving if f.web), serving[0])
    lines = [HEADER.format(app=app), f"app: {app}"]
    if environment:
        lines.append(f"environment: {environment}")
    labels = {k: v for k, v in sorted(tags.items()) if not k.startswith(MODALIAC_TAGS)}
    if labels:
        lines.append("labels:")
        lines.extend(f"  {_scalar(k)}: {_scalar(v)}" for k, v in labels.items())
    embeds = any("embed" in f.tag.lower() for f in fns)
    lines += [
        "model:",
        f"  id: {IMPORT_PLACEHOLDER}  # fill in: the Hugging Face id of the model the app serves",
        "  revision: main  # Modal does not report it: pin the commit the app loads",
        f"  task: {'embed' if embeds else 'generate'}  # guessed from the function names: check",
        "engine:",
        "  name: vllm  # Modal does not report the engine or its settings: check",
    ]
    if main.gpu:
        count = f":{main.gpu_count}" if main.gpu_count > 1 else ""
        lines.append(f"gpu: {main.gpu}{count}")
    if main.memory_snapshot:
        lines.append(f"snapshot: {'gpu' if main.gpu_snapshot else 'memory'}")
    volumes = {p: n for f in fns for p, n in f.volumes.items()}
    if volumes:
        lines.append("volumes:")
        lines.extend(f"  {_scalar(p)}: {_scalar(n)}" for p, n in sorted(volumes.items()))
    # A secret only the web function has is its API key; the others are the model's.
    others = [f for f in fns if not f.web]
    everywhere = [
        s for s in main.secrets if not main.web or not others or any(s in f.secrets for f in others)
    ]
    web_only = [s for s in main.secrets if s not in everywhere]
    token = next((s for s in everywhere if s.lower().startswith(HF_NAMES)), None)
    if token is not None:
        everywhere.remove(token)
        lines.append(f"hf_token_secret: {_scalar(token)}  # guessed from its name: holds HF_TOKEN?")
    if everywhere:
        lines.append("secrets:  # if one holds HF_TOKEN, hf_token_secret: NAME says so")
        lines.extend(f"  - {_scalar(s)}" for s in everywhere)
    lines.append("scaling:")
    if main.min_containers:
        lines.append(f"  min_containers: {main.min_containers}")
    if main.max_containers is not None:
        lines.append(f"  max_containers: {main.max_containers}")
    if main.buffer_containers:
        lines.append(f"  buffer_containers: {main.buffer_containers}")
    for key, seconds in (
        ("scaledown_window", main.scaledown_window),
        ("timeout", main.timeout),
        ("startup_timeout", main.startup_timeout),
    ):
        if seconds:
            lines.append(f"  {key}: {seconds}s")
    if main.concurrency:
        lines.append(f"  concurrency: {main.concurrency}")
    lines.append("surfaces:")
    classes = [f for f in serving if f.is_class and not f.web]
    if classes:
        lines += ["  class:", f"    name: {classes[0].tag.removesuffix('.*')}"]
    if main.web:
        lines.append("  http:")
        if web_only:
            lines.append(f"    api_key_secret: {_scalar(web_only[0])}")
        if main.proxy_auth:
            lines.append("    proxy_auth: true")
        if main.custom_domains:
            lines.append("    custom_domains:")
            lines.extend(f"      - {_scalar(d)}" for d in main.custom_domains)
        if not web_only and not main.proxy_auth:
            lines.append("    open: true  # Modal reports no key and no proxy auth: check")
    if any(not f.gpu for f in fns) and any(f.gpu for f in fns):
        lines.append("  downloader: true")
    return "\n".join(lines) + "\n"


def _scalar(value: str) -> str:
    import json

    plain = value.replace("-", "").replace("_", "").replace(".", "").replace("/", "")
    return value if plain.isalnum() and not value[0].isdigit() else json.dumps(value)


def recorded_settings(text: str) -> dict[str, Any] | None:
    """The settings the written spec resolves to, model id as written (the placeholder); None
    when it needs more than the model id to validate (Modal reported something a spec cannot
    say, e.g. an app without a GPU)."""
    from pydantic import ValidationError
    from ruamel.yaml import YAML

    from .settings import settings
    from .spec import Spec

    data = YAML(typ="safe").load(text)
    data["model"]["id"] = STANDIN_ID
    try:
        found = settings(Spec.model_validate(data))
    except ValidationError:
        return None
    found["model.id"] = IMPORT_PLACEHOLDER
    found["model.served_name"] = IMPORT_PLACEHOLDER
    return found
