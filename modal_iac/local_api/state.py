"""The in-memory world of the local Modal API: apps, deployments, functions, storage, billing.

Everything a test may want to arrange or inspect lives here (the faults it injects in
faults.py) as plain dataclasses holding the protobuf messages the client sent, so assertions
read what the real client put on the wire. One lock guards it all: RPCs run on the server's
event-loop thread, tests on their own.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from google.protobuf.message import Message  # type: ignore[import-untyped]
from modal_proto import api_pb2

from .faults import Faults

DEFAULT_ENVIRONMENT = "main"
DEFAULT_USER = "local-user"
IMAGE_BUILDER_VERSION = "2025.06"


class _Named(Protocol):
    """What secrets, volumes and dicts share: found by name within an environment."""

    name: str
    environment: str


N = TypeVar("N", bound=_Named)


def new_id(prefix: str) -> str:
    """A Modal-shaped object id: a type prefix and 22 letters or digits (the CLI checks this)."""
    return f"{prefix}-{uuid.uuid4().hex[:22]}"


def content_id(prefix: str, *parts: bytes | str) -> str:
    """A stable id derived from content, so identical images and mounts keep their ids."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return f"{prefix}-{digest.hexdigest()[:22]}"


def web_label(app: str, tag: str) -> str:
    """The label of a web function's URL, as Modal derives it from the app and function."""
    return f"{app}-{tag}".replace(".", "-").replace("_", "-").lower()


def proto_bytes(message: Message) -> bytes:
    data: bytes = message.SerializeToString(deterministic=True)
    return data


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request as received: the RPC name, the message and the request headers."""

    rpc: str
    request: Message
    metadata: dict[str, str]
    at: float

    @property
    def client_version(self) -> str:
        return self.metadata.get("x-modal-client-version", "")

    @property
    def token_id(self) -> str:
        return self.metadata.get("x-modal-token-id", "")


@dataclass
class Environment:
    environment_id: str
    name: str


@dataclass
class FunctionRecord:
    """A function as the client described it: precreate first, then the full FunctionCreate."""

    function_id: str
    app_id: str
    tag: str
    precreate: api_pb2.FunctionPrecreateRequest
    create: api_pb2.FunctionCreateRequest | None = None
    data: api_pb2.FunctionData | None = None
    definition_id: str = ""
    override: api_pb2.AutoscalerSettings = field(default_factory=api_pb2.AutoscalerSettings)
    override_events: dict[str, api_pb2.UserActionInfo] = field(default_factory=dict)

    @property
    def definition(self) -> api_pb2.Function:
        """The Function message of rank 0 (what ``Function.info()`` reads)."""
        if self.data is None or not self.data.ranked_functions:
            raise LookupError(f"function {self.tag} was precreated but never created")
        function: api_pb2.Function = self.data.ranked_functions[0].function
        return function


@dataclass
class ClassRecord:
    class_id: str
    app_id: str
    tag: str
    request: api_pb2.ClassCreateRequest
    service_function_id: str = ""


@dataclass
class Deployment:
    """One entry of an app's deployment history, with the function definitions it served."""

    version: int
    tag: str
    client_version: str
    deployed_at: float
    deployed_by: str
    deployment_type: int
    rollback_version: int = 0
    commit_info: api_pb2.CommitInfo | None = None
    function_ids: dict[str, str] = field(default_factory=dict)
    class_ids: dict[str, str] = field(default_factory=dict)
    definition_ids: dict[str, str] = field(default_factory=dict)
    functions: dict[str, api_pb2.FunctionData] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """A running container of an app (arranged by a test: nothing runs here)."""

    task_id: str
    app_id: str
    enqueued_at: float


@dataclass
class App:
    app_id: str
    name: str
    environment: str
    state: int
    created_at: float
    created_by: str
    tags: dict[str, str] = field(default_factory=dict)
    function_ids: dict[str, str] = field(default_factory=dict)
    class_ids: dict[str, str] = field(default_factory=dict)
    history: list[Deployment] = field(default_factory=list)
    stopped_at: float = 0.0
    stopped_by: str = ""

    @property
    def current(self) -> Deployment | None:
        return self.history[-1] if self.history else None

    def deployment(self, version: int) -> Deployment | None:
        """The deployment of that version number, if the app has had one."""
        return next((d for d in self.history if d.version == version), None)


@dataclass
class Secret:
    """A secret by name; only its key names are kept, never values."""

    secret_id: str
    name: str
    environment: str
    keys: tuple[str, ...] = ()


@dataclass
class Volume:
    volume_id: str
    name: str
    environment: str
    version: int
    files: dict[str, bytes] = field(default_factory=dict)
    mtimes: dict[str, float] = field(default_factory=dict)


@dataclass
class DictRecord:
    dict_id: str
    name: str
    environment: str
    data: dict[bytes, bytes] = field(default_factory=dict)


@dataclass
class Mount:
    mount_id: str
    files: dict[str, str]  # remote filename -> sha256 hex of its content
    name: str = ""


@dataclass
class Billing:
    """What the workspace's billing answers: ``rates`` (name -> decimal string per hour),
    deprecated names, and the report's rows (see ``add_item``)."""

    rates: dict[str, str] = field(default_factory=dict)
    deprecation_warnings: dict[str, str] = field(default_factory=dict)
    items: list[api_pb2.WorkspaceBillingReportItem] = field(default_factory=list)

    def add_item(
        self,
        *,
        object_id: str,
        start: datetime,
        cost: str,
        environment: str = "main",
        description: str = "",
        tags: dict[str, str] | None = None,
        cost_by_resource: dict[str, str] | None = None,
    ) -> None:
        """One report row: what ``object_id`` cost in the interval beginning at ``start``."""
        item = api_pb2.WorkspaceBillingReportItem(
            object_id=object_id,
            description=description or object_id,
            environment_name=environment,
            cost=cost,
            tags=tags or {},
            cost_by_resource=cost_by_resource or {},
        )
        item.interval.FromDatetime(start.astimezone(UTC).replace(tzinfo=None))
        self.items.append(item)


class State:
    """All objects the server knows, with helpers for tests to arrange and inspect them."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.faults = Faults()
        self.calls: list[Call] = []
        self.errors: list[Exception] = []  # exceptions raised by handlers (bugs of this server)
        self.users: dict[str, str] = {}  # token id -> user name shown as deployed_by
        self.http_url = ""  # the blob server, set when the server starts
        self.volume_version = api_pb2.VOLUME_FS_VERSION_V2
        self.image_builder_version = IMAGE_BUILDER_VERSION
        self.environments: dict[str, Environment] = {}
        self.apps: dict[str, App] = {}
        self.functions: dict[str, FunctionRecord] = {}
        self.classes: dict[str, ClassRecord] = {}
        self.secrets: dict[str, Secret] = {}
        self.volumes: dict[str, Volume] = {}
        self.dicts: dict[str, DictRecord] = {}
        self.mounts: dict[str, Mount] = {}
        self.images: dict[str, api_pb2.ImageGetOrCreateRequest] = {}
        self.content: dict[str, bytes] = {}  # sha256 hex -> bytes (mount files, volume blocks)
        self.blobs: dict[str, bytes] = {}
        self.block_bytes = 0  # bytes of volume blocks clients uploaded (PUT), ever
        self.in_flight = 0  # RPCs being answered now (with rpc_delay they overlap)
        self.max_in_flight = 0  # the most ever answered at once
        self.in_flight_on: dict[object, int] = {}  # connection (client address) -> in flight
        self.max_in_flight_on_one = 0  # the most ever answered at once on one connection
        self.connections: set[object] = set()  # every client address that sent an RPC
        self.web_urls: dict[str, str] = {}  # web label -> URL tests chose (see serve_web_url)
        self.version_urls: dict[tuple[str, int], str] = {}  # (web label, code version) -> URL
        self.tasks: dict[str, Task] = {}  # running containers, until ContainerStop
        # Image builds: with build logs set, an image not built yet is built (its logs
        # streamed through ImageJoinStreaming) instead of found; ``image_build_fails`` fails it.
        self.image_build_logs: list[str] = []
        self.image_build_fails = False
        self.built_images: set[str] = set()
        self.billing = Billing()  # the workspace's rates and billing report (billing.py answers it)
        self.add_environment(DEFAULT_ENVIRONMENT)

    # -- whole-world snapshots (tests that try many commands on one arranged world) ----------

    _WORLD = (
        "environments",
        "apps",
        "functions",
        "classes",
        "secrets",
        "volumes",
        "dicts",
        "mounts",
        "images",
        "content",
        "blobs",
        "web_urls",
        "version_urls",
        "tasks",
    )

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of every object the server knows (not the calls, faults or errors)."""
        with self.lock:
            return copy.deepcopy({name: getattr(self, name) for name in self._WORLD})

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Put the objects of ``snapshot`` back; the snapshot stays usable for another restore."""
        with self.lock:
            for name, value in copy.deepcopy(snapshot).items():
                setattr(self, name, value)

    # -- recording ---------------------------------------------------------------------------

    def record(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)

    def rpc_names(self) -> list[str]:
        """The RPCs received so far, in order."""
        with self.lock:
            return [c.rpc for c in self.calls]

    def requests(self, rpc: str) -> list[Message]:
        """Every message received for ``rpc``, in order."""
        with self.lock:
            return [c.request for c in self.calls if c.rpc == rpc]

    def clear_calls(self) -> None:
        with self.lock:
            self.calls.clear()

    def user_for(self, call: Call | None) -> str:
        if call is None:
            return DEFAULT_USER
        return self.users.get(call.token_id, DEFAULT_USER)

    # -- arranging ---------------------------------------------------------------------------

    def serve_web_url(self, app: str, function: str, url: str, version: int | None = None) -> None:
        """Make the web function ``function`` of ``app`` (``Class.method`` for a class's
        endpoint) report ``url``, e.g. a stand-in server on 127.0.0.1, instead of the default
        ``http://local--<label>.localhost``. With ``version``, only while the app serves the
        code that version deployed (a rollback to it serves it again), so each version of an
        app can answer from a stand-in of its own."""
        with self.lock:
            if version is None:
                self.web_urls[web_label(app, function)] = url
            else:
                self.version_urls[web_label(app, function), version] = url

    def add_container(self, app: str, environment: str = "") -> str:
        """Say that a container of the deployed ``app`` runs now (its task id): a recreate
        deploy lists it with TaskList and stops it with ContainerStop."""
        with self.lock:
            found = self.deployed_app(app, environment)
            if found is None:
                raise KeyError(f"no deployed app named {app!r}")
            task = Task(new_id("ta"), found.app_id, self.clock())
            self.tasks[task.task_id] = task
            return task.task_id

    def add_environment(self, name: str) -> Environment:
        with self.lock:
            env = self.environments.get(name)
            if env is None:
                env = self.environments[name] = Environment(new_id("en"), name)
            return env

    def add_secret(
        self, name: str, keys: tuple[str, ...] = ("VALUE",), environment: str = ""
    ) -> str:
        """Pre-create a secret (key names only): deploys that reference it by name then resolve."""
        with self.lock:
            env = environment or DEFAULT_ENVIRONMENT
            found = self.find_secret(name, env)
            if found is not None:
                found.keys = tuple(keys)
                return found.secret_id
            secret = Secret(new_id("st"), name, env, tuple(keys))
            self.secrets[secret.secret_id] = secret
            return secret.secret_id

    def add_volume(self, name: str, environment: str = "", version: int | None = None) -> Volume:
        with self.lock:
            env = environment or DEFAULT_ENVIRONMENT
            found = self.find_volume(name, env)
            if found is not None:
                return found
            volume = Volume(new_id("vo"), name, env, version or self.volume_version)
            self.volumes[volume.volume_id] = volume
            return volume

    def foreign_deploy(
        self,
        app_name: str,
        *,
        environment: str = "",
        tag: str = "foreign",
        deployed_by: str = "someone-else",
        client_version: str = "1.6.4",
    ) -> Deployment:
        """Record a deployment made by someone else (another tag and deployer) on an app."""
        with self.lock:
            env = environment or DEFAULT_ENVIRONMENT
            app = self.deployed_app(app_name, env)
            if app is None:
                app = App(
                    new_id("ap"),
                    app_name,
                    env,
                    api_pb2.APP_STATE_DEPLOYED,
                    self.clock(),
                    deployed_by,
                )
                self.apps[app.app_id] = app
            previous = app.current
            deployment = Deployment(
                version=(previous.version + 1) if previous else 1,
                tag=tag,
                client_version=client_version,
                deployed_at=self.clock(),
                deployed_by=deployed_by,
                deployment_type=api_pb2.DEPLOYMENT_TYPE_STANDARD,
                function_ids=dict(app.function_ids),
                class_ids=dict(app.class_ids),
                # A foreign deploy changes the code, so no definition matches ours any more.
                definition_ids={
                    fid: f"de-foreign{previous.version if previous else 0}"
                    for fid in app.function_ids.values()
                },
                functions=dict(previous.functions) if previous else {},
            )
            app.history.append(deployment)
            app.state = api_pb2.APP_STATE_DEPLOYED
            return deployment

    def set_autoscaler_override(
        self,
        app_name: str,
        function_tag: str,
        *,
        environment: str = "",
        by: str = "dashboard-user",
        **settings: int,
    ) -> api_pb2.AutoscalerSettings:
        """A hand-made autoscaler change after deploy (dashboard, ``autoscaler.update()``)."""
        with self.lock:
            fn = self.function(app_name, function_tag, environment)
            self.apply_override(fn, api_pb2.AutoscalerSettings(**settings), by)
            return fn.override

    def apply_override(
        self, fn: FunctionRecord, settings: api_pb2.AutoscalerSettings, by: str
    ) -> None:
        now = self.clock()
        for descriptor, value in settings.ListFields():
            setattr(fn.override, descriptor.name, value)
            fn.override_events[descriptor.name] = api_pb2.UserActionInfo(
                user_id=by, timestamp=now, requested_by=by
            )

    # -- looking up --------------------------------------------------------------------------

    def env_name(self, name: str) -> str:
        return name or DEFAULT_ENVIRONMENT

    def deployed_app(self, name: str, environment: str = "") -> App | None:
        env = self.env_name(environment)
        with self.lock:
            for app in self.apps.values():
                if (
                    app.name == name
                    and app.environment == env
                    and app.state == api_pb2.APP_STATE_DEPLOYED
                ):
                    return app
            return None

    def app(self, name: str, environment: str = "") -> App:
        """The deployed app of that name, else the most recent app of that name (for tests)."""
        with self.lock:
            found = self.deployed_app(name, environment)
            if found is not None:
                return found
            env = self.env_name(environment)
            named = [a for a in self.apps.values() if a.name == name and a.environment == env]
            if not named:
                raise KeyError(f"no app named {name!r} in {env!r}")
            return max(named, key=lambda a: a.created_at)

    def function(self, app_name: str, tag: str, environment: str = "") -> FunctionRecord:
        with self.lock:
            app = self.app(app_name, environment)
            return self.functions[app.function_ids[tag]]

    def class_service_function(
        self, app_name: str, class_name: str, environment: str = ""
    ) -> FunctionRecord:
        return self.function(app_name, f"{class_name}.*", environment)

    def _named(self, objects: Mapping[str, N], name: str, environment: str) -> N | None:
        """The object of that name in that environment (secrets, volumes and dicts by name)."""
        env = self.env_name(environment)
        with self.lock:
            return next(
                (o for o in objects.values() if o.name == name and o.environment == env), None
            )

    def find_secret(self, name: str, environment: str = "") -> Secret | None:
        return self._named(self.secrets, name, environment)

    def find_volume(self, name: str, environment: str = "") -> Volume | None:
        return self._named(self.volumes, name, environment)

    def find_dict(self, name: str, environment: str = "") -> DictRecord | None:
        return self._named(self.dicts, name, environment)

    def secret_names(self, ids: list[str] | tuple[str, ...]) -> list[str]:
        """Map secret ids (what FunctionCreate carries) back to names."""
        with self.lock:
            return [self.secrets[i].name if i in self.secrets else i for i in ids]

    def volume_mounts(self, fn: api_pb2.Function) -> dict[str, str]:
        """Mount path -> volume name for a function definition."""
        with self.lock:
            return {
                m.mount_path: self.volumes[m.volume_id].name
                if m.volume_id in self.volumes
                else m.volume_id
                for m in fn.volume_mounts
            }

    def mount_files(self, mount_id: str) -> dict[str, bytes]:
        with self.lock:
            mount = self.mounts[mount_id]
            return {name: self.content[sha] for name, sha in mount.files.items()}

    def app_files(self, app_name: str, environment: str = "") -> dict[str, bytes]:
        """Every file in the mounts the app's functions use: the deployed source among them."""
        with self.lock:
            app = self.app(app_name, environment)
            files: dict[str, bytes] = {}
            for function_id in app.function_ids.values():
                record = self.functions[function_id]
                if record.data is None:
                    continue
                for mount_id in record.definition.mount_ids:
                    if mount_id in self.mounts:
                        files.update(self.mount_files(mount_id))
            return files
