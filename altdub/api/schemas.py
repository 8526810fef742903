"""Request and response models (the Camb-compatible ones keep Camb's field names)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from altdub import languages
from altdub.db.models import Run, TaskStatus
from altdub.media.probe import MediaInfo

OutputFormatName = Literal["flac", "wav", "mp3", "aac", "m4a", "mp4", "mov", "mkv", "mxf"]


class LanguageOut(BaseModel):
    id: int = Field(examples=[1])
    language: str = Field(examples=["English (United States)"])
    short_name: str = Field(examples=["en-us"])

    @classmethod
    def of(cls, language_id: int) -> LanguageOut:
        lang = languages.by_id(language_id)
        return cls(id=lang.id, language=lang.name, short_name=lang.short_name)


class ExportRequest(BaseModel):
    """Body of ``POST /dub-alt-format/{run_id}/{language}``. Unknown keys are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    output_format: OutputFormatName


class OutputUrlOut(BaseModel):
    output_url: str = Field(description="Signed download URL of the finished export.")


class TaskIdOut(BaseModel):
    task_id: str = Field(description="Poll GET /dub-alt-format/{task_id} until it ends.")


class TaskStatusOut(BaseModel):
    status: TaskStatus
    run_id: int
    exception_reason: str | None
    message: str | None
    progress: int = Field(ge=0, le=100)
    output_url: str | None = Field(default=None, description="Present on SUCCESS only.")


class RunFileOut(BaseModel):
    role: str
    language: LanguageOut | None
    original_name: str
    size: int
    duration: float
    codecs: list[str]


class RunOut(BaseModel):
    run_id: int
    name: str
    source_language: LanguageOut
    has_video: bool
    duration: float
    created_at: datetime
    languages: list[LanguageOut]
    files: list[RunFileOut]

    @field_validator("created_at")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        """SQLite returns naive datetimes; every stored time is UTC."""
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @classmethod
    def of(cls, run: Run) -> RunOut:
        files = []
        for f in run.files:
            info = MediaInfo.from_json(f.probe)
            files.append(
                RunFileOut(
                    role=f.role,
                    language=LanguageOut.of(f.language_id) if f.language_id else None,
                    original_name=f.original_name,
                    size=f.size,
                    duration=info.duration,
                    codecs=[s.codec for s in info.streams],
                )
            )
        return cls(
            run_id=run.id,
            name=run.name,
            source_language=LanguageOut.of(run.source_language_id),
            has_video=run.has_video,
            duration=run.duration,
            created_at=run.created_at,
            languages=[LanguageOut.of(i) for i in run.dub_language_ids],
            files=files,
        )


class RunPage(BaseModel):
    items: list[RunOut]
    page: int
    page_size: int
    total: int
