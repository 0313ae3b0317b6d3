"""Function and class RPCs of the local Modal API: create, look up (by id, by name, at a
deployed version) and the autoscaler settings a function runs with."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped]
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from modal_proto import api_pb2

from .base import fail, lookup
from .handles import HandleMetadata
from .state import App, Call, ClassRecord, FunctionRecord, content_id, new_id, proto_bytes


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


class FunctionHandlers(HandleMetadata):
    """Functions, classes and their scheduling parameters."""

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

    def _deployed_app(self, app_name: str, env_name: str) -> App:
        """The deployed app a look-up by name starts from, else the NOT_FOUND Modal answers."""
        env = self._env(env_name)
        app = self.s.deployed_app(app_name, env)
        if app is None:
            fail(Status.NOT_FOUND, f"App '{app_name}' not found in environment '{env}'")
        return app

    def _lookup_function(
        self, app_name: str, tag: str, env_name: str, version: int
    ) -> FunctionRecord:
        app = self._deployed_app(app_name, env_name)
        function_ids = app.function_ids
        if version:
            entry = app.deployment(version)
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
        if req.app_version:  # _lookup_function found that version
            entry = self.s.apps[record.app_id].deployment(req.app_version)
            data = entry.functions.get(record.function_id, data) if entry else data
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
        app = self._deployed_app(req.app_name, req.environment_name)
        class_ids = app.class_ids
        if req.app_version:
            entry = app.deployment(req.app_version)
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
