"""Request and response models (the Camb-compatible ones keep Camb's field names)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from altdub import languages
from altdub.db.models import Run, TaskStatus
from altdub.media import catalogue, timecode
from altdub.media.catalogue import CATALOGUE
from altdub.media.probe import MediaInfo

# The enums of the request schema, built from the catalogue (Literal takes a tuple at run time).
OutputFormatName = Literal[catalogue.FORMAT_NAMES]  # type: ignore[valid-type]
ChannelCount = Literal[catalogue.union([f.channels for f in CATALOGUE.values()])]  # type: ignore[valid-type]
LoudnessName = Literal[tuple(catalogue.LOUDNESS_TARGETS)]  # type: ignore[valid-type]
StemName = Literal[catalogue.STEMS]  # type: ignore[valid-type]
SubtitleMode = Literal[catalogue.SUBTITLE_MODES]  # type: ignore[valid-type]
RasterMode = Literal[catalogue.RASTER_MODES]  # type: ignore[valid-type]


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
    audio_bitrate: str | None = Field(default=None, examples=["128k"], description=catalogue.describe_bitrates())
    sample_rate: int | None = Field(default=None, examples=[48000], description=catalogue.describe_sample_rates())
    channels: ChannelCount | None = Field(default=None, description=catalogue.describe_channels())
    loudness: LoudnessName | None = Field(default=None, description=catalogue.describe_loudness())
    stem: StemName | None = Field(default=None, description=catalogue.describe_stems())
    include_original_audio: bool | None = Field(default=None, description=catalogue.describe_original_audio())
    subtitles: SubtitleMode | None = Field(default=None, description=catalogue.describe_subtitles())
    raster: RasterMode | None = Field(default=None, description=catalogue.describe_raster())
    start_timecode: str | None = Field(
        default=None, examples=[timecode.EXAMPLE], description=catalogue.describe_start_timecode()
    )

    callback_url: str | None = Field(
        default=None,
        max_length=2000,
        examples=["https://example.com/altdub-events"],
        description="Told of the task's events (export.progress, export.succeeded, export.failed), signed with the "
        "workspace's secret; a public http(s) URL. Not part of the export: identical requests share the task and "
        "each callback is told. An export answered at once with its output_url sends none.",
    )

    def requested_options(self) -> dict[str, Any]:
        """The option keys the client sent (not output_format, the callback, nor ``RunExportRequest``'s languages)."""
        return self.model_dump(
            exclude_unset=True, exclude={"output_format", "callback_url", "languages", "default_language"}
        )


LanguageName = Annotated[StrictStr, Field(max_length=40)] | StrictInt


class RunExportRequest(ExportRequest):
    """Body of ``POST /runs/{run_id}/exports``: the Camb options, and the languages of the tracks (spec §1)."""

    languages: list[LanguageName] | Literal["all"] | None = Field(
        default=None,
        max_length=len(languages.all_languages()),
        examples=[["es-es", "fr-fr"]],
        description="Language ids or short_names in track order, or 'all'; omitted: every dubbed language of the "
        f"run in import order. Several only for {', '.join(catalogue.multilingual())}.",
    )
    default_language: LanguageName | None = Field(
        default=None, examples=["fr-fr"], description="The default track: one of `languages`. Default: the first."
    )

    def language_names(self) -> tuple[str, ...] | None:
        """The languages as the client named them; None for every language of the run."""
        if self.languages is None or self.languages == "all":
            return None
        return tuple(str(value) for value in self.languages)


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


class OptionValuesOut(BaseModel):
    """The values an option takes in one format."""

    values: list[Any] = Field(description="Every value taken (audio_bitrate: the usual steps between min and max).")
    default: Any = Field(
        default=None, description="The default; null: the dub's own (loudness: untouched). audio_bitrate: by channels."
    )
    min: str | None = Field(default=None, description="audio_bitrate only: the lowest bitrate taken.")
    max: str | None = Field(default=None, description="audio_bitrate only: the highest bitrate taken.")
    pattern: str | None = Field(default=None, description="start_timecode only: the form a value takes (a regex).")


class LoudnessTargetOut(BaseModel):
    name: str
    label: str
    integrated: float = Field(description="LUFS (LKFS).")
    true_peak: float = Field(description="dBTP ceiling.")
    tolerance: float = Field(description="LU either side of the target that the QC report passes.")
    dialogue_gated: bool = Field(
        description="Measured over speech only: the transcript's segments, else the voice stem's."
    )
    lra: float | None = Field(description="Most loudness range (LU) the QC report passes; null: reported, not checked.")


class FormatOut(BaseModel):
    """One output format of the catalogue: what it is, and each option that applies with its allowed values."""

    name: str = Field(examples=["mp3"])
    label: str = Field(examples=["MP3"])
    note: str
    extension: str = Field(examples=["mp3"])
    content_type: str = Field(examples=["audio/mpeg"])
    muxer: str = Field(description="FFmpeg's muxer.", examples=["mp3"])
    audio_codecs: list[str] = Field(description="FFmpeg's encoders; 'copy' when the dub may go in as it is.")
    is_video: bool = Field(description="Carries the source's picture (the run needs a video source).")
    multiple_languages: bool = Field(description="Can carry one audio track per language.")
    package_entry: str | None = Field(
        description="A streaming package (a folder of files): the file its output_url points at; the whole "
        "folder is package.zip beside it. Null: the export is one file.",
        examples=["master.m3u8"],
    )
    options: dict[str, OptionValuesOut] = Field(description="Only the options that apply to the format.")

    @classmethod
    def of(cls, fmt: catalogue.Format) -> FormatOut:
        return cls(
            name=fmt.name,
            label=fmt.label,
            note=fmt.note,
            extension=fmt.extension,
            content_type=fmt.content_type,
            muxer=fmt.muxer,
            audio_codecs=list(fmt.audio_codecs),
            is_video=fmt.is_video,
            multiple_languages=fmt.multiple_languages,
            package_entry=fmt.package_entry,
            options={key: OptionValuesOut(**values) for key, values in fmt.options().items()},
        )


class FormatsOut(BaseModel):
    formats: list[FormatOut]
    loudness_targets: list[LoudnessTargetOut]
