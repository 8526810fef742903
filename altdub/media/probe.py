"""Probe media files with PyAV (FFmpeg's libraries), without decoding more than needed."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import av

from altdub.media.timecode import PATTERN as TIMECODE_PATTERN

# Audio containers whose duration comes from a header a file can lie in (FLAC STREAMINFO, MP3 Xing)
# or from a bitrate estimate (ADTS, AC-3, MPEG): count their packets instead.
_ESTIMATED_DURATION_FORMATS = {"aac", "mp3", "flac", "ac3", "eac3", "mpeg", "mpegts"}
_HEADER_DURATION_FORMATS = {"flac", "mp3"}  # their duration is a header's claim, not an estimate
_NO_DURATION_FORMATS = {"aac", "ac3", "eac3"}  # raw streams: any duration read from them is an estimate
_TAIL_SECONDS = 1.0  # a file must hold packets this close to the end its header claims
_OUTPUT_PROBE_BYTES = 32 * 1024

# What a file holds is judged from its audio packets, walked without decoding (see ``_AudioTimeline``).
# The largest audio packet a codec makes, in samples: FLAC's streamable subset allows 16,384 (Vorbis 8,192,
# Opus 5,760, ALAC 4,096, AC-3 1,536, MP3 1,152, AAC 1,024); a packet that says it lasts longer is held for this.
_MAX_AUDIO_PACKET_SAMPLES = 16_384
# The lossless codecs whose frames are longer: Monkey's Audio (its "extra high" level), TTA (256/245 s).
_LONG_FRAME_SAMPLES = {"ape": lambda rate: 73_728 * 4, "tta": lambda rate: 256 * rate // 245 + 1}
# Silence between two audio packets beyond this is a lie about the timeline, not a dropout: broadcast
# captures lose a second or two of audio; codec delays (AAC priming, MP3 encoder delay) are in-stream.
_MAX_AUDIO_GAP_SECONDS = 5.0
# A file may declare this much more than its audio holds: an AAC/MP3 stream's last frame, an audio track
# that ends a little before the picture, short dropouts of a long capture.
_HELD_SLACK_RATIO = 0.02
_HELD_SLACK_SECONDS = 1.0
_PCM_BITS = re.compile(r"pcm_[a-z]*?(\d+)")


class ProbeError(Exception):
    """The file is not media that FFmpeg can read."""


# What PyAV raises on a hostile file (av.FFmpegError covers FFmpeg's own, its MemoryError and OverflowError
# included; ArithmeticError a zero or huge time base): each becomes a ProbeError, in probe and probe_output.
_READ_ERRORS = (av.FFmpegError, OSError, ValueError, ArithmeticError, UnicodeDecodeError)


def _read_error(exc: BaseException, path: Path | str) -> ProbeError:
    """What FFmpeg or the system found, without the path it was read from (a server's scratch file).

    PyAV and OSError put the path in their text (``[Errno 1094995529] Invalid data found when
    processing input: '/data/tmp/upload-x/part-3'``): the caller names the file the way its user knows it.
    """
    strerror = getattr(exc, "strerror", None)
    reason = strerror if isinstance(strerror, str) and strerror else str(exc)
    reason = reason.replace(str(path), "the file").strip()
    return ProbeError(reason[:1].lower() + reason[1:] if reason else exc.__class__.__name__)


class MediaRefused(ProbeError):
    """The file is readable media, but lies about its length or goes past a limit; the message says which."""


@dataclass(frozen=True)
class MediaLimits:
    """What an imported file may hold: past these, every export of it costs more than the service allows."""

    video_pixels: int  # width x height of a frame: each FFmpeg holds several
    video_frame_rate: float
    audio_sample_rate: int
    audio_channels: int
    audio_packets: int  # the probe walks every one: this bounds its cost


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
    title: str | None = None  # the track's name (Matroska's title, MP4/MOV's name); None in older stored probes
    start_time: float | None = None  # seconds: the stream's first timestamp (None: the container tells none)


@dataclass(frozen=True)
class MediaInfo:
    format_name: str
    duration: float
    streams: list[StreamInfo] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    timecode: str | None = None  # the start timecode, "HH:MM:SS:FF" (";FF" drop-frame); None in older stored probes

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
        tags = dict(data.get("tags", {}))
        return cls(data["format_name"], data["duration"], streams, tags, data.get("timecode"))


def _stream_info(stream: av.stream.Stream) -> StreamInfo:
    ctx = stream.codec_context
    if ctx is None and stream.type in ("audio", "video"):  # FFmpeg has no decoder for its codec id or tag
        raise ProbeError(f"its {stream.type} stream #{stream.index} has a codec FFmpeg does not know")
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
        "title": tags.get("title") or tags.get("name"),
        "start_time": float(stream.start_time * stream.time_base)
        if stream.start_time is not None and stream.time_base
        else None,
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


class _AudioTimeline:
    """What one audio stream's packets hold, read from the packets in order without decoding them.

    A packet holds its own duration, no more than the codec can put in one packet (PCM: exactly what
    its bytes hold) and no more than the time until the next packet; time between packets beyond that is
    a gap. A file that shifts its timestamps by an hour holds a few seconds and one large gap.
    """

    def __init__(self, stream: av.audio.AudioStream) -> None:
        ctx = stream.codec_context
        rate = ctx.sample_rate  # known: _check_limits refused a stream without one
        if not stream.time_base:
            raise ProbeError(f"its audio stream #{stream.index} has no time base")
        self.stream = stream
        self._tick = float(stream.time_base)  # seconds per timestamp unit; timestamps are rounded to it
        pcm_bits = _PCM_BITS.match(ctx.name)
        self._seconds_per_byte = 8 / (int(pcm_bits.group(1)) * (ctx.channels or 1) * rate) if pcm_bits else None
        if ctx.frame_size:
            samples = 2 * ctx.frame_size  # 2x: HE-AAC doubles the core's frame
        else:
            samples = _LONG_FRAME_SAMPLES.get(ctx.name, lambda rate: _MAX_AUDIO_PACKET_SAMPLES)(rate)
        self._largest_packet = samples / rate
        self.held = 0.0  # seconds of audio the packets hold
        self.end = 0.0  # where the last packet ends on the timeline
        self.gap = 0.0  # the largest gap between two packets, and where it starts
        self.gap_at = 0.0
        self._start: float | None = None
        self._holds = 0.0
        self._spacing = 0.0

    def add(self, packet: av.Packet) -> None:
        timestamp = packet.dts if packet.dts is not None else packet.pts
        if timestamp is None:
            return
        start = timestamp * self._tick
        holds = self._largest_packet if self._seconds_per_byte is None else packet.size * self._seconds_per_byte
        if packet.duration:
            holds = min(holds, (packet.duration + 1) * self._tick)
        elif self._spacing:  # no duration (SMPTE 302M in MPEG-TS): as long as the last packet's
            holds = min(holds, self._spacing)
        if self._start is not None:
            spacing = self._spacing = start - self._start
            self.held += max(0.0, min(self._holds, spacing + self._tick))
            if spacing - self._holds > self.gap:
                self.gap, self.gap_at = spacing - self._holds, self._start + self._holds
        self._start, self._holds = start, holds
        self.end = max(self.end, start + holds)

    def finish(self) -> _AudioTimeline:
        self.held += self._holds
        self._holds = 0.0
        return self


def _audio_timelines(
    container: av.container.InputContainer, info: MediaInfo, limits: MediaLimits | None
) -> list[_AudioTimeline]:
    """Walk every packet of every audio stream once (demuxing only: a 60-minute file costs well under a second).

    A file that is damaged further on ends the walk there: what it held up to that point is judged.
    A file of more packets than ``limits.audio_packets`` is refused before it costs more (a few µs each).
    """
    timelines = {s.index: _AudioTimeline(container.streams[s.index]) for s in info.audio}
    budget = limits.audio_packets if limits else None
    others = [s for s in container.streams if s.index not in timelines]
    for stream in others:  # the demuxer skips their data instead of reading it (1 GB of video: 0.2 s -> 0.07 s)
        stream.discard = av.stream.Discard.all
    try:
        for count, packet in enumerate(container.demux([t.stream for t in timelines.values()])):
            if budget is not None and count >= budget:
                raise MediaRefused(f"it holds more than the {budget:,} audio packets allowed")
            if packet.stream_index in timelines:
                timelines[packet.stream_index].add(packet)
    except av.FFmpegError:
        pass
    finally:
        for stream in others:
            stream.discard = av.stream.Discard.default
    return [t.finish() for t in timelines.values()]


def _check_held(info: MediaInfo, timelines: list[_AudioTimeline]) -> None:
    """Raise MediaRefused when the timeline is longer than what the audio holds (a jump, a late start)."""
    for timeline in timelines:
        if timeline.gap > _MAX_AUDIO_GAP_SECONDS:
            raise MediaRefused(
                f"its timestamps jump by {timeline.gap:.1f} s at {timeline.gap_at:.1f} s: "
                f"its audio stream #{timeline.stream.index} holds {timeline.held:.1f} s"
            )
    held = max(t.held for t in timelines)
    if info.duration > held * (1 + _HELD_SLACK_RATIO) + _HELD_SLACK_SECONDS:
        raise MediaRefused(f"it declares {info.duration:.1f} s but its audio holds {held:.1f} s")


def _check_limits(info: MediaInfo, limits: MediaLimits | None) -> None:
    """Raise ProbeError for audio without a sample rate, MediaRefused for a stream past a limit."""
    for stream in info.audio:
        if not stream.sample_rate:
            raise ProbeError(f"its audio stream #{stream.index} declares no sample rate")
    if limits is None:
        return
    for stream in info.audio:
        if stream.sample_rate and stream.sample_rate > limits.audio_sample_rate:
            raise MediaRefused(
                f"its audio stream #{stream.index} is sampled at {stream.sample_rate:,} Hz, "
                f"more than the {limits.audio_sample_rate:,} Hz allowed"
            )
        if (stream.channels or 0) > limits.audio_channels:
            raise MediaRefused(
                f"its audio stream #{stream.index} has {stream.channels} channels, "
                f"more than the {limits.audio_channels} allowed"
            )
    for stream in info.video:
        pixels = (stream.width or 0) * (stream.height or 0)
        if pixels > limits.video_pixels:
            raise MediaRefused(
                f"its video stream #{stream.index} is {stream.width}x{stream.height} ({pixels:,} pixels a frame), "
                f"more than the {limits.video_pixels:,} allowed"
            )
        if stream.frame_rate and stream.frame_rate > limits.video_frame_rate:
            raise MediaRefused(
                f"its video stream #{stream.index} runs at {stream.frame_rate:,.0f} frames a second, "
                f"more than the {limits.video_frame_rate:,.0f} allowed"
            )


def _check_tail(container: av.container.InputContainer, streams: list[StreamInfo], duration: float) -> None:
    """Raise MediaRefused when the file ends before its header says (a truncated MP4 with its index first)."""
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
    raise MediaRefused(f"it is cut short: it holds no media near the {duration:.3f} s its header announces")


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
    return MediaInfo(container.format.name, duration, streams, tags, _start_timecode(container, tags))


def _start_timecode(container: av.container.InputContainer, tags: dict[str, str]) -> str | None:
    """The start timecode where FFmpeg puts it: the container's tag (MXF, Matroska), else a stream's
    (the video's, then the MP4/MOV ``tmcd`` data track's); None when the file has none or a malformed one."""
    found = [tags.get("timecode")]
    found += [{k.lower(): v for k, v in s.metadata.items()}.get("timecode") for s in container.streams]
    return next((tc.strip() for tc in found if tc and TIMECODE_PATTERN.fullmatch(tc.strip())), None)


def probe(path: Path | str, limits: MediaLimits | None = None) -> MediaInfo:
    """Describe a file that came from outside; raises ProbeError when it is not readable media,
    MediaRefused when it lies about its length or goes past one of the ``limits``.

    Headers are not believed: durations that a header claims or estimates are counted from
    packets, a file's length must be held by its audio packets, and a file must hold media near
    the end it announces.
    """
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            info = _describe(container)
            _check_limits(info, limits)
            timelines = _audio_timelines(container, info, limits)
            estimated = bool(info.audio) and info.format_name.split(",")[0] in _ESTIMATED_DURATION_FORMATS
            if estimated:
                start = container.start_time / av.time_base if container.start_time else 0.0  # MPEG-TS starts at 1.4 s
                claimed, duration = info.duration, timelines[0].end - start
                if info.format_name in _HEADER_DURATION_FORMATS and claimed > duration * 1.02 + _TAIL_SECONDS:
                    raise MediaRefused(f"its header claims {claimed:.3f} s but the file holds {duration:.3f} s")
                info = replace(info, duration=duration)
            if timelines:
                _check_held(info, timelines)
            if not estimated:
                _check_tail(container, info.streams, info.duration)
    except _READ_ERRORS as exc:
        raise _read_error(exc, path) from exc
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
    except _READ_ERRORS as exc:
        raise _read_error(exc, path) from exc
    if info.format_name in _NO_DURATION_FORMATS:
        if written_seconds is None:
            raise ProbeError(f"{info.format_name} holds no duration and FFmpeg reported none")
        info = replace(info, duration=written_seconds)
    return info
