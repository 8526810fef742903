"""Local-file storage under one root directory, with HMAC-signed download URLs."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote, urlencode

from altdub.storage import READ_CHUNK, SignatureRefused, StorageError
from altdub.storage.signing import URLSigner


class LocalStorage:
    def __init__(self, root: Path, *, secret: str, url_ttl: int, fsync: bool = False) -> None:
        self.root = root.expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.signer = URLSigner(secret, url_ttl)
        self.fsync = fsync

    def path_for(self, key: str) -> Path:
        """The file behind ``key``; refuses any key that would leave the root."""
        if not key or key.startswith("/") or "\\" in key or "\x00" in key:
            raise StorageError(f"invalid storage key {key!r}")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise StorageError(f"invalid storage key {key!r}")
        return path

    def put_file(self, key: str, path: Path) -> int:
        target = self.path_for(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        try:
            shutil.move(path, partial)  # a rename when on the same file system
            if self.fsync:  # durable across a power cut, at the cost of flushing the whole file now
                with partial.open("rb") as fh:
                    os.fsync(fh.fileno())
            os.replace(partial, target)  # atomic: readers see the old state or the whole file
        finally:
            partial.unlink(missing_ok=True)
        return target.stat().st_size

    def put_folder(self, prefix: str, folder: Path) -> int:
        target = self.path_for(prefix.rstrip("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        replaced = target.with_name(f".{target.name}.{uuid.uuid4().hex}.replaced")
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        try:
            shutil.move(folder, partial)  # a rename when on the same file system
            if self.fsync:
                for file in partial.rglob("*"):
                    if file.is_file():
                        with file.open("rb") as fh:
                            os.fsync(fh.fileno())
            with suppress(FileNotFoundError):
                # A task run again after a crash publishes under the same prefix: no URL was handed out for the
                # first publication (its task never finished), and a folder cannot be renamed over a full one.
                os.rename(target, replaced)
            os.replace(partial, target)  # atomic: the folder appears whole
        finally:
            shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(replaced, ignore_errors=True)
        return size

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        path = self.path_for(key)
        if not path.is_file():
            raise StorageError(f"missing object {key!r}")
        yield path

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def files_under(self, prefix: str) -> list[tuple[str, int]]:
        folder = self.path_for(prefix.rstrip("/"))
        if not folder.is_dir():
            return []
        base = prefix.rstrip("/")
        found = [
            (f"{base}/{f.relative_to(folder).as_posix()}", f.stat().st_size) for f in folder.rglob("*") if f.is_file()
        ]
        return sorted(found)

    def read_chunks(self, key: str, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        path = self.path_for(key)
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(chunk_size):
                    yield chunk
        except OSError as exc:
            raise StorageError(f"cannot read {key!r}: {exc}") from exc

    def delete_prefix(self, prefix: str) -> None:
        target = self.path_for(prefix.rstrip("/"))
        try:
            target.unlink(missing_ok=True)  # one object
        except (IsADirectoryError, PermissionError):  # a folder of objects
            # Tried in this order, not after an is_dir() check: a concurrent writer (a thumbnail made for a run
            # being deleted) can make the folder appear between the check and the unlink.
            shutil.rmtree(target, ignore_errors=True)

    def children(self, prefix: str) -> list[str]:
        folder = self.path_for(prefix.rstrip("/")) if prefix else self.root
        if not folder.is_dir():
            return []
        return [f"{prefix}{entry.name}" + ("/" if entry.is_dir() else "") for entry in folder.iterdir()]

    def signed_url(self, key: str, *, filename: str, content_type: str, base_url: str) -> str:
        """``/files/<key>`` signed with an expiry; the route serves ``content_type`` from the filename."""
        query = urlencode(self.signer.sign(key, filename))
        return f"{base_url.rstrip('/')}/files/{quote(key)}?{query}"

    def signed_download(self, key: str, *, filename: str, expires: str, signature: str) -> Path:
        """The file behind a URL of ``signed_url``: the signature first, so a forged URL learns nothing of the files."""
        if not self.signer.verify(key, filename, expires, signature):
            raise SignatureRefused("signature invalid or expired")
        path = self.path_for(key)
        if not path.is_file():
            raise StorageError(f"missing object {key!r}")
        return path

    def served_path(self, key: str) -> Path | None:
        path = self.path_for(key)
        if not path.is_file():
            raise StorageError(f"missing object {key!r}")
        return path

    def check(self) -> None:
        probe = self.root / f".ready-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StorageError(f"storage root {self.root} is not writable: {exc}") from exc
