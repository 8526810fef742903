"""The hand-off timeline: what a mixer receives (spec DELIVERIES §5), independent of the file it is written to.

The hand-off writers (tracks_zip, clips_zip with its EDL, AAF, OpenTimelineIO) all write one
``Timeline``: the programme's stems rendered as 48 kHz 24-bit WAV files as long as the programme,
and each language's transcript segments as clips, every position counted in samples from the
programme's first sample. Its start timecode places sample 0 (``start_samples``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

from altdub.media import timecode

HANDOFF_SAMPLE_RATE = 48000
HANDOFF_BITS = 24
NO_PICTURE_FRAME_RATE = 25.0  # an audio-only run counts its timecode in EBU frames
Role = Literal["mix", "voice", "me", "original"]  # me: music and effects (the run's background stem)


@dataclass(frozen=True)
class Stem:
    """One rendered stem: a 48 kHz 24-bit WAV as long as the programme."""

    path: Path
    role: Role
    language: str | None  # the language's short_name; None for the music and effects
    language_name: str | None  # "Spanish (Spain)"; None for the music and effects
    channels: int

    @property
    def name(self) -> str:
        """The track's name as a mixer sees it: "Spanish (Spain) voice", "M&E"."""
        if self.role == "me":
            return "M&E"
        return f"{self.language_name} {self.role}"


@dataclass(frozen=True)
class Clip:
    """One transcript segment on the timeline, in samples from the programme's start (``end`` exclusive)."""

    number: int  # 1-based, in time order within its language
    start: int
    end: int
    speaker: str  # "" when the transcript names none
    text: str


@dataclass(frozen=True)
class LanguageClips:
    """A language's segments, cut from ``stem`` (its voice stem when the run has one, else its mix)."""

    language: str  # short_name
    stem: Stem
    clips: tuple[Clip, ...]


@dataclass(frozen=True)
class Timeline:
    name: str  # "run-12": the composition's name and the files' prefix
    duration: int  # samples at HANDOFF_SAMPLE_RATE
    start_timecode: str  # "HH:MM:SS:FF" (";FF" drop-frame): the timecode of sample 0
    frame_rate: float  # the picture's; NO_PICTURE_FRAME_RATE without one
    stems: tuple[Stem, ...]  # per language in track order: mix, voice (when present); then M&E, then the original
    clips: tuple[LanguageClips, ...] = ()  # per language that has a transcript, in track order
    sample_rate: int = HANDOFF_SAMPLE_RATE

    @property
    def exact_frame_rate(self) -> Fraction:
        return timecode.exact_rate(self.frame_rate)

    @property
    def drop_frame(self) -> bool:
        return ";" in self.start_timecode

    @property
    def start_samples(self) -> int:
        """The start timecode in samples since midnight: the BWF ``TimeReference``."""
        return timecode.to_samples(self.start_timecode, self.frame_rate, self.sample_rate)

    def seconds(self, samples: int) -> float:
        return samples / self.sample_rate
