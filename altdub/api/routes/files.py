"""Signed downloads of local storage, served as data that a browser never runs or renders as a page."""

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from altdub.api.deps import ContextDep
from altdub.media.formats import content_type_for
from altdub.storage import SignatureRefused, StorageError

router = APIRouter(tags=["files"])

PREFIX = "/files/"
# On every answer under PREFIX, whatever its status: no type sniffing (a file is only ever its
# declared type), a download rather than a page, and, should a browser show it anyway, a sandbox
# with nothing allowed (no script, no same-origin access, no subresources).
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Content-Disposition": "attachment",  # the file's own answer names it; an error's does not
}


class DownloadHeaders:
    """Adds ``DOWNLOAD_HEADERS`` to every response under ``/files/`` (200, 206, 403, 404, 422, …)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in DOWNLOAD_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


@router.get(PREFIX + "{key:path}", responses={403: {"description": "Expired, tampered or unsigned URL."}})
@router.head(PREFIX + "{key:path}", include_in_schema=False)  # the same answer without its body
def download(
    key: str,
    context: ContextDep,
    filename: str | None = Query(None),
    expires: str | None = Query(None),
    signature: str | None = Query(None),
) -> FileResponse:
    """A signed download of local storage (Range requests answered 206; HEAD answered as GET, without the body).

    Its type comes from the extension of the signed ``filename``, which the service chose from
    the file's probed format, from a closed list of media and text types (never HTML or script).
    A URL missing any part of its signature is refused as a forged one is (403), not as a bad request.
    """
    if filename is None or expires is None or signature is None:  # unsigned: refused as a forged URL is
        raise HTTPException(status_code=403, detail="Signature invalid or expired")
    try:
        path = context.storage.signed_download(key, filename=filename, expires=expires, signature=signature)
    except SignatureRefused:
        raise HTTPException(status_code=403, detail="Signature invalid or expired") from None
    except StorageError:
        raise HTTPException(status_code=404, detail="Not found") from None
    context.uses.touch(key)  # a download is a use: the storage lifecycle keeps what is used
    return FileResponse(
        path, media_type=content_type_for(filename), filename=filename, content_disposition_type="attachment"
    )
