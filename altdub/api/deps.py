"""Dependencies shared by the routes: the context, a database session, the caller's workspace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from altdub.db.models import Workspace
from altdub.service.context import Context
from altdub.service.keys import authenticate

api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="Your altdub API key.")


def get_context(request: Request) -> Context:
    return request.app.state.context


async def get_session(context: Annotated[Context, Depends(get_context)]) -> AsyncIterator[Session]:
    """A session per request, closed on the event loop.

    An ``async`` generator on purpose: a sync one is closed on a worker thread, and when every
    thread is busy waiting for a pooled connection, none is left to give one back (a deadlock).
    """
    session = context.sessions()
    try:
        yield session
    finally:
        session.close()


def current_workspace(
    session: Annotated[Session, Depends(get_session)],
    api_key: Annotated[str | None, Security(api_key_header)],
) -> Workspace:
    return require_workspace(session, api_key)


def require_workspace(session: Session, api_key: str | None) -> Workspace:
    """The key's workspace, or 401."""
    if not api_key:
        raise HTTPException(status_code=401, detail="Missing x-api-key header")
    workspace = authenticate(session, api_key)
    session.rollback()  # give the connection back while the request waits for a thread to run its route
    if workspace is None:
        raise HTTPException(status_code=401, detail="Invalid or revoked API key")
    return workspace


MAX_ID = 2**63 - 1  # the database's integer range: larger ids exist nowhere
RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="The run's id.")]
ContextDep = Annotated[Context, Depends(get_context)]
ApiKeyDep = Annotated[str | None, Security(api_key_header)]
SessionDep = Annotated[Session, Depends(get_session)]
WorkspaceDep = Annotated[Workspace, Depends(current_workspace)]
