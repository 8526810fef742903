"""QC reports (spec §6): every SUCCESS export measured once, as it is made, and checked; stored with its task.

``check_dialogue_gate`` runs when the export is asked for (service/exports.py: a dialogue-gated preset
needs speech regions for each dubbed language, else a 422). The conversion (service/conversion.py)
then takes ``track_speech`` (each audio track's speech regions: the dialogue gate of the normalisation
and of the report), ``tap`` (the meter appended to its encoding command, reading the encoder's output;
``measure_output`` measures the file after instead where an audio stream is copied), and
``build_report`` on the checked output (``package_info`` describes a streaming package's renditions).
``report_for`` reads a stored report back for the endpoint, the dashboard and the CLI. A hand-off's
report (its stems) is ``service/qc_handoff.py``'s.

The checks (``Check.name``): ``duration`` (the file against the source, and each track's own audio:
a dub shorter than the picture is padded with silence, a longer one cut), ``integrated_loudness`` or,
for a dialogue-gated preset, ``dialogue_loudness`` (within the preset's tolerance), ``true_peak``
(under its ceiling), ``loudness_range`` (where the preset bounds it), ``clipping`` (no sample at full
scale), ``silence_in_speech`` (no silence of 3 s or more inside speech), ``track_tags`` (language and
title as asked, as far as the container carries them), ``default_track``, ``timecode`` (the option's,
else the source's) and ``audio_start`` (against the picture's). Without a preset, the loudness figures
are reported and only the objective checks are made. A failed check makes ``passed`` false; the export
is SUCCESS and delivered all the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from altdub import languages
from altdub.db.models import ExportTask, FileRole, Run, TaskStatus
from altdub.media import meter
from altdub.media.catalogue import Format, LoudnessTarget
from altdub.media.formats import AudioTrack, ExportInputs, written_language
from altdub.media.meter import Limits, Reading, Regions
from altdub.media.options import ExportOptions
from altdub.media.packaging import audio_renditions
from altdub.media.probe import MediaInfo, StreamInfo
from altdub.media.qc_report import DIALOGUE_GATE_NOTE, Check, QcReport, Series, Target, TrackReport
from altdub.service.context import Context
from altdub.service.errors import InvalidInput, NoReport, NotFound

DURATION_TOLERANCE = 0.05  # seconds (spec §4): the output, each track's audio, the audio's start
MAX_POINTS = 600  # per series: a 60-minute track is plotted every 6 s
MIN_SERIES_STEP = 1.0  # seconds: short programmes are plotted every second


@dataclass(frozen=True)
class Speech:
    """The dialogue gate of one audio track: where its speech is, and what told."""

    regions: Regions | None  # None: nothing tells where the speech is
    source: str  # "transcript", "voice stem" or "none"


def check_dialogue_gate(run: Run, chosen: Sequence[languages.Language], target: LoudnessTarget | None) -> None:
    """At request time: a dialogue-gated preset needs a transcript or a voice stem for each dubbed language."""
    if target is None or not target.dialogue_gated:
        return
    missing = [
        lang.short_name
        for lang in chosen
        if run.transcript(lang.id) is None and run.file(FileRole.VOICE, lang.id) is None
    ]
    if missing:
        raise InvalidInput(
            "loudness",
            f"{target.name} measures dialogue only: run {run.id} has neither a transcript nor a voice stem for "
            f"{', '.join(missing)} (import transcript_<language> or voice_<language>)",
        )


def track_speech(
    ctx: Context,
    run: Run,
    chosen: Sequence[languages.Language],
    options: ExportOptions,
    duration: float,
    limits: Limits,
) -> list[Speech]:
    """The speech regions of each audio track, in track order: the dubs, then the original when it is included.

    A dub's: its language's transcript segments, else its voice stem's active regions (one FFmpeg pass
    on the stem), else none. The original's: the source language's transcript, if any.
    """
    speech = [_dub_speech(ctx, run, language, duration, limits) for language in chosen]
    if options.include_original_audio:
        transcript = run.transcript(run.source_language_id)
        if transcript is not None:
            speech.append(Speech(segment_regions(transcript.segments, duration), "transcript"))
        else:
            speech.append(Speech(None, "none"))
    return speech


def _dub_speech(ctx: Context, run: Run, language: languages.Language, duration: float, limits: Limits) -> Speech:
    transcript = run.transcript(language.id)
    if transcript is not None:
        return Speech(segment_regions(transcript.segments, duration), "transcript")
    voice = run.file(FileRole.VOICE, language.id)
    if voice is None:
        return Speech(None, "none")
    stream = MediaInfo.from_json(voice.probe).audio[0].index
    with ctx.storage.local_copy(voice.storage_key) as path:
        return Speech(meter.active_regions(path, f"0:{stream}", duration, limits), "voice stem")


def segment_regions(segments: list[dict], duration: float) -> Regions:
    """Transcript segments as regions: in order, overlapping ones joined, within the programme."""
    spans = sorted((max(0.0, float(s["start"])), min(duration, float(s["end"]))) for s in segments)
    regions: list[tuple[float, float]] = []
    for start, end in spans:
        if end <= start:
            continue
        if regions and start <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(regions[-1][1], end))
        else:
            regions.append((start, end))
    return tuple((round(a, 3), round(b, 3)) for a, b in regions)


def programmes(fmt: Format, options: ExportOptions, info: MediaInfo, tracks: int) -> list[list[str]]:
    """The output's audio programmes as FFmpeg stream labels: a stream per track, or MXF's per-channel streams."""
    per_track = options.channels if fmt.track_per_channel else 1
    streams = [f"0:{s.index}" for s in info.audio]
    return [streams[i * per_track : (i + 1) * per_track] for i in range(tracks)]


def readings_wanted(qc_reports: bool, options: ExportOptions) -> bool:
    """Whether an export's audio is measured: for its QC report (``qc_reports``, the setting), or to check the
    loudness target it was asked for."""
    return qc_reports or options.loudness_target is not None


def measure_output(
    path: Path, fmt: Format, options: ExportOptions, info: MediaInfo, tracks: int, limits: Limits
) -> list[Reading]:
    """The meter's reading of each audio programme of an output, in one FFmpeg pass."""
    return meter.read_programmes(path, programmes(fmt, options, info, tracks), limits=limits)


def package_info(folder: Path, fmt: Format) -> MediaInfo:
    """A finished streaming package's audio renditions as a probe: their tags from the master playlist, their
    length from their media playlists (their audio was measured as it was encoded: ``tap``)."""
    renditions = audio_renditions(folder)
    streams = [
        StreamInfo(index=n, kind="audio", codec="aac", language=r.language, title=r.name, default=r.default)
        for n, r in enumerate(renditions)
    ]
    return MediaInfo(fmt.muxer, max((r.duration for r in renditions), default=0.0), streams)


def tap(delivery: Delivery, args: list[str], folder: Path) -> meter.Tap | None:
    """The meter on the audio an encoding command writes (its output file 0: the picture first, then each
    track's stream, or MXF's stream per channel); None when a track is copied, not encoded (Matroska keeps
    a dub as it is): no loopback decoder can read it, so the file is measured after."""
    per_track = delivery.options.channels if delivery.fmt.track_per_channel else 1
    first = 1 if delivery.fmt.is_video else 0
    count = per_track * len(delivery.tracks)
    if any(args[i] == f"-c:a:{n}" and args[i + 1] == "copy" for i in range(len(args) - 1) for n in range(count)):
        return None
    streams = [f"0:{first + n}" for n in range(count)]
    programmes = [streams[i : i + per_track] for i in range(0, count, per_track)]
    return meter.Tap(folder, programmes, delivery.inputs.duration)


@dataclass(frozen=True)
class Delivery:
    """What an output is checked against: what was asked for, and what the conversion was given."""

    fmt: Format
    options: ExportOptions
    inputs: ExportInputs
    names: Sequence[str]  # each audio track's language short_name, in track order
    speech: Sequence[Speech]  # each audio track's dialogue gate

    @property
    def tracks(self) -> tuple[AudioTrack, ...]:
        return self.inputs.audio_tracks(self.options)

    @property
    def start_timecode(self) -> str | None:
        return self.options.start_timecode or self.inputs.timecode


def build_report(delivery: Delivery, info: MediaInfo, readings: Sequence[Reading]) -> QcReport:
    """The report of an output (``info``: its probe; ``readings``: the meter's, one per audio track)."""
    target = delivery.options.loudness_target
    tracks = [_track_report(delivery, number, reading) for number, reading in enumerate(readings)]
    checks = [_duration_check(info.duration, delivery.inputs.duration)]
    notes: list[str] = []
    for number, track in enumerate(tracks):
        checks += _track_duration_checks(delivery.tracks[number], delivery.inputs.duration, number)
        checks += _loudness_checks(target, track, delivery.speech[number], number, notes)
        checks += signal_checks(track, delivery.speech[number].source)
    checks += _tag_checks(delivery, info)
    checks += _picture_checks(delivery, info)
    if any(speech.regions is not None for speech in delivery.speech):  # a dialogue figure is reported
        notes.append(DIALOGUE_GATE_NOTE)
    for number, speech in enumerate(delivery.speech):
        if speech.regions is None:
            notes.append(f"track {number} ({delivery.names[number]}): no transcript or voice stem, no speech regions")
    if delivery.fmt.track_per_channel:
        notes.append(_mxf_note(delivery))
    return QcReport(
        preset=target.name if target else None,
        target=Target(target.integrated, target.tolerance, target.true_peak, target.dialogue_gated) if target else None,
        passed=all(c.passed for c in checks),
        checks=tuple(checks),
        tracks=tuple(tracks),
        duration=round(info.duration, 3),
        source_duration=round(delivery.inputs.duration, 3),
        notes=tuple(notes),
    )


def _track_report(delivery: Delivery, number: int, reading: Reading) -> TrackReport:
    return track_report(
        reading,
        delivery.speech[number].regions,
        index=number,
        language=delivery.names[number],
        title=delivery.tracks[number].title,
        default=number == delivery.inputs.default_dub,
        role="original" if number >= len(delivery.inputs.dubs) else "dub",
    )


def track_report(
    reading: Reading, regions: Regions | None, *, index: int, language: str | None, title: str, default: bool, role: str
) -> TrackReport:
    """A track's figures and plotted series from the meter's reading (``regions``: its speech, if known)."""
    integrated = reading.integrated if reading.integrated > meter.ABSOLUTE_GATE else None
    dialogue = reading.gated_loudness(regions) if regions is not None else None
    return TrackReport(
        index=index,
        language=language,
        title=title,
        default=default,
        role=role,
        integrated=_rounded(integrated),
        dialogue_integrated=_rounded(dialogue),
        true_peak=round(max(reading.peak, -120.0), 2),
        lra=round(reading.lra, 1),
        clipped_samples=reading.clipped_samples,
        short_term=series(reading.short_term, reading.duration, power_mean),
        true_peak_series=series(reading.true_peak, reading.duration, max),
        speech=regions or (),
        silences=reading.silences_within(regions) if regions else (),
    )


def signal_checks(track: TrackReport, speech_source: str) -> list[Check]:
    """What a track's samples must not hold: any at full scale, or a long silence inside its speech."""
    checks = [
        Check(
            "clipping",
            "no sample at full scale",
            f"{track.clipped_samples} samples",
            not track.clipped_samples,
            track.index,
        )
    ]
    if track.speech:
        found = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in track.silences) or "none"
        expected = f"no silence of {meter.SILENCE_SECONDS:g} s or more in speech ({speech_source})"
        checks.append(Check("silence_in_speech", expected, found, not track.silences, track.index))
    return checks


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def series_step(duration: float) -> float:
    """Seconds between two plotted points: every second, or coarser so that a series has at most MAX_POINTS."""
    return max(MIN_SERIES_STEP, float(math.ceil(duration / MAX_POINTS)))


def series(values: tuple[float, ...], duration: float, combine: Callable[[list[float]], float]) -> Series:
    """``values`` (one per meter STEP) combined over each plotted step; None where all are below the gate."""
    step = series_step(duration)
    per_point = round(step / meter.STEP)
    points: list[float | None] = []
    for start in range(0, len(values), per_point):
        heard = [v for v in values[start : start + per_point] if v > meter.ABSOLUTE_GATE]
        points.append(round(combine(heard), 1) if heard else None)
    return Series(step, tuple(points))


def power_mean(levels: list[float]) -> float:
    return 10 * math.log10(sum(10 ** (v / 10) for v in levels) / len(levels))


def _duration_check(output: float, source: float) -> Check:
    return Check(
        "duration",
        f"{source:.3f} s (the source) ± {DURATION_TOLERANCE:g}",
        f"{output:.3f} s",
        abs(output - source) <= DURATION_TOLERANCE,
    )


def _track_duration_checks(track: AudioTrack, programme: float, number: int) -> list[Check]:
    """A track whose audio is shorter than the programme was padded with silence; longer, cut."""
    difference = track.duration - programme
    if abs(difference) <= DURATION_TOLERANCE:
        return []
    what = f"padded with {-difference:.3f} s of silence" if difference < 0 else f"cut by {difference:.3f} s"
    return [
        Check(
            "duration",
            f"its audio lasts {programme:.3f} s (the source) ± {DURATION_TOLERANCE:g}",
            f"{track.duration:.3f} s: {what}",
            False,
            number,
        )
    ]


def _loudness_checks(
    target: LoudnessTarget | None, track: TrackReport, speech: Speech, number: int, notes: list[str]
) -> list[Check]:
    if target is None:
        return []
    low, high = target.integrated - target.tolerance, target.integrated + target.tolerance
    expected = f"{target.integrated:g} LUFS ± {target.tolerance:g}"
    if target.dialogue_gated and speech.regions is not None:
        value, name, expected = track.dialogue_integrated, "dialogue_loudness", f"{expected} (dialogue)"
    else:
        value, name = track.integrated, "integrated_loudness"
        if target.dialogue_gated:
            notes.append(f"track {number}: measured over the whole programme, having no speech regions")
    checks = [
        Check(name, expected, _lufs(value), value is not None and low <= value <= high, number),
        Check(
            "true_peak",
            f"<= {target.true_peak:g} dBTP",
            f"{track.true_peak:.1f} dBTP",
            track.true_peak <= target.true_peak,
            number,
        ),
    ]
    if target.lra is not None:
        checks.append(
            Check("loudness_range", f"<= {target.lra:g} LU", f"{track.lra:.1f} LU", track.lra <= target.lra, number)
        )
    return checks


def _lufs(value: float | None) -> str:
    return "silent" if value is None else f"{value:.1f} LUFS"


def _tag_checks(delivery: Delivery, info: MediaInfo) -> list[Check]:
    """Each track's language and title as asked (where the container carries them), and the default track."""
    fmt, tracks = delivery.fmt, delivery.tracks
    if fmt.track_per_channel:  # MXF: no per-track tags in FFmpeg's muxer; the track count follows the sheet
        expected = len(tracks) * delivery.options.channels
        return [
            Check(
                "track_tags",
                f"{expected} mono tracks (the track sheet)",
                f"{len(info.audio)} tracks",
                len(info.audio) == expected,
            )
        ]
    checks = []
    if not fmt.is_video:  # one track: the file's own tags
        stream = info.audio[0]
        language = stream.language or info.tags.get("language")
        title = info.tags.get("title")
        want = written_language(fmt, tracks[0].language)
        checks.append(
            Check(
                "track_tags",
                f"language {want}, title {delivery.inputs.title!r}",
                f"language {language}, title {title!r}",
                language == want and title == delivery.inputs.title,
                0,
            )
        )
        return checks
    for number, (track, stream) in enumerate(zip(tracks, info.audio, strict=False)):
        want = track.tag if fmt.package_entry else written_language(fmt, track.language)  # HLS: BCP-47
        untagged_mov = fmt.muxer == "mov" and stream.language in (None, "und")  # not in FFmpeg's Macintosh table
        passed = (stream.language == want or untagged_mov) and stream.title == track.title
        checks.append(
            Check(
                "track_tags",
                f"language {want}, title {track.title!r}",
                f"language {stream.language}, title {stream.title!r}",
                passed,
                number,
            )
        )
    defaults = [n for n, s in enumerate(info.audio) if s.default]
    expected = delivery.inputs.default_dub
    checks.append(
        Check(
            "default_track",
            f"track {expected} ({delivery.names[expected]}) alone",
            _tracks(defaults, delivery.names),
            defaults == [expected],
        )
    )
    return checks


def _tracks(numbers: list[int], names: Sequence[str]) -> str:
    if not numbers:
        return "none"
    return ", ".join(f"track {n} ({names[n] if n < len(names) else '?'})" for n in numbers)


def _picture_checks(delivery: Delivery, info: MediaInfo) -> list[Check]:
    """Timecode and audio start, for a file with a picture."""
    if not delivery.fmt.is_video or not info.video:  # (a package's renditions are cut at the picture's segments)
        return []
    wanted = delivery.start_timecode
    found = info.timecode
    checks = [
        Check(
            "timecode",
            wanted or "none (or 00:00:00:00)",
            found or "none",
            found == wanted if wanted else found in (None, "00:00:00:00"),
        )
    ]
    video_start = info.video[0].start_time or 0.0
    offsets = [(s.start_time or 0.0) - video_start for s in info.audio]
    worst = max(offsets, key=abs, default=0.0)
    checks.append(
        Check(
            "audio_start",
            f"with the picture ± {DURATION_TOLERANCE:g} s",
            f"{worst * 1000:+.0f} ms",
            abs(worst) <= DURATION_TOLERANCE,
        )
    )
    return checks


def _mxf_note(delivery: Delivery) -> str:
    return (
        f"MXF: one mono track per channel, {delivery.options.channels} per language, measured together per "
        f"language in track-sheet order ({', '.join(delivery.names)})"
    )


def report_for(ctx: Context, workspace_id: int, run_id: int, task_id: str) -> QcReport:
    """The stored QC report of an export: NotFound for a task of another workspace or run, NoReport for one
    that is not SUCCESS or was made without a report."""
    with ctx.sessions() as session:
        task = session.get(ExportTask, task_id)
        if task is None or task.workspace_id != workspace_id or task.run_id != run_id:
            raise NotFound("task not found")
        if task.status != TaskStatus.SUCCESS.value:
            raise NoReport(f"task {task_id} is {task.status}: a QC report is made when an export succeeds")
        stored = task.qc_report
    if stored is None:
        raise NoReport(f"export {task_id} has no QC report: made before reports existed, or with reports switched off")
    return QcReport.from_dict(stored)
