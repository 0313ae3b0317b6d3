"""Deploying the generated apps through the SDK: concurrently, each under the user's deadline,
all under a watch on Modal's answers, and stopped by a halted apply.

``App.deploy.aio`` runs on the SDK's own loop with a client made for these deploys; grpclib
event listeners on that client's channel note every answer Modal sends. While an app deploys
the SDK heartbeats it every 15 s, so silence longer than ``--no-progress-timeout`` means Modal
stopped answering (a stopped server, a dead network), and a deploy that answers but never
finishes (a hanging publish) ends at ``--deploy-timeout``. Calls end through
``modal_api.Supervisor``: with the halt's grace first, then cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import modal
import modal.config
import modal.runner
from grpclib.events import (
    RecvInitialMetadata,
    RecvMessage,
    RecvTrailingMetadata,
    SendRequest,
    listen,
)
from modal._utils.async_utils import synchronize_api
from modal.client import _Client
from modal_proto import api_pb2

from ..errors import ModaliacError
from . import sdk as modal_api
from .changes import publish_tags
from .halt import DEPLOY_TIMEOUT, NO_PROGRESS_TIMEOUT, Halt
from .sdk import Cancelled, ModalApiError, Progress, Supervisor, deadline


@dataclass(frozen=True)
class DeployJob:
    address: str
    app: str
    environment: str | None
    source: str
    module_name: str
    deployment_tag: str
    tags: dict[str, str]
    strategy: str = "rolling"  # Modal's: rolling, or recreate (stop the old containers)


@dataclass(frozen=True)
class DeployResult:
    address: str
    status: str  # "ok", "failed", or "cancelled" (by a halt: not started, or stopped waiting)
    version: int | None = None
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


async def _watch_channel(client: _Client, progress: Progress) -> None:
    """On the SDK's loop: note every answer (headers, message, trailers) on ``client``'s
    control-plane channel, through grpclib's event listeners."""
    channel = await client._get_channel(client.server_url)
    for event in (RecvInitialMetadata, RecvMessage, RecvTrailingMetadata):
        listen(channel, event, progress.answered)


_watch_deploys = synchronize_api(_watch_channel)  # type: ignore[no-untyped-call]

# The address whose deploy makes a call. Set in the task that deploys it; the SDK's loop
# runs that deploy (and the tasks it starts) in a copy of the context, and grpclib dispatches
# a call's events in the task making the call, so the watch below knows whose call it is.
DEPLOYING: ContextVar[str] = ContextVar("modaliac_deploying", default="")

# What a deploy is doing, by the RPC it sends. The SDK loads mounts and image layers side by
# side (a mount first), so a phase only moves forward in this order: the image build, which
# takes minutes, shows until functions are created, even while a mount still uploads.
PHASES = {
    "MountGetOrCreate": "uploading",
    "MountBatchedCheckExistence": "uploading",
    "MountPutFile": "uploading",
    "BlobCreate": "uploading",
    "ImageGetOrCreate": "building image",
    "ImageJoinStreaming": "building image",
    "FunctionCreate": "creating functions",
    "ClassCreate": "creating functions",
    "AppPublish": "publishing",
}

_RANK = {phase: rank for rank, phase in enumerate(dict.fromkeys(PHASES.values()))}


@dataclass
class PhaseWatch:
    """Turns the calls a deploy sends into its phases, and the image build logs Modal
    streams back (ImageJoinStreaming's ``task_logs``) into ``on_log`` calls, per address."""

    on_event: Callable[[str, str], None]
    on_log: Callable[[str, str], None]
    phases: dict[str, str] = field(default_factory=dict)

    async def request(self, event: SendRequest) -> None:
        address = DEPLOYING.get()
        phase = PHASES.get(event.method_name.rsplit("/", 1)[-1])
        if not address or phase is None:
            return
        now = self.phases.get(address)
        if now is None or _RANK[phase] > _RANK[now]:
            self.phases[address] = phase
            self.on_event(address, phase)

    async def message(self, event: RecvMessage) -> None:
        address = DEPLOYING.get()
        if address and isinstance(event.message, api_pb2.ImageJoinStreamingResponse):
            text = "".join(log.data for log in event.message.task_logs if log.data)
            if text:
                self.on_log(address, text)


async def _watch_phases(client: _Client, watch: PhaseWatch) -> None:
    channel = await client._get_channel(client.server_url)
    listen(channel, SendRequest, watch.request)
    listen(channel, RecvMessage, watch.message)


_watch_deploy_phases = synchronize_api(_watch_phases)  # type: ignore[no-untyped-call]


class _GitInfoOnce:
    """The SDK's ``get_git_commit_info`` run once for all the deploys of one apply.

    Every ``App.deploy`` asks git (four ``git`` processes) for the commit it deploys from;
    the deploys of one apply share a process and its working directory, so they share one
    answer. Asked on the SDK's loop, where every deploy runs.
    """

    def __init__(self, ask: Callable[[], Awaitable[api_pb2.CommitInfo | None]]) -> None:
        self.ask = ask
        self.answer: asyncio.Future[api_pb2.CommitInfo | None] | None = None

    async def __call__(self) -> api_pb2.CommitInfo | None:
        if self.answer is None:
            self.answer = asyncio.ensure_future(self.ask())
        return await asyncio.shield(self.answer)


@contextlib.contextmanager
def _one_git_info() -> Iterator[None]:
    """While the deploys run, ``modal.runner`` (where ``_deploy_app`` looks the name up) asks
    git once. The name is absent from the SDK's stubs, hence getattr and setattr."""
    real = getattr(modal.runner, "get_git_commit_info", None)
    if real is None:  # another SDK version: leave it alone
        yield
        return
    setattr(modal.runner, "get_git_commit_info", _GitInfoOnce(real))  # noqa: B010
    try:
        yield
    finally:
        setattr(modal.runner, "get_git_commit_info", real)  # noqa: B010


def deploy_all(
    jobs: list[DeployJob],
    build_dir: Path,
    *,
    parallel: int = 4,
    deploy_timeout: float = DEPLOY_TIMEOUT,
    no_progress_timeout: float = NO_PROGRESS_TIMEOUT,
    halt: Halt | None = None,
    on_event: Callable[[str, str], None] = lambda address, event: None,
    on_result: Callable[[DeployResult], None] = lambda result: None,
    on_log: Callable[[str, str], None] = lambda address, text: None,
) -> list[DeployResult]:
    """Deploy apps in-process, at most ``parallel`` at once; one failure never stops the rest.

    Each generated file is written under ``build_dir`` and imported under its own module name
    when its app's turn comes, registered in sys.modules so Modal uploads the source file
    instead of pickling (an app whose file does not import fails alone). Each app
    must publish within ``deploy_timeout``; when Modal answers nothing for
    ``no_progress_timeout``, or ``halt`` is set, no further app starts and the ones in flight
    end (after the halt's grace) as failed or cancelled. ``on_event`` hears each app's
    phases, ``on_log`` Modal's image build output for it.
    """
    halt = halt if halt is not None else Halt()
    config = modal.config.config

    async def make(client: _Client) -> list[DeployResult]:
        # ``client`` (ours) tags; the deploys run on the SDK's loop with a client of their own
        # whose channel is watched for answers.
        sdk = await deadline(
            modal.Client.from_credentials.aio(config["token_id"], config["token_secret"]),
            modal_api.CONNECT_TIMEOUT,
            "connecting to Modal",
        )
        supervisor = Supervisor(halt)
        try:
            progress = Progress()
            await deadline(
                _watch_deploys.aio(sdk, progress), modal_api.CONNECT_TIMEOUT, "connecting to Modal"
            )
            await _watch_deploy_phases.aio(sdk, PhaseWatch(on_event, on_log))
            gate = asyncio.Semaphore(max(1, parallel))

            async def one(job: DeployJob) -> DeployResult:
                async with gate:
                    result = await deploy(job)
                on_result(result)
                on_event(job.address, _event(result))
                return result

            async def deploy(job: DeployJob) -> DeployResult:
                if halt:
                    return DeployResult(
                        job.address, "cancelled", error=f"not started ({halt.reason})"
                    )
                # Imported when its turn comes, on this loop's thread: the apps ahead of it
                # are already deploying on the SDK's loop meanwhile.
                try:
                    app = _import(job, build_dir).app
                except ModalApiError as exc:
                    return DeployResult(job.address, "failed", error=str(exc))
                on_event(job.address, "deploying")
                DEPLOYING.set(job.address)  # this task's context: the deploy's calls are its
                started = time.monotonic()
                try:
                    await supervisor.run(
                        app.deploy.aio(
                            name=job.app,
                            environment_name=job.environment or "",
                            tag=job.deployment_tag,
                            client=sdk,
                            strategy=job.strategy,
                        ),
                        limit=deploy_timeout,
                        doing="deploying",
                        progress=progress,
                        quiet=no_progress_timeout,
                    )
                    version = await supervisor.run(
                        publish_tags(client, app.app_id, job.tags),
                        limit=modal_api.READ_TIMEOUT,
                        doing="tagging",
                    )
                except Cancelled as exc:
                    return DeployResult(job.address, "cancelled", error=str(exc))
                except ModaliacError as exc:
                    return DeployResult(job.address, "failed", error=str(exc))
                return DeployResult(job.address, "ok", version, seconds=time.monotonic() - started)

            return list(await asyncio.gather(*(one(job) for job in jobs)))
        finally:
            supervisor.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sdk.close.aio(), modal_api.CANCEL_WAIT)

    # Each app has its own deadlines (deploy, then tagging, then a halt's grace); this outer
    # one is only a backstop and must outlast every round of ``parallel`` apps.
    rounds = -(-len(jobs) // max(1, parallel))
    per_app = deploy_timeout + modal_api.READ_TIMEOUT + halt.grace + 4 * modal_api.CANCEL_WAIT
    with _one_git_info():
        return modal_api.run(make, timeout=rounds * per_app + modal_api.READ_TIMEOUT)


def _event(result: DeployResult) -> str:
    if result.ok:
        return f"deployed v{result.version}"
    return "cancelled" if result.status == "cancelled" else "failed"


def _import(job: DeployJob, build_dir: Path) -> Any:
    """The generated app as a module, executed from ``job.source`` itself: the reviewed code.

    Its file is written beside (Modal uploads that file) by replacing whatever is at the path
    (a link is replaced, never written through), and the module is compiled from the text in
    hand, never from the file or a cached ``__pycache__`` file someone left there."""
    build_dir.mkdir(parents=True, exist_ok=True)
    path = build_dir / f"{job.module_name}.py"  # the module name is unique to the address
    try:
        _replace(path, job.source)
    except OSError as exc:
        raise ModalApiError(f"{path}: cannot write the generated app ({exc.strerror})") from None
    spec = importlib.util.spec_from_loader(job.module_name, loader=None, origin=str(path))
    if spec is None:
        raise ModalApiError(f"{path}: cannot import the generated app")
    spec.has_location = True
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(path)
    sys.modules[job.module_name] = module
    try:
        exec(compile(job.source, str(path), "exec", dont_inherit=True), module.__dict__)
    except Exception as exc:
        del sys.modules[job.module_name]
        raise ModalApiError(f"{path}: the generated app does not import: {exc}") from None
    return module


def _replace(path: Path, text: str) -> None:
    """``path`` made a new regular file holding ``text``: written aside, then renamed over
    whatever was there."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
