"""What the client is told about a function or class it created or looked up: handle
metadata, with the web URLs its endpoints answer at."""

from __future__ import annotations

from modal_proto import api_pb2

from .base import HandlerBase
from .state import App, ClassRecord, FunctionRecord, web_label


class HandleMetadata(HandlerBase):
    """Handle metadata and web URLs, shared by the app and the function RPCs."""

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
