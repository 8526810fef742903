"""The workspace's webhook deliveries: every event with its tries, redelivery, and the signing secret."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field

from altdub.api.deps import SessionDep, WorkspaceDep
from altdub.service import webhooks

router = APIRouter(tags=["webhooks"])


class WebhookOut(BaseModel):
    url: str | None = Field(description="The workspace's webhook, told of every export (`altdub workspaces webhook`).")
    signing_secret: str = Field(
        description='Verifies the `altdub-signature` header: `t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.'
    )


class AttemptOut(BaseModel):
    attempted_at: datetime
    status_code: int | None = Field(description="The receiver's answer; null when none came (timeout, refused).")
    latency_ms: float
    error: str | None


class DeliveryOut(BaseModel):
    event_id: str = Field(description="The same on every try of the event.")
    type: str = Field(examples=["export.succeeded"])
    task_id: str
    url: str
    status: str = Field(description="pending (tried again later), delivered (a 2xx), failed (24 h without one).")
    attempts: list[AttemptOut]
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    payload: dict[str, Any] = Field(description="The event as written (a success's output_url is signed when sent).")


@router.get("/webhooks", response_model=WebhookOut)
def webhook(session: SessionDep, workspace: WorkspaceDep) -> WebhookOut:
    """The workspace's webhook and the secret its events (and callbacks') are signed with."""
    secret = webhooks.workspace_secret(session, workspace.id)
    session.commit()
    return WebhookOut(url=workspace.webhook_url, signing_secret=secret)


@router.get("/webhooks/deliveries", response_model=list[DeliveryOut])
def deliveries(
    session: SessionDep,
    workspace: WorkspaceDep,
    task_id: Annotated[str | None, Query(max_length=36, description="Only this export task's events.")] = None,
    limit: Annotated[int, Query(ge=1, le=webhooks.MAX_DELIVERIES)] = 100,
) -> list[DeliveryOut]:
    """The workspace's events, newest first, each with every try: status code, latency, error."""
    found = webhooks.list_deliveries(session, workspace.id, task_id, limit)
    return [DeliveryOut.model_validate(d, from_attributes=True) for d in found]


@router.post(
    "/webhooks/deliveries/{event_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    responses={404: {"description": "Unknown event, or another workspace's."}},
)
def redeliver(event_id: str, session: SessionDep, workspace: WorkspaceDep) -> Response:
    """Send the event again, now, with the same event_id (tried for another 24 h until a 2xx)."""
    webhooks.redeliver(session, workspace.id, event_id)
    session.commit()
    return Response(status_code=status.HTTP_202_ACCEPTED)
