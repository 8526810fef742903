"""A run's hand-off timeline for audio post (spec §5): which stems, where it starts, its clips.

``stored_inputs`` names the run's files a hand-off reads; ``plan`` lays them on a ``Timeline`` (files in
scratch named as spec §5 names them) with the FFmpeg run that renders them. service/conversion.py runs
it, checks the stems and hands the timeline to the format's writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from altdub import languages
from altdub.db.models import FileRole, Run, RunFile
from altdub.media.handoff import StemSource, stems_plan
from altdub.media.options import ExportOptions
from altdub.media.probe import MediaInfo
from altdub.media.timecode import timecode_problem
from altdub.media.timeline import (
    HANDOFF_SAMPLE_RATE,
    NO_PICTURE_FRAME_RATE,
    Clip,
    LanguageClips,
    Role,
    Stem,
    Timeline,
)
from altdub.media.transcripts import Segment

MIDNIGHT = "00:00:00:00"  # the start of a source without a timecode of its own (spec §3)


@dataclass(frozen=True)
class HandoffPlan:
    timeline: Timeline
    args: list[str]  # FFmpeg's, rendering every stem of the timeline


def stored_inputs(run: Run, chosen: list[languages.Language]) -> list[RunFile]:
    """Every stored file the hand-off reads: per language its mix and voice stem, the background, the source."""
    wanted = [(role, language.id) for language in chosen for role in (FileRole.DUB, FileRole.VOICE)]
    wanted += [(FileRole.BACKGROUND, None), (FileRole.SOURCE, None)]
    return [file for role, language_id in wanted if (file := run.file(role, language_id)) is not None]


def plan(
    run: Run, chosen: list[languages.Language], options: ExportOptions, paths: dict[str, Path], scratch: Path
) -> HandoffPlan:
    """The timeline of ``chosen`` (in track order) and how to render it; ``paths``: local copies by storage key."""
    name = f"run-{run.id}"
    stems: list[Stem] = []
    sources: list[StemSource] = []

    def add(file: RunFile, role: Role, language: languages.Language | None, label: str) -> Stem:
        stream = MediaInfo.from_json(file.probe).audio[0]
        stem = Stem(
            scratch / f"{name}_{label}.wav",
            role,
            language.short_name if language else None,
            language.name if language else None,
            stream.channels or 2,
        )
        stems.append(stem)
        sources.append(StemSource(paths[file.storage_key], stream))
        return stem

    cut_from: dict[int, Stem] = {}  # per language, the stem its clips are cut from: its voice, else its mix
    for language in chosen:
        mix = run.file(FileRole.DUB, language.id)
        assert mix is not None, f"run {run.id} has no dub for {language.short_name}"
        cut_from[language.id] = add(mix, "mix", language, f"{language.short_name}_mix")
        voice = run.file(FileRole.VOICE, language.id)
        if voice is not None:
            cut_from[language.id] = add(voice, "voice", language, f"{language.short_name}_voice")
    background = run.file(FileRole.BACKGROUND)
    if background is not None:
        add(background, "me", None, "ME")
    source = run.file(FileRole.SOURCE)
    source_info = MediaInfo.from_json(source.probe) if source is not None else None
    if source is not None and source_info is not None and source_info.audio:
        source_language = languages.by_id(run.source_language_id)
        add(source, "original", source_language, f"{source_language.short_name}_original")

    start, frame_rate = _start(options, source_info)
    duration = round(run.duration * HANDOFF_SAMPLE_RATE)
    clips = tuple(
        LanguageClips(language.short_name, cut_from[language.id], _clips(transcript.segments, duration))
        for language in chosen
        if (transcript := run.transcript(language.id)) is not None
    )
    timeline = Timeline(name, duration, start, frame_rate, tuple(stems), clips)
    created = run.created_at if run.created_at.tzinfo else run.created_at.replace(tzinfo=UTC)
    return HandoffPlan(timeline, stems_plan(timeline, sources, run.name, created.astimezone(UTC)))


def _start(options: ExportOptions, source: MediaInfo | None) -> tuple[str, float]:
    """The start timecode and the frame rate it counts in (spec §3).

    The option, else the source's own timecode (when valid at its rate), else midnight; the rate is the
    source picture's, else ``NO_PICTURE_FRAME_RATE`` (the option was checked against the same rate).
    """
    video = source.video[0] if source is not None and source.video else None
    frame_rate = video.frame_rate if video is not None and video.frame_rate else NO_PICTURE_FRAME_RATE
    own = source.timecode if source is not None else None
    if own is not None and timecode_problem(own, frame_rate) is not None:
        own = None
    return options.start_timecode or own or MIDNIGHT, frame_rate


def _clips(segments: list[dict[str, object]], duration: int) -> tuple[Clip, ...]:
    """The transcript's segments in samples, inside the programme (a cue may run past it by 50 ms)."""
    clips: list[Clip] = []
    for segment in (Segment(**s) for s in segments):  # type: ignore[arg-type]
        start = min(round(segment.start * HANDOFF_SAMPLE_RATE), duration)
        end = min(round(segment.end * HANDOFF_SAMPLE_RATE), duration)
        if end > start:
            clips.append(Clip(len(clips) + 1, start, end, segment.speaker, segment.text))
    return tuple(clips)
