"""App RPCs of the local Modal API: the client and its environments, apps and their
deployments (publish, history, rollback, tags), and the containers a test arranged."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import empty_pb2  # type: ignore[import-untyped]
from grpclib.const import Status
from modal_proto import api_pb2

from .base import fail, lookup
from .handles import HandleMetadata
from .state import App, Call, Deployment, new_id
from .storage import CREATE_IF_MISSING


class AppHandlers(HandleMetadata):
    """Client, environments, apps, deployments, tasks and containers."""

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
            found = app.deployment(req.version)
            if found is None:
                fail(Status.NOT_FOUND, f"Version v{req.version} not found")
            target = found
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
