"""Probe media files with PyAV (FFmpeg's libraries), without decoding more than needed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import av

# Audio containers whose duration comes from a header a file can lie in (FLAC STREAMINFO, MP3 Xing)
# or from a bitrate estimate (ADTS, AC-3, MPEG): count their packets instead.
_ESTIMATED_DURATION_FORMATS = {"aac", "mp3", "flac", "ac3", "eac3", "mpeg", "mpegts"}
_HEADER_DURATION_FORMATS = {"flac", "mp3"}  # their duration is a header's claim, not an estimate
_NO_DURATION_FORMATS = {"aac", "ac3", "eac3"}  # raw streams: any duration read from them is an estimate
_TAIL_SECONDS = 1.0  # a file must hold packets this close to the end its header claims
_OUTPUT_PROBE_BYTES = 32 * 1024


class ProbeError(Exception):
    """The file is not media that FFmpeg can read."""


@dataclass(frozen=True)
class StreamInfo:
    index: int
    kind: str  # "audio", "video", "subtitle", "data"
    codec: str
    duration: float | None = None
    language: str | None = None
    default: bool = False
    sample_rate: int | None = None
    channels: int | None = None
    channel_layout: str | None = None
    sample_format: str | None = None
    bits_per_sample: int | None = None
    width: int | None = None
    height: int | None = None
    pixel_format: str | None = None
    frame_rate: float | None = None
    attached_picture: bool = False


@dataclass(frozen=True)
class MediaInfo:
    format_name: str
    duration: float
    streams: list[StreamInfo] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def audio(self) -> list[StreamInfo]:
        return [s for s in self.streams if s.kind == "audio"]

    @property
    def video(self) -> list[StreamInfo]:
        return [s for s in self.streams if s.kind == "video" and not s.attached_picture]

    @property
    def subtitles(self) -> list[StreamInfo]:
        return [s for s in self.streams if s.kind == "subtitle"]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MediaInfo:
        streams = [StreamInfo(**s) for s in data.get("streams", [])]
        return cls(data["format_name"], data["duration"], streams, dict(data.get("tags", {})))


def _stream_info(stream: av.stream.Stream) -> StreamInfo:
    ctx = stream.codec_context
    tags = {k.lower(): v for k, v in stream.metadata.items()}
    duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
    disposition = stream.disposition
    common: dict[str, Any] = {
        "index": stream.index,
        "kind": stream.type or "data",
        "codec": ctx.codec.canonical_name if ctx else "unknown",  # "mp3", not the decoder "mp3float"
        "duration": duration,
        "language": tags.get("language"),
        "default": bool(disposition & av.stream.Disposition.default),
        "attached_picture": bool(disposition & av.stream.Disposition.attached_pic),
    }
    if stream.type == "audio":
        return StreamInfo(
            **common,
            sample_rate=ctx.sample_rate,
            channels=ctx.channels,
            channel_layout=ctx.layout.name if ctx.layout else None,
            sample_format=ctx.format.name if ctx.format else None,
            bits_per_sample=_bits_per_sample(ctx),
        )
    if stream.type == "video":
        rate = stream.average_rate or stream.guessed_rate
        return StreamInfo(
            **common,
            width=ctx.width,
            height=ctx.height,
            pixel_format=ctx.format.name if ctx.format else None,
            frame_rate=float(rate) if rate else None,
        )
    return StreamInfo(**common)


def _bits_per_sample(ctx: av.audio.codeccontext.AudioCodecContext) -> int | None:
    """Sample depth: the PCM codec's own (s24le is decoded as s32), else the decoded format's."""
    for depth in (24, 32, 16, 8):
        if ctx.name.startswith("pcm_") and str(depth) in ctx.name:
            return depth
    return ctx.format.bits if ctx.format else None


def _packet_duration(container: av.container.InputContainer, stream_index: int) -> float:
    stream = container.streams[stream_index]
    end = 0.0
    for packet in container.demux(stream):
        if packet.pts is not None and packet.duration:
            end = max(end, float((packet.pts + packet.duration) * stream.time_base))
    return end


def _check_tail(container: av.container.InputContainer, streams: list[StreamInfo], duration: float) -> None:
    """Raise ProbeError when the file ends before its header says (a truncated MP4 with its index first)."""
    main = next((s for s in streams if s.kind == "video" and not s.attached_picture), None) or next(
        (s for s in streams if s.kind == "audio"), None
    )
    if main is None or duration <= 2 * _TAIL_SECONDS:
        return
    stream = container.streams[main.index]
    target = duration - _TAIL_SECONDS
    try:
        container.seek(int(target / stream.time_base), stream=stream, backward=True)
        for packet in container.demux(stream):
            if packet.pts is not None and float(packet.pts * stream.time_base) >= target - 2 * _TAIL_SECONDS:
                return
    except av.FFmpegError:
        pass
    raise ProbeError(f"the file is cut short: it holds no media near the {duration:.3f} s its header announces")


def _describe(container: av.container.InputContainer) -> MediaInfo:
    """What the container's headers say, believed as they are."""
    streams = [_stream_info(s) for s in container.streams]
    if not streams:
        raise ProbeError("no media streams found")
    if container.duration is not None and container.duration > 0:
        duration = container.duration / av.time_base
    else:
        duration = max((s.duration or 0.0) for s in streams)
    tags = {k.lower(): v for k, v in container.metadata.items()}
    return MediaInfo(container.format.name, duration, streams, tags)


def probe(path: Path | str) -> MediaInfo:
    """Describe a file that came from outside; raises ProbeError when it is not readable media.

    Headers are not believed: durations that a header claims or estimates are counted from
    packets, and a file must hold media near the end it announces.
    """
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            info = _describe(container)
            if info.audio and info.format_name.split(",")[0] in _ESTIMATED_DURATION_FORMATS:
                claimed, duration = info.duration, _packet_duration(container, info.audio[0].index)
                if info.format_name in _HEADER_DURATION_FORMATS and claimed > duration * 1.02 + _TAIL_SECONDS:
                    raise ProbeError(f"its header claims {claimed:.3f} s but the file holds {duration:.3f} s")
                info = replace(info, duration=duration)
            else:
                _check_tail(container, info.streams, info.duration)
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise ProbeError(str(exc) or exc.__class__.__name__) from exc
    return info


def probe_output(path: Path | str, written_seconds: float | None) -> MediaInfo:
    """Describe a file this service's FFmpeg just wrote, for the check before it is published.

    Its headers were written by FFmpeg from what it wrote, so they are believed and nothing is
    counted; where a container has no duration of its own (ADTS estimates one from the bitrate),
    FFmpeg's own count of what it wrote, ``written_seconds``, stands in. Streams are found from
    the first 32 KiB (the default 5 MB costs 25 ms of decoding on a WAV).
    """
    try:
        with av.open(str(path), metadata_errors="ignore", options={"probesize": str(_OUTPUT_PROBE_BYTES)}) as container:
            info = _describe(container)
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise ProbeError(str(exc) or exc.__class__.__name__) from exc
    if info.format_name in _NO_DURATION_FORMATS:
        if written_seconds is None:
            raise ProbeError(f"{info.format_name} holds no duration and FFmpeg reported none")
        info = replace(info, duration=written_seconds)
    return info
