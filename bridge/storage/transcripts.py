"""Where the final transcript of a removed room is kept: a directory by default.

    put(name, document) -> location   stored durably before it returns (a purge goes on only
                                       then); the same name again replaces it; for a
                                       directory the location is the file's name in it
    get(location)       -> document   (None when it is not there)

Another destination (an object store) implements the same two calls; the location is what
the room.purged webhook and the transaction's record name.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote


class TranscriptStore(Protocol):
    async def put(self, name: str, document: dict[str, Any]) -> str: ...

    async def get(self, location: str) -> dict[str, Any] | None: ...


def file_name(kind: str, object_id: str) -> str:
    """A file name for an object's transcript: readable, and one per id even where names are
    compared without case (the hash of the exact id keeps ids differing by case apart)."""
    digest = hashlib.sha256(object_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{kind}-{quote(object_id, safe='')}-{digest}.json"


class DirectoryStore:
    """One JSON file per room, written to a temporary name, synced, then renamed."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    async def put(self, name: str, document: dict[str, Any]) -> str:
        data = json.dumps(document, ensure_ascii=False, sort_keys=True).encode("utf-8")
        return await asyncio.to_thread(self._write, name, data)

    async def get(self, location: str) -> dict[str, Any] | None:
        path = self._directory / location
        if Path(location).name != location:
            return None  # a file name in this directory, nothing else
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        return json.loads(data)

    def _write(self, name: str, data: bytes) -> str:
        self._directory.mkdir(parents=True, exist_ok=True)
        final = self._directory / name
        temporary = final.with_name(f".{name}.tmp")
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, final)
        directory = os.open(self._directory, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)
        return name  # relative: the directory may move; the host's paths stay private
