"""The FFmpeg argument list that makes each output format (spec §3 options, §4 formats).

What a format is (extension, muxer, codecs, options) is in media/catalogue.py; this is how it is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from altdub.media.catalogue import CATALOGUE, Format
from altdub.media.ffmpeg import file_arg
from altdub.media.options import ExportOptions
from altdub.media.probe import MediaInfo, StreamInfo

# The files of a streaming package, served inline to players (never as attachments).
PACKAGE_TYPES = {
    "m3u8": "application/vnd.apple.mpegurl",
    "mpd": "application/dash+xml",
    "m4s": "video/iso.segment",
    "vtt": "text/vtt; charset=utf-8",
}
_TEXT_TYPES = {
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
}
# Media a run may hold that is not one of our outputs, by the extension it is downloaded with.
_INPUT_TYPES = {
    "ogg": "audio/ogg",
    "mka": "audio/x-matroska",
    "aiff": "audio/aiff",
    "ac3": "audio/ac3",
    "ts": "video/mp2t",
}
# Every type a download is ever served with, by extension: a closed list of media and plain text.
# Nothing a browser would run or render as a page (HTML, SVG, JavaScript) can be among them.
DOWNLOAD_TYPES = {f.extension: f.content_type for f in CATALOGUE.values()} | _INPUT_TYPES | _TEXT_TYPES
UNKNOWN_EXTENSION = "bin"  # for media of any other kind: served as application/octet-stream

# The extension of a stored file, by the container FFmpeg found in it (PyAV's format name); the
# MPEG-4 and Matroska families tell audio from video by whether a picture was found.
_PROBED_EXTENSIONS = {
    "wav": "wav",
    "mp3": "mp3",
    "flac": "flac",
    "aac": "aac",
    "ogg": "ogg",
    "aiff": "aiff",
    "ac3": "ac3",
    "mpegts": "ts",
    "mxf": "mxf",
}
_FAMILY_EXTENSIONS = {"mov,mp4,m4a,3gp,3g2,mj2": ("m4a", "mp4"), "matroska,webm": ("mka", "mkv")}


def content_type_for(filename: str) -> str:
    """The Content-Type of a download, from the extension of the name we gave it (never a client's).

    Only the closed list ``DOWNLOAD_TYPES``: any other extension is ``application/octet-stream``.
    """
    return DOWNLOAD_TYPES.get(filename.rpartition(".")[2].lower(), "application/octet-stream")


def probed_extension(info: MediaInfo) -> str:
    """The extension to download a stored input with, from what probing found in it, not from its name."""
    if info.format_name in _FAMILY_EXTENSIONS:
        audio, video = _FAMILY_EXTENSIONS[info.format_name]
        return video if info.video else audio
    return _PROBED_EXTENSIONS.get(info.format_name, UNKNOWN_EXTENSION)


_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}
_COPY_SLACK = 0.001  # seconds a copied dub may fall short of the picture (Matroska's timestamp unit)


@dataclass(frozen=True)
class AudioTrack:
    """One audio stream to deliver: a language's dub (or a stem), or the source's original audio."""

    path: Path
    stream: StreamInfo
    duration: float  # of the file it comes from
    language: str  # ISO 639-2/B
    title: str = ""  # the track's name for people: the language's display name
    tag: str = ""  # BCP-47, for streaming manifests
    loudnorm: str | None = None  # loudness normalisation filter, from a measurement made beforehand
    encoded: bool = False  # the stream is already this output's audio (an intermediate): copied as it is


@dataclass(frozen=True)
class TextTrack:
    """A language's transcript as a subtitle track (SubRip on disk)."""

    path: Path
    language: str  # ISO 639-2/B
    title: str
    tag: str = ""  # BCP-47, for streaming manifests


@dataclass(frozen=True)
class ExportInputs:
    dubs: tuple[AudioTrack, ...]  # one per language, in track order
    duration: float  # every output lasts this long: the source's, else the dub's
    title: str
    default_dub: int = 0  # the index in ``dubs`` of the default track
    video_path: Path | None = None  # the source, when the run has a picture
    video: StreamInfo | None = None
    original: AudioTrack | None = None  # the source-language audio, after the dubs, never default
    subtitles: tuple[TextTrack, ...] = ()  # one per language that has a transcript, none default
    timecode: str | None = None  # the source's start timecode, valid at its frame rate

    def audio_tracks(self, options: ExportOptions) -> tuple[AudioTrack, ...]:
        """Every audio track the output holds, in order: the dubs, then the original when asked for."""
        if options.include_original_audio:
            if self.original is None:
                raise ValueError("the run has no original audio")
            return (*self.dubs, self.original)
        return self.dubs

    def with_audio(self, tracks: list[AudioTrack]) -> ExportInputs:
        """The same inputs with each audio track replaced (in ``audio_tracks`` order: the dubs, then the original)."""
        original = tracks[len(self.dubs)] if len(tracks) > len(self.dubs) else self.original
        return replace(self, dubs=tuple(tracks[: len(self.dubs)]), original=original)

    def with_loudnorm(self, filters: list[str]) -> ExportInputs:
        """The same inputs with each audio track's loudness filter set (in ``audio_tracks`` order)."""
        dubs = tuple(replace(t, loudnorm=f) for t, f in zip(self.dubs, filters, strict=False))
        original = self.original
        if original is not None and len(filters) > len(self.dubs):
            original = replace(original, loudnorm=filters[len(self.dubs)])
        return replace(self, dubs=dubs, original=original)


@dataclass(frozen=True)
class ExportPlan:
    args: list[str]
    video_copied: bool
    audio_copied: bool
    disable_text_tracks: bool = False  # MP4/MOV: FFmpeg enables the first text track; none may be (isobmff.py)


@dataclass
class InputFiles:
    """FFmpeg's ``-i`` list: one index per distinct file."""

    paths: list[Path] = field(default_factory=list)

    def index(self, path: Path) -> int:
        if path not in self.paths:
            self.paths.append(path)
        return self.paths.index(path)

    def args(self) -> list[str]:
        return [arg for path in self.paths for arg in ("-i", file_arg(path))]


def channel_layout(channels: int) -> str:
    return _DEFAULT_LAYOUTS.get(channels, f"{channels}c")


def pre_loudness_chain(track: AudioTrack, options: ExportOptions, duration: float) -> str:
    """The filters before loudnorm: pad/trim to the picture, then the channel count asked for.

    The loudness measurement (pass one) runs this same chain, so pass two normalises what it measured.
    """
    chain = [f"apad=whole_dur={duration:.6f}"]
    if options.channels != (track.stream.channels or 2):
        chain.append(f"aformat=channel_layouts={channel_layout(options.channels)}")
    return ",".join(chain)


def audio_chain(track: AudioTrack, options: ExportOptions, duration: float) -> str:
    chain = [pre_loudness_chain(track, options, duration)]
    if track.loudnorm:
        chain.append(track.loudnorm)
    if options.sample_rate != track.stream.sample_rate:
        chain.append(f"aresample={options.sample_rate}")
    return ",".join(chain)


def build_plan(output_format: str, inputs: ExportInputs, options: ExportOptions, output: Path) -> ExportPlan:
    """The FFmpeg arguments that write ``output`` (raises ValueError when the inputs cannot make it)."""
    fmt = CATALOGUE[output_format]
    if fmt.package_entry is not None:
        raise ValueError(f"{fmt.name} is a streaming package: packaging.package_plan makes it")
    if fmt.handoff:
        raise ValueError(f"{fmt.name} is a hand-off for audio post: handoff.stems_plan makes its stems")
    files = InputFiles()
    maps: list[str] = []
    codecs: list[str] = []
    video_copied = False
    if fmt.is_video:
        if inputs.video is None or inputs.video_path is None:
            raise ValueError("the run has no video")
        maps += ["-map", f"{files.index(inputs.video_path)}:{inputs.video.index}"]
        video_args, video_copied = _video_codec_args(fmt, inputs.video, options)
        codecs += video_args
    if options.include_original_audio and not fmt.is_video:
        raise ValueError(f"{output_format} carries no second audio track")
    if options.subtitles != "none" and fmt.subtitle_codec is None:
        raise ValueError(f"{output_format} carries no subtitles")
    if len(inputs.dubs) > 1 and not fmt.multiple_languages:
        raise ValueError(f"{output_format} carries one language")

    graphs: list[str] = []
    audio_index = 0
    audio_copied = False
    for number, track in enumerate(inputs.audio_tracks(options)):
        stream = f"{files.index(track.path)}:{track.stream.index}"
        default = number == inputs.default_dub
        if fmt.track_per_channel:
            graph, labels = _mxf_track_graph(stream, track, options, inputs.duration, number)
            graphs.append(graph)
            for channel, label in enumerate(labels):
                maps += ["-map", label]
                codecs += _tag_args(fmt, "a", audio_index, track, default and channel == 0)
                audio_index += 1
            continue
        if track.encoded or _copies_audio(fmt, track, options, inputs.duration):
            maps += ["-map", stream]
            codecs += [f"-c:a:{audio_index}", "copy"]
            audio_copied = audio_copied or default
        elif samples_unchanged(track, options, inputs.duration):  # no graph: the encoder reads the dub as it is
            maps += ["-map", stream]
            codecs += _audio_codec_args(fmt.name, audio_index, track.stream, options)
        else:
            label = f"[a{number}]"
            graphs.append(f"[{stream}]{audio_chain(track, options, inputs.duration)}{label}")
            maps += ["-map", label]
            codecs += _audio_codec_args(fmt.name, audio_index, track.stream, options)
        codecs += _tag_args(fmt, "a", audio_index, track, default)
        audio_index += 1
    if fmt.track_per_channel:
        codecs += ["-c:a", fmt.audio_codecs[0], "-ar", str(options.sample_rate)]

    if options.subtitles == "soft":
        if not inputs.subtitles:
            raise ValueError("no language asked for has a transcript")
        codecs += ["-c:s", fmt.subtitle_codec]
        for number, text in enumerate(inputs.subtitles):
            maps += ["-map", f"{files.index(text.path)}:0"]
            codecs += _tag_args(fmt, "s", number, text, default=False)

    args = files.args()
    if graphs:
        args += ["-filter_complex", ";".join(graphs)]
    args += maps + codecs
    args += ["-t", f"{inputs.duration:.6f}", "-map_metadata", "-1", "-map_chapters", "-1"]
    args += ["-metadata", f"title={inputs.title}"]
    start_timecode = options.start_timecode or inputs.timecode
    if fmt.is_video and start_timecode:  # MP4/MOV: a tmcd track; MXF: its timecode component; Matroska: a tag
        args += ["-timecode", start_timecode]
    if fmt.name == "mxf":  # FFmpeg's MXF muxer ignores "title"; the material package name is MXF's own
        args += ["-metadata", f"material_package_name={inputs.title}"]
    if not fmt.is_video:  # ID3 TLAN, Vorbis LANGUAGE, RIFF ILNG: the file-level tag is the track's
        args += ["-metadata", f"language={inputs.dubs[0].language}"]
    args += _muxer_args(fmt.name)
    args += ["-f", fmt.muxer, file_arg(output)]
    text_enabled_by_muxer = fmt.muxer in ("mp4", "mov") and options.subtitles == "soft"
    return ExportPlan(args, video_copied, audio_copied, text_enabled_by_muxer)


# MOV's language field holds Macintosh language codes, which FFmpeg looks up by ISO 639-2 in a table
# (libavformat/isom.c) that has the terminological code for these four; twelve of our languages are
# not in it at all (afr, bos, fil, gle, glg, hrv, nob, pan, srp, sun, swe, zul): their MOV tracks are
# untagged, and named by their title. MP4 packs any ISO 639-2 code.
_MOV_LANGUAGE_CODES = {"fre": "fra", "cze": "ces", "rum": "ron", "slo": "slk"}


def written_language(fmt: Format, language: str) -> str:
    """The ISO 639-2 code a track of ``language`` is tagged with in ``fmt`` (MOV's own codes for four)."""
    return _MOV_LANGUAGE_CODES.get(language, language) if fmt.muxer == "mov" else language


# Formats whose audio is AAC-LC: each track is encoded once, as an intermediate, and stream-copied in.
AAC_FORMATS = frozenset(name for name, f in CATALOGUE.items() if f.audio_codecs == ("aac",))
INTERMEDIATE_EXTENSION = "m4a"  # MP4 keeps the encoder's timestamps exactly: the copy is the same packets
# AAC formats in an ISO BMFF file (mp4, mov, m4a): their one track's stream, copied out, is its intermediate
INTERMEDIATE_HOLDERS = frozenset(name for name in AAC_FORMATS if CATALOGUE[name].muxer in ("mp4", "mov", "ipod"))


def intermediate_plan(track: AudioTrack, options: ExportOptions, duration: float, output: Path) -> list[str]:
    """FFmpeg's arguments that encode one track as every AAC format would, into an MP4 audio file.

    The same samples (the chain, or none, that build_plan gives the track) through the same encoder,
    settings and ``-t``: stream-copied into an mp4, mov, m4a, ADTS or a package, its packets are the
    ones a direct encode writes there.
    """
    stream = f"0:{track.stream.index}"
    if samples_unchanged(track, options, duration):
        mapping = ["-map", stream]
    else:
        mapping = ["-filter_complex", f"[{stream}]{audio_chain(track, options, duration)}[a]", "-map", "[a]"]
    codec = _audio_codec_args("mp4", 0, track.stream, options)
    return ["-i", file_arg(track.path), *mapping, *codec, "-t", f"{duration:.6f}", "-map_metadata", "-1",
            "-f", "mp4", file_arg(output)]  # fmt: skip


def intermediate_from_plan(deliverable: Path, output: Path) -> list[str]:
    """FFmpeg's arguments that copy the first audio stream of an ISO BMFF deliverable out as its intermediate.

    The deliverable encoded the track itself (one FFmpeg run instead of an encode and a remux): its audio
    packets are the ones ``intermediate_plan`` writes, and the copy drops the deliverable's tags.
    """
    return ["-i", file_arg(deliverable), "-map", "0:a:0", "-c", "copy", "-map_metadata", "-1",
            "-map_metadata:s:a", "-1", "-f", "mp4", file_arg(output)]  # fmt: skip


def _tag_args(fmt: Format, kind: str, index: int, track: AudioTrack | TextTrack, default: bool) -> list[str]:
    """Language, title and default flag of the ``index``-th output stream of ``kind`` (``a`` or ``s``).

    Every container takes ISO 639-2 here: FFmpeg's Matroska muxer writes the tag into the element
    that holds ISO 639-2 codes only, so a full BCP-47 tag (``es-419``) would make the file invalid.
    """
    args = [f"-metadata:s:{kind}:{index}", f"language={written_language(fmt, track.language)}"]
    if track.title:
        args += [f"-metadata:s:{kind}:{index}", f"title={track.title}"]
    return [*args, f"-disposition:{kind}:{index}", "default" if default else "0"]


def samples_unchanged(track: AudioTrack, options: ExportOptions, duration: float) -> bool:
    """Whether the output's samples are the track's own: no padding, gain, rate or channel change.

    Then no filter graph runs (a graph that pads a dub already as long as the picture changes
    nothing and costs a thread): the track is mapped as it is and ``-t`` trims a longer one.
    """
    stream = track.stream
    return (
        track.loudnorm is None
        and options.sample_rate == stream.sample_rate
        and options.channels == (stream.channels or 2)
        and track.duration >= duration - _COPY_SLACK  # as long as the picture; -t trims the rest
    )


def _copies_audio(fmt: Format, track: AudioTrack, options: ExportOptions, duration: float) -> bool:
    """A format that holds the dub's codec (Matroska) takes the audio as it is when nothing about it has to change."""
    return (
        fmt.copyable_audio is not None
        and track.stream.codec in fmt.copyable_audio
        and samples_unchanged(track, options, duration)
    )


def _video_codec_args(fmt: Format, video: StreamInfo, options: ExportOptions) -> tuple[list[str], bool]:
    raster = _broadcast_raster(fmt, video) if options.raster == "broadcast" else None
    if raster is None and (fmt.copyable_video is None or video.codec in fmt.copyable_video):
        extra = ["-tag:v", "hvc1"] if video.codec == "hevc" and fmt.muxer in ("mp4", "mov") else []
        return ["-c:v", "copy", *extra], True
    if fmt.name == "mxf":
        if raster is None:
            _check_mpeg2_raster(video)
            return _xdcam_hd422_args(), False
        width, height = raster
        fit = f"scale={width}:{height}:force_original_aspect_ratio=decrease"
        pad = f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2"
        return ["-vf", f"{fit},{pad},setsar=1", *_xdcam_hd422_args()], False
    return ["-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p"], False


# Sources below this many lines (SD: 480, 576) are up-converted to the larger raster, the HD master's.
_SD_LINES = 576
_MPEG2_MAX_SIDE = 16_383  # 14 bits of horizontal_size/vertical_size (with the extension)
_MPEG2_FORBIDDEN_MULTIPLE = 4096  # a side of 4096 * n would emulate a start code


def _broadcast_raster(fmt: Format, video: StreamInfo) -> tuple[int, int] | None:
    """The raster ``video`` is scaled and padded to (None: it is one already, or the format has none).

    The nearest by lines: SD sources go to the largest (1920x1080), others to the raster whose height is nearest.
    """
    if not fmt.broadcast_rasters or (video.width, video.height) in fmt.broadcast_rasters:
        return None
    largest = max(fmt.broadcast_rasters, key=lambda r: r[1])
    if (video.height or 0) <= _SD_LINES:
        return largest
    return min(fmt.broadcast_rasters, key=lambda r: abs(r[1] - (video.height or 0)))


def _check_mpeg2_raster(video: StreamInfo) -> None:
    """Raise ValueError for a picture that MPEG-2 (MXF's video) cannot hold as it is (``raster: "source"``)."""
    for side, size in (("width", video.width or 0), ("height", video.height or 0)):
        if size > _MPEG2_MAX_SIDE or size % _MPEG2_FORBIDDEN_MULTIPLE == 0:
            raise ValueError(
                f"MXF's MPEG-2 video cannot hold the source's {video.width}x{video.height} picture as it is "
                f"(a {side} of {size}: above {_MPEG2_MAX_SIDE:,} or a multiple of {_MPEG2_FORBIDDEN_MULTIPLE}); "
                "ask for raster 'broadcast' to scale it"
            )


def _xdcam_hd422_args() -> list[str]:
    """MPEG-2 4:2:2 long-GOP at a constant 50 Mb/s, the XDCAM HD422 recipe."""
    return [
        "-c:v", "mpeg2video", "-pix_fmt", "yuv422p", "-profile:v", "0",
        "-b:v", "50M", "-minrate", "50M", "-maxrate", "50M", "-bufsize", "17825792",
        "-rc_init_occupancy", "17825792", "-rc_max_vbv_use", "1", "-rc_min_vbv_use", "1",
        "-g", "12", "-bf", "2", "-intra_vlc", "1", "-non_linear_quant", "1", "-intra_dc_precision", "2",
        "-qmin", "1", "-qmax", "12", "-lmin", "1*QP2LAMBDA",
    ]  # fmt: skip


def _audio_codec_args(fmt: str, index: int, stream: StreamInfo, options: ExportOptions) -> list[str]:
    deep = (stream.bits_per_sample or 16) > 16
    codec = f"-c:a:{index}"
    if fmt in ("flac", "mkv"):
        return [codec, "flac", f"-sample_fmt:a:{index}", "s32" if deep else "s16"]
    if fmt == "wav":
        return [codec, "pcm_s24le" if deep else "pcm_s16le", "-rf64", "auto"]
    bitrate = [f"-b:a:{index}", str(options.audio_bitrate)]
    if fmt == "mp3":
        return [codec, "libmp3lame", *bitrate]
    return [codec, "aac", f"-profile:a:{index}", "aac_low", *bitrate]  # aac, m4a, mp4, mov: AAC-LC


def _mxf_track_graph(
    stream: str, track: AudioTrack, options: ExportOptions, duration: float, number: int
) -> tuple[str, list[str]]:
    """Broadcast MXF: PCM s24le at 48 kHz, one mono track per channel."""
    chain = f"[{stream}]{audio_chain(track, options, duration)}"  # options.sample_rate is 48000
    if options.channels == 1:
        label = f"[m{number}c0]"
        return f"{chain}{label}", [label]
    labels = [f"[m{number}c{i}]" for i in range(options.channels)]
    layout = (
        _named_layout(track.stream) if options.channels == track.stream.channels else channel_layout(options.channels)
    )
    split = f"aformat=channel_layouts={layout},channelsplit=channel_layout={layout}"
    return f"{chain},{split}{''.join(labels)}", labels


def _named_layout(stream: StreamInfo) -> str:
    """The stream's channel layout, or FFmpeg's default one for its channel count (WAV may carry none)."""
    if stream.channel_layout and "channels" not in stream.channel_layout:
        return stream.channel_layout
    return channel_layout(stream.channels or 2)


def _muxer_args(fmt: str) -> list[str]:
    if fmt in ("mp4", "mov", "m4a"):
        return ["-movflags", "+faststart"]
    if fmt == "aac":
        return ["-write_id3v2", "1"]
    if fmt == "mp3":
        return ["-id3v2_version", "4", "-write_xing", "1"]
    return []
