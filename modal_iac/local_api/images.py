"""Image and mount RPCs of the local Modal API: image builds (with the logs and failures a
test asks for) and mounts of uploaded file content."""

from __future__ import annotations

import hashlib

from grpclib.const import Status
from modal_proto import api_pb2

from .base import HandlerBase, fail, lookup
from .state import Call, Mount, content_id, proto_bytes


class ImageHandlers(HandlerBase):
    """Images and mounts."""

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
