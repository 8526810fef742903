from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse

from altdub.api.deps import ContextDep
from altdub.media.formats import content_type_for
from altdub.storage import StorageError
from altdub.storage.local import LocalStorage

router = APIRouter(tags=["files"])


@router.get("/files/{key:path}", responses={403: {"description": "Expired or tampered URL."}})
def download(
    key: str,
    context: ContextDep,
    filename: str = Query(),
    expires: str = Query(),
    signature: str = Query(),
) -> FileResponse:
    """A signed download of local storage (Range requests answered 206)."""
    storage = context.storage
    if not isinstance(storage, LocalStorage):
        raise HTTPException(status_code=404, detail="Not found")
    if not storage.signer.verify(key, filename, expires, signature):
        raise HTTPException(status_code=403, detail="Signature invalid or expired")
    try:
        path = storage.path_for(key)
    except StorageError:
        raise HTTPException(status_code=404, detail="Not found") from None
    if not path.is_file():
        raise HTTPException(status_code=404, detail="Not found")
    return FileResponse(
        path, media_type=content_type_for(filename), filename=filename, content_disposition_type="attachment"
    )
