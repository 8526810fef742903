"""S3-compatible storage (boto3): endpoint, region and credentials from the usual AWS variables.

Uploads are multipart past a threshold; an object becomes visible only when its upload
completes, so a published export is always whole. Downloads are the bucket's own presigned
URLs, carrying the same filename and content type as local downloads.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from altdub.storage import READ_CHUNK, StorageError

_TRANSFER = TransferConfig(multipart_threshold=64 * 1024 * 1024, multipart_chunksize=64 * 1024 * 1024)


class S3Storage:
    def __init__(self, bucket: str, prefix: str, *, scratch: Path, url_ttl: int) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.scratch = scratch
        self.url_ttl = url_ttl
        self.client = boto3.client("s3", config=Config(signature_version="s3v4", retries={"mode": "standard"}))

    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise StorageError(f"invalid storage key {key!r}")
        return self.prefix + key

    def put_file(self, key: str, path: Path) -> int:
        size = path.stat().st_size
        try:
            self.client.upload_file(str(path), self.bucket, self._key(key), Config=_TRANSFER)
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:  # the transfer wraps the server's refusal
            raise StorageError(f"upload of {key!r} failed: {exc}") from exc
        path.unlink(missing_ok=True)
        return size

    def put_folder(self, prefix: str, folder: Path) -> int:
        """Each file an object under ``prefix``: the playlists and manifests last, after every segment they name.

        An upload that fails takes the objects already uploaded with it: a package is whole or absent.
        """
        files = sorted((f for f in folder.rglob("*") if f.is_file()), key=lambda f: f.suffix in (".m3u8", ".mpd"))
        size = 0
        try:
            for file in files:
                size += self.put_file(prefix + file.relative_to(folder).as_posix(), file)
        except BaseException:
            with suppress(BotoCoreError, ClientError):
                self.delete_prefix(prefix)
            raise
        return size

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        self.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.scratch, prefix="s3-") as folder:
            path = Path(folder) / Path(key).name
            try:
                self.client.download_file(self.bucket, self._key(key), str(path), Config=_TRANSFER)
            except (BotoCoreError, ClientError) as exc:
                raise StorageError(f"missing object {key!r}: {exc}") from exc
            yield path

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(str(exc)) from exc
        return True

    def files_under(self, prefix: str) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            ):
                found += [(o["Key"].removeprefix(self.prefix), o["Size"]) for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot list {prefix!r}: {exc}") from exc
        return sorted(found)

    def read_chunks(self, key: str, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"missing object {key!r}: {exc}") from exc
        try:
            yield from body.iter_chunks(chunk_size)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot read {key!r}: {exc}") from exc
        finally:
            body.close()

    def delete_prefix(self, prefix: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})

    def children(self, prefix: str) -> list[str]:
        found: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix, Delimiter="/"):
                found += [p["Prefix"].removeprefix(self.prefix) for p in page.get("CommonPrefixes", [])]
                found += [o["Key"].removeprefix(self.prefix) for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot list {prefix!r}: {exc}") from exc
        return found

    def signed_url(self, key: str, *, filename: str, content_type: str, base_url: str) -> str:
        """The bucket's presigned GET; ``base_url`` is unused (the bucket serves the file).

        The bucket answers with ``content_type`` (our closed list, see ``content_type_for``) and as
        an attachment: both are query parameters covered by the SigV4 signature, so they cannot be
        changed. S3 has no parameter for ``X-Content-Type-Options: nosniff`` or a CSP: serve the
        bucket from a domain of its own, never the dashboard's origin.
        """
        return self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self._key(key),
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
                "ResponseContentType": content_type,
            },
            ExpiresIn=self.url_ttl,
        )

    def signed_download(self, key: str, *, filename: str, expires: str, signature: str) -> Path:
        """Never: the bucket serves its own presigned URLs, this service serves none of them."""
        raise StorageError("downloads are served by the bucket")

    def served_path(self, key: str) -> Path | None:
        return None  # the bucket serves its objects through presigned URLs

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"bucket {self.bucket!r} is not reachable: {exc}") from exc
