"""Storage RPCs of the local Modal API: secrets (by name), volumes, dicts and blobs.

Enough of each for modaliac's remote state (a file on a Volume) and its lock (a Dict entry
created with ``if_not_exists``), and for uploads of 4 MiB or more through the blob server.
"""

from __future__ import annotations

import hashlib
import posixpath

from google.protobuf import empty_pb2  # type: ignore[import-untyped]
from grpclib.const import Status
from modal_proto import api_pb2

from .base import HandlerBase, fail, lookup
from .state import Call, DictRecord, Secret, Volume, new_id

BLOCK_SIZE = 8 * 1024 * 1024  # the client's volume block size (modal._utils.blob_utils.BLOCK_SIZE)
CREATE_IF_MISSING = api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING
FAIL_IF_EXISTS = api_pb2.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS
OVERWRITE = api_pb2.OBJECT_CREATION_TYPE_CREATE_OVERWRITE_IF_EXISTS
EPHEMERAL = (
    api_pb2.OBJECT_CREATION_TYPE_EPHEMERAL,
    api_pb2.OBJECT_CREATION_TYPE_ANONYMOUS_OWNED_BY_APP,
)


def _key(path: str) -> str:
    """Volume paths are kept relative to the root, without '.' parts."""
    return posixpath.normpath("/" + path).lstrip("/")


class StorageHandlers(HandlerBase):
    """Blobs, secrets, volumes and dicts."""

    # -- blobs -------------------------------------------------------------------------------

    def BlobCreate(self, req: api_pb2.BlobCreateRequest, call: Call) -> api_pb2.BlobCreateResponse:
        blob_id = new_id("bl")
        response = api_pb2.BlobCreateResponse(blob_id=blob_id, blob_ids=[blob_id])
        response.upload_urls.items.append(f"{self.s.http_url}/blob/{blob_id}")
        return response

    def BlobGet(self, req: api_pb2.BlobGetRequest, call: Call) -> api_pb2.BlobGetResponse:
        lookup(self.s.blobs, "Blob", req.blob_id)
        return api_pb2.BlobGetResponse(download_url=f"{self.s.http_url}/blob/{req.blob_id}")

    # -- secrets -----------------------------------------------------------------------------

    def SecretGetOrCreate(
        self, req: api_pb2.SecretGetOrCreateRequest, call: Call
    ) -> api_pb2.SecretGetOrCreateResponse:
        env = self._env(req.environment_name)
        keys = tuple(sorted(req.env_dict))
        kind = req.object_creation_type
        if kind in EPHEMERAL or not req.deployment_name:
            secret = Secret(new_id("st"), "", env, keys)
            self.s.secrets[secret.secret_id] = secret
        else:
            found = self.s.find_secret(req.deployment_name, env)
            if found is None and kind not in (CREATE_IF_MISSING, FAIL_IF_EXISTS, OVERWRITE):
                fail(
                    Status.NOT_FOUND,
                    f"Secret '{req.deployment_name}' not found in environment '{env}'",
                )
            if found is not None and kind == FAIL_IF_EXISTS:
                fail(Status.ALREADY_EXISTS, f"Secret '{req.deployment_name}' already exists")
            if found is None or kind == OVERWRITE:
                self.s.add_secret(req.deployment_name, keys, env)
            secret = self.s.find_secret(req.deployment_name, env)  # type: ignore[assignment]
            missing = sorted(set(req.required_keys) - set(secret.keys))
            if missing:
                fail(
                    Status.NOT_FOUND,
                    f"Secret '{secret.name}' is missing the key(s) {', '.join(missing)}",
                )
        metadata = api_pb2.SecretMetadata(name=secret.name, environment_name=env, keys=secret.keys)
        return api_pb2.SecretGetOrCreateResponse(secret_id=secret.secret_id, metadata=metadata)

    def SecretList(self, req: api_pb2.SecretListRequest, call: Call) -> api_pb2.SecretListResponse:
        env = self._env(req.environment_name)
        items = [
            api_pb2.SecretListItem(
                label=s.name,
                secret_id=s.secret_id,
                environment_name=env,
                metadata=api_pb2.SecretMetadata(name=s.name, keys=s.keys, environment_name=env),
            )
            for s in self.s.secrets.values()
            if s.name and s.environment == env
        ]
        return api_pb2.SecretListResponse(items=items, environment_name=env)

    # -- volumes -----------------------------------------------------------------------------

    def VolumeList(self, req: api_pb2.VolumeListRequest, call: Call) -> api_pb2.VolumeListResponse:
        env = self._env(req.environment_name)
        items = [
            api_pb2.VolumeListItem(label=v.name, volume_id=v.volume_id)
            for v in self.s.volumes.values()
            if v.name and v.environment == env
        ]
        return api_pb2.VolumeListResponse(items=items, environment_name=env)

    def VolumeGetOrCreate(
        self, req: api_pb2.VolumeGetOrCreateRequest, call: Call
    ) -> api_pb2.VolumeGetOrCreateResponse:
        env = self._env(req.environment_name)
        kind = req.object_creation_type
        version = req.version or self.s.volume_version
        if kind in EPHEMERAL or not req.deployment_name:
            volume = Volume(new_id("vo"), "", env, version)  # anonymous: never found by name
            self.s.volumes[volume.volume_id] = volume
        else:
            volume = self.s.find_volume(req.deployment_name, env)  # type: ignore[assignment]
            if volume is None:
                if kind not in (CREATE_IF_MISSING, FAIL_IF_EXISTS, OVERWRITE):
                    fail(
                        Status.NOT_FOUND,
                        f"Volume '{req.deployment_name}' not found in environment '{env}'",
                    )
                volume = self.s.add_volume(req.deployment_name, env, version)
            elif kind == FAIL_IF_EXISTS:
                fail(Status.ALREADY_EXISTS, f"Volume '{req.deployment_name}' already exists")
        metadata = api_pb2.VolumeMetadata(name=volume.name, version=volume.version)  # type: ignore[arg-type]
        return api_pb2.VolumeGetOrCreateResponse(
            volume_id=volume.volume_id,
            version=volume.version,  # type: ignore[arg-type]
            metadata=metadata,
        )

    def VolumeHeartbeat(self, req: api_pb2.VolumeHeartbeatRequest, call: Call) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    def VolumeCommit(
        self, req: api_pb2.VolumeCommitRequest, call: Call
    ) -> api_pb2.VolumeCommitResponse:
        lookup(self.s.volumes, "Volume", req.volume_id)
        return api_pb2.VolumeCommitResponse(skip_reload=True)

    def VolumeReload(self, req: api_pb2.VolumeReloadRequest, call: Call) -> empty_pb2.Empty:
        lookup(self.s.volumes, "Volume", req.volume_id)
        return empty_pb2.Empty()

    def VolumePutFiles2(
        self, req: api_pb2.VolumePutFiles2Request, call: Call
    ) -> api_pb2.VolumePutFiles2Response:
        volume = lookup(self.s.volumes, "Volume", req.volume_id)
        response = api_pb2.VolumePutFiles2Response()
        for file_index, file in enumerate(req.files):
            for block_index, block in enumerate(file.blocks):
                sha = block.contents_sha256.hex()
                if sha not in self.s.content:
                    response.missing_blocks.add(
                        file_index=file_index,
                        block_index=block_index,
                        put_url=f"{self.s.http_url}/block/{sha}",
                    )
        if response.missing_blocks:
            return response
        if req.disallow_overwrite_existing_files:
            clashes = [f.path for f in req.files if _key(f.path) in volume.files]
            if clashes:
                fail(Status.ALREADY_EXISTS, f"{clashes[0]}: already exists")
        for file in req.files:
            data = b"".join(self.s.content[b.contents_sha256.hex()] for b in file.blocks)
            volume.files[_key(file.path)] = data[: file.size] if file.size else data
            volume.mtimes[_key(file.path)] = self.s.clock()
        return response

    def VolumePutFiles(self, req: api_pb2.VolumePutFilesRequest, call: Call) -> empty_pb2.Empty:
        volume = lookup(self.s.volumes, "Volume", req.volume_id)
        for file in req.files:
            if file.sha256_hex not in self.s.content:
                fail(Status.FAILED_PRECONDITION, f"{file.filename}: content was never uploaded")
            if req.disallow_overwrite_existing_files and _key(file.filename) in volume.files:
                fail(Status.ALREADY_EXISTS, f"{file.filename}: already exists")
        for file in req.files:
            volume.files[_key(file.filename)] = self.s.content[file.sha256_hex]
            volume.mtimes[_key(file.filename)] = self.s.clock()
        return empty_pb2.Empty()

    def _file(self, volume_id: str, path: str) -> bytes:
        volume = lookup(self.s.volumes, "Volume", volume_id)
        if _key(path) not in volume.files:
            fail(Status.NOT_FOUND, f"No such file: {path}")
        return volume.files[_key(path)]

    def _file_range(
        self, volume_id: str, path: str, start: int, length: int
    ) -> tuple[bytes, int, int]:
        """A file and the [start, end) of it a read asks for (length 0: to the end)."""
        data = self._file(volume_id, path)
        start = min(start, len(data))
        end = len(data) if not length else min(len(data), start + length)
        return data, start, end

    def VolumeGetFile2(
        self, req: api_pb2.VolumeGetFile2Request, call: Call
    ) -> api_pb2.VolumeGetFile2Response:
        data, start, end = self._file_range(req.volume_id, req.path, req.start, req.len)
        digest = hashlib.sha256(data).hexdigest()
        self.s.content.setdefault(digest, data)
        urls = []
        block = start // BLOCK_SIZE * BLOCK_SIZE
        pos = start
        while pos < end:
            block_end = min(end, block + BLOCK_SIZE)
            urls.append(f"{self.s.http_url}/content/{digest}?start={pos}&end={block_end}")
            pos, block = block_end, block + BLOCK_SIZE
        return api_pb2.VolumeGetFile2Response(
            get_urls=urls, size=len(data), start=start, len=end - start
        )

    def VolumeGetFile(
        self, req: api_pb2.VolumeGetFileRequest, call: Call
    ) -> api_pb2.VolumeGetFileResponse:
        data, start, end = self._file_range(req.volume_id, req.path, req.start, req.len)
        return api_pb2.VolumeGetFileResponse(
            data=data[start:end], size=len(data), start=start, len=end - start
        )

    def _entries(self, volume_id: str, path: str, recursive: bool) -> list[api_pb2.FileEntry]:
        volume = lookup(self.s.volumes, "Volume", volume_id)
        root = _key(path)
        if root in volume.files:
            return [
                api_pb2.FileEntry(
                    path=root, type=api_pb2.FileEntry.FILE, size=len(volume.files[root])
                )
            ]
        prefix = "" if root in ("", ".") else root + "/"
        entries: dict[str, api_pb2.FileEntry] = {}
        for name, data in sorted(volume.files.items()):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix) :].split("/")
            for depth in range(1, len(parts)):  # the directories on the way
                directory = prefix + "/".join(parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(
                        directory,
                        api_pb2.FileEntry(path=directory, type=api_pb2.FileEntry.DIRECTORY),
                    )
            if recursive or len(parts) == 1:
                entries[name] = api_pb2.FileEntry(
                    path=name,
                    type=api_pb2.FileEntry.FILE,
                    size=len(data),
                    mtime=int(volume.mtimes.get(name, 0)),
                )
        if prefix and not entries:
            fail(Status.NOT_FOUND, f"No such file or directory: {path}")
        return list(entries.values())

    def VolumeListFiles2(
        self, req: api_pb2.VolumeListFiles2Request, call: Call
    ) -> list[api_pb2.VolumeListFiles2Response]:
        return [
            api_pb2.VolumeListFiles2Response(
                entries=self._entries(req.volume_id, req.path, req.recursive)
            )
        ]

    def VolumeListFiles(
        self, req: api_pb2.VolumeListFilesRequest, call: Call
    ) -> list[api_pb2.VolumeListFilesResponse]:
        return [
            api_pb2.VolumeListFilesResponse(
                entries=self._entries(req.volume_id, req.path, req.recursive)
            )
        ]

    def _remove(self, volume_id: str, path: str, recursive: bool) -> empty_pb2.Empty:
        volume = lookup(self.s.volumes, "Volume", volume_id)
        key = _key(path)
        if key in volume.files:
            del volume.files[key]
            return empty_pb2.Empty()
        inside = [name for name in volume.files if name.startswith(key + "/")]
        if not inside:
            fail(Status.NOT_FOUND, f"No such file or directory: {path}")
        if not recursive:
            fail(Status.INVALID_ARGUMENT, f"{path} is a directory: remove it with recursive=True")
        for name in inside:
            del volume.files[name]
        return empty_pb2.Empty()

    def VolumeRemoveFile2(
        self, req: api_pb2.VolumeRemoveFile2Request, call: Call
    ) -> empty_pb2.Empty:
        return self._remove(req.volume_id, req.path, req.recursive)

    def VolumeRemoveFile(self, req: api_pb2.VolumeRemoveFileRequest, call: Call) -> empty_pb2.Empty:
        return self._remove(req.volume_id, req.path, req.recursive)

    # -- dicts -------------------------------------------------------------------------------

    def DictGetOrCreate(
        self, req: api_pb2.DictGetOrCreateRequest, call: Call
    ) -> api_pb2.DictGetOrCreateResponse:
        env = self._env(req.environment_name)
        kind = req.object_creation_type
        found = (
            None
            if kind in EPHEMERAL or not req.deployment_name
            else self.s.find_dict(req.deployment_name, env)
        )
        if found is None:
            if req.deployment_name and kind not in (
                CREATE_IF_MISSING,
                FAIL_IF_EXISTS,
                OVERWRITE,
                *EPHEMERAL,
            ):
                fail(
                    Status.NOT_FOUND,
                    f"Dict '{req.deployment_name}' not found in environment '{env}'",
                )
            found = DictRecord(
                new_id("di"), req.deployment_name, env, {e.key: e.value for e in req.data}
            )
            self.s.dicts[found.dict_id] = found
        elif kind == FAIL_IF_EXISTS:
            fail(Status.ALREADY_EXISTS, f"Dict '{req.deployment_name}' already exists")
        return api_pb2.DictGetOrCreateResponse(
            dict_id=found.dict_id, metadata=api_pb2.DictMetadata(name=found.name)
        )

    def DictHeartbeat(self, req: api_pb2.DictHeartbeatRequest, call: Call) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    def DictUpdate(self, req: api_pb2.DictUpdateRequest, call: Call) -> api_pb2.DictUpdateResponse:
        found = lookup(self.s.dicts, "Dict", req.dict_id)
        if req.if_not_exists and any(e.key in found.data for e in req.updates):
            return api_pb2.DictUpdateResponse(created=False)  # all or nothing: the lock primitive
        found.data.update({e.key: e.value for e in req.updates})
        return api_pb2.DictUpdateResponse(created=True)

    def DictGet(self, req: api_pb2.DictGetRequest, call: Call) -> api_pb2.DictGetResponse:
        data = lookup(self.s.dicts, "Dict", req.dict_id).data
        return api_pb2.DictGetResponse(found=req.key in data, value=data.get(req.key, b""))

    def DictContains(
        self, req: api_pb2.DictContainsRequest, call: Call
    ) -> api_pb2.DictContainsResponse:
        return api_pb2.DictContainsResponse(
            found=req.key in lookup(self.s.dicts, "Dict", req.dict_id).data
        )

    def DictPop(self, req: api_pb2.DictPopRequest, call: Call) -> api_pb2.DictPopResponse:
        data = lookup(self.s.dicts, "Dict", req.dict_id).data
        found = req.key in data
        return api_pb2.DictPopResponse(found=found, value=data.pop(req.key, b""))

    def DictLen(self, req: api_pb2.DictLenRequest, call: Call) -> api_pb2.DictLenResponse:
        return api_pb2.DictLenResponse(len=len(lookup(self.s.dicts, "Dict", req.dict_id).data))

    def DictClear(self, req: api_pb2.DictClearRequest, call: Call) -> empty_pb2.Empty:
        lookup(self.s.dicts, "Dict", req.dict_id).data.clear()
        return empty_pb2.Empty()

    def DictContents(self, req: api_pb2.DictContentsRequest, call: Call) -> list[api_pb2.DictEntry]:
        return [
            api_pb2.DictEntry(key=k if req.keys else b"", value=v if req.values else b"")
            for k, v in lookup(self.s.dicts, "Dict", req.dict_id).data.items()
        ]
