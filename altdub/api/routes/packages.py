"""Streaming packages: every file under the package's signed path prefix, for players on any origin."""

import re

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from altdub.api.deps import ContextDep, SessionDep
from altdub.service.errors import NotFound
from altdub.service.packages import PACKAGE_PATH, PACKAGE_ZIP, open_package_file, package_zip
from altdub.storage import SignatureRefused

router = APIRouter(tags=["files"])

# A player on another origin fetches playlists and segments with XHR/fetch: it may read them, nothing more.
_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Content-Length, Content-Range"}
# An escaped slash is decoded into the path before routing: refused, so that a file has one URL and a player's
# relative URLs resolve against the folder the playlist is really in.
_ESCAPED_SLASH = re.compile(rb"%2f", re.IGNORECASE)


_REFUSED = {403: {"description": "Expired, tampered or unsigned URL."}, 404: {"description": "No such package."}}


# Before package_file's route, which would take this path for a file of the package.
@router.get(
    PACKAGE_PATH + "/{expires}/{signature}/{prefix:path}/" + PACKAGE_ZIP,
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "The package as one zip."}, **_REFUSED},
)
def package_archive(
    expires: str, signature: str, prefix: str, context: ContextDep, session: SessionDep
) -> StreamingResponse:
    """The whole package folder as one zip (stored entries, sized in advance), streamed as it is made."""
    try:
        archive = package_zip(context, session, expires, signature, prefix)
    except SignatureRefused:
        raise HTTPException(status_code=403, detail="Signature invalid or expired", headers=_CORS) from None
    except NotFound:
        raise HTTPException(status_code=404, detail="Not found", headers=_CORS) from None
    headers = {
        **_CORS,
        "Content-Length": str(archive.size),
        "Content-Disposition": f'attachment; filename="{archive.filename}"',
        "X-Content-Type-Options": "nosniff",
    }
    return StreamingResponse(archive.chunks, media_type="application/zip", headers=headers)


@router.get(
    PACKAGE_PATH + "/{expires}/{signature}/{path:path}",
    responses={403: {"description": "Expired, tampered or unsigned URL."}, 404: {"description": "No such file."}},
)
@router.head(PACKAGE_PATH + "/{expires}/{signature}/{path:path}", include_in_schema=False)
def package_file(expires: str, signature: str, path: str, request: Request, context: ContextDep) -> Response:
    """A file of a streaming package (playlist, manifest, segment, subtitles), served inline with CORS.

    With S3 storage, playlists come from here (their relative URLs resolve under this prefix) and
    segments redirect to the bucket's presigned URLs.
    """
    if _ESCAPED_SLASH.search(request.scope.get("raw_path") or b""):
        raise HTTPException(status_code=404, detail="Not found", headers=_CORS)
    try:
        found = open_package_file(context, expires, signature, path)
    except SignatureRefused:
        raise HTTPException(status_code=403, detail="Signature invalid or expired", headers=_CORS) from None
    except NotFound:
        raise HTTPException(status_code=404, detail="Not found", headers=_CORS) from None
    if found.redirect is not None:
        return RedirectResponse(found.redirect, status_code=302, headers=_CORS)
    if found.body is not None:
        return Response(found.body, media_type=found.content_type, headers=_CORS)
    assert found.path is not None
    return FileResponse(found.path, media_type=found.content_type, headers=_CORS)
