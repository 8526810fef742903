"""SMPTE start timecodes ("HH:MM:SS:FF", "HH:MM:SS;FF" drop-frame), as FFmpeg reads and writes them."""

from __future__ import annotations

import math
import re
from fractions import Fraction

PATTERN = re.compile(r"([0-9]{2}):([0-5][0-9]):([0-5][0-9])([:;])([0-9]{2})")
EXAMPLE = "01:00:00:00"
# Drop-frame numbering exists for the NTSC rates only: 30000/1001 and 60000/1001 frames a second.
_DROP_FRAME_RATES = (30000 / 1001, 60000 / 1001)
_RATE_TOLERANCE = 0.01


def timecode_problem(timecode: str, frame_rate: float | None) -> str | None:
    """Why ``timecode`` cannot start a picture at ``frame_rate`` (None: it can)."""
    match = PATTERN.fullmatch(timecode)
    if match is None:
        return f"expected a timecode 'HH:MM:SS:FF' (';FF' for drop-frame), e.g. '{EXAMPLE}', got {timecode!r}"
    if frame_rate is None or frame_rate <= 0:
        return None
    frames = int(match.group(5))
    frames_per_second = math.ceil(frame_rate - _RATE_TOLERANCE)  # 29.97 counts 30 frame numbers
    if frames >= frames_per_second:
        return f"frame {frames} does not exist at {frame_rate:.3g} frames a second (0 to {frames_per_second - 1})"
    if match.group(4) == ";":
        if not any(abs(frame_rate - rate) < _RATE_TOLERANCE for rate in _DROP_FRAME_RATES):
            return f"drop-frame (';') applies to 29.97 and 59.94 frames a second only, not {frame_rate:.3g}"
        dropped = 2 * round(frame_rate / 30)  # numbers 0-1 (0-3 at 59.94) are skipped at minutes not divisible by 10
        if match.group(3) == "00" and int(match.group(2)) % 10 and frames < dropped:
            return f"{timecode} does not exist in drop-frame: frames 0 to {dropped - 1} are skipped at this minute"
    return None


def frame_count(timecode: str, frame_rate: float) -> int:
    """The frames from 00:00:00:00 to ``timecode`` at ``frame_rate`` (drop-frame numbering skips its numbers).

    ``timecode`` must be valid at the rate (``timecode_problem`` is None).
    """
    match = PATTERN.fullmatch(timecode)
    if match is None:
        raise ValueError(f"not a timecode: {timecode!r}")
    hours, minutes, seconds, frames = (int(match.group(i)) for i in (1, 2, 3, 5))
    nominal = math.ceil(frame_rate - _RATE_TOLERANCE)  # 29.97 counts 30 frame numbers a second
    count = ((hours * 60 + minutes) * 60 + seconds) * nominal + frames
    if match.group(4) == ";":  # two (four at 59.94) numbers skipped each minute, except every tenth
        total_minutes = hours * 60 + minutes
        count -= 2 * round(frame_rate / 30) * (total_minutes - total_minutes // 10)
    return count


def exact_rate(frame_rate: float) -> Fraction:
    """The frame rate as the fraction it stands for: 29.97 is 30000/1001, 25 is 25."""
    for nominal in (24, 30, 48, 60, 120):
        if abs(frame_rate - nominal * 1000 / 1001) < _RATE_TOLERANCE:
            return Fraction(nominal * 1000, 1001)
    return Fraction(frame_rate).limit_denominator(1001)


def to_samples(timecode: str, frame_rate: float, sample_rate: int) -> int:
    """Where ``timecode`` falls, in samples since midnight (a BWF ``TimeReference``), to the nearest sample."""
    return round(frame_count(timecode, frame_rate) * sample_rate / exact_rate(frame_rate))
