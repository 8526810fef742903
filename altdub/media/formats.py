"""The nine output formats and the FFmpeg argument list that makes each (spec §4)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from altdub.media.ffmpeg import file_arg
from altdub.media.probe import MediaInfo, StreamInfo


@dataclass(frozen=True)
class OutputFormat:
    name: str
    extension: str
    content_type: str
    muxer: str
    is_video: bool


FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in (
        OutputFormat("flac", "flac", "audio/flac", "flac", False),
        OutputFormat("wav", "wav", "audio/wav", "wav", False),
        OutputFormat("mp3", "mp3", "audio/mpeg", "mp3", False),
        OutputFormat("aac", "aac", "audio/aac", "adts", False),
        OutputFormat("m4a", "m4a", "audio/mp4", "ipod", False),
        OutputFormat("mp4", "mp4", "video/mp4", "mp4", True),
        OutputFormat("mov", "mov", "video/quicktime", "mov", True),
        OutputFormat("mkv", "mkv", "video/x-matroska", "matroska", True),
        OutputFormat("mxf", "mxf", "application/mxf", "mxf", True),
    )
}

# Video codecs each container takes as they are (stream copy, bit-identical packets).
_COPYABLE_VIDEO = {
    "mp4": {"h264", "hevc", "av1", "mpeg4"},
    "mov": {"h264", "hevc", "prores", "mpeg4", "mjpeg", "dnxhd", "mpeg2video"},
    "mxf": {"mpeg2video", "dnxhd"},
}
# Audio codecs Matroska holds as they are.
_MATROSKA_AUDIO = {
    "flac", "aac", "opus", "vorbis", "mp3", "ac3", "eac3", "alac",
    "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le",
}  # fmt: skip
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}
_MP3_RATES = (48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
_COPY_SLACK = 0.001  # seconds a copied dub may fall short of the picture (Matroska's timestamp unit)


@dataclass(frozen=True)
class ExportInputs:
    """What a conversion starts from: the dub, and the source media when the run has one."""

    dub_path: Path
    dub: MediaInfo
    source_path: Path | None
    source: MediaInfo | None
    duration: float  # every output lasts this long: the source's, else the dub's
    language: str  # ISO 639-2/B
    title: str


@dataclass(frozen=True)
class ExportPlan:
    args: list[str]
    video_copied: bool
    audio_copied: bool


def build_plan(output_format: str, inputs: ExportInputs, output: Path) -> ExportPlan:
    """The FFmpeg arguments that write ``output`` in ``output_format`` (raises ValueError if impossible)."""
    fmt = FORMATS[output_format]
    dub_stream = inputs.dub.audio[0]
    args: list[str] = []
    video_copied = False
    if fmt.is_video:
        if inputs.source is None or inputs.source_path is None or not inputs.source.video:
            raise ValueError("the run has no video")
        video = inputs.source.video[0]
        args += ["-i", file_arg(inputs.source_path)]
        video_args, video_copied = _video_codec_args(fmt.name, video)
        args += ["-i", file_arg(inputs.dub_path), "-map", f"0:{video.index}"]
        dub_input = 1
    else:
        args += ["-i", file_arg(inputs.dub_path)]
        video_args, dub_input = [], 0

    audio_args, audio_copied = _audio_args(fmt.name, inputs, dub_input, dub_stream)
    args += audio_args + video_args
    args += ["-t", f"{inputs.duration:.6f}", "-map_metadata", "-1", "-map_chapters", "-1"]
    args += ["-metadata", f"title={inputs.title}"]
    if fmt.name == "mxf":  # FFmpeg's MXF muxer ignores "title"; the material package name is MXF's own
        args += ["-metadata", f"material_package_name={inputs.title}"]
    if not fmt.is_video:  # ID3 TLAN, Vorbis LANGUAGE, RIFF ILNG: the file-level tag is the track's
        args += ["-metadata", f"language={inputs.language}"]
    args += _muxer_args(fmt.name)
    args += ["-f", fmt.muxer, file_arg(output)]
    return ExportPlan(args, video_copied, audio_copied)


def _video_codec_args(fmt: str, video: StreamInfo) -> tuple[list[str], bool]:
    copyable = _COPYABLE_VIDEO.get(fmt)
    if copyable is None or video.codec in copyable:
        extra = ["-tag:v", "hvc1"] if video.codec == "hevc" and fmt in ("mp4", "mov") else []
        return ["-c:v", "copy", *extra], True
    if fmt == "mxf":
        return _xdcam_hd422_args(video), False
    return ["-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p"], False


def _xdcam_hd422_args(video: StreamInfo) -> list[str]:
    """MPEG-2 4:2:2 long-GOP at a constant 50 Mb/s, the XDCAM HD422 recipe."""
    return [
        "-c:v", "mpeg2video", "-pix_fmt", "yuv422p", "-profile:v", "0",
        "-b:v", "50M", "-minrate", "50M", "-maxrate", "50M", "-bufsize", "17825792",
        "-rc_init_occupancy", "17825792", "-rc_max_vbv_use", "1", "-rc_min_vbv_use", "1",
        "-g", "12", "-bf", "2", "-intra_vlc", "1", "-non_linear_quant", "1", "-intra_dc_precision", "2",
        "-qmin", "1", "-qmax", "12", "-lmin", "1*QP2LAMBDA",
    ]  # fmt: skip


def _pad_filter(duration: float) -> str:
    return f"apad=whole_dur={duration:.6f}"


def _audio_args(fmt: str, inputs: ExportInputs, dub_input: int, dub: StreamInfo) -> tuple[list[str], bool]:
    """Map, pad/trim, encode and tag the dubbed audio; returns (args, copied)."""
    source = f"{dub_input}:{dub.index}"
    tags = ["-metadata:s:a:0", f"language={inputs.language}", "-disposition:a:0", "default"]
    if fmt == "mxf":
        return _mxf_audio_args(source, inputs, dub), False
    if fmt == "mkv" and dub.codec in _MATROSKA_AUDIO and inputs.dub.duration >= inputs.duration - _COPY_SLACK:
        # As long as the picture: copy as is; the output's -t trims at a packet boundary.
        return ["-map", source, "-c:a", "copy", *tags], True
    args = ["-map", source, "-af", _pad_filter(inputs.duration), *_audio_codec_args(fmt, dub), *tags]
    return args, False


def _audio_codec_args(fmt: str, dub: StreamInfo) -> list[str]:
    channels = dub.channels or 2
    deep = (dub.bits_per_sample or 16) > 16 or (dub.sample_format or "").startswith(("s32", "flt", "dbl"))
    if fmt == "flac" or fmt == "mkv":
        return ["-c:a", "flac", "-sample_fmt", "s32" if deep else "s16"]
    if fmt == "wav":
        return ["-c:a", "pcm_s24le" if deep else "pcm_s16le", "-rf64", "auto"]
    if fmt == "mp3":
        args = ["-c:a", "libmp3lame", "-b:a", "192k"]
        rate = dub.sample_rate or 48000
        if rate not in _MP3_RATES:
            args += ["-ar", str(48000 if rate > 48000 else 44100)]
        return [*args, "-ac", "2"] if channels > 2 else args
    # aac, m4a, mp4, mov: AAC-LC
    bitrate = "128k" if channels == 1 else "192k" if channels == 2 else "384k"
    return ["-c:a", "aac", "-profile:a", "aac_low", "-b:a", bitrate]


def _mxf_audio_args(source: str, inputs: ExportInputs, dub: StreamInfo) -> list[str]:
    """Broadcast MXF: PCM s24le at 48 kHz, one mono track per channel."""
    channels = dub.channels or 2
    chain = f"[{source}]{_pad_filter(inputs.duration)},aresample=48000"
    if channels == 1:
        graph, labels = f"{chain}[a0]", ["[a0]"]
    else:
        labels = [f"[a{i}]" for i in range(channels)]
        layout = _named_layout(dub)
        graph = (
            f"{chain},aformat=channel_layouts={layout},channelsplit=channel_layout={layout}{''.join(labels)}"
        )
    args = ["-filter_complex", graph]
    for i, label in enumerate(labels):
        args += ["-map", label, f"-metadata:s:a:{i}", f"language={inputs.language}"]
        args += [f"-disposition:a:{i}", "default" if i == 0 else "0"]
    return [*args, "-c:a", "pcm_s24le", "-ar", "48000"]


def _named_layout(stream: StreamInfo) -> str:
    """The stream's channel layout, or FFmpeg's default one for its channel count (WAV may carry none)."""
    if stream.channel_layout and "channels" not in stream.channel_layout:
        return stream.channel_layout
    return _DEFAULT_LAYOUTS.get(stream.channels or 2, f"{stream.channels}c")


def _muxer_args(fmt: str) -> list[str]:
    if fmt in ("mp4", "mov", "m4a"):
        return ["-movflags", "+faststart"]
    if fmt == "aac":
        return ["-write_id3v2", "1"]
    if fmt == "mp3":
        return ["-id3v2_version", "4", "-write_xing", "1"]
    return []
