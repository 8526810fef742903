"""The QC report of a hand-off (tracks_zip, clips_zip, aaf, otio): its stems, measured and checked.

A hand-off takes no loudness target (every stem goes as it is) and holds no picture, so its report
has no preset: it gives each stem's figures and checks what a mixer relies on when the stems land on
a timeline: each stem lasts the programme, its ``bext`` TimeReference is the start timecode asked for,
no sample clips, and no silence of 3 s or more falls inside a language's transcript segments. The
AAF, the OTIOZ and the clips are made of these very stems (split by channel, referenced, or cut).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from altdub.media import meter, timecode
from altdub.media.meter import Reading, Regions
from altdub.media.probe import ProbeError, probe
from altdub.media.qc_report import Check, QcReport
from altdub.media.timeline import Stem, Timeline
from altdub.service.qc import DURATION_TOLERANCE, segment_regions, signal_checks, track_report


def tap_stems(timeline: Timeline, folder: Path) -> meter.Tap:
    """The meter on the stems as the rendering FFmpeg run writes them (its output file per stem, in order)."""
    programmes = [[f"{number}:0"] for number in range(len(timeline.stems))]
    return meter.Tap(folder, programmes, timeline.seconds(timeline.duration))


def handoff_report(timeline: Timeline, wanted_timecode: str, readings: Sequence[Reading]) -> QcReport:
    """The report of a hand-off's stems (``readings`` in ``timeline.stems`` order)."""
    programme = timeline.seconds(timeline.duration)
    speech = _speech_by_stem(timeline, programme)
    tracks, checks = [], []
    for number, (stem, reading) in enumerate(zip(timeline.stems, readings, strict=True)):
        regions = speech.get(stem.path)
        tracks.append(
            track_report(
                reading, regions, index=number, language=stem.language, title=stem.name, default=False, role=stem.role
            )
        )
        checks.append(
            Check(
                "duration",
                f"{programme:.3f} s (the programme) ± {DURATION_TOLERANCE:g}",
                f"{reading.duration:.3f} s",
                abs(reading.duration - programme) <= DURATION_TOLERANCE,
                number,
            )
        )
        checks.append(_time_reference_check(timeline, stem, wanted_timecode, number))
        checks += signal_checks(tracks[-1], "transcript")
    notes = [
        f"hand-off: {len(timeline.stems)} stems of {timeline.sample_rate / 1000:g} kHz, as they go into the "
        f"{'file' if len(timeline.stems) == 1 else 'files'}; no loudness target (stems are delivered untouched)"
    ]
    return QcReport(
        preset=None,
        target=None,
        passed=all(c.passed for c in checks),
        checks=tuple(checks),
        tracks=tuple(tracks),
        duration=round(max((r.duration for r in readings), default=0.0), 3),
        source_duration=round(programme, 3),
        notes=tuple(notes),
    )


def _speech_by_stem(timeline: Timeline, programme: float) -> dict[Path, Regions]:
    """Each clip-bearing stem's transcript segments, as regions in seconds."""
    rate = timeline.sample_rate
    return {
        language.stem.path: segment_regions(
            [{"start": clip.start / rate, "end": clip.end / rate} for clip in language.clips], programme
        )
        for language in timeline.clips
    }


def _time_reference_check(timeline: Timeline, stem: Stem, wanted: str, number: int) -> Check:
    """The stem's ``bext`` TimeReference, read back from the file, against the timecode asked for."""
    expected = timecode.to_samples(wanted, timeline.frame_rate, timeline.sample_rate)
    try:
        found = probe(stem.path).tags.get("time_reference")
    except ProbeError as exc:
        found = f"unreadable: {exc}"
    return Check(
        "timecode",
        f"{wanted} = TimeReference {expected}",
        f"TimeReference {found}" if found is not None else "no bext TimeReference",
        found == str(expected),
        number,
    )
