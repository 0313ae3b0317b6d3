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
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModaliacError
from ..spec.fields import IMPORT_PLACEHOLDER, is_modaliac_tag
from ..tokens import printable

# What the generated spec cannot know, said once at the top of the file.
HEADER = (
    "# Written by `modaliac import {app} --generate-spec` from what Modal reports about the\n"
    "# deployed app. Modal does not report the model or the engine's settings: fill in model.id,\n"
    "# check model.task, and add engine settings (vLLM arguments) the app was started with.\n"
)
PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9._/-]*")  # reads back as the same string
YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}
PAGE = 100  # items per SecretList / VolumeList page, as the SDK asks
STANDIN_ID = "imported/model"  # validates like a real id; replaced by the placeholder after
HF_NAMES = ("huggingface", "hugging-face", "hf-", "hf_")  # a secret likely to hold HF_TOKEN
# The API key's secret of an endpoint Modal reports neither a key nor proxy auth for: the
# import cannot tell an open endpoint from a key it does not see, so the spec never says open
# unless the user writes it. A valid name no one uses: a deploy with it fails, naming it.
KEY_PLACEHOLDER = "CHANGE-ME"


@dataclass(frozen=True)
class Function:
    """One deployed function as FunctionGet reports it (plain values)."""

    tag: str
    gpus: tuple[str, ...] = ()  # "TYPE" or "TYPE:COUNT", in Modal's fallback order
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
    server: bool = False  # an @app.server (Modal's http_config), not a web method
    plain_methods: bool = False  # a class with methods that are not web endpoints
    proxy_auth: bool = False
    custom_domains: tuple[str, ...] = ()

    @property
    def gpu(self) -> str:
        return self.gpus[0] if self.gpus else ""

    @property
    def is_class(self) -> bool:
        return self.tag.endswith(".*")


def read_functions(
    app: str, environment: str | None
) -> tuple[list[Function], dict[str, tuple[str, ...]]]:
    """Every function of a deployed app, from its layout and one FunctionGet each, with volume
    and secret ids named through VolumeList and SecretList; and each secret's key names (never
    a value: SecretList reports names only)."""
    from modal_proto import api_pb2

    from ..modal.sdk import run

    env = environment or ""

    async def make(client: Any) -> tuple[list[Function], dict[str, tuple[str, ...]]]:
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
        keys = {item.label: tuple(item.metadata.keys) for item in secrets if item.label}
        return [
            _function(tag, answer.function, secret_names, volume_names)
            for tag, answer in zip(tags, answers, strict=True)
        ], keys

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
    ranks = sorted(data.ranked_functions, key=_rank)
    ranked = ranks[0].function if ranks else None
    configs = [r.function.resources.gpu_config for r in ranks]
    scaler = data.autoscaler_settings
    webhooks = [data.webhook_config] if data.webhook_config.type else []
    server = bool(data.is_server or data.HasField("http_config"))
    methods = data.method_definitions.values()
    webhooks += [m.webhook_config for m in methods if m.webhook_config.type]
    return Function(
        tag=tag,
        gpus=tuple(
            c.gpu_type + (f":{c.count}" if c.count > 1 else "") for c in configs if c.gpu_type
        ),
        min_containers=scaler.min_containers,
        max_containers=scaler.max_containers if scaler.HasField("max_containers") else None,
        buffer_containers=scaler.buffer_containers,
        scaledown_window=scaler.scaledown_window,
        timeout=data.timeout_secs,
        startup_timeout=data.startup_timeout_secs
        or (data.http_config.startup_timeout if server else 0),
        concurrency=(ranked.max_concurrent_inputs if ranked is not None else 0)
        or (int(scaler.target_concurrency_float) if server else 0),  # @app.server's target
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
        web=bool(webhooks) or server,
        plain_methods=any(not m.webhook_config.type for m in methods),
        server=server,
        proxy_auth=any(w.requires_proxy_auth for w in webhooks)
        or (server and not data.http_config.unauthenticated),
        custom_domains=tuple(d for w in webhooks for d in w.custom_domains),
    )


def _rank(ranked: Any) -> int:
    return int(ranked.rank)


def spec_text(
    app: str,
    environment: str | None,
    tags: dict[str, str],
    fns: list[Function],
    keys: dict[str, tuple[str, ...]],
) -> str:
    """The spec, as YAML text with comments (``fmt`` puts it in canonical order)."""
    serving = [f for f in fns if f.gpu] or list(fns)
    main = next((f for f in serving if f.web), serving[0])
    # modaliac's transformers engine serves the class and the HTTP surface from one class;
    # its vLLM engine has a class of its own for the HTTP endpoint.
    classes = [f for f in serving if f.is_class and (not f.web or f.plain_methods)]
    engine = (
        "transformers  # guessed: one class has both Python and web methods"
        if any(f.web for f in classes)
        else "vllm  # Modal does not report the engine or its settings: check"
    )
    embeds = any("embed" in f.tag.lower() for f in fns)
    lines = [HEADER.format(app=app), f"app: {app}"]
    if environment:
        lines.append(f"environment: {environment}")
    labels = {k: v for k, v in sorted(tags.items()) if not is_modaliac_tag(k)}
    lines += _section("labels:", [f"  {_scalar(k)}: {_scalar(v)}" for k, v in labels.items()])
    lines += [
        "model:",
        f"  id: {IMPORT_PLACEHOLDER}  # fill in: the Hugging Face id of the model the app serves",
        "  revision: main  # Modal does not report it: pin the commit the app loads",
        f"  task: {'embed' if embeds else 'generate'}  # guessed from the function names: check",
        "engine:",
        f"  name: {engine}",
    ]
    if len(main.gpus) > 1:
        lines += ["gpu:  # Modal's fallback order", *(f"  - {g}" for g in main.gpus)]
    elif main.gpus:
        lines.append(f"gpu: {main.gpu}")
    if main.memory_snapshot:
        lines.append(
            "snapshot: gpu  # or sleep: vLLM's sleep mode takes the same snapshot"
            if main.gpu_snapshot
            else "snapshot: memory"
        )
    volumes = {p: n for f in fns for p, n in f.volumes.items()}
    lines += _section(
        "volumes:", [f"  {_scalar(p)}: {_scalar(n)}" for p, n in sorted(volumes.items())]
    )
    api_key, secret_lines = _secrets(main, fns, keys)
    lines += secret_lines
    lines += _section("scaling:", _scaling(main))
    surfaces = []
    if classes:
        surfaces += ["  class:", f"    name: {classes[0].tag.removesuffix('.*')}"]
    if main.web:
        surfaces += ["  http:", *_http(main, api_key, keys)]
    if any(not f.gpu for f in fns) and any(f.gpu for f in fns):
        surfaces.append("  downloader: true")
    lines += _section("surfaces:", surfaces)
    return "\n".join(lines) + "\n"


def _section(head: str, body: list[str]) -> list[str]:
    """A mapping key and its lines, or nothing (an empty key would be null)."""
    return [head, *body] if body else []


def _secrets(
    main: Function, fns: list[Function], keys: dict[str, tuple[str, ...]]
) -> tuple[str | None, list[str]]:
    """The API key's secret, and the lines of the model's secrets.

    The web function's secret holding an ``*API_KEY`` key is its API key (else one only the
    web function has); one holding HF_TOKEN (else one named like it) is the token's."""
    others = [f for f in fns if not f.web]
    keyed = [s for s in main.secrets if any(k.endswith("API_KEY") for k in keys.get(s, ()))]
    alone = [s for s in main.secrets if others and all(s not in f.secrets for f in others)]
    candidates = (keyed or alone) if main.web else []
    api_key = candidates[0] if candidates else None
    rest = [s for s in main.secrets if s != api_key]
    held = [s for s in rest if "HF_TOKEN" in keys.get(s, ())]
    named = [s for s in rest if s.lower().startswith(HF_NAMES)]
    lines = []
    token = (held or named)[0] if (held or named) else None
    if token is not None:
        rest.remove(token)
        why = "holds HF_TOKEN" if held else "guessed from its name: holds HF_TOKEN?"
        lines.append(f"hf_token_secret: {_scalar(token)}  # {why}")
    if rest:
        lines.append("secrets:  # if one holds HF_TOKEN, hf_token_secret: NAME says so")
        lines.extend(f"  - {_scalar(s)}" for s in rest)
    return api_key, lines


def _scaling(main: Function) -> list[str]:
    lines = []
    if main.min_containers:
        lines.append(f"  min_containers: {main.min_containers}")
    if main.max_containers is not None:
        lines.append(f"  max_containers: {main.max_containers}")
    if main.buffer_containers:
        lines.append(f"  buffer_containers: {main.buffer_containers}")
    for key, seconds in (
        ("scaledown_window", main.scaledown_window),
        ("timeout", 0 if main.server else main.timeout),  # an @app.server has no timeout
        ("startup_timeout", main.startup_timeout),
    ):
        if seconds:
            lines.append(f"  {key}: {seconds}s")
    if main.concurrency:
        lines.append(f"  concurrency: {main.concurrency}")
    return lines


def _http(main: Function, api_key: str | None, keys: dict[str, tuple[str, ...]]) -> list[str]:
    lines = []
    if api_key is not None:
        lines.append(f"    api_key_secret: {_scalar(api_key)}")
        env = next((k for k in keys.get(api_key, ()) if k.endswith("API_KEY")), None)
        if env is not None and env != "VLLM_API_KEY":
            lines.append(f"    api_key_env: {env}")
    if main.proxy_auth:
        lines.append("    proxy_auth: true")
    if main.server:
        lines.append("    primitive: server")
    if main.custom_domains:
        lines.append("    custom_domains:")
        lines.extend(f"      - {_scalar(d)}" for d in main.custom_domains)
    if api_key is None and not main.proxy_auth:
        lines.append(
            f"    api_key_secret: {KEY_PLACEHOLDER}  # Modal reports no key and no proxy auth: "
            "name the secret holding the API key, or write open: true to serve without one"
        )
    return lines


def check_new_spec(path: Path) -> None:
    """Refuse, before asking Modal anything, a spec path that is taken: a file, a folder, or
    a symbolic link (one pointing nowhere too: the spec would be written where it points)."""
    if not str(path).isprintable():
        raise ModaliacError(
            f"{printable(str(path))}: the name holds a control character; name the spec's file "
            "in printable characters"
        )
    if os.path.lexists(path):
        what = " (a symbolic link)" if path.is_symlink() else ""
        raise ModaliacError(f"{printable(str(path))}: already exists{what}; name a new file")


def write_new_spec(path: Path, text: str) -> None:
    """Create the spec file, never replacing one (whatever appeared since the check)."""
    shown = printable(str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModaliacError(f"{shown}: cannot make its folder ({exc.strerror})") from None
    try:
        with path.open("x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        raise ModaliacError(f"{shown}: already exists; name a new file") from None
    except OSError as exc:
        raise ModaliacError(f"{shown}: cannot write the spec ({exc.strerror})") from None


def _scalar(value: str) -> str:
    """A YAML scalar that reads back as this string: plain when it safely can be."""
    import json

    if PLAIN.fullmatch(value) and value.lower() not in YAML_WORDS:
        return value
    return json.dumps(value)


def recorded_settings(text: str) -> dict[str, Any] | None:
    """The settings the written spec resolves to, model id as written (the placeholder); None
    when it needs more than the model id to validate (Modal reported something a spec cannot
    say, e.g. an app without a GPU)."""
    from pydantic import ValidationError
    from ruamel.yaml import YAML

    from ..spec.service import Spec
    from ..spec.settings import settings

    data = YAML(typ="safe").load(text)
    data["model"]["id"] = STANDIN_ID
    http = (data.get("surfaces") or {}).get("http")
    if isinstance(http, dict) and http.get("api_key_secret") == KEY_PLACEHOLDER:
        # Recorded as Modal runs it (no key), so the plan shows the spec's key as a change.
        del http["api_key_secret"]
        http["open"] = True
    try:
        found = settings(Spec.model_validate(data))
    except ValidationError:
        return None
    found["model.id"] = IMPORT_PLACEHOLDER
    found["model.served_name"] = IMPORT_PLACEHOLDER
    return found
