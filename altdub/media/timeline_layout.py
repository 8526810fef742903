"""How a hand-off ``Timeline`` lies on tracks: the pieces of each stem, clip and channel names, timecode labels.

The AAF and OpenTimelineIO writers lay the same pieces out (spec DELIVERIES §5), so a mixer sees one
structure whichever file they open; the clips zip names its files and EDL events with the same labels.
"""

from __future__ import annotations

import heapq
import itertools
import re
import unicodedata
from dataclasses import dataclass

from opentimelineio import opentime

from altdub.media import timecode
from altdub.media.timeline import Clip, LanguageClips, Stem, Timeline

_CHANNEL_LABELS = {1: ("",), 2: ("L", "R"), 6: ("L", "R", "C", "LFE", "Ls", "Rs")}  # WAV's channel order
_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")
_SPEAKER_CHARS = 40


@dataclass(frozen=True)
class Piece:
    """A stretch of a stem's track, in samples from the programme's start (``end`` exclusive).

    ``clip`` is the transcript segment it shows; None for the stem itself (a stretch of a mix, the M&E,
    the original) or, when ``silent``, for the gap between two lines on a voice stem (a Filler).
    """

    start: int
    end: int
    clip: Clip | None = None
    silent: bool = False

    @property
    def length(self) -> int:
        return self.end - self.start


def clip_label(clip: Clip) -> str:
    """A clip's name on a track: its number and its speaker, "0012 Alice" ("0012" when none is named)."""
    return f"{clip.number:04d} {clip.speaker}".rstrip()


def safe_speaker(speaker: str) -> str:
    """The speaker as a file name's part: ASCII letters, digits and dashes; "unknown" when none is left."""
    ascii_name = unicodedata.normalize("NFKD", speaker).encode("ascii", "ignore").decode("ascii")
    return _UNSAFE.sub("-", ascii_name).strip("-")[:_SPEAKER_CHARS].strip("-") or "unknown"


def channel_labels(channels: int) -> tuple[str, ...]:
    """The channels' names in a WAV's order: "" for mono, L/R, L R C LFE Ls Rs; else 1, 2, 3..."""
    return _CHANNEL_LABELS.get(channels) or tuple(str(i) for i in range(1, channels + 1))


def track_name(stem: Stem, label: str) -> str:
    """A mono track's name: "Spanish (Spain) voice L", "M&E R", "English original"."""
    return f"{stem.name} {label}".rstrip()


def frame_at(timeline: Timeline, sample: int) -> int:
    """The frame (counted from 00:00:00:00, as the timecode counts) in which ``sample`` falls."""
    start_frame = timecode.frame_count(timeline.start_timecode, timeline.frame_rate)
    return start_frame + sample * timeline.exact_frame_rate.numerator // (
        timeline.sample_rate * timeline.exact_frame_rate.denominator
    )


def timecode_at(timeline: Timeline, sample: int) -> str:
    """The timecode of the frame ``sample`` falls in ("HH:MM:SS;FF" at a drop-frame start)."""
    rate = float(timeline.exact_frame_rate)
    return opentime.RationalTime(frame_at(timeline, sample), rate).to_timecode(rate, timeline.drop_frame)


def clips_of(timeline: Timeline, stem: Stem) -> LanguageClips | None:
    """The language's segments cut from ``stem`` (None: the stem carries none)."""
    return next((language for language in timeline.clips if language.stem == stem), None)


def stem_pieces(timeline: Timeline, stem: Stem) -> tuple[Piece, ...]:
    """The stem's track from the programme's first sample to its last, piece by piece.

    A stem without segments is one piece. On the stem a language's segments are cut from, each
    segment is a piece; where segments overlap, the one that started later owns the overlap (a
    segment inside a longer one splits it, the longer one going on after it), so every segment starts
    at its own sample and the track still plays the stem sample for sample. Between segments, a
    voice stem is silent (Filler: a dialogue edit) and a mix keeps playing (the background is in it).
    """
    language = clips_of(timeline, stem)
    if language is None or not language.clips:
        return (Piece(0, timeline.duration),)
    pieces: list[Piece] = []
    cursor = 0
    for start, end, clip in _owned_stretches(language.clips, timeline.duration):
        if start > cursor:
            pieces.append(Piece(cursor, start, silent=stem.role == "voice"))
        if pieces and pieces[-1].clip is clip and pieces[-1].end == start:
            pieces[-1] = Piece(pieces[-1].start, end, clip)
        else:
            pieces.append(Piece(start, end, clip))
        cursor = end
    if cursor < timeline.duration:
        pieces.append(Piece(cursor, timeline.duration, silent=stem.role == "voice"))
    return tuple(pieces)


def _owned_stretches(clips: tuple[Clip, ...], duration: int) -> list[tuple[int, int, Clip]]:
    """Each stretch covered by a segment, with the segment that owns it (the latest started)."""
    bounded = [c for c in clips if min(c.end, duration) > max(c.start, 0)]
    bounds = sorted({max(c.start, 0) for c in bounded} | {min(c.end, duration) for c in bounded})
    by_start = sorted(bounded, key=lambda c: (c.start, c.number))
    covering: list[tuple[int, int, int, Clip]] = []  # max-heap on (start, number)
    stretches: list[tuple[int, int, Clip]] = []
    next_clip = 0
    for here, there in itertools.pairwise(bounds):
        while next_clip < len(by_start) and max(by_start[next_clip].start, 0) <= here:
            clip = by_start[next_clip]
            heapq.heappush(covering, (-clip.start, -clip.number, id(clip), clip))
            next_clip += 1
        while covering and min(covering[0][3].end, duration) <= here:
            heapq.heappop(covering)
        if covering:
            stretches.append((here, there, covering[0][3]))
    return stretches
