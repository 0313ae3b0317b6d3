"""Generated app files, imported and read back with the real Modal SDK (modal 1.6.4), offline.

Every spec in specs/ and examples/ (plus a few synthetic specs for template branches those do
not reach) is rendered, written to a temporary directory and imported the way ``modal deploy``
imports it (a real module registered in ``sys.modules``). The test then asks the SDK what the
app defines and compares it with the spec: app name and tags, the class surface, the web
server, the weights downloader. Nothing is deployed: the SDK makes no RPC while objects are
local, and sockets are blocked so an accidental call fails at once.

Most values come from the public read-back, ``Function.info()`` (also reached through a
``modal.Cls`` instance's methods). The few settings the SDK exposes offline only through private
structures are read in one place, ``private_view`` below, which says why for each.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import secrets as token_gen
import socket
import string
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import modal
import pytest
from helpers import import_file, isolate_modal_config

from modal_iac.loading.load import LoadedSpec, find_spec_files, load_spec
from modal_iac.render.app import Rendered, render
from modal_iac.spec.service import Spec

ROOT = Path(__file__).resolve().parent.parent
SPEC_DIRS = ("specs", "examples")


def _spec_paths() -> list[str]:
    """Service spec files relative to the repository root, as ``modaliac render`` is run there.
    Gateway specs (several apps each) have their own fidelity tests in test_gateway.py."""
    found: list[str] = []
    for directory in SPEC_DIRS:
        if (ROOT / directory).is_dir():
            found += [
                p.relative_to(ROOT).as_posix()
                for p in find_spec_files(ROOT / directory)
                if "\nkind: gateway" not in p.read_text(encoding="utf-8")
            ]
    return found


# Synthetic specs for template branches no checked-in spec reaches: a class surface with
# task generate, with snapshot memory and sleep, an open web server, non-default autoscaling,
# a server alone with sleep level 2 or a GPU snapshot, reserved host memory and CPU.
_MODEL_GENERATE = {"id": "org/chat-model", "revision": "0123abc", "task": "generate"}
_MODEL_EMBED = {"id": "org/embed-model", "revision": "0123abc", "task": "embed"}
SYNTHETIC: dict[str, dict[str, Any]] = {
    "generate-class-open-http": {
        "app": "synthetic-generate",
        "labels": {"team": "qa", "tier": "gold"},
        "model": _MODEL_GENERATE,
        "gpu": ["H100", "A100-80GB"],
        "secrets": ["huggingface", "wandb"],
        "scaling": {
            "min_containers": 1,
            "max_containers": 3,
            "buffer_containers": 2,
            "scaledown_window": "10m",
            "timeout": "20m",
            "startup_timeout": "30m",
            "concurrency": 8,
        },
        "surfaces": {
            "class": {"name": "ChatModel"},
            "http": {"port": 9000, "open": True},
            "downloader": False,
        },
    },
    "embed-class-sleep-http": {
        "app": "synthetic-embed-sleep",
        "model": _MODEL_EMBED,
        "gpu": "L40S",
        "snapshot": "sleep",
        "resources": {"memory": "48GiB", "cpu": 6.5},
        "volumes": {"/root/.cache/huggingface": "hf", "/data": "scratch"},
        "scaling": {"concurrency": 4},
        "surfaces": {
            "class": True,
            "http": {"api_key_secret": "embed-key"},
            "downloader": {"name": "fetch_weights", "timeout": "2h"},
        },
    },
    "embed-server-sleep-level-2": {
        "app": "synthetic-embed-server-sleep",
        "model": {**_MODEL_EMBED, "multimodal": False},
        "engine": {"sleep_level": 2},
        "gpu": "L4",
        "snapshot": "sleep",
        "scaling": {"concurrency": 16, "max_containers": 2},
        "surfaces": {"class": False, "http": {"api_key_secret": "embed-key", "port": 8123}},
    },
    "generate-server-gpu-open": {
        "app": "synthetic-generate-server-gpu",
        "model": {**_MODEL_GENERATE, "multimodal": True},
        "gpu": "H100",
        "snapshot": "gpu",
        "surfaces": {"class": False, "http": {"open": True}, "downloader": False},
    },
    "generate-class-gpu-snapshot": {
        "app": "synthetic-generate-gpu",
        "model": _MODEL_GENERATE,
        "gpu": "A100-80GB",
        "snapshot": "gpu",
        "volumes": {},
        "surfaces": {"class": True, "downloader": False},
    },
    # @app.server with the placement and autoscaling settings: region becomes compute_region,
    # the target and the hard limit become target_concurrency and max_concurrency.
    "generate-app-server-placed-targeted": {
        "app": "synthetic-generate-app-server",
        "model": _MODEL_GENERATE,
        "gpu": "L4",
        "placement": {"region": "eu", "cloud": "aws"},
        "resources": {"ephemeral_disk": "100GiB"},
        "scaling": {"concurrency": 16, "target_concurrency": 8},
        "surfaces": {"http": {"api_key_secret": "chat-key", "primitive": "server"}},
    },
    "embed-placed-retried-with-domains": {
        "app": "synthetic-embed-placed",
        "model": _MODEL_EMBED,
        "gpu": "L4",
        "placement": {"region": ["eu-west", "uk"], "cloud": "aws"},
        "resources": {"ephemeral_disk": "200GiB"},
        "retries": {"max_retries": 3, "initial_delay": "5s"},
        "scaling": {"concurrency": 8, "target_concurrency": 6},
        "surfaces": {
            "class": True,  # retries apply to the class's calls
            "http": {"api_key_secret": "embed-key", "custom_domains": ["e.example.com"]},
        },
    },
}


def _loaded(case: str) -> LoadedSpec:
    """A checked-in spec by its path (relative to the cwd), or a synthetic one by its name."""
    if case.startswith("synthetic:"):
        data = SYNTHETIC[case.removeprefix("synthetic:")]
        spec = Spec.model_validate(data)
        assert not spec.problems(), spec.problems()
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        return LoadedSpec(case, digest, spec)
    return load_spec(case)


CASES = _spec_paths() + [f"synthetic:{name}" for name in SYNTHETIC]


def _cases_where(predicate: Callable[[Spec], bool]) -> list[str]:
    """Cases whose spec matches; a case that fails to load is kept so its test fails."""
    chosen = []
    for case in CASES:
        try:
            spec = _loaded(case if case.startswith("synthetic:") else str(ROOT / case)).spec
        except Exception:
            chosen.append(case)
            continue
        if predicate(spec):
            chosen.append(case)
    return chosen


METHODS = {"embed": ["embed", "embed_with_metadata"], "generate": ["chat", "generate"]}
SERVER = "Server"  # the HTTP surface's class; its Modal function is "Server.*"


# -- private SDK structures ---------------------------------------------------------------
# modal 1.6.4 keeps these settings only where the client reads them when it deploys; offline
# there is no public read-back for them (FunctionInfo has no autoscaler, snapshot or web-server
# fields). Every private access of this file is in this section.
#  - app tags: App.get_tags() needs a running app; the constructor's tags wait in _local_state.
#  - the app's inventory: App.registered_functions/registered_classes warn that they are removed
#    in 1.7.0; they are views of the same _local_state.
#  - autoscaler settings, enable_memory_snapshot, experimental_options: captured only by the
#    closure of the function's loader, which turns them into the FunctionCreate request.
#  - web endpoint kinds: the WebhookConfig of each web method of a user class.
#  - snapshot hooks: the @modal.enter(snap=...) flags on the user class's methods.
#  - the user config file is read once, at `import modal`: a throw-away HOME set afterwards
#    would not hide ~/.modal.toml, so the parsed copy is replaced by an empty one.


@dataclass(frozen=True)
class PrivateFunctionView:
    min_containers: int | None
    max_containers: int | None
    buffer_containers: int | None
    scaledown_window: int | None
    memory: int | None  # MiB, as passed to @app.cls(memory=...)
    cpu: float | None
    enable_memory_snapshot: bool
    experimental_options: dict[str, str]


@dataclass(frozen=True)
class PrivateAppView:
    tags: dict[str, str]
    function_tags: list[str]
    class_names: list[str]
    functions: dict[str, PrivateFunctionView]
    pre_snapshot_hooks: dict[str, list[str]]  # class name -> @modal.enter(snap=True) methods
    post_snapshot_hooks: dict[str, list[str]]  # class name -> @modal.enter(snap=False) methods
    web_methods: dict[str, dict[str, int]]  # class name -> web method -> api_pb2.WebhookType


def private_view(app: modal.App) -> PrivateAppView:
    from modal._partial_function import (
        _find_partial_methods_for_user_cls,
        _PartialFunctionFlags,
    )
    from modal._utils.async_utils import synchronizer

    state = synchronizer._translate_in(app)._local_state
    functions = {}
    for tag, fn in state.functions.items():
        captured = inspect.getclosurevars(fn._load).nonlocals
        scaler = captured["autoscaler_settings"]

        def field(name: str, scaler: Any = scaler) -> int | None:
            return getattr(scaler, name) if scaler.HasField(name) else None

        functions[tag] = PrivateFunctionView(
            min_containers=field("min_containers"),
            max_containers=field("max_containers"),
            buffer_containers=field("buffer_containers"),
            scaledown_window=field("scaledown_window"),
            memory=captured["memory"],
            cpu=captured["cpu"],
            enable_memory_snapshot=captured["enable_memory_snapshot"],
            experimental_options=dict(captured["experimental_options"]),
        )

    def methods(flag: Any) -> dict[str, dict[str, Any]]:
        return {
            name: _find_partial_methods_for_user_cls(cls._get_user_cls(), flag)
            for name, cls in state.classes.items()
        }

    web = methods(_PartialFunctionFlags.WEB_INTERFACE)
    return PrivateAppView(
        tags=dict(state.tags),
        function_tags=sorted(state.functions),
        class_names=sorted(state.classes),
        functions=functions,
        pre_snapshot_hooks={
            name: sorted(found)
            for name, found in methods(_PartialFunctionFlags.ENTER_PRE_SNAPSHOT).items()
        },
        post_snapshot_hooks={
            name: sorted(found)
            for name, found in methods(_PartialFunctionFlags.ENTER_POST_SNAPSHOT).items()
        },
        web_methods={
            name: {method: pf.params.webhook_config.type for method, pf in found.items()}
            for name, found in web.items()
        },
    )


# -- offline import of a generated file ---------------------------------------------------


class NetworkBlocked(BaseException):
    """Raised on any connection attempt. Not an Exception, so no client retry loop takes it."""


def _blocked(*args: object, **kwargs: object) -> None:
    raise NetworkBlocked(f"network access attempted during an offline test: {args!r}")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A throw-away HOME, no MODAL_* variables, no user config, no sockets; cwd = repo root."""
    isolate_modal_config(monkeypatch, tmp_path / "home")
    monkeypatch.setattr(socket.socket, "connect", _blocked)
    monkeypatch.setattr(socket.socket, "connect_ex", _blocked)
    monkeypatch.setattr(socket, "getaddrinfo", _blocked)
    monkeypatch.setattr(socket, "create_connection", _blocked)
    monkeypatch.chdir(ROOT)
    return tmp_path


@dataclass(frozen=True)
class Imported:
    spec: Spec
    rendered: Rendered
    module: ModuleType

    @property
    def app(self) -> modal.App:
        app = self.module.app
        assert isinstance(app, modal.App)
        return app


def import_generated(path: str, out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Imported:
    """Render a case, write the file and import it as a module."""
    loaded = _loaded(path)
    rendered = render(loaded)
    target = out_dir / "apps" / rendered.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(rendered.source, encoding="utf-8")
    stem = Path(path.removeprefix("synthetic:")).stem.replace("-", "_")
    name = f"modaliac_fidelity_{stem}_{uuid.uuid4().hex[:12]}"
    return Imported(loaded.spec, rendered, import_file(target, name, monkeypatch))


@pytest.fixture(params=CASES)
def spec_path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def model_secrets(spec: Spec) -> list[str]:
    """The secrets every model container gets: the spec's, then the Hugging Face token's."""
    return [*spec.secrets, *([spec.hf_token_secret] if spec.hf_token_secret else [])]


def secret_reprs(names: list[str]) -> list[str]:
    """What Function.info() lists for secrets of a local function: their reprs."""
    return [repr(modal.Secret.from_name(name)) for name in names]


def expected_gpus(spec: Spec) -> list[tuple[str, int]]:
    return [(gpu.type, gpu.count) for gpu in spec.gpu]


def assert_autoscaler(view: PrivateFunctionView, spec: Spec) -> None:
    scaling = spec.scaling
    assert view.min_containers == scaling.min_containers
    assert view.max_containers == scaling.max_containers
    assert view.buffer_containers == scaling.buffer_containers
    assert view.scaledown_window == scaling.scaledown_window
    assert (view.memory, view.cpu) == (spec.resources.memory, spec.resources.cpu)


# -- the tests -----------------------------------------------------------------------------


def test_specs_are_found() -> None:
    paths = _spec_paths()
    dirs = {path.split("/")[0] for path in paths}
    assert dirs == set(SPEC_DIRS), f"expected specs in {SPEC_DIRS}, found {paths}"


# Engine transformers apps (one class holding the methods and the ASGI app) are checked for
# their own shape in test_transformers_engine.py; here and in test_class_surface only vLLM's.
@pytest.mark.parametrize("spec_path", _cases_where(lambda s: s.engine.name == "vllm"))
def test_app_name_tags_and_inventory(
    spec_path: str, offline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported = import_generated(spec_path, offline, monkeypatch)
    spec, app = imported.spec, imported.app
    assert app.name == spec.app
    view = private_view(app)
    assert view.tags == spec.labels

    surfaces = spec.surfaces
    classes = [surfaces.class_.name] if surfaces.class_ is not None else []
    if surfaces.http is not None and surfaces.http.primitive == "cls":
        classes.append(SERVER)
    functions = [f"{name}.*" for name in classes]
    if surfaces.http is not None and surfaces.http.primitive == "server":
        functions.append(SERVER)  # an @app.server is a function of its own, not a class
    if surfaces.downloader is not None:
        functions.append(surfaces.downloader.name)
    assert view.class_names == sorted(classes)
    assert view.function_tags == sorted(functions)


@pytest.mark.parametrize(
    "spec_path", _cases_where(lambda s: s.surfaces.class_ is not None and s.engine.name == "vllm")
)
def test_class_surface(spec_path: str, offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    imported = import_generated(spec_path, offline, monkeypatch)
    spec = imported.spec
    assert spec.surfaces.class_ is not None
    name = spec.surfaces.class_.name
    cls = getattr(imported.module, name)
    assert isinstance(cls, modal.Cls)

    # Public: each method of an instance is a Function whose info() is the class service's.
    instance = cls()
    methods = METHODS[spec.model.task]
    infos = []
    for method in methods:
        function = getattr(instance, method)
        assert isinstance(function, modal.Function), method
        infos.append(function.info())
    info = infos[0]
    assert all(other == info for other in infos[1:])
    assert sorted(info.method_names or []) == methods
    assert info.method_details == {}, "class methods are not web endpoints"
    assert info.gpus == expected_gpus(spec)
    assert {path: mount.name for path, mount in info.volumes.items()} == spec.volumes
    assert not any(mount.read_only for mount in info.volumes.values())
    assert info.secrets == secret_reprs(model_secrets(spec))
    assert info.timeout == spec.scaling.timeout
    assert info.startup_timeout == spec.scaling.startup_timeout
    assert info.concurrency_info is None, "the class takes one call at a time"
    assert info.web_info is None

    # Private (see private_view): autoscaler and snapshot flags.
    app_view = private_view(imported.app)
    view = app_view.functions[f"{name}.*"]
    assert_autoscaler(view, spec)
    assert view.enable_memory_snapshot == (spec.snapshot != "none")
    gpu_snapshot = spec.snapshot in ("gpu", "sleep")
    assert view.experimental_options == ({"enable_gpu_snapshot": "True"} if gpu_snapshot else {})
    hooks = app_view.pre_snapshot_hooks[name]
    if spec.snapshot == "none":
        assert hooks == []
    else:
        assert hooks, f"snapshot: {spec.snapshot} but no @modal.enter(snap=True) method"


def _http_primitive(spec: Spec, primitive: str) -> bool:
    http = spec.surfaces.http
    return http is not None and spec.engine.name == "vllm" and http.primitive == primitive


@pytest.mark.parametrize("spec_path", _cases_where(lambda s: _http_primitive(s, "server")))
def test_app_server(spec_path: str, offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """primitive server: a modal.Server (Modal's @app.server) on the guard's port, proxy auth
    as the spec says, the same snapshot hooks as the class-based server, no web method."""
    from modal_iac.spec.surfaces import SERVER_PUBLIC_PORT

    imported = import_generated(spec_path, offline, monkeypatch)
    spec = imported.spec
    http = spec.surfaces.http
    assert http is not None
    server = getattr(imported.module, SERVER)
    assert isinstance(server, modal.Server)
    info = server.info()
    assert (info.port, info.unauthenticated) == (SERVER_PUBLIC_PORT, not http.proxy_auth)
    assert info.startup_timeout == spec.scaling.startup_timeout
    assert info.gpus == expected_gpus(spec)
    assert {path: mount.name for path, mount in info.volumes.items()} == spec.volumes
    api_key = [http.api_key_secret] if http.api_key_secret is not None else []
    assert info.secrets == secret_reprs([*spec.secrets, *api_key])
    view = private_view(imported.app).functions[SERVER]
    assert_autoscaler(view, spec)
    gpu_snapshot = spec.snapshot in ("gpu", "sleep")
    assert view.enable_memory_snapshot == gpu_snapshot
    assert view.experimental_options == ({"enable_gpu_snapshot": "True"} if gpu_snapshot else {})
    assert vars(imported.module)["PUBLIC_PORT"] == SERVER_PUBLIC_PORT != http.port


@pytest.mark.parametrize("spec_path", _cases_where(lambda s: _http_primitive(s, "cls")))
def test_web_server(spec_path: str, offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The HTTP surface is a class, ``Server``, whose one web method is an ASGI app (the
    authenticating proxy), with the spec's concurrency, snapshot mode and hooks."""
    from modal_proto import api_pb2

    imported = import_generated(spec_path, offline, monkeypatch)
    spec = imported.spec
    http = spec.surfaces.http
    assert http is not None
    server = getattr(imported.module, SERVER)
    assert isinstance(server, modal.Cls)

    serve = server().serve
    assert isinstance(serve, modal.Function)
    info = serve.info()
    assert info.method_names == ["serve"], "the proxy is the only entry point"
    web = info.method_details["serve"]
    assert web.method is None, "an ASGI app, not a single-route FastAPI endpoint"
    assert info.concurrency_info is not None
    assert info.concurrency_info.max_inputs == spec.concurrency
    assert info.gpus == expected_gpus(spec)
    assert {path: mount.name for path, mount in info.volumes.items()} == spec.volumes
    assert info.timeout == spec.scaling.timeout
    assert info.startup_timeout == spec.scaling.startup_timeout
    api_key = [http.api_key_secret] if http.api_key_secret is not None else []
    assert info.secrets == secret_reprs([*model_secrets(spec), *api_key])

    app_view = private_view(imported.app)
    assert app_view.web_methods[SERVER] == {"serve": api_pb2.WEBHOOK_TYPE_ASGI_APP}
    view = app_view.functions[f"{SERVER}.*"]
    assert_autoscaler(view, spec)
    gpu_snapshot = spec.snapshot in ("gpu", "sleep")
    assert view.enable_memory_snapshot == gpu_snapshot
    assert view.experimental_options == ({"enable_gpu_snapshot": "True"} if gpu_snapshot else {})
    expected_hooks = {
        "none": ([], ["start"]),  # a plain @modal.enter() runs after any restore
        "gpu": (["start"], ["restored"]),
        "sleep": (["start"], ["wake"]),
    }[spec.snapshot]
    hooks = (app_view.pre_snapshot_hooks[SERVER], app_view.post_snapshot_hooks[SERVER])
    assert hooks == expected_hooks

    # The settings the server's helpers run on.
    settings = vars(imported.module)
    assert settings["VLLM_URL"] == f"http://127.0.0.1:{http.port}"
    argv = settings["SERVE_ARGS"]
    assert "--host=127.0.0.1" in argv
    assert ("--enable-sleep-mode" in argv) == (spec.snapshot == "sleep")
    assert not [w for w in argv if w.startswith("--api-key")], "the key reaches vLLM by env only"
    dev_mode = {"VLLM_SERVER_DEV_MODE": "1"} if spec.snapshot == "sleep" else {}
    assert settings["VLLM_ENV"] == dev_mode
    assert settings["TASK"] == spec.model.task
    assert settings["MULTIMODAL"] is bool(spec.model.multimodal)
    if spec.snapshot == "sleep":
        assert settings["SLEEP_LEVEL"] == spec.engine.sleep_level


@pytest.mark.parametrize("spec_path", _cases_where(lambda s: s.surfaces.http is not None))
def test_the_api_key_secret_is_sent_with_its_required_key(
    spec_path: str, modal_api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the client sends when it deploys (to the local Modal API): the web server's key
    secret is looked up with required_keys=[api_key_env] (the Hugging Face token's secret with
    ["HF_TOKEN"]), so Modal refuses a secret that lacks the key, and only the web server's
    function holds the API key; an endpoint the spec
    declares open attaches no key secret. Function.info() shows secrets only as reprs,
    which do not carry the required keys."""
    import modal.runner

    monkeypatch.chdir(ROOT)
    imported = import_generated(spec_path, tmp_path, monkeypatch)
    spec = imported.spec
    http = spec.surfaces.http
    assert http is not None
    state = modal_api.state
    environment = spec.environment or ""
    if environment:
        state.add_environment(environment)
    expected = {name: [] for name in spec.secrets}
    if spec.hf_token_secret is not None:  # under the name huggingface_hub reads
        expected[spec.hf_token_secret] = ["HF_TOKEN"]
    if http.api_key_secret is not None:
        expected[http.api_key_secret] = [http.api_key_env]
    for name, keys in expected.items():
        state.add_secret(name, tuple(keys) or ("HF_TOKEN",), environment)
    modal.runner.deploy_app(imported.app, name=spec.app, environment_name=environment)

    asked = {
        request.deployment_name: list(request.required_keys)
        for request in state.requests("SecretGetOrCreate")
    }
    assert asked == expected
    surfaces = spec.surfaces
    server = (
        SERVER if spec.engine.name == "vllm" or surfaces.class_ is None else surfaces.class_.name
    )
    deployed = state.app(spec.app, environment)
    attached = {
        tag: state.secret_names(state.functions[function_id].definition.secret_ids)
        for tag, function_id in deployed.function_ids.items()
    }
    key_secret = [] if http.api_key_secret is None else [http.api_key_secret]
    tag = SERVER if http.primitive == "server" else f"{server}.*"  # an @app.server: no ".*"
    assert attached.pop(tag) == [*model_secrets(spec), *key_secret]
    assert all(names == model_secrets(spec) for names in attached.values()), attached


@pytest.mark.parametrize("spec_path", _cases_where(lambda s: s.surfaces.downloader is not None))
def test_downloader(spec_path: str, offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    imported = import_generated(spec_path, offline, monkeypatch)
    spec = imported.spec
    downloader = spec.surfaces.downloader
    assert downloader is not None
    function = getattr(imported.module, downloader.name)
    assert isinstance(function, modal.Function)

    info = function.info()
    assert info.timeout == downloader.timeout
    assert info.gpus == [], "downloading weights needs no GPU"
    assert {path: mount.name for path, mount in info.volumes.items()} == spec.volumes
    assert info.secrets == secret_reprs(model_secrets(spec)), "the API key stays on the web server"
    assert info.web_info is None


@pytest.mark.parametrize("spec_path", _cases_where(lambda s: s.snapshot != "none"))
def test_snapshot_setting_reaches_the_app(
    spec_path: str, offline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    imported = import_generated(spec_path, offline, monkeypatch)
    view = private_view(imported.app)
    snapshotted = [tag for tag, f in view.functions.items() if f.enable_memory_snapshot]
    assert snapshotted, f"snapshot: {imported.spec.snapshot} but no function enables a snapshot"


def _fake_token(prefix: str) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(token_gen.choice(alphabet) for _ in range(34))


def test_no_secret_values_in_generated_file(
    spec_path: str, offline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _loaded(spec_path).spec
    names = {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "VLLM_API_KEY", "OPENAI_API_KEY"}
    if spec.surfaces.http is not None:
        names.add(spec.surfaces.http.api_key_env)
    values = {name: _fake_token("hf_" if name.startswith("H") else "sk-") for name in names}
    for name, value in values.items():
        monkeypatch.setenv(name, value)

    imported = import_generated(spec_path, offline, monkeypatch)
    for name, value in values.items():
        assert value not in imported.rendered.source, f"the value of ${name} is in the file"
        assert value[3:] not in imported.rendered.source, f"part of ${name} is in the file"

    # Importing with the variables set attaches secrets by name only: no from_dict / env=.
    allowed = set(secret_reprs(model_secrets(spec)))
    if spec.surfaces.http is not None and spec.surfaces.http.api_key_secret is not None:
        allowed |= set(secret_reprs([spec.surfaces.http.api_key_secret]))
    for function in _public_functions(imported):
        attached = function.info().secrets
        assert set(attached) <= allowed, attached


def _public_functions(imported: Imported) -> Iterator[modal.Function]:
    for value in vars(imported.module).values():
        if isinstance(value, modal.Function):
            yield value
        elif isinstance(value, modal.Cls):
            is_server = value is getattr(imported.module, SERVER, None)
            method = "serve" if is_server else METHODS[imported.spec.model.task][0]
            yield getattr(value(), method)


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_generated_file_passes_ruff(spec_path: str, offline: Path) -> None:
    rendered = render(_loaded(spec_path))
    target = offline / rendered.filename
    target.write_text(rendered.source, encoding="utf-8")
    check = _ruff("check", "--isolated", "--no-cache", str(target))
    assert check.returncode == 0, f"ruff check on {spec_path}:\n{check.stdout}{check.stderr}"
    fmt = _ruff("format", "--isolated", "--no-cache", "--check", "--diff", str(target))
    assert fmt.returncode == 0, f"ruff format on {spec_path}:\n{fmt.stdout}{fmt.stderr}"


def test_rendering_is_deterministic(spec_path: str, offline: Path) -> None:
    first = render(_loaded(spec_path)).source.encode()
    second = render(_loaded(spec_path)).source.encode()
    assert first == second
