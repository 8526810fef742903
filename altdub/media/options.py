"""Export options (spec §3): validated against the format, resolved to effective values.

Resolution makes the export's identity canonical: a request that spells out a default and
one that omits it resolve to the same values, hence the same export and the same file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from altdub.media.probe import StreamInfo

BITRATE_FORMATS = ("mp3", "aac", "m4a", "mp4", "mov")
SUBTITLE_FORMATS = ("mkv", "mp4", "mov")
VIDEO_FORMATS = ("mp4", "mov", "mkv", "mxf")
SAMPLE_RATES = (22050, 44100, 48000, 96000)
CHANNEL_COUNTS = (1, 2, 6)
STEMS = ("mix", "voice", "background")
SUBTITLE_MODES = ("none", "soft")
_MP3_RATES = (48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
_BITRATE = re.compile(r"([0-9]{2,3})k")
_MIN_KBPS = 32
_MAX_KBPS = {"mp3": 320, "aac": 512}  # LAME's ceiling; AAC's leaves room for 5.1 (384k by default)


@dataclass(frozen=True)
class LoudnessTarget:
    name: str
    integrated: float  # LUFS (LKFS)
    true_peak: float  # dBTP ceiling
    lra: float = 11.0


LOUDNESS_TARGETS = {
    t.name: t
    for t in (
        LoudnessTarget("ebu_r128", -23.0, -1.0),
        LoudnessTarget("atsc_a85", -24.0, -2.0),
        LoudnessTarget("streaming", -14.0, -1.0),
    )
}


class OptionError(ValueError):
    """An option's value is invalid or does not apply to the format; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


@dataclass(frozen=True)
class ExportOptions:
    sample_rate: int
    channels: int
    audio_bitrate: int | None = None  # bits per second; None for lossless and PCM formats
    loudness: str | None = None
    stem: str = "mix"
    include_original_audio: bool = False
    subtitles: str = "none"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def loudness_target(self) -> LoudnessTarget | None:
        return LOUDNESS_TARGETS[self.loudness] if self.loudness else None


def default_bitrate(output_format: str, channels: int) -> int | None:
    if output_format not in BITRATE_FORMATS:
        return None
    if output_format == "mp3":
        return 192_000
    return 128_000 if channels == 1 else 192_000 if channels == 2 else 384_000


def _parse_bitrate(output_format: str, value: Any) -> int:
    highest = _MAX_KBPS["mp3" if output_format == "mp3" else "aac"]
    match = _BITRATE.fullmatch(str(value).strip().lower())
    if not match or not _MIN_KBPS <= int(match.group(1)) <= highest:
        raise OptionError(
            "audio_bitrate",
            f"expected a bitrate from '{_MIN_KBPS}k' to '{highest}k' for {output_format}, got {value!r}",
        )
    return int(match.group(1)) * 1000


def _default_sample_rate(output_format: str, dub: StreamInfo) -> int:
    rate = dub.sample_rate or 48000
    if output_format == "mxf":
        return 48000
    if output_format == "mp3" and rate not in _MP3_RATES:
        return 48000 if rate > 48000 else 44100
    return rate


def resolve_options(output_format: str, requested: Mapping[str, Any], audio: StreamInfo) -> ExportOptions:
    """Check each requested option against the format; fill the rest from the audio's own properties.

    ``requested`` holds only the keys the client sent (a key sent as null means its default).
    """
    given = {k: v for k, v in requested.items() if v is not None}
    is_video = output_format in VIDEO_FORMATS

    if "audio_bitrate" in given and output_format not in BITRATE_FORMATS:
        raise OptionError("audio_bitrate", f"does not apply to {output_format}: its audio is lossless or PCM")
    sample_rate = given.get("sample_rate", _default_sample_rate(output_format, audio))
    if "sample_rate" in given and sample_rate not in SAMPLE_RATES and sample_rate != audio.sample_rate:
        raise OptionError("sample_rate", f"expected one of {', '.join(map(str, SAMPLE_RATES))}")
    if output_format == "mp3" and sample_rate > 48000:
        raise OptionError("sample_rate", "mp3 cannot carry more than 48000 Hz")
    if output_format == "mxf" and sample_rate != 48000:
        raise OptionError("sample_rate", "broadcast MXF audio is 48000 Hz")
    channels = given.get("channels", audio.channels or 2)
    if "channels" in given and channels not in CHANNEL_COUNTS:
        raise OptionError("channels", f"expected one of {', '.join(map(str, CHANNEL_COUNTS))}")
    if output_format == "mp3" and channels > 2:
        if "channels" in given:
            raise OptionError("channels", "mp3 carries mono or stereo only")
        channels = 2
    loudness = given.get("loudness")
    if loudness is not None and loudness not in LOUDNESS_TARGETS:
        raise OptionError("loudness", f"expected null or one of {', '.join(LOUDNESS_TARGETS)}")
    stem = given.get("stem", "mix")
    if stem not in STEMS:
        raise OptionError("stem", f"expected one of {', '.join(STEMS)}")
    include_original = given.get("include_original_audio", False)
    if include_original and not is_video:
        raise OptionError("include_original_audio", f"applies to video formats only, not {output_format}")
    subtitles = given.get("subtitles", "none")
    if subtitles not in SUBTITLE_MODES:
        raise OptionError("subtitles", "expected 'none' or 'soft'")
    if subtitles != "none" and output_format not in SUBTITLE_FORMATS:
        raise OptionError("subtitles", f"applies to {', '.join(SUBTITLE_FORMATS)} only, not {output_format}")
    bitrate = _parse_bitrate(output_format, given["audio_bitrate"]) if "audio_bitrate" in given else None
    return ExportOptions(
        sample_rate=sample_rate,
        channels=channels,
        audio_bitrate=bitrate or default_bitrate(output_format, channels),
        loudness=loudness,
        stem=stem,
        include_original_audio=bool(include_original),
        subtitles=subtitles,
    )
