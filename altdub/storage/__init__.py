"""Where runs and exports live: one small interface, local files today (S3 slots in behind it)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol


class StorageError(Exception):
    pass


class Storage(Protocol):
    def put_file(self, key: str, path: Path) -> int:
        """Publish the complete local file ``path`` under ``key`` atomically; returns its size.

        The file may be moved. Readers see either nothing or the whole file, never a part.
        """

    def local_copy(self, key: str) -> AbstractContextManager[Path]:
        """A local path holding the object's bytes while the context is open."""

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object whose key starts with ``prefix``."""

    def signed_url(self, key: str, *, filename: str, base_url: str) -> str:
        """A URL that downloads ``key`` as ``filename`` until it expires."""

    def check(self) -> None:
        """Raise StorageError when the storage cannot be used."""


def open_storage(url: str, *, secret: str, url_ttl: int) -> Storage:
    from altdub.storage.local import LocalStorage

    if url.startswith("file://"):
        return LocalStorage(Path(url.removeprefix("file://")), secret=secret, url_ttl=url_ttl)
    raise StorageError(f"unsupported storage URL {url!r} (expected file://PATH)")


__all__ = ["Storage", "StorageError", "open_storage"]
