"""Dependencies shared by the routes: the context, a database session, the caller's workspace."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from altdub.db.models import Workspace
from altdub.service.context import Context
from altdub.service.keys import authenticate

api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="Your altdub API key.")


def get_context(request: Request) -> Context:
    return request.app.state.context


def get_session(context: Annotated[Context, Depends(get_context)]) -> Iterator[Session]:
    with context.sessions() as session:
        yield session


def current_workspace(
    session: Annotated[Session, Depends(get_session)],
    api_key: Annotated[str | None, Security(api_key_header)],
) -> Workspace:
    if not api_key:
        raise HTTPException(status_code=401, detail="Missing x-api-key header")
    workspace = authenticate(session, api_key)
    if workspace is None:
        raise HTTPException(status_code=401, detail="Invalid or revoked API key")
    return workspace


def public_base_url(request: Request) -> str:
    """Where this request reached us: signed URLs point back through the same host."""
    return str(request.base_url)


ContextDep = Annotated[Context, Depends(get_context)]
SessionDep = Annotated[Session, Depends(get_session)]
WorkspaceDep = Annotated[Workspace, Depends(current_workspace)]
BaseUrlDep = Annotated[str, Depends(public_base_url)]
