"""Streaming packages served under one signed path prefix (spec §4): a player resolves every file from the
playlist by relative URL, so the signature lives in the path, not in a query a relative URL would drop.

``/packages/<expires>/<signature>/<package prefix>/<file>``: the signature covers the package's prefix
and the expiry, so it opens every file of that package, and only of that package, until it expires.
``<package prefix>/package.zip`` under the same signature is the whole folder as one zip (``package_zip``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.orm import Session
from zipstream import ZipStream

from altdub import languages
from altdub.db.models import ExportTask, TaskStatus
from altdub.media.catalogue import CATALOGUE
from altdub.media.formats import PACKAGE_TYPES
from altdub.service.context import Context
from altdub.service.errors import NotFound
from altdub.storage import SignatureRefused, StorageError

PACKAGE_PATH = "/packages"
PACKAGE_ZIP = "package.zip"  # beside the package's files, under the same signature
_SCOPE = "package"  # what the signature is for, so that a download signature never opens a package
_PREFIX_PARTS = 4  # w<workspace>/exports/<run>/<task>: the layout of service.runs.exports_prefix + task id
_SAFE_PART = re.compile(r"[A-Za-z0-9._-]+")


def package_url(ctx: Context, key: str) -> str:
    """The signed URL of a package's entry file ``key`` (its playlist or manifest)."""
    prefix, _, entry = key.rpartition("/")
    ctx.uses.touch(key)  # handing the URL out is a use (the storage lifecycle)
    expires = int(time.time() + ctx.settings.url_ttl)
    signature = ctx.url_signer.digest(prefix, _SCOPE, expires)
    return f"{ctx.settings.effective_public_url}{PACKAGE_PATH}/{expires}/{signature}/{quote(prefix)}/{quote(entry)}"


_ENTRIES = frozenset(f.package_entry for f in CATALOGUE.values() if f.package_entry)


def stored_prefix(key: str) -> str:
    """What to delete to remove the export stored at ``key``: a package's whole folder, else the one file."""
    folder, _, name = key.rpartition("/")
    return f"{folder}/" if name in _ENTRIES else key


@dataclass(frozen=True)
class PackageFile:
    """How to answer for one file of a package: a local file, its bytes, or a redirect to the bucket."""

    content_type: str
    path: Path | None = None
    body: bytes | None = None
    redirect: str | None = None


def _signed_prefix(ctx: Context, expires: str, signature: str, parts: list[str]) -> str:
    """The package prefix that ``parts`` (a path under it, split) begin with, if the signature opens it."""
    if len(parts) < _PREFIX_PARTS or not all(_SAFE_PART.fullmatch(p) and p not in (".", "..") for p in parts):
        raise SignatureRefused("not a package path")
    prefix = "/".join(parts[:_PREFIX_PARTS])
    if not ctx.url_signer.verify(prefix, _SCOPE, expires, signature):
        raise SignatureRefused("signature invalid or expired")
    return prefix


def open_package_file(ctx: Context, expires: str, signature: str, path: str) -> PackageFile:
    """The file ``path`` names, if the signature opens its package; SignatureRefused or NotFound otherwise."""
    parts = path.split("/")
    if len(parts) == _PREFIX_PARTS:  # the package itself is no file
        raise SignatureRefused("not a package path")
    _signed_prefix(ctx, expires, signature, parts)
    content_type = PACKAGE_TYPES.get(parts[-1].rpartition(".")[2])
    if content_type is None:
        raise NotFound("not a file of a package")
    try:
        if parts[-1] in _ENTRIES:
            ctx.uses.touch(path)  # a player opening the package is a use of it (the storage lifecycle)
        local = ctx.storage.served_path(path)
        if local is not None:
            return PackageFile(content_type, path=local)
        if content_type.startswith("video/"):  # segments: straight from the bucket
            url = ctx.storage.signed_url(
                path, filename=parts[-1], content_type=content_type, base_url=ctx.settings.effective_public_url
            )
            return PackageFile(content_type, redirect=url)
        with ctx.storage.local_copy(path) as copy:  # playlists: small, and their relative URLs must resolve here
            return PackageFile(content_type, body=copy.read_bytes())
    except StorageError as exc:
        raise NotFound("not found") from exc


@dataclass(frozen=True)
class PackageZip:
    """A package as one zip: its download name, its exact size, and its bytes as they are made."""

    filename: str
    size: int
    chunks: Iterable[bytes]


def package_zip(ctx: Context, session: Session, expires: str, signature: str, prefix: str) -> PackageZip:
    """Every file of the package at ``prefix`` as one zip, streamed (spec §4: "for a CDN upload").

    Nothing is built whole, in memory or on disk: zipstream-ng writes each entry as its object is read,
    one object open at a time (S3 included). The entries are stored, not deflated (segments are
    compressed media already), so the zip's size is known before its first byte: a Content-Length
    lets a client show progress and detect a cut download. SignatureRefused or NotFound otherwise.
    """
    parts = prefix.split("/")
    _signed_prefix(ctx, expires, signature, parts)
    if len(parts) != _PREFIX_PARTS:  # a package.zip deeper in the folder: none there
        raise NotFound("no such package")
    workspace, _, run, task_id = parts
    task = session.get(ExportTask, task_id)
    if task is None or not (
        task.status == TaskStatus.SUCCESS.value
        and f"w{task.workspace_id}" == workspace
        and str(task.run_id) == run
        and CATALOGUE[task.output_format].package_entry is not None
    ):
        raise NotFound("no such package")
    filename = f"run-{task.run_id}_{languages.filename_label(task.track_language_ids)}_{task.output_format}.zip"
    session.rollback()  # the stream may last minutes: give the connection back before it starts
    try:
        files = ctx.storage.files_under(prefix + "/")
    except StorageError as exc:
        raise NotFound("no such package") from exc
    if not files:
        raise NotFound("no such package")
    archive = ZipStream(sized=True)  # stored entries: the size is known before the first byte
    for key, size in files:
        archive.add(ctx.storage.read_chunks(key), key.removeprefix(prefix + "/"), size=size)
    return PackageZip(filename, len(archive), archive)
