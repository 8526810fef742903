"""Request and response models (the Camb-compatible ones keep Camb's field names)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

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
    """Body of ``POST /dub-alt-format/{run_id}/{language}``. Unknown keys are refused, not ignored.

    Omitted options take their defaults; each set of effective options is a different export.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # NaN and Infinity are no option's value

    output_format: OutputFormatName
    audio_bitrate: str | None = Field(
        default=None,
        examples=["128k"],
        description="'32k' to '320k'; mp3, aac, m4a, mp4, mov. Default: 192k (AAC: 128k mono, 384k 5.1).",
    )
    sample_rate: int | None = Field(
        default=None,
        examples=[48000],
        description="22050, 44100, 48000 or 96000 (or the dub's own). Default: the dub's own "
        "(48000 for mxf; at most 48000 for mp3).",
    )
    channels: Literal[1, 2, 6] | None = Field(default=None, description="Default: the dub's own.")
    loudness: Literal["ebu_r128", "atsc_a85", "streaming"] | None = Field(
        default=None,
        description="ebu_r128: -23 LUFS, -1 dBTP; atsc_a85: -24 LKFS, -2 dBTP; streaming: -14 LUFS, -1 dBTP. "
        "Default null: untouched.",
    )
    stem: Literal["mix", "voice", "background"] | None = Field(
        default=None, description="Default mix; voice and background need those stems in the run."
    )
    include_original_audio: bool | None = Field(
        default=None, description="Video formats: add the source-language audio as a second, non-default track."
    )
    subtitles: Literal["none", "soft"] | None = Field(
        default=None, description="mkv, mp4, mov: 'soft' muxes the language's transcript as a text track."
    )

    def requested_options(self) -> dict[str, Any]:
        """The option keys the client sent (not output_format)."""
        return self.model_dump(exclude_unset=True, exclude={"output_format"})


class OutputUrlOut(BaseModel):
    output_url: str = Field(description="Signed download URL of the finished export.")


class TaskIdOut(BaseModel):
    task_id: str = Field(description="Poll GET /dub-alt-format/{task_id} until it ends.")


class TaskStatusOut(BaseModel):
    """The Camb task status; ``message`` carries the measured loudness of a normalised export."""

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
