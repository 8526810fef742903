"""A QC report stays small: a 60-minute 8-track master's report, series downsampled, is stored in a JSON column."""

from __future__ import annotations

import json
import math
from pathlib import Path

from altdub.media import meter
from altdub.media.catalogue import CATALOGUE
from altdub.media.formats import AudioTrack, ExportInputs
from altdub.media.meter import Reading
from altdub.media.options import ExportOptions
from altdub.media.probe import MediaInfo, StreamInfo
from altdub.media.qc_report import QcReport
from altdub.service import qc

MINUTES, TRACKS, SEGMENTS = 60, 8, 900  # a feature film's dialogue: a line every 4 s


def _reading(seconds: float, level: float) -> Reading:
    steps = round(seconds / meter.STEP)
    wave = tuple(level + 6 * math.sin(i / 50) for i in range(steps))
    return Reading(wave, wave, tuple(v + 8 for v in wave), level, 7.5, 0, ())


def test_an_hour_long_eight_track_report_is_small() -> None:
    seconds = MINUTES * 60.0
    audio = StreamInfo(0, "audio", "aac", sample_rate=48000, channels=2)
    tracks = tuple(AudioTrack(Path("dub.wav"), audio, seconds, "spa", f"Track {n}", "es-ES") for n in range(TRACKS))
    video = StreamInfo(0, "video", "h264", frame_rate=25.0, start_time=0.0)
    inputs = ExportInputs(tracks, seconds, "Film", 0, Path("film.mp4"), video)
    regions = tuple((n * 4.0, n * 4.0 + 3.2) for n in range(SEGMENTS))
    delivery = qc.Delivery(
        CATALOGUE["mp4"],
        ExportOptions(48000, 2, 192000, "netflix"),
        inputs,
        [f"l{n}" for n in range(TRACKS)],
        [qc.Speech(regions, "transcript")] * TRACKS,
    )
    streams = [video] + [
        StreamInfo(n + 1, "audio", "aac", language="spa", title=f"Track {n}", default=n == 0, start_time=0.0)
        for n in range(TRACKS)
    ]
    report = qc.build_report(delivery, MediaInfo("mov", seconds, streams), [_reading(seconds, -27.0)] * TRACKS)
    stored = json.dumps(report.as_dict())
    print(f"{MINUTES}-minute {TRACKS}-track report: {len(stored) / 1024:.0f} KiB of JSON")
    assert len(stored) < 256 * 1024
    series = report.tracks[0].short_term
    assert series.step == 6.0 and len(series.values) == qc.MAX_POINTS
    assert QcReport.from_dict(json.loads(stored)) == report
