"""Where runs and exports live: one small interface, local files today (S3 slots in behind it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


class StorageError(Exception):
    pass


class SignatureRefused(StorageError):
    """A download URL whose signature does not match what it names, or has expired."""


READ_CHUNK = 1024 * 1024  # what read_chunks holds in memory at once


class Storage(Protocol):
    def put_file(self, key: str, path: Path) -> int:
        """Publish the complete local file ``path`` under ``key`` atomically; returns its size.

        The file may be moved. Readers see either nothing or the whole file, never a part.
        """

    def put_folder(self, prefix: str, folder: Path) -> int:
        """Publish every file of ``folder`` under ``prefix`` (a streaming package); returns their total size.

        The folder may be moved. A caller hands out no URL before this returns, so no reader sees a part.
        """

    def local_copy(self, key: str) -> AbstractContextManager[Path]:
        """A local path holding the object's bytes while the context is open."""

    def exists(self, key: str) -> bool: ...

    def files_under(self, prefix: str) -> list[tuple[str, int]]:
        """Every object whose key starts with ``prefix`` (at any depth) and its size in bytes, sorted by key."""

    def read_chunks(self, key: str, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        """The object's bytes, a chunk at a time: opened at the first chunk, closed after the last (a generator),
        so a caller can queue many objects and hold one open at a time. StorageError when it cannot be read."""

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object whose key starts with ``prefix``."""

    def children(self, prefix: str) -> list[str]:
        """The keys one level below ``prefix`` (``a/b/`` for objects ``a/b/…``), folders ending in ``/``."""

    def signed_url(self, key: str, *, filename: str, content_type: str, base_url: str) -> str:
        """A URL that downloads ``key`` as ``filename`` of ``content_type`` until it expires."""

    def signed_download(self, key: str, *, filename: str, expires: str, signature: str) -> Path:
        """The local file that a signed ``/files`` URL of this storage names, for the API to serve.

        SignatureRefused when the URL is forged or expired; StorageError when it names nothing this
        storage serves locally (no such file, or a storage whose URLs the bucket serves itself).
        """

    def served_path(self, key: str) -> Path | None:
        """The local file the API serves for ``key`` (StorageError when there is none); None for a storage
        whose objects its own presigned URLs serve (S3)."""

    def check(self) -> None:
        """Raise StorageError when the storage cannot be used."""


def open_storage(url: str, *, secret: str, url_ttl: int, scratch: Path, fsync: bool = False) -> Storage:
    """``file:///path`` (local files, HMAC-signed URLs) or ``s3://bucket/prefix`` (boto3)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from altdub.storage.local import LocalStorage

        return LocalStorage(Path(parsed.path), secret=secret, url_ttl=url_ttl, fsync=fsync)
    if parsed.scheme == "s3" and parsed.netloc:
        from altdub.storage.s3 import S3Storage

        return S3Storage(parsed.netloc, parsed.path, scratch=scratch, url_ttl=url_ttl)
    raise StorageError(f"unsupported storage URL {url!r} (expected file:///PATH or s3://BUCKET/PREFIX)")


__all__ = ["READ_CHUNK", "SignatureRefused", "Storage", "StorageError", "open_storage"]
