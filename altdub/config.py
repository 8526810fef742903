"""Settings, read from ``ALTDUB_*`` environment variables (and CLI flags)."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KIB = 1024
MIB = 1024**2
GIB = 1024**3
SERVE_HOST = "127.0.0.1"  # where `altdub serve` listens unless told otherwise
SERVE_PORT = 8000


def served_url(host: str, port: int) -> str:
    """The URL of ``altdub serve --host HOST --port PORT`` (an IPv6 address in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALTDUB_", extra="ignore")

    data_dir: Path = Field(default=Path("./altdub-data"), description="Embedded database, files and secrets.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite in data_dir if unset.")
    storage_url: str | None = Field(default=None, description="file:// path; data_dir/files if unset.")
    broker_url: str | None = Field(default=None, description="Redis URL: conversions go to `altdub worker`s.")
    redelivery_margin: float = Field(
        default=60.0, gt=10, description="Seconds past the time limit before a dead worker's task is redelivered."
    )
    secret_key: str | None = Field(default=None, description="HMAC key for signed URLs; generated if unset.")
    workers: int = Field(default=2, ge=1, description="In-process conversion threads.")
    task_time_limit: float = Field(default=3600.0, gt=0, description="Seconds before a conversion is killed.")
    url_ttl: int = Field(default=3600, gt=0, description="Lifetime of signed download URLs in seconds.")
    max_upload_bytes: int = Field(default=5 * GIB, gt=0, description="Largest accepted file in an import.")
    max_video_pixels: int = Field(
        default=4096 * 4096,
        gt=0,
        description="Largest video frame accepted in an import, as width x height: each FFmpeg holds frames of it "
        "(8192x8192 takes about 1 GiB). The default admits DCI 4K, UHD and 5K, not 8K.",
    )
    max_video_frame_rate: float = Field(
        default=300.0, gt=0, description="Fastest video accepted in an import, in frames a second (240 fps is in use)."
    )
    max_audio_sample_rate: int = Field(
        default=384_000, gt=0, description="Highest audio sample rate accepted in an import (Hz): DXD's 352.8k, 384k."
    )
    max_audio_channels: int = Field(
        default=24, gt=0, description="Most audio channels in a stream accepted in an import: 22.2, the largest layout."
    )
    max_audio_packets: int = Field(
        default=5_000_000,
        gt=0,
        description="Most audio packets in a file accepted in an import: the probe reads each (a few µs), so this "
        "bounds its cost; 5 million hold 29 h of AAC or 28 h of Opus.",
    )
    max_json_bytes: int = Field(
        default=64 * KIB, gt=0, description="Largest request body other than an import's multipart upload (413)."
    )
    max_header_bytes: int = Field(
        default=64 * KIB, ge=4 * KIB, description="Largest request line and headers, together (431, then closed)."
    )
    header_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a connection has to send a request's line and headers (then closed)."
    )
    body_idle_timeout: float = Field(
        default=60.0, gt=0, description="Seconds a request body may make no progress before its connection is closed."
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Connections (or requests in progress) served at once; requests beyond are answered 503.",
    )
    identity_cache_bytes: int = Field(
        default=4 * MIB, ge=64 * KIB, description="Memory for the cache of which export a request resolves to."
    )
    export_quota_minutes: float | None = Field(
        default=None, ge=0, description="Minutes of exports per workspace (unset: unlimited); per-workspace override."
    )
    max_pending_tasks: int = Field(
        default=20,
        ge=1,
        description="Export tasks a workspace may have waiting or running at once; more is a 429 with Retry-After.",
    )
    max_waiting_requests: int = Field(
        default=1000,
        ge=0,
        description="Long-polling requests (?wait=) held open at once per process; beyond it they answer at once.",
    )
    fsync: bool = Field(
        default=False,
        description="Flush each stored file and each SQLite commit to disk (power-cut durability).",
    )
    create_demo: bool = Field(default=True, description="Make a demo run on the first start.")
    qc_reports: bool = Field(
        default=True,
        description="Measure every export as it is made and store its QC report (off: no report; the benchmark's "
        "baseline).",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL of signed download links, as clients reach the service (e.g. https://dub.example.com); "
        "unset: the address `altdub serve` listens on. Never taken from a request's Host header.",
    )
    shutdown_grace: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a stopping server lets open requests finish (a stalled upload, a long poll) "
        "before it cancels them and exits.",
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Let callback URLs and webhooks reach private, loopback and link-local addresses "
        "(a receiver on the same network); off, they are refused with a 422.",
    )
    webhook_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a webhook receiver has to answer an event before the try counts failed.",
    )
    webhook_first_retry_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Wait before the first retry of an undelivered event; each retry doubles it (with jitter) "
        "up to ALTDUB_WEBHOOK_MAX_RETRY_SECONDS, for 24 h.",
    )
    webhook_max_retry_seconds: float = Field(
        default=3600.0, gt=0, description="Longest wait between two tries of an undelivered event."
    )
    webhook_progress_seconds: float = Field(
        default=10.0, gt=0, description="Least time between two export.progress events of a task."
    )
    export_ttl_days: float | None = Field(
        default=None,
        gt=0,
        description="Exports not used (URL handed out or downloaded) for this many days are removed; unset: kept.",
    )
    storage_budget_gb: float | None = Field(
        default=None,
        gt=0,
        description="Past this many GB stored (inputs and exports), the least recently used exports are removed; "
        "unset: no budget.",
    )

    @field_validator("public_url")
    @classmethod
    def _absolute_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("expected an http(s) URL with a host and no query, e.g. https://dub.example.com")
        return value.rstrip("/")

    @property
    def effective_public_url(self) -> str:
        return self.public_url or served_url(SERVE_HOST, SERVE_PORT)

    @cached_property
    def resolved_data_dir(self) -> Path:
        path = self.data_dir.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_data_dir / 'altdub.db'}"

    @property
    def effective_storage_url(self) -> str:
        return self.storage_url or f"file://{self.resolved_data_dir / 'files'}"

    @property
    def scratch_root(self) -> Path:
        return self.resolved_data_dir / "tmp"

    @property
    def staging_dir(self) -> Path:
        """This process's scratch space for uploads and conversions.

        On the data volume, so that publishing is a rename; one folder per process, so that a
        restart can remove what a dead process left (see ``remove_stale_scratch``).
        """
        path = self.scratch_root / str(os.getpid())
        path.mkdir(parents=True, exist_ok=True)
        return path

    def effective_secret_key(self) -> str:
        """The configured key, else one generated once and kept (mode 0600) in the data directory."""
        if self.secret_key:
            return self.secret_key
        path = self.resolved_data_dir / "secret.key"
        if not path.exists():
            import secrets

            fd = path.open("x", encoding="ascii")
            path.chmod(0o600)
            with fd:
                fd.write(secrets.token_urlsafe(48))
        return path.read_text(encoding="ascii").strip()
