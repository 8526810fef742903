"""Streaming packages served under one signed path prefix (spec §4): a player resolves every file from the
playlist by relative URL, so the signature lives in the path, not in a query a relative URL would drop.

``/packages/<expires>/<signature>/<package prefix>/<file>``: the signature covers the package's prefix
and the expiry, so it opens every file of that package, and only of that package, until it expires.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from altdub.media.formats import PACKAGE_TYPES
from altdub.service.context import Context
from altdub.service.errors import NotFound
from altdub.storage import SignatureRefused, StorageError

PACKAGE_PATH = "/packages"
_SCOPE = "package"  # what the signature is for, so that a download signature never opens a package
_PREFIX_PARTS = 4  # w<workspace>/exports/<run>/<task>: the layout of service.runs.exports_prefix + task id
_SAFE_PART = re.compile(r"[A-Za-z0-9._-]+")


def package_url(ctx: Context, key: str) -> str:
    """The signed URL of a package's entry file ``key`` (its playlist or manifest)."""
    prefix, _, entry = key.rpartition("/")
    expires = int(time.time() + ctx.settings.url_ttl)
    signature = ctx.url_signer.digest(prefix, _SCOPE, expires)
    return f"{ctx.settings.effective_public_url}{PACKAGE_PATH}/{expires}/{signature}/{quote(prefix)}/{quote(entry)}"


@dataclass(frozen=True)
class PackageFile:
    """How to answer for one file of a package: a local file, its bytes, or a redirect to the bucket."""

    content_type: str
    path: Path | None = None
    body: bytes | None = None
    redirect: str | None = None


def open_package_file(ctx: Context, expires: str, signature: str, path: str) -> PackageFile:
    """The file ``path`` names, if the signature opens its package; SignatureRefused or NotFound otherwise."""
    parts = path.split("/")
    if len(parts) <= _PREFIX_PARTS or not all(_SAFE_PART.fullmatch(p) and p not in (".", "..") for p in parts):
        raise SignatureRefused("not a package path")
    prefix = "/".join(parts[:_PREFIX_PARTS])
    if not ctx.url_signer.verify(prefix, _SCOPE, expires, signature):
        raise SignatureRefused("signature invalid or expired")
    content_type = PACKAGE_TYPES.get(parts[-1].rpartition(".")[2])
    if content_type is None:
        raise NotFound("not a file of a package")
    try:
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
