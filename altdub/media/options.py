"""Export options (spec §3): validated against the format's catalogue entry, resolved to effective values.

Resolution makes the export's identity canonical: a request that spells out a default and
one that omits it resolve to the same values, hence the same export and the same file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from altdub.media.catalogue import CATALOGUE, LOUDNESS_TARGETS, Format, LoudnessTarget
from altdub.media.probe import StreamInfo
from altdub.media.timecode import timecode_problem

__all__ = ["ExportOptions", "LoudnessTarget", "OptionError", "resolve_options"]

_BITRATE = re.compile(r"([0-9]{2,3})k")
# Values an option takes when it does not apply: sending them to any format is harmless.
_NEUTRAL = {"include_original_audio": False, "subtitles": "none"}


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
    start_timecode: str | None = None  # None: the source's own
    raster: str | None = None  # MXF only: "broadcast" or "source"

    def as_dict(self) -> dict[str, Any]:
        """The export's identity. Options that are unset are left out: exports made before they existed keep theirs."""
        resolved = asdict(self)
        for key in ("start_timecode", "raster"):
            if resolved[key] is None:
                del resolved[key]
        return resolved

    @property
    def loudness_target(self) -> LoudnessTarget | None:
        return LOUDNESS_TARGETS[self.loudness] if self.loudness else None


def _parse_bitrate(fmt: Format, value: Any) -> int:
    assert fmt.bitrate_kbps is not None
    lowest, highest = fmt.bitrate_kbps
    match = _BITRATE.fullmatch(str(value).strip().lower())
    if not match or not lowest <= int(match.group(1)) <= highest:
        raise OptionError(
            "audio_bitrate", f"expected a bitrate from '{lowest}k' to '{highest}k' for {fmt.name}, got {value!r}"
        )
    return int(match.group(1)) * 1000


def _default_sample_rate(fmt: Format, dub: StreamInfo) -> int:
    """The dub's own rate when the format carries it; else the lowest offered rate above it, else the highest."""
    rate = dub.sample_rate or 48000
    if fmt.default_sample_rate is not None:
        return fmt.default_sample_rate
    if fmt.carries_rate(rate):
        return rate
    return min((r for r in fmt.sample_rates if r >= rate), default=max(fmt.sample_rates))


def _check(fmt: Format, key: str, value: Any, also: tuple[Any, ...] = ()) -> None:
    """Refuse a value the catalogue does not list for the format (``also``: values accepted besides)."""
    allowed = fmt.options()[key]["values"]
    if value not in allowed and value not in also:
        words = ", ".join(map(str, allowed))
        besides = [v for v in also if v not in allowed]
        extra = f" (or the dub's own, {besides[0]})" if besides else ""
        raise OptionError(key, f"expected one of {words}{extra} for {fmt.name}, got {value!r}")


def resolve_options(
    output_format: str, requested: Mapping[str, Any], audio: StreamInfo, frame_rate: float | None = None
) -> ExportOptions:
    """Check each requested option against the format's catalogue entry; fill the rest from the audio's own.

    ``requested`` holds only the keys the client sent (a key sent as null means its default); ``frame_rate``
    is the source picture's, which a start timecode must fit (None: only its form is checked).
    """
    fmt = CATALOGUE[output_format]
    applies = fmt.options()
    given = {k: v for k, v in requested.items() if v is not None}
    for key, value in given.items():
        if key not in applies and not _is_neutral(key, value):
            raise OptionError(key, _not_applying(fmt, key))

    own_rate = audio.sample_rate if audio.sample_rate and fmt.carries_rate(audio.sample_rate) else None
    sample_rate = given.get("sample_rate", _default_sample_rate(fmt, audio))
    if "sample_rate" in given:
        _check(fmt, "sample_rate", sample_rate, (own_rate,) if own_rate else ())
    own_channels = audio.channels or 2
    channels = given.get("channels", fmt.default_channels or min(own_channels, max(fmt.channels)))
    if "channels" in given:
        _check(fmt, "channels", channels)
    loudness = given.get("loudness")
    if loudness is not None:
        _check(fmt, "loudness", loudness)
    stem = given.get("stem", "mix")
    if "stem" in applies:  # a hand-off takes every stem
        _check(fmt, "stem", stem)
    include_original = given.get("include_original_audio", False)
    if "include_original_audio" in applies:
        _check(fmt, "include_original_audio", include_original)
    subtitles = given.get("subtitles", "none")
    if "subtitles" in applies:
        _check(fmt, "subtitles", subtitles)
    raster = given.get("raster", applies["raster"]["default"] if "raster" in applies else None)
    if "raster" in applies:
        _check(fmt, "raster", raster)
    start_timecode = given.get("start_timecode")
    if start_timecode is not None:
        problem = timecode_problem(start_timecode, frame_rate) if isinstance(start_timecode, str) else None
        if problem or not isinstance(start_timecode, str):
            raise OptionError("start_timecode", problem or f"expected a timecode string, got {start_timecode!r}")
    bitrate = _parse_bitrate(fmt, given["audio_bitrate"]) if "audio_bitrate" in given else None
    return ExportOptions(
        sample_rate=sample_rate,
        channels=channels,
        audio_bitrate=bitrate or fmt.default_bitrate(channels),
        loudness=loudness,
        stem=stem,
        include_original_audio=bool(include_original),
        subtitles=subtitles,
        start_timecode=start_timecode,
        raster=raster,
    )


def _is_neutral(key: str, value: Any) -> bool:
    return key in _NEUTRAL and type(value) is type(_NEUTRAL[key]) and value == _NEUTRAL[key]


def _not_applying(fmt: Format, key: str) -> str:
    if fmt.handoff:
        return f"does not apply to {fmt.name}: a hand-off carries every stem of the run as it is, at 48 kHz 24-bit"
    if key == "audio_bitrate":
        return f"does not apply to {fmt.name}: its audio is lossless or PCM"
    if key == "include_original_audio":
        return f"applies to video formats only, not {fmt.name}"
    return f"applies to {', '.join(f.name for f in CATALOGUE.values() if key in f.options())} only, not {fmt.name}"
