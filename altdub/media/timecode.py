"""SMPTE start timecodes ("HH:MM:SS:FF", "HH:MM:SS;FF" drop-frame), as FFmpeg reads and writes them."""

from __future__ import annotations

import math
import re

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
