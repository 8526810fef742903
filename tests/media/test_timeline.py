"""Start timecodes in frames and samples, and the hand-off timeline's derived facts (no FFmpeg)."""

from pathlib import Path

import pytest

from altdub.media import timecode
from altdub.media.timeline import Stem, Timeline


@pytest.mark.parametrize(
    ("code", "rate", "frames"),
    [
        ("00:00:00:00", 25, 0),
        ("01:00:00:00", 25, 90000),
        ("00:00:01:24", 25, 49),
        ("01:00:00:00", 30000 / 1001, 108000),  # non-drop 29.97 counts 30 numbers a second
        ("01:00:00;00", 30000 / 1001, 107892),  # drop-frame: an hour is 107892 frames
        ("00:01:00;02", 30000 / 1001, 1800),  # the first number of minute 1 is ;02
        ("00:10:00;00", 30000 / 1001, 17982),  # every tenth minute keeps its numbers
        ("00:01:00;04", 60000 / 1001, 3600),
    ],
)
def test_frame_count(code: str, rate: float, frames: int) -> None:
    assert timecode.frame_count(code, rate) == frames


def test_samples_follow_the_exact_rate() -> None:
    assert timecode.to_samples("01:00:00:00", 25, 48000) == 3600 * 48000
    # one drop-frame hour is 3599.9964 s of real time
    assert timecode.to_samples("01:00:00;00", 29.97, 48000) == round(107892 * 48000 * 1001 / 30000)
    assert timecode.exact_rate(23.976) == timecode.exact_rate(24000 / 1001)


def test_timeline_names_and_start() -> None:
    mix = Stem(Path("es_mix.wav"), "mix", "es-es", "Spanish (Spain)", 2)
    me = Stem(Path("me.wav"), "me", None, None, 2)
    line = Timeline("run-1", 48000, "10:00:00:00", 25.0, (mix, me))
    assert (mix.name, me.name) == ("Spanish (Spain) mix", "M&E")
    assert line.start_samples == 36000 * 48000
    assert not line.drop_frame
