"""Tables. Every row that a client can name belongs to a workspace."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class TaskStatus(enum.StrEnum):
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    TIMEOUT = "TIMEOUT"
    PAYMENT_REQUIRED = "PAYMENT_REQUIRED"


class FileRole(enum.StrEnum):
    SOURCE = "source"
    DUB = "dub"
    VOICE = "voice"
    BACKGROUND = "background"


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # Minutes of exports this workspace may make; NULL: the server's default (ALTDUB_EXPORT_QUOTA_MINUTES).
    quota_minutes: Mapped[float | None] = mapped_column(Float)
    used_minutes: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")  # reserved by exports
    # When a worker last took a task of this workspace: the workspace served longest ago goes next.
    last_claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    webhook_url: Mapped[str | None] = mapped_column(String(2000))  # told of every export of the workspace
    # Signs every event sent for the workspace (HMAC-SHA256); kept as is: a receiver checks with the same secret.
    webhook_secret: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# Ids a client or an operator sees are never handed out twice (SQLite reuses the highest id of a
# deleted row without AUTOINCREMENT; PostgreSQL sequences never do).
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings; the key itself is never stored
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    workspace: Mapped[Workspace] = relationship()


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(500))
    source_language_id: Mapped[int] = mapped_column(Integer)
    has_video: Mapped[bool]
    duration: Mapped[float] = mapped_column(Float)
    storage_prefix: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    files: Mapped[list[RunFile]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="RunFile.id"
    )
    transcripts: Mapped[list[Transcript]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="Transcript.language_id"
    )

    def file(self, role: FileRole, language_id: int | None = None) -> RunFile | None:
        return next((f for f in self.files if f.role == role and f.language_id == language_id), None)

    @property
    def dub_language_ids(self) -> list[int]:
        """The dubbed languages in import order (the order of the upload's fields)."""
        return [f.language_id for f in self.files if f.role == FileRole.DUB and f.language_id]

    def transcript(self, language_id: int) -> Transcript | None:
        return next((t for t in self.transcripts if t.language_id == language_id), None)


class RunFile(Base):
    """One stored input of a run, with what probing it found."""

    __tablename__ = "run_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    language_id: Mapped[int | None] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(500))
    original_name: Mapped[str] = mapped_column(String(500))
    size: Mapped[int] = mapped_column(BigInteger)
    probe: Mapped[dict[str, Any]] = mapped_column(JSON)

    run: Mapped[Run] = relationship(back_populates="files")


class Transcript(Base):
    """A language's timed transcript: validated segments ``[{start, end, text, speaker}]``."""

    __tablename__ = "transcripts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    language_id: Mapped[int] = mapped_column(Integer)
    original_name: Mapped[str] = mapped_column(String(500))
    segments: Mapped[list[dict[str, Any]]] = mapped_column(JSON)

    run: Mapped[Run] = relationship(back_populates="transcripts")


LIVE_STATUSES = (TaskStatus.PENDING.value, TaskStatus.SUCCESS.value)
# Live: being made, or made and still stored (an export the lifecycle removed leaves the index: asked
# again, it is made anew by a new task).
_LIVE = text("status IN ('PENDING', 'SUCCESS') AND evicted_at IS NULL")


class ExportTask(Base):
    """The task that makes one export, and the export it made.

    At most one PENDING or SUCCESS task exists per export identity (a partial unique
    index), so identical concurrent requests converge on one row in any process.
    A failed task leaves the index and a new request starts afresh, as does one whose file the
    storage lifecycle removed (``evicted_at``; it stays SUCCESS, without a file).
    """

    __tablename__ = "export_tasks"
    __table_args__ = (
        Index(
            "uq_export_tasks_live_identity",
            "identity",
            unique=True,
            sqlite_where=_LIVE,
            postgresql_where=_LIVE,
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    language_id: Mapped[int] = mapped_column(Integer)  # the default track's language
    # Every language in track order, when there are several (a master); NULL: ``language_id`` alone.
    language_ids: Mapped[list[int] | None] = mapped_column(JSON)
    output_format: Mapped[str] = mapped_column(String(8))
    minutes: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")  # charged to the quota
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    identity: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default=TaskStatus.PENDING.value, index=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    exception_reason: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    storage_key: Mapped[str | None] = mapped_column(String(500), index=True)
    size: Mapped[int | None] = mapped_column(BigInteger)
    loudness: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # measured on the output
    # The QC report (media/qc_report.py QcReport.as_dict()), computed once as the export is made; NULL: none
    # (not finished, made before reports existed, with ALTDUB_QC_REPORTS off, or a hand-off format).
    qc_report: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # a worker is on it
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # URL handed out or downloaded
    evicted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # its file removed (lifecycle)

    @property
    def track_language_ids(self) -> list[int]:
        """The languages of the export's dubbed tracks, in order."""
        return list(self.language_ids or [self.language_id])


class TaskCallback(Base):
    """A ``callback_url`` a request gave for the task it was answered with (identical requests share a task)."""

    __tablename__ = "task_callbacks"
    __table_args__ = (UniqueConstraint("task_id", "url"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("export_tasks.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))


class WebhookEvent(Base):
    """One event for one receiver, written in the transaction of the task change it tells of (the outbox).

    ``status`` is ``pending`` until a 2xx answer (``delivered``) or until ``retry_until`` passes
    (``failed``). A sender takes it by setting ``lease_until`` with a conditional UPDATE, so one
    process at a time delivers it.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_due", "status", "next_attempt_at"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # the order events of a task are sent in
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("export_tasks.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(String(2000))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    retry_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookAttempt(Base):
    """One try at delivering an event: what the receiver answered, or why it did not."""

    __tablename__ = "webhook_attempts"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)


class AudioIntermediate(Base):
    """A dub's audio encoded once (codec, options, loudness filter) and stream-copied into every deliverable
    that carries the same stream (service/intermediates.py). ``id`` is the digest of what made it.

    One row per digest: the process whose INSERT succeeds makes the file (``ready_at`` NULL until it is
    stored); any other waits for it. Counted and removed by the storage lifecycle as exports are.
    """

    __tablename__ = "audio_intermediates"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    storage_key: Mapped[str] = mapped_column(String(500))
    size: Mapped[int | None] = mapped_column(BigInteger)
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)  # its maker started
    claimed_by: Mapped[str | None] = mapped_column(String(36))  # the maker's task: its re-run takes the claim over
    ready_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # stored: usable
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The meter's reading (media/meter.py Reading.as_dict()) of the encoded audio, taken as it was encoded: the QC
    # report of every deliverable that copies it (NULL: made without one; a copy is then measured as it is made)
    reading: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)
