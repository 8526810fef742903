"""The meter (media/meter.py) against independent meters: pyloudnorm for loudness (over the whole and over
given regions), FFmpeg's own ebur128 true-peak meter, and the samples themselves for clipping and silence."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest

from altdub.media import meter
from altdub.media.ffmpeg import file_arg, run_ffmpeg
from tests.media.test_masters import decode_audio

# A programme of "dialogue" (a loud, modulated tone) between quieter "music" (a low tone), and
# a silence of 4 s inside the last speech region.
SPEECH = ((1.0, 4.0), (6.0, 9.5), (11.0, 18.0))
SILENT = (13.0, 17.0)
SECONDS = 20.0


def ffmpeg_true_peak(path: Path, stream: int = 0) -> float:
    """FFmpeg's ebur128 true peak (dBTP) of one stream: the reference the tests compare with."""
    log = run_ffmpeg(
        ["-i", file_arg(path), "-filter_complex", f"[0:{stream}]ebur128=peak=true:framelog=quiet", "-f", "null", "-"],
        loglevel="info",
    ).log
    found = re.search(r"Peak:\s+(-?[0-9.]+|-inf) dBFS", log[log.rfind("Summary:") :])
    assert found, log[-500:]
    return float(found.group(1))


def region_samples(samples: np.ndarray, rate: int, regions: tuple[tuple[float, float], ...]) -> np.ndarray:
    """The samples of the regions, joined end to end (what a dialogue gate keeps)."""
    return np.concatenate([samples[int(a * rate) : int(b * rate)] for a, b in regions])


def speech_dub(path: Path, seconds: float = SECONDS, gain: float = 0.4, silent: bool = False, hz: int = 700) -> Path:
    """Dialogue (a tone amplitude-modulated at 3 Hz) where SPEECH says, over a 150 Hz bed at 0.02 elsewhere;
    with ``silent``, SILENT is silence; stereo 48 kHz 16-bit."""
    speech = "+".join(f"between(t,{a},{b})" for a, b in SPEECH)
    expression = f"if({speech},{gain}*sin(2*PI*{hz}*t)*(0.6+0.4*sin(2*PI*3*t)),0.02*sin(2*PI*150*t))"
    if silent:
        expression = f"if(between(t,{SILENT[0]},{SILENT[1]}),0,{expression})"
    expression = expression.replace(",", "\\,")  # a comma would end the filter
    run_ffmpeg(
        ["-f", "lavfi", "-i", f"aevalsrc={expression}|{expression}:s=48000:d={seconds}", "-c:a", "pcm_s16le",
         file_arg(path)]
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def programme(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_dub(tmp_path_factory.mktemp("meter") / "programme.wav", silent=True)


def test_whole_programme_loudness_matches_pyloudnorm_and_ffmpeg(programme: Path) -> None:
    reading = meter.read(programme, ["0:0"])
    decoded = decode_audio(programme, 0)
    reference = pyloudnorm.Meter(decoded.rate).integrated_loudness(decoded.samples)
    gated = reading.gated_loudness()
    assert gated is not None
    assert abs(gated - reading.integrated) <= 0.1, (gated, reading.integrated)
    assert abs(gated - reference) <= 0.3, (gated, reference)
    assert abs(reading.duration - SECONDS) <= meter.STEP
    assert len(reading.short_term) == len(reading.momentary) == len(reading.true_peak)


def test_dialogue_gate_measures_the_regions_only(programme: Path) -> None:
    reading = meter.read(programme, ["0:0"])
    decoded = decode_audio(programme, 0)
    regions = tuple((a, b) for a, b in SPEECH if b - a < 5)  # the two regions without the silence
    joined = region_samples(decoded.samples, decoded.rate, regions)
    reference = pyloudnorm.Meter(decoded.rate).integrated_loudness(joined)
    gated = reading.gated_loudness(regions)
    assert gated is not None
    assert abs(gated - reference) <= 0.3, (gated, reference)
    bed = reading.gated_loudness(((4.2, 5.8),))
    assert bed is not None and gated - bed > 20, "the bed alone is far quieter than the speech"
    assert reading.gated_loudness(((0.0, 0.3),)) is None, "a region shorter than a block holds no block"


def test_true_peak_matches_ffmpeg_ebur128(programme: Path) -> None:
    reading = meter.read(programme, ["0:0"])
    assert abs(reading.peak - ffmpeg_true_peak(programme)) <= 0.3
    # the series shows where the peaks are: speech regions at about -8 dBTP, the bed at -34
    at = int(2.0 / meter.STEP)
    assert reading.true_peak[at] > -10 > -30 > reading.true_peak[int(5.0 / meter.STEP)]


def test_silences_inside_speech_and_no_clipping(programme: Path) -> None:
    reading = meter.read(programme, ["0:0"])
    assert reading.clipped_samples == 0
    assert len(reading.silences) == 1
    start, end = reading.silences[0]
    assert abs(start - SILENT[0]) < 0.05 and abs(end - SILENT[1]) < 0.05
    inside = reading.silences_within(SPEECH)
    assert len(inside) == 1 and abs(inside[0][1] - inside[0][0] - 4.0) < 0.05
    assert reading.silences_within(((0.0, 12.0),)) == ()


def test_a_reading_kept_as_json_reads_back_the_same(programme: Path) -> None:
    """An intermediate's reading is stored as JSON (service/intermediates.py) and reused by every copy."""
    reading = meter.read(programme, ["0:0"])
    kept = meter.Reading.from_dict(json.loads(json.dumps(reading.as_dict())))
    assert kept == reading
    assert kept.gated_loudness(SPEECH) == reading.gated_loudness(SPEECH) and kept.silences_within(SPEECH)


def test_clipped_samples_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "clipped.wav"
    run_ffmpeg(
        ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2", "-af", "volume=30dB", "-ac", "2",
         "-c:a", "pcm_s16le", file_arg(path)]
    )  # fmt: skip
    decoded = decode_audio(path, 0)
    at_full_scale = int(np.sum((decoded.samples >= 32767 / 32768) | (decoded.samples <= -1.0)))
    assert at_full_scale > 1000
    reading = meter.read(path, ["0:0"])
    assert reading.clipped_samples == at_full_scale


def test_several_streams_are_measured_as_one_programme(tmp_path: Path) -> None:
    """MXF's per-channel tracks: merged into one programme before metering."""
    path = tmp_path / "split.mkv"
    run_ffmpeg(
        ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=3", "-f", "lavfi",
         "-i", "sine=frequency=440:sample_rate=48000:duration=3", "-map", "0", "-map", "1", "-c:a", "pcm_s16le",
         file_arg(path)]
    )  # fmt: skip
    single = meter.read(path, ["0:0"])
    both = meter.read(path, ["0:0", "0:1"])
    assert abs(both.integrated - single.integrated - 3.0) < 0.2  # two equal channels: +3 dB of power
