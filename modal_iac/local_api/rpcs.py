"""The RPCs the local Modal API models, one method each, named exactly like the RPC.

Each method takes the request and the recorded ``Call`` and returns the response (a list of
responses for server-streaming RPCs); it runs under the state lock. Errors are raised as
``GRPCError`` with the status Modal's servers use, so the client turns them into the same
exceptions (NOT_FOUND -> ``modal.exception.NotFoundError`` and so on). Storage RPCs (secrets,
volumes, dicts, blobs) live in ``storage.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from google.protobuf import empty_pb2, json_format  # type: ignore[import-untyped]
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from modal_proto import api_pb2

from .billing import BillingHandlers
from .state import (
    App,
    Call,
    ClassRecord,
    Deployment,
    FunctionRecord,
    Mount,
    content_id,
    new_id,
    proto_bytes,
    web_label,
)
from .storage import CREATE_IF_MISSING, StorageHandlers, fail, lookup


def function_data(function: api_pb2.Function) -> api_pb2.FunctionData:
    """FunctionData as the server answers it: shared fields copied, one ranked function."""
    shared = json_format.MessageToDict(function, preserving_proto_field_name=True)
    data = api_pb2.FunctionData()
    json_format.ParseDict(shared, data, ignore_unknown_fields=True)
    data.ranked_functions.add(rank=0, function=function)
    return data


def definition_id(data: api_pb2.FunctionData) -> str:
    """A hash of what the function runs. The client sends ``mount_ids`` in no stable order
    (it iterates a set), so they and the object dependencies are compared as sets."""
    normal = api_pb2.FunctionData()
    normal.CopyFrom(data)
    for ranked in normal.ranked_functions:
        fn = ranked.function
        mount_ids = sorted(fn.mount_ids)
        dependencies = sorted(d.object_id for d in fn.object_dependencies)
        del fn.mount_ids[:], fn.object_dependencies[:]
        fn.mount_ids.extend(mount_ids)
        for object_id in dependencies:
            fn.object_dependencies.add(object_id=object_id)
    return content_id("de", proto_bytes(normal))


def _same_routing_region(deployed: api_pb2.FunctionData, new: api_pb2.FunctionData) -> None:
    """Modal sets a function's routing region at its first deploy only (its region guide,
    "Current restrictions"); a redeploy that changes it is refused."""
    old_region, new_region = deployed.routing_region or "us-east", new.routing_region or "us-east"
    if old_region != new_region:
        fail(
            Status.FAILED_PRECONDITION,
            f"routing_region can only be set during the initial deployment of a Function "
            f"({deployed.function_name}: {old_region}, not {new_region})",
        )


def _custom_domain_info(info: Any, webhook: api_pb2.WebhookConfig) -> None:
    """Modal answers a web endpoint's custom domains with their URLs (it serves them once
    the workspace has verified the domain; this server takes every domain as verified)."""
    del info[:]
    for domain in webhook.custom_domains:
        info.add(url=f"https://{domain.name}")


class Handlers(StorageHandlers, BillingHandlers):
    """Every modelled RPC: apps, functions, images and mounts here; storage and billing
    inherited."""

    # -- helpers -----------------------------------------------------------------------------

    def _lifecycle(self, app: App) -> api_pb2.AppLifecycle:
        current = app.current
        return api_pb2.AppLifecycle(
            app_state=app.state,  # type: ignore[arg-type]
            created_at=app.created_at,
            created_by=app.created_by,
            deployed_at=current.deployed_at if current else 0.0,
            deployed_by=current.deployed_by if current else "",
            version=current.version if current else 0,
            stopped_at=app.stopped_at,
            stopped_by=app.stopped_by,
        )

    def _web_url(self, app: App, tag: str, webhook: api_pb2.WebhookConfig) -> str:
        if webhook.type == api_pb2.WEBHOOK_TYPE_UNSPECIFIED:
            return ""
        label = webhook.requested_suffix or web_label(app.name, tag)
        return self._label_url(app, label)

    def _label_url(self, app: App, label: str) -> str:
        """The URL a web label answers at: the stand-in a test chose for the code version the
        app serves (a rollback serves its target's), else for the label, else the default."""
        serving = app.current
        by_version = {d.version: d for d in app.history}
        while serving is not None and serving.deployment_type == api_pb2.DEPLOYMENT_TYPE_ROLLBACK:
            serving = by_version.get(serving.rollback_version)
        if serving is not None and (label, serving.version) in self.s.version_urls:
            return self.s.version_urls[label, serving.version]
        return self.s.web_urls.get(label, f"http://local--{label}.localhost")

    def _handle_metadata(self, record: FunctionRecord) -> api_pb2.FunctionHandleMetadata:
        app = self.s.apps[record.app_id]
        source: api_pb2.Function | api_pb2.FunctionPrecreateRequest
        source = record.definition if record.data is not None else record.precreate
        metadata = api_pb2.FunctionHandleMetadata(
            function_name=record.tag,
            function_type=source.function_type,
            web_url=self._web_url(app, record.tag, source.webhook_config),
            definition_id=record.definition_id,
            function_schema=source.function_schema,
            app_id=record.app_id,
            supported_input_formats=source.supported_input_formats,
            supported_output_formats=source.supported_output_formats,
        )
        if isinstance(source, api_pb2.Function):
            metadata.class_parameter_info.CopyFrom(source.class_parameter_info)
            if source.is_server:  # an @app.server: its URL, as Server.get_url() reads it
                url = self._label_url(app, web_label(app.name, record.tag))
                metadata._experimental_flash_urls.append(url)
        class_name = record.tag.removesuffix(".*")
        for method, definition in source.method_definitions.items():
            metadata.method_handle_metadata[method].CopyFrom(
                api_pb2.FunctionHandleMetadata(
                    function_name=definition.function_name or f"{class_name}.{method}",
                    function_type=definition.function_type,
                    web_url=self._web_url(app, f"{class_name}-{method}", definition.webhook_config),
                    is_method=True,
                    use_method_name=method,
                    definition_id=record.definition_id,
                    function_schema=definition.function_schema,
                    app_id=record.app_id,
                    supported_input_formats=definition.supported_input_formats,
                    supported_output_formats=definition.supported_output_formats,
                )
            )
        return metadata

    def _class_metadata(self, record: ClassRecord) -> api_pb2.ClassHandleMetadata:
        metadata = api_pb2.ClassHandleMetadata(class_function_id=record.service_function_id)
        service = self.s.functions.get(record.service_function_id)
        if service is not None:
            metadata.class_function_metadata.CopyFrom(self._handle_metadata(service))
        return metadata

    def _layout(self, app: App) -> api_pb2.AppLayout:
        layout = api_pb2.AppLayout(function_ids=app.function_ids, class_ids=app.class_ids)
        for function_id in app.function_ids.values():
            layout.objects.add(
                object_id=function_id,
                function_handle_metadata=self._handle_metadata(self.s.functions[function_id]),
            )
        for class_id in app.class_ids.values():
            layout.objects.add(
                object_id=class_id,
                class_handle_metadata=self._class_metadata(self.s.classes[class_id]),
            )
        return layout

    def _definitions(self, function_ids: Iterable[str]) -> dict[str, api_pb2.FunctionData]:
        """The definitions a deployment serves, kept for rollbacks and versioned lookups."""
        records = (self.s.functions.get(fid) for fid in function_ids)
        return {r.function_id: r.data for r in records if r is not None and r.data is not None}

    def _url(self, app: App) -> str:
        return f"{self.s.http_url}/apps/{app.environment}/{app.name}"

    # -- client, environments ----------------------------------------------------------------

    def ClientHello(self, req: empty_pb2.Empty, call: Call) -> api_pb2.ClientHelloResponse:
        return api_pb2.ClientHelloResponse(image_builder_version=self.s.image_builder_version)

    def EnvironmentGetOrCreate(
        self, req: api_pb2.EnvironmentGetOrCreateRequest, call: Call
    ) -> api_pb2.EnvironmentGetOrCreateResponse:
        name = self.s.env_name(req.deployment_name)
        if name not in self.s.environments and req.object_creation_type != CREATE_IF_MISSING:
            fail(Status.NOT_FOUND, f"Environment '{name}' not found")
        env = self.s.add_environment(name)
        settings = api_pb2.EnvironmentSettings(
            image_builder_version=self.s.image_builder_version, webhook_suffix="localhost"
        )
        return api_pb2.EnvironmentGetOrCreateResponse(
            environment_id=env.environment_id,
            metadata=api_pb2.EnvironmentMetadata(name=env.name, settings=settings),
        )

    # -- apps --------------------------------------------------------------------------------

    def AppCreate(self, req: api_pb2.AppCreateRequest, call: Call) -> api_pb2.AppCreateResponse:
        env = self._env(req.environment_name)
        app = App(
            new_id("ap"),
            req.description,
            env,
            req.app_state or api_pb2.APP_STATE_INITIALIZING,
            self.s.clock(),
            self.s.user_for(call),
            tags=dict(req.tags),
        )
        self.s.apps[app.app_id] = app
        return api_pb2.AppCreateResponse(
            app_id=app.app_id, app_page_url=self._url(app), app_logs_url=self._url(app)
        )

    def AppGetByDeploymentName(
        self, req: api_pb2.AppGetByDeploymentNameRequest, call: Call
    ) -> api_pb2.AppGetByDeploymentNameResponse:
        env = self._env(req.environment_name)
        response = api_pb2.AppGetByDeploymentNameResponse(environment_name=env)
        deployed = self.s.deployed_app(req.name, env)
        if deployed is not None:
            response.app_id = deployed.app_id
            response.lifecycle.CopyFrom(self._lifecycle(deployed))
            return response
        stopped = [
            a
            for a in self.s.apps.values()
            if a.name == req.name
            and a.environment == env
            and a.state == api_pb2.APP_STATE_STOPPED
            and a.history
        ]
        if stopped:
            previous = max(stopped, key=lambda a: a.stopped_at)
            response.previous_app_id = previous.app_id
            response.lifecycle.CopyFrom(self._lifecycle(previous))
        return response

    def AppGetLifecycle(
        self, req: api_pb2.AppGetLifecycleRequest, call: Call
    ) -> api_pb2.AppGetLifecycleResponse:
        return api_pb2.AppGetLifecycleResponse(
            lifecycle=self._lifecycle(lookup(self.s.apps, "App", req.app_id))
        )

    def AppGetOrCreate(
        self, req: api_pb2.AppGetOrCreateRequest, call: Call
    ) -> api_pb2.AppGetOrCreateResponse:
        env = self._env(req.environment_name)
        app = self.s.deployed_app(req.app_name, env)
        if app is None:
            if req.object_creation_type != CREATE_IF_MISSING:
                fail(Status.NOT_FOUND, f"App '{req.app_name}' not found in environment '{env}'")
            app = App(
                new_id("ap"),
                req.app_name,
                env,
                api_pb2.APP_STATE_DEPLOYED,
                self.s.clock(),
                self.s.user_for(call),
            )
            self.s.apps[app.app_id] = app
        metadata = api_pb2.AppHandleMetadata(
            description=app.name,
            app_id=app.app_id,
            environment_name=env,
            lifecycle=self._lifecycle(app),
        )
        return api_pb2.AppGetOrCreateResponse(app_id=app.app_id, handle_metadata=metadata)

    def AppGetLayout(
        self, req: api_pb2.AppGetLayoutRequest, call: Call
    ) -> api_pb2.AppGetLayoutResponse:
        return api_pb2.AppGetLayoutResponse(
            app_layout=self._layout(lookup(self.s.apps, "App", req.app_id))
        )

    def AppHeartbeat(self, req: api_pb2.AppHeartbeatRequest, call: Call) -> empty_pb2.Empty:
        lookup(self.s.apps, "App", req.app_id)
        return empty_pb2.Empty()

    def AppClientDisconnect(
        self, req: api_pb2.AppClientDisconnectRequest, call: Call
    ) -> empty_pb2.Empty:
        app = lookup(self.s.apps, "App", req.app_id)
        if app.state != api_pb2.APP_STATE_DEPLOYED:
            # A deploy that failed before publishing leaves a stopped, never-deployed app.
            app.state = api_pb2.APP_STATE_STOPPED
            app.stopped_at = self.s.clock()
        return empty_pb2.Empty()

    def AppPublish(self, req: api_pb2.AppPublishRequest, call: Call) -> api_pb2.AppPublishResponse:
        app = lookup(self.s.apps, "App", req.app_id)
        name = req.name or app.name
        current = app.current
        function_ids, class_ids, definition_ids = (
            dict(req.function_ids),
            dict(req.class_ids),
            dict(req.definition_ids),
        )
        app.tags.update(req.tags)  # publish adds or overwrites keys; AppSetTags replaces all
        if (
            app.state == api_pb2.APP_STATE_DEPLOYED
            and current is not None
            and app.name == name
            and (current.function_ids, current.class_ids, current.definition_ids)
            == (function_ids, class_ids, definition_ids)
        ):
            return api_pb2.AppPublishResponse(url=self._url(app), deployed_at=0.0)
        for other in self.s.apps.values():  # the name moves to this app; an older holder stops
            if (
                other is not app
                and other.name == name
                and other.environment == app.environment
                and other.state == api_pb2.APP_STATE_DEPLOYED
            ):
                other.state, other.stopped_at = api_pb2.APP_STATE_STOPPED, self.s.clock()
        for tag, class_id in class_ids.items():
            record = self.s.classes.get(class_id)
            if record is not None:
                record.tag = tag
                record.service_function_id = function_ids.get(
                    f"{tag}.*", record.service_function_id
                )
        deployment = Deployment(
            version=(current.version + 1) if current else 1,
            tag=req.deployment_tag,
            client_version=req.client_version or call.client_version,
            deployed_at=self.s.clock(),
            deployed_by=self.s.user_for(call),
            deployment_type=req.deployment_type
            or (api_pb2.DEPLOYMENT_TYPE_STAGED if req.staged else api_pb2.DEPLOYMENT_TYPE_STANDARD),
            rollback_version=req.rollback_version,
            commit_info=req.commit_info if req.HasField("commit_info") else None,
            function_ids=function_ids,
            class_ids=class_ids,
            definition_ids=definition_ids,
            functions=self._definitions(function_ids.values()),
        )
        for fid in function_ids.values():  # a deploy resets hand-made autoscaler overrides
            if fid in self.s.functions:
                self.s.functions[fid].override.Clear()
                self.s.functions[fid].override_events.clear()
        app.history.append(deployment)
        app.name, app.function_ids, app.class_ids = name, function_ids, class_ids
        app.state = api_pb2.APP_STATE_DEPLOYED
        app.stopped_at, app.stopped_by = 0.0, ""
        return api_pb2.AppPublishResponse(url=self._url(app), deployed_at=deployment.deployed_at)

    def AppList(self, req: api_pb2.AppListRequest, call: Call) -> api_pb2.AppListResponse:
        env = self._env(req.environment_name)
        response = api_pb2.AppListResponse()
        for app in self.s.apps.values():
            if app.environment == env:
                response.apps.add(
                    app_id=app.app_id,
                    description=app.name,
                    name=app.name,
                    state=app.state,
                    created_at=app.created_at,
                    stopped_at=app.stopped_at,
                    n_running_tasks=sum(t.app_id == app.app_id for t in self.s.tasks.values()),
                )
        return response

    def AppStop(self, req: api_pb2.AppStopRequest, call: Call) -> empty_pb2.Empty:
        app = lookup(self.s.apps, "App", req.app_id)
        app.state, app.stopped_at, app.stopped_by = (
            api_pb2.APP_STATE_STOPPED,
            self.s.clock(),
            self.s.user_for(call),
        )
        return empty_pb2.Empty()

    def AppDeploymentHistory(
        self, req: api_pb2.AppDeploymentHistoryRequest, call: Call
    ) -> api_pb2.AppDeploymentHistoryResponse:
        app = lookup(self.s.apps, "App", req.app_id)
        current = app.current
        response = api_pb2.AppDeploymentHistoryResponse(
            production_app_version=current.version if current else 0
        )
        for entry in reversed(app.history):  # newest first, as the CLI shows it
            item = response.app_deployment_histories.add(
                app_id=app.app_id,
                version=entry.version,
                client_version=entry.client_version,
                deployed_at=entry.deployed_at,
                deployed_by=entry.deployed_by,
                tag=entry.tag,
                rollback_version=entry.rollback_version,
                rollback_allowed=entry is not current,
                deployment_type=entry.deployment_type,
            )
            if entry.commit_info is not None:
                item.commit_info.CopyFrom(entry.commit_info)
        return response

    def AppRollback(
        self, req: api_pb2.AppRollbackRequest, call: Call
    ) -> api_pb2.AppRollbackResponse:
        app = lookup(self.s.apps, "App", req.app_id)
        current = app.current
        if current is None or app.state != api_pb2.APP_STATE_DEPLOYED:
            fail(Status.FAILED_PRECONDITION, f"App {app.app_id} is not deployed")
        if req.version == -1:
            if len(app.history) < 2:
                fail(Status.FAILED_PRECONDITION, "No previous version to roll back to")
            target = app.history[-2]
        else:
            matches = [d for d in app.history if d.version == req.version]
            if not matches:
                fail(Status.NOT_FOUND, f"Version v{req.version} not found")
            target = matches[0]
            if target is current:
                fail(Status.FAILED_PRECONDITION, f"v{req.version} is the current version")
        for fid, data in target.functions.items():  # serve the old definitions again
            if fid in self.s.functions:
                self.s.functions[fid].data = data
                self.s.functions[fid].definition_id = target.definition_ids.get(fid, "")
        deployment = Deployment(
            version=current.version + 1,
            tag=target.tag,
            client_version=call.client_version,
            deployed_at=self.s.clock(),
            deployed_by=self.s.user_for(call),
            deployment_type=api_pb2.DEPLOYMENT_TYPE_ROLLBACK,
            rollback_version=target.version,
            commit_info=target.commit_info,
            function_ids=dict(target.function_ids),
            class_ids=dict(target.class_ids),
            definition_ids=dict(target.definition_ids),
            functions=dict(target.functions),
        )
        app.history.append(deployment)
        app.function_ids, app.class_ids = dict(target.function_ids), dict(target.class_ids)
        return api_pb2.AppRollbackResponse(url=self._url(app), deployed_at=deployment.deployed_at)

    def AppGetTags(self, req: api_pb2.AppGetTagsRequest, call: Call) -> api_pb2.AppGetTagsResponse:
        return api_pb2.AppGetTagsResponse(tags=lookup(self.s.apps, "App", req.app_id).tags)

    def AppSetTags(self, req: api_pb2.AppSetTagsRequest, call: Call) -> empty_pb2.Empty:
        app = lookup(self.s.apps, "App", req.app_id)
        app.tags = dict(req.tags)  # the client documents a full replacement
        return empty_pb2.Empty()

    def TaskList(self, req: api_pb2.TaskListRequest, call: Call) -> api_pb2.TaskListResponse:
        """The containers a test arranged (``State.add_container``), of one app if asked."""
        response = api_pb2.TaskListResponse()
        for task in self.s.tasks.values():
            if not req.app_id or task.app_id == req.app_id:
                response.tasks.add(
                    task_id=task.task_id,
                    app_id=task.app_id,
                    enqueued_at=task.enqueued_at,
                    started_at=task.enqueued_at,
                )
        return response

    def ContainerStop(
        self, req: api_pb2.ContainerStopRequest, call: Call
    ) -> api_pb2.ContainerStopResponse:
        if self.s.tasks.pop(req.task_id, None) is None:
            fail(Status.NOT_FOUND, f"Container {req.task_id} not found")
        return api_pb2.ContainerStopResponse()

    # -- functions and classes ---------------------------------------------------------------

    def FunctionPrecreate(
        self, req: api_pb2.FunctionPrecreateRequest, call: Call
    ) -> api_pb2.FunctionPrecreateResponse:
        app = lookup(self.s.apps, "App", req.app_id)
        function_id = (
            req.existing_function_id or app.function_ids.get(req.function_name) or new_id("fu")
        )
        record = self.s.functions.get(function_id)
        if record is None:
            record = FunctionRecord(function_id, app.app_id, req.function_name, req)
            self.s.functions[function_id] = record
        record.precreate, record.tag = req, req.function_name
        return api_pb2.FunctionPrecreateResponse(
            function_id=function_id, handle_metadata=self._handle_metadata(record)
        )

    def FunctionCreate(
        self, req: api_pb2.FunctionCreateRequest, call: Call
    ) -> api_pb2.FunctionCreateResponse:
        app = lookup(self.s.apps, "App", req.app_id)
        data = req.function_data if req.HasField("function_data") else function_data(req.function)
        if req.HasField("schedule"):
            data.schedule.CopyFrom(req.schedule)
        tag = data.function_name
        function_id = req.existing_function_id or new_id("fu")
        record = self.s.functions.get(function_id)
        if record is not None and record.data is not None:
            _same_routing_region(record.data, data)
        if record is None:
            precreate = api_pb2.FunctionPrecreateRequest(app_id=app.app_id, function_name=tag)
            record = self.s.functions[function_id] = FunctionRecord(
                function_id, app.app_id, tag, precreate
            )
        data.web_url = self._web_url(app, tag, data.webhook_config)
        class_name = tag.removesuffix(".*")
        for method, definition in data.method_definitions.items():
            definition.web_url = self._web_url(
                app, f"{class_name}-{method}", definition.webhook_config
            )
            _custom_domain_info(definition.custom_domain_info, definition.webhook_config)
        _custom_domain_info(data.custom_domain_info, data.webhook_config)
        record.create, record.data = req, data
        record.definition_id = definition_id(data)
        metadata = self._handle_metadata(record)
        return api_pb2.FunctionCreateResponse(
            function_id=function_id, handle_metadata=metadata, function_data=data
        )

    def _lookup_function(
        self, app_name: str, tag: str, env_name: str, version: int
    ) -> FunctionRecord:
        env = self._env(env_name)
        app = self.s.deployed_app(app_name, env)
        if app is None:
            fail(Status.NOT_FOUND, f"App '{app_name}' not found in environment '{env}'")
        function_ids = app.function_ids
        if version:
            entry = next((d for d in app.history if d.version == version), None)
            if entry is None:
                fail(Status.NOT_FOUND, f"App '{app_name}' has no version v{version}")
            function_ids = entry.function_ids
        if tag not in function_ids:
            if tag in app.class_ids:
                raise GRPCError(
                    Status.NOT_FOUND,
                    f"'{tag}' is a class",
                    [
                        api_pb2.FunctionLookupError(
                            reason=api_pb2.FunctionLookupError.REASON_CLASS_NAME_USED
                        )
                    ],
                )
            fail(Status.NOT_FOUND, f"No function '{tag}' in app '{app_name}'")
        return self.s.functions[function_ids[tag]]

    def FunctionGet(
        self, req: api_pb2.FunctionGetRequest, call: Call
    ) -> api_pb2.FunctionGetResponse:
        record = self._lookup_function(
            req.app_name, req.object_tag, req.environment_name, req.app_version
        )
        data = record.data
        if req.app_version:
            app = self.s.apps[record.app_id]
            entry = next(d for d in app.history if d.version == req.app_version)
            data = entry.functions.get(record.function_id, data)
        return api_pb2.FunctionGetResponse(
            function_id=record.function_id,
            handle_metadata=self._handle_metadata(record),
            function=data,
        )

    def FunctionGetById(
        self, req: api_pb2.FunctionGetByIdRequest, call: Call
    ) -> api_pb2.FunctionGetByIdResponse:
        record = lookup(self.s.functions, "Function", req.function_id)
        return api_pb2.FunctionGetByIdResponse(
            handle_metadata=self._handle_metadata(record), function=record.data
        )

    def ClassCreate(
        self, req: api_pb2.ClassCreateRequest, call: Call
    ) -> api_pb2.ClassCreateResponse:
        app = lookup(self.s.apps, "App", req.app_id)
        class_id = req.existing_class_id or new_id("cs")
        record = self.s.classes.get(class_id)
        if record is None:
            # The request names no class: pair it with the newest class service function of the
            # app that has no class yet (classes are created right after their service function).
            taken = {c.service_function_id for c in self.s.classes.values()}
            services = [
                f
                for f in self.s.functions.values()
                if f.app_id == app.app_id and f.tag.endswith(".*") and f.function_id not in taken
            ]
            service = services[-1] if services else None
            tag = service.tag.removesuffix(".*") if service else ""
            record = ClassRecord(
                class_id, app.app_id, tag, req, service.function_id if service else ""
            )
            self.s.classes[class_id] = record
        record.request = req
        return api_pb2.ClassCreateResponse(
            class_id=class_id, handle_metadata=self._class_metadata(record)
        )

    def ClassGet(self, req: api_pb2.ClassGetRequest, call: Call) -> api_pb2.ClassGetResponse:
        env = self._env(req.environment_name)
        app = self.s.deployed_app(req.app_name, env)
        if app is None:
            fail(Status.NOT_FOUND, f"App '{req.app_name}' not found in environment '{env}'")
        class_ids = app.class_ids
        if req.app_version:
            entry = next((d for d in app.history if d.version == req.app_version), None)
            class_ids = entry.class_ids if entry else {}
        if req.object_tag not in class_ids:
            fail(Status.NOT_FOUND, f"No class '{req.object_tag}' in app '{req.app_name}'")
        record = self.s.classes[class_ids[req.object_tag]]
        return api_pb2.ClassGetResponse(
            class_id=record.class_id, handle_metadata=self._class_metadata(record)
        )

    def _scheduling(self, record: FunctionRecord) -> api_pb2.AutoscalerSettings:
        effective = api_pb2.AutoscalerSettings()
        if record.data is not None:
            effective.CopyFrom(record.data.autoscaler_settings)
        effective.MergeFrom(record.override)
        return effective

    def FunctionGetSchedulingParams(
        self, req: api_pb2.FunctionGetSchedulingParamsRequest, call: Call
    ) -> api_pb2.FunctionGetSchedulingParamsResponse:
        record = lookup(self.s.functions, "Function", req.function_id)
        config = api_pb2.AutoscalerConfiguration(
            settings=self._scheduling(record),
            static_settings=record.data.autoscaler_settings if record.data is not None else None,
            override_settings=record.override,
            default_settings=api_pb2.AutoscalerSettings(),
        )
        for name, event in record.override_events.items():
            config.override_events[name].CopyFrom(event)
        return api_pb2.FunctionGetSchedulingParamsResponse(autoscaler_configuration=config)

    def FunctionUpdateSchedulingParams(
        self, req: api_pb2.FunctionUpdateSchedulingParamsRequest, call: Call
    ) -> api_pb2.FunctionUpdateSchedulingParamsResponse:
        record = lookup(self.s.functions, "Function", req.function_id)
        settings = api_pb2.AutoscalerSettings()
        settings.CopyFrom(req.settings)
        if req.warm_pool_size_override:
            settings.min_containers = req.warm_pool_size_override
        self.s.apply_override(record, settings, self.s.user_for(call))
        return api_pb2.FunctionUpdateSchedulingParamsResponse(
            current_settings=self._scheduling(record)
        )

    # -- images and mounts -------------------------------------------------------------------

    def ImageGetOrCreate(
        self, req: api_pb2.ImageGetOrCreateRequest, call: Call
    ) -> api_pb2.ImageGetOrCreateResponse:
        image_id = content_id("im", proto_bytes(req.image), req.builder_version)
        self.s.images[image_id] = req
        if self.s.image_build_logs and image_id not in self.s.built_images:
            return api_pb2.ImageGetOrCreateResponse(image_id=image_id)  # the client joins the build
        return api_pb2.ImageGetOrCreateResponse(
            image_id=image_id,
            result=api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS),
            metadata=api_pb2.ImageMetadata(image_builder_version=req.builder_version),
        )

    def ImageJoinStreaming(
        self, req: api_pb2.ImageJoinStreamingRequest, call: Call
    ) -> list[api_pb2.ImageJoinStreamingResponse]:
        """A build: one answer per log line, then the result (a failure if the test asks)."""
        image = lookup(self.s.images, "Image", req.image_id)
        answers = [
            api_pb2.ImageJoinStreamingResponse(
                task_logs=[
                    api_pb2.TaskLogs(data=line, file_descriptor=api_pb2.FILE_DESCRIPTOR_STDOUT)
                ],
                entry_id=str(number),
            )
            for number, line in enumerate(self.s.image_build_logs, 1)
        ]
        status = api_pb2.GenericResult.GENERIC_STATUS_SUCCESS
        if self.s.image_build_fails:
            status = api_pb2.GenericResult.GENERIC_STATUS_FAILURE
        else:
            self.s.built_images.add(req.image_id)
        answers.append(
            api_pb2.ImageJoinStreamingResponse(
                result=api_pb2.GenericResult(
                    status=status, exception="build step failed" if self.s.image_build_fails else ""
                ),
                metadata=api_pb2.ImageMetadata(image_builder_version=image.builder_version),
                eof=True,
            )
        )
        return answers

    def MountBatchedCheckExistence(
        self, req: api_pb2.MountBatchedCheckExistenceRequest, call: Call
    ) -> api_pb2.MountBatchedCheckExistenceResponse:
        missing = [h for h in req.sha256_hex_hashes if h not in self.s.content]
        return api_pb2.MountBatchedCheckExistenceResponse(missing_sha256_hex_hashes=missing)

    def MountPutFile(
        self, req: api_pb2.MountPutFileRequest, call: Call
    ) -> api_pb2.MountPutFileResponse:
        if req.WhichOneof("data_oneof") == "data_blob_id":
            data = lookup(self.s.blobs, "Blob", req.data_blob_id)
        elif req.WhichOneof("data_oneof") == "data":
            data = req.data
        else:
            return api_pb2.MountPutFileResponse(exists=req.sha256_hex in self.s.content)
        if hashlib.sha256(data).hexdigest() != req.sha256_hex:
            fail(Status.INVALID_ARGUMENT, "sha256 does not match the uploaded content")
        self.s.content[req.sha256_hex] = data
        return api_pb2.MountPutFileResponse(exists=True)

    def MountGetOrCreate(
        self, req: api_pb2.MountGetOrCreateRequest, call: Call
    ) -> api_pb2.MountGetOrCreateResponse:
        files = {f.filename: f.sha256_hex for f in req.files}
        missing = sorted(name for name, sha in files.items() if sha not in self.s.content)
        if missing:
            fail(
                Status.FAILED_PRECONDITION,
                f"Mount content was never uploaded: {', '.join(missing)}",
            )
        listing = "\n".join(f"{name}\0{sha}" for name, sha in sorted(files.items()))
        if (
            req.deployment_name
            and req.object_creation_type == api_pb2.OBJECT_CREATION_TYPE_UNSPECIFIED
        ):
            # A lookup by name (the client's own package mounts): answer an empty named mount.
            mount_id = content_id("mo", "named", str(req.namespace), req.deployment_name)
            self.s.mounts.setdefault(mount_id, Mount(mount_id, {}, req.deployment_name))
        else:
            mount_id = content_id("mo", req.deployment_name, listing)
            self.s.mounts[mount_id] = Mount(mount_id, files, req.deployment_name)
        checksum = hashlib.sha256(listing.encode()).hexdigest()
        return api_pb2.MountGetOrCreateResponse(
            mount_id=mount_id,
            handle_metadata=api_pb2.MountHandleMetadata(content_checksum_sha256_hex=checksum),
        )
