"""Settings, read from ``ALTDUB_*`` environment variables (and CLI flags)."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

GIB = 1024**3


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
