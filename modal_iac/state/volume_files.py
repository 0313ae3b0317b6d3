"""The few Volume calls the Modal store makes (modal_store.py), as coroutines of the SDK's
``.aio`` methods: the store runs them under its own deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import io
import posixpath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import modal


async def read_all(volume: modal.Volume, path: str) -> bytes:
    return b"".join([chunk async for chunk in volume.read_file.aio(path)])


async def read_optional(volume: modal.Volume, path: str) -> bytes | None:
    try:
        return await read_all(volume, path)
    except FileNotFoundError:
        return None


async def read_each(volume: modal.Volume, paths: list[str]) -> list[bytes]:
    return list(await asyncio.gather(*(read_all(volume, path) for path in paths)))


async def upload(volume: modal.Volume, path: str, data: bytes, *, force: bool = True) -> None:
    # One VolumePutFiles request for the file: it is replaced whole when the batch closes.
    async with volume.batch_upload.aio(force=force) as batch:
        batch.put_file(io.BytesIO(data), path)


async def listing(volume: modal.Volume, folder: str) -> list[str]:
    """The names of the files in ``folder`` (none if there is no such folder)."""
    import modal.exception

    try:
        entries = await volume.listdir.aio(folder)
    except (modal.exception.NotFoundError, FileNotFoundError):
        return []
    return [posixpath.basename(entry.path) for entry in entries]


async def remove_each(volume: modal.Volume, paths: list[str]) -> None:
    async def remove(path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await volume.remove_file.aio(path)

    await asyncio.gather(*(remove(path) for path in paths))
