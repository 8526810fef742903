"""Webhooks (spec §7): the workspace's webhook and secret, callback URLs checked, and the sender of the outbox.

Delivery is at least once: an event stays ``pending`` until a receiver answers 2xx, and is tried
again with exponential backoff and jitter for 24 h. One process at a time holds an event: a sender
takes it with a conditional UPDATE that sets ``lease_until`` (longer than a try can last), so
senders in any number of processes never send the same event at once, and an event whose sender
died is taken again when its lease has run out. Within a task, a receiver gets its events in the
order they were written: an event waits while an earlier one for the same receiver is pending.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session, aliased

from altdub.config import Settings
from altdub.db.models import ExportTask, TaskStatus, WebhookAttempt, WebhookEvent, Workspace
from altdub.outbound.addresses import AddressRefused, resolve
from altdub.outbound.http import Attempt, post
from altdub.service import outbox
from altdub.service.context import Context
from altdub.service.errors import NotFound
from altdub.service.exports import signed_url

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "altdub-signature"
SECRET_PREFIX = "whsec_"
LEASE_MARGIN_SECONDS = 30.0  # a lease outlasts the longest try by this much
POLL_SECONDS = 0.5  # how often an idle sender looks for due events
PARALLEL_SENDS = 4  # a slow receiver delays the others by at most this many tries
MAX_DELIVERIES = 500


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``: what a receiver recomputes with the secret."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def workspace_secret(session: Session, workspace_id: int) -> str:
    """The workspace's signing secret, made on first need (in the caller's transaction).

    Made with a conditional UPDATE and read back, so that two processes making it at once (a
    sender and ``GET /webhooks``) agree on one: the second's UPDATE finds it set and changes nothing.
    """
    current = select(Workspace.webhook_secret).where(Workspace.id == workspace_id)
    secret = session.execute(current).one_or_none()
    if secret is None:
        raise NotFound("workspace not found")
    if secret[0] is not None:
        return secret[0]
    session.execute(
        update(Workspace)
        .where(Workspace.id == workspace_id, Workspace.webhook_secret.is_(None))
        .values(webhook_secret=_new_secret())
        .execution_options(synchronize_session=False)
    )
    made = session.scalar(current)
    assert made is not None
    return made


def set_webhook(
    settings: Settings, session: Session, workspace_name: str, url: str | None, *, clear: bool, rotate: bool
) -> tuple[str | None, str]:
    """Set (or ``clear``) the workspace's webhook and, with ``rotate``, replace its secret: (url, secret)."""
    workspace = session.scalar(select(Workspace).where(Workspace.name == workspace_name))
    if workspace is None:
        raise NotFound(f"no workspace named {workspace_name!r}")
    if url is not None:
        outbox.check_callback_url(settings, url, "url")
        workspace.webhook_url = url
    if clear:
        workspace.webhook_url = None
    if rotate or workspace.webhook_secret is None:
        workspace.webhook_secret = _new_secret()
    return workspace.webhook_url, workspace.webhook_secret


# --- the sender ---------------------------------------------------------------------------------------------------


def _due(now: datetime) -> Any:
    """Pending, its time come, nobody holding it, and no earlier event of its task for its receiver pending."""
    earlier = aliased(WebhookEvent)
    return and_(
        WebhookEvent.status == "pending",
        WebhookEvent.next_attempt_at <= now,
        (WebhookEvent.lease_until.is_(None)) | (WebhookEvent.lease_until < now),
        ~exists().where(
            earlier.task_id == WebhookEvent.task_id,
            earlier.url == WebhookEvent.url,
            earlier.status == "pending",
            earlier.id < WebhookEvent.id,
        ),
    )


def retry_delay(settings: Settings, attempts: int) -> float:
    """Seconds before the next try: doubling from the first retry's, capped, with "equal jitter" (half random)."""
    ceiling = min(settings.webhook_max_retry_seconds, settings.webhook_first_retry_seconds * 2 ** max(attempts - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _take(ctx: Context, event_id: int) -> datetime | None:
    """Hold the event for this sender (the conditional UPDATE); the lease's end, or None when another has it.

    Taken just before its try, not when it was found due: a try that waited for a free thread
    behind slow receivers would otherwise start with its lease run out, free for another sender.
    """
    now = datetime.now(UTC)
    lease = now + timedelta(seconds=ctx.settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS)
    with ctx.sessions.begin() as session:
        taken = session.execute(
            update(WebhookEvent)
            .where(
                WebhookEvent.id == event_id,
                WebhookEvent.status == "pending",
                WebhookEvent.next_attempt_at <= now,  # not tried meanwhile by another sender
                (WebhookEvent.lease_until.is_(None)) | (WebhookEvent.lease_until < now),
            )
            .values(lease_until=lease, attempts=WebhookEvent.attempts + 1)
        ).rowcount
    return lease if taken == 1 else None


def _take_and_try(ctx: Context, event_id: int) -> bool:
    """Try the event once if this sender can take it; whether it did."""
    lease = _take(ctx, event_id)
    if lease is None:
        return False
    _try(ctx, event_id, lease)
    return True


def deliver_due(ctx: Context, pool: ThreadPoolExecutor | None = None, limit: int = 20) -> int:
    """Take the events due now and try each once; how many were tried."""
    now = datetime.now(UTC)
    with ctx.sessions() as session:
        due = list(
            session.scalars(
                select(WebhookEvent.id)
                .where(_due(now))
                .order_by(WebhookEvent.next_attempt_at, WebhookEvent.id)
                .limit(limit)
            )
        )
    if pool is None:
        return sum(_take_and_try(ctx, event_id) for event_id in due)
    return sum(pool.map(lambda event_id: _take_and_try(ctx, event_id), due))


def _try(ctx: Context, event_id: int, lease: datetime) -> None:
    """Send a held event once and record how it went (only while this sender still holds it)."""
    with ctx.sessions() as session:
        event = session.get(WebhookEvent, event_id)
        if event is None:
            return
        body = _body(ctx, session, event)
        secret = workspace_secret(session, event.workspace_id)
        session.commit()  # a secret made just now is kept
        url, attempts, retry_until = event.url, event.attempts, event.retry_until
    try:
        attempt = post(
            resolve(url, allow_private=ctx.settings.webhook_allow_private),
            body,
            {SIGNATURE_HEADER: sign(secret, int(time.time()), body)},
            ctx.settings.webhook_timeout_seconds,
        )
    except AddressRefused as exc:  # checked again at connect time: DNS may have changed since the request
        attempt = Attempt(None, 0.0, f"refused: {exc}")
    now = datetime.now(UTC)
    if attempt.delivered:
        values: dict[str, Any] = {"status": "delivered", "delivered_at": now, "lease_until": None}
    elif now >= _utc(retry_until):
        values = {"status": "failed", "lease_until": None}
    else:
        next_try = now + timedelta(seconds=retry_delay(ctx.settings, attempts))
        values = {"next_attempt_at": next_try, "lease_until": None}
    with ctx.sessions.begin() as session:
        held = session.execute(
            update(WebhookEvent).where(WebhookEvent.id == event_id, WebhookEvent.lease_until == lease).values(**values)
        ).rowcount
        session.add(
            WebhookAttempt(
                event_id=event_id, status_code=attempt.status_code, latency_ms=attempt.latency_ms, error=attempt.error
            )
        )
    if held != 1:
        log.warning("webhook event %s: the lease ran out during its try; another sender has it", event_id)


def _body(ctx: Context, session: Session, event: WebhookEvent) -> bytes:
    """The event as sent: its payload, and for a success the export's URL, signed now (fresh for the receiver)."""
    payload = dict(event.payload)
    if event.type == outbox.EventType.SUCCEEDED:
        task = session.get(ExportTask, event.task_id)
        ready = task is not None and task.status == TaskStatus.SUCCESS and task.storage_key is not None
        payload["output_url"] = signed_url(ctx, task) if ready and task is not None else None
    return json.dumps(payload, separators=(",", ":")).encode()


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Sender:
    """The outbox's sender thread of this process (``altdub serve`` and ``altdub worker`` each run one)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(PARALLEL_SENDS, thread_name_prefix="webhook")
        self._thread = threading.Thread(target=self._loop, name="webhook-sender", daemon=True)

    def start(self) -> Sender:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sent = deliver_due(self._ctx, self._pool)
            except Exception:  # a database hiccup must not end the sender: the events wait in the outbox
                log.exception("webhook sender: a pass failed; trying again")
                sent = 0
            if not sent:
                self._stop.wait(POLL_SECONDS)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._ctx.settings.webhook_timeout_seconds + 5)
        self._pool.shutdown(wait=False, cancel_futures=True)


# --- reads and redelivery -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryAttempt:
    attempted_at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None


@dataclass(frozen=True)
class Delivery:
    event_id: str
    type: str
    task_id: str
    url: str
    status: str  # pending, delivered, failed
    attempts: list[DeliveryAttempt]
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    payload: dict[str, Any]


def list_deliveries(
    session: Session, workspace_id: int, task_id: str | None = None, limit: int = 100
) -> list[Delivery]:
    """The workspace's events, newest first, each with its tries (oldest first)."""
    query = select(WebhookEvent).where(WebhookEvent.workspace_id == workspace_id)
    if task_id is not None:
        query = query.where(WebhookEvent.task_id == task_id)
    events = list(session.scalars(query.order_by(WebhookEvent.id.desc()).limit(min(max(limit, 1), MAX_DELIVERIES))))
    attempts: dict[int, list[DeliveryAttempt]] = {event.id: [] for event in events}
    if events:
        rows = session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.event_id.in_(attempts)).order_by(WebhookAttempt.id)
        )
        for row in rows:
            attempts[row.event_id].append(
                DeliveryAttempt(_utc(row.attempted_at), row.status_code, row.latency_ms, row.error)
            )
    return [
        Delivery(
            event_id=event.event_id,
            type=event.type,
            task_id=event.task_id,
            url=event.url,
            status=event.status,
            attempts=attempts[event.id],
            created_at=_utc(event.created_at),
            next_attempt_at=_utc(event.next_attempt_at) if event.status == "pending" else None,
            delivered_at=_utc(event.delivered_at) if event.delivered_at else None,
            payload=event.payload,
        )
        for event in events
    ]


def redeliver(session: Session, workspace_id: int, event_id: str) -> None:
    """Send an event again now (delivered, failed or pending), with the same ``event_id``, tried for another 24 h."""
    now = datetime.now(UTC)
    result = session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.event_id == event_id, WebhookEvent.workspace_id == workspace_id)
        .values(status="pending", next_attempt_at=now, retry_until=now + outbox.RETRY_FOR)
    )
    if result.rowcount != 1:
        raise NotFound("event not found")
