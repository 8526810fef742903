"""The catalogue of output formats: every fact about a format, once (yt-dlp's codec tables are the model).

Every reader takes its facts from here: the options resolver (media/options.py), the request schema
and the OpenAPI enum (api/schemas.py), the FFmpeg plans (media/formats.py), ``GET /formats`` (and
through it the dashboard's option lists) and the CLI help of ``altdub export``. tests/media/
test_catalogue.py fails when any of them disagrees with this table.

Adding a format is one entry plus its plan:
1. add a ``Format(...)`` to ``CATALOGUE`` below: its name, label, extension, MIME type, FFmpeg muxer,
   audio codecs, whether it takes video and several languages, the values its options allow,
   and the video and audio codecs it keeps as they are (``copyable_video``, ``copyable_audio``);
   an option a format does not take is left out (``bitrate_kbps=None``, ``subtitle_codec=None``;
   ``include_original_audio`` follows ``is_video``);
2. teach ``media/formats.py`` how to encode its audio (``_audio_codec_args``) and any muxer flags
   (``_muxer_args``), then cover it in tests/media/test_plans.py.
The schema, ``GET /formats``, the dashboard and the CLI pick it up without further edits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from altdub.media import timecode

# Option values every format shares (a format narrows them in its entry).
SAMPLE_RATES = (22050, 44100, 48000, 96000)
CHANNEL_COUNTS = (1, 2, 6)
STEMS = ("mix", "voice", "background")
SUBTITLE_MODES = ("none", "soft")
RASTER_MODES = ("broadcast", "source")  # scaled and padded to a broadcast raster, or the source's as it is
MIN_KBPS = 32
BITRATE_STEPS_KBPS = (64, 96, 128, 160, 192, 256, 320, 384, 448, 512)  # offered in the dashboard
_MP3_RATES = (48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)  # the rates MPEG audio has
_AAC_KBPS = {1: 128, 2: 192, 6: 384}  # by channel count


@dataclass(frozen=True)
class LoudnessTarget:
    """A loudness preset (spec §3, §6): what the normalisation aims at and what the QC report checks."""

    name: str
    label: str
    integrated: float  # LUFS (LKFS)
    true_peak: float  # dBTP ceiling
    tolerance: float  # LU either side of ``integrated`` that the QC report passes
    dialogue_gated: bool = False  # measured over speech only (transcript segments, else voice stem activity)
    lra: float | None = None  # LU: the most loudness range the QC report passes (None: reported, not checked)


# Tolerances are each specification's own: EBU R 128 ±0.5 LU (file-based), ATSC A/85 ±2 dB, Netflix and
# Amazon ±2 LU on dialogue, Apple Podcasts ±1 LU. YouTube and Spotify publish no tolerance (they turn a
# louder mix down to -14): ±1 LU, as Apple, keeps a mix within what plays as mastered; "streaming" likewise.
LOUDNESS_TARGETS = {
    t.name: t
    for t in (
        LoudnessTarget("ebu_r128", "EBU R128", -23.0, -1.0, 0.5),
        LoudnessTarget("atsc_a85", "ATSC A/85", -24.0, -2.0, 2.0),
        LoudnessTarget("streaming", "Streaming", -14.0, -1.0, 1.0),
        LoudnessTarget("netflix", "Netflix (dialogue)", -27.0, -2.0, 2.0, dialogue_gated=True, lra=18.0),
        LoudnessTarget("amazon", "Amazon Prime Video (dialogue)", -27.0, -2.0, 2.0, dialogue_gated=True, lra=18.0),
        LoudnessTarget("apple_podcasts", "Apple Podcasts", -16.0, -1.0, 1.0),
        LoudnessTarget("youtube", "YouTube", -14.0, -1.0, 1.0),
        LoudnessTarget("spotify", "Spotify", -14.0, -1.0, 1.0),
    )
}


@dataclass(frozen=True)
class Format:
    """One output format. Options a format does not take are absent from ``options()``."""

    name: str
    label: str  # for people: the dashboard's select
    note: str  # one sentence on what the file holds
    extension: str
    content_type: str
    muxer: str  # FFmpeg's -f
    audio_codecs: tuple[str, ...]  # FFmpeg encoders the plan may use ("copy" when the dub goes in as it is)
    is_video: bool
    multiple_languages: bool  # takes one audio track per language (masters)
    sample_rates: tuple[int, ...] = SAMPLE_RATES  # the rates a client may ask for
    carried_rates: tuple[int, ...] | None = None  # every rate the format can hold (None: any); the dub's own is kept
    channels: tuple[int, ...] = CHANNEL_COUNTS
    bitrate_kbps: tuple[int, int] | None = None  # lowest and highest, for lossy formats only
    default_kbps: dict[int, int] = field(default_factory=dict)  # by channel count
    subtitle_codec: str | None = None  # soft subtitles only where set
    copyable_video: frozenset[str] | None = None  # video codecs copied as they are (None: every codec)
    copyable_audio: frozenset[str] | None = None  # audio codecs a dub may keep (None: always encoded)
    track_per_channel: bool = False  # MXF: one mono PCM track per channel
    broadcast_rasters: tuple[tuple[int, int], ...] = ()  # width x height a picture is scaled and padded to (raster)
    package_entry: str | None = None  # a streaming package (a folder): the file its output_url points at

    @property
    def lossy(self) -> bool:
        return self.bitrate_kbps is not None

    @property
    def default_sample_rate(self) -> int | None:
        """A rate imposed whatever the dub's own (None: the dub's own, within what the format carries)."""
        return self.sample_rates[0] if len(self.sample_rates) == 1 else None

    @property
    def default_channels(self) -> int | None:
        """A channel count imposed whatever the dub's own (None: the dub's own, within what the format takes)."""
        return self.channels[0] if len(self.channels) == 1 else None

    def carries_rate(self, rate: int) -> bool:
        return rate in (self.carried_rates or (rate,))

    def default_bitrate(self, channels: int) -> int | None:
        """Bits per second; None for lossless and PCM formats."""
        if not self.lossy:
            return None
        return self.default_kbps.get(channels, max(self.default_kbps.values())) * 1000

    def bitrate_steps(self) -> tuple[str, ...]:
        if self.bitrate_kbps is None:
            return ()
        low, high = self.bitrate_kbps
        return tuple(f"{k}k" for k in BITRATE_STEPS_KBPS if low <= k <= high)

    def options(self) -> dict[str, dict[str, Any]]:
        """Each option that applies: its allowed values and its default (None: the dub's own).

        ``audio_bitrate`` also has ``min`` and ``max``: any whole number of kb/s between them is taken;
        its ``values`` are the usual steps. ``start_timecode`` lists no values: it has a ``pattern``.
        """
        options: dict[str, dict[str, Any]] = {}
        if self.bitrate_kbps is not None:
            low, high = self.bitrate_kbps
            options["audio_bitrate"] = {
                "values": list(self.bitrate_steps()),
                "min": f"{low}k",
                "max": f"{high}k",
                "default": {str(c): f"{k}k" for c, k in self.default_kbps.items()},
            }
        options["sample_rate"] = {"values": list(self.sample_rates), "default": self.default_sample_rate}
        options["channels"] = {"values": list(self.channels), "default": None}
        options["loudness"] = {"values": list(LOUDNESS_TARGETS), "default": None}
        options["stem"] = {"values": list(STEMS), "default": "mix"}
        if self.is_video:
            options["include_original_audio"] = {"values": [False, True], "default": False}
        if self.subtitle_codec is not None:
            options["subtitles"] = {"values": list(SUBTITLE_MODES), "default": "none"}
        if self.broadcast_rasters:
            options["raster"] = {"values": list(RASTER_MODES), "default": RASTER_MODES[0]}
        if self.is_video and self.package_entry is None:  # any timecode of the pattern whose frame exists at its rate
            options["start_timecode"] = {"values": [], "default": None, "pattern": f"^{timecode.PATTERN.pattern}$"}
        return options


_MP4_VIDEO = frozenset({"h264", "hevc", "av1", "mpeg4"})
_MOV_VIDEO = frozenset({"h264", "hevc", "prores", "mpeg4", "mjpeg", "dnxhd", "mpeg2video"})
_MXF_VIDEO = frozenset({"mpeg2video", "dnxhd"})
_MATROSKA_AUDIO = frozenset({
    "flac", "aac", "opus", "vorbis", "mp3", "ac3", "eac3", "alac",
    "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le",
})  # fmt: skip
_AAC = {"audio_codecs": ("aac",), "bitrate_kbps": (MIN_KBPS, 512), "default_kbps": _AAC_KBPS}
_STREAMING_VIDEO = frozenset({"h264", "hevc"})  # copied into CMAF segments; anything else is encoded to H.264
# Streaming packages (spec §4): CMAF segments shared by HLS and DASH, one stereo AAC rendition per language.
_PACKAGE = {
    "audio_codecs": ("aac",), "is_video": True, "multiple_languages": True, "sample_rates": (48000, 44100),
    "carried_rates": (48000, 44100), "channels": (2,), "bitrate_kbps": (MIN_KBPS, 512), "default_kbps": {2: 128},
    "subtitle_codec": "webvtt", "copyable_video": _STREAMING_VIDEO,
}  # fmt: skip

# In the order the dashboard offers them: the common deliveries first, audio before video.
CATALOGUE: dict[str, Format] = {
    f.name: f
    for f in (
        Format("mp3", "MP3", "LAME, 192 kb/s by default, with ID3 tags.",
               "mp3", "audio/mpeg", "mp3", ("libmp3lame",), is_video=False, multiple_languages=False,
               sample_rates=(22050, 44100, 48000), carried_rates=_MP3_RATES, channels=(1, 2),
               bitrate_kbps=(MIN_KBPS, 320), default_kbps={1: 192, 2: 192}),
        Format("aac", "AAC (ADTS)", "AAC-LC in an ADTS stream.",
               "aac", "audio/aac", "adts", is_video=False, multiple_languages=False, **_AAC),
        Format("m4a", "M4A (AAC in MP4)", "AAC-LC in MP4, ready to stream.",
               "m4a", "audio/mp4", "ipod", is_video=False, multiple_languages=False, **_AAC),
        Format("flac", "FLAC (lossless)", "Lossless: the dub's own samples.",
               "flac", "audio/flac", "flac", ("flac",), is_video=False, multiple_languages=False),
        Format("wav", "WAV (PCM)", "PCM, 16-bit (24-bit when the dub is deeper).",
               "wav", "audio/wav", "wav", ("pcm_s16le", "pcm_s24le"), is_video=False, multiple_languages=False),
        Format("mp4", "MP4", "The source video (copied when MP4 can hold it) with the dub as its default AAC track.",
               "mp4", "video/mp4", "mp4", is_video=True, multiple_languages=True,
               subtitle_codec="mov_text", copyable_video=_MP4_VIDEO, **_AAC),
        Format("mov", "MOV (QuickTime)", "QuickTime: the source video (copied when possible) with the dub in AAC.",
               "mov", "video/quicktime", "mov", is_video=True, multiple_languages=True,
               subtitle_codec="mov_text", copyable_video=_MOV_VIDEO, **_AAC),
        Format("mkv", "MKV (Matroska)", "Matroska: the source video copied as is, the dub copied or in FLAC.",
               "mkv", "video/x-matroska", "matroska", ("copy", "flac"), is_video=True, multiple_languages=True,
               subtitle_codec="subrip", copyable_audio=_MATROSKA_AUDIO),
        Format("mxf", "MXF (broadcast OP1a)", "Broadcast OP1a: MPEG-2 4:2:2 video, PCM 24-bit 48 kHz audio.",
               "mxf", "application/mxf", "mxf", ("pcm_s24le",), is_video=True, multiple_languages=True,
               sample_rates=(48000,), carried_rates=(48000,), copyable_video=_MXF_VIDEO, track_per_channel=True,
               broadcast_rasters=((1920, 1080), (1280, 720))),
        Format("hls", "HLS package", "Streaming: CMAF segments, an AAC rendition per language, WebVTT per transcript.",
               "m3u8", "application/vnd.apple.mpegurl", "dash", package_entry="master.m3u8", **_PACKAGE),
        Format("dash", "DASH package", "Streaming: the HLS package's segments, described by an MPD.",
               "mpd", "application/dash+xml", "dash", package_entry="manifest.mpd", **_PACKAGE),
    )
}  # fmt: skip
FORMAT_NAMES = tuple(CATALOGUE)


def union(values: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Every value any format allows, in first-seen order."""
    return tuple(dict.fromkeys(v for vs in values for v in vs))


def formats_with(key: str) -> list[str]:
    """The formats an option applies to."""
    return [f.name for f in CATALOGUE.values() if key in f.options()]


def describe_sample_rates() -> str:
    narrowed = [f"{f.name}: {_or(f.sample_rates)}" for f in CATALOGUE.values() if f.sample_rates != SAMPLE_RATES]
    return f"{_or(SAMPLE_RATES)} (or the dub's own); {'; '.join(narrowed)}. Default: the dub's own (within the format)."


def describe_channels() -> str:
    narrowed = [f"{f.name}: {_or(f.channels)}" for f in CATALOGUE.values() if f.channels != CHANNEL_COUNTS]
    return f"{_or(CHANNEL_COUNTS)}; {'; '.join(narrowed)}. Default: the dub's own."


def describe_bitrates() -> str:
    groups: dict[str, list[str]] = {}
    for f in CATALOGUE.values():
        if f.bitrate_kbps is None:
            continue
        kbps = set(f.default_kbps.values())
        if len(kbps) == 1:
            default = f"{kbps.pop()}k"
        else:
            default = ", ".join(f"{k}k {_CHANNEL_WORDS.get(c, f'{c} channels')}" for c, k in f.default_kbps.items())
        words = f"'{f.bitrate_kbps[0]}k' to '{f.bitrate_kbps[1]}k', default {default}"
        groups.setdefault(words, []).append(f.name)
    return "; ".join(f"{', '.join(names)}: {words}" for words, names in groups.items()) + "."


def describe_stems() -> str:
    return f"{_or(STEMS)}. Default mix; voice and background need those stems in the run."


def describe_subtitles() -> str:
    formats = ", ".join(formats_with("subtitles"))
    return f"{_or(SUBTITLE_MODES)}; {formats} only: 'soft' adds the language's transcript as a text track."


def describe_original_audio() -> str:
    formats = ", ".join(formats_with("include_original_audio"))
    return f"{formats}: add the source-language audio as a second, non-default track."


def describe_start_timecode() -> str:
    formats = ", ".join(formats_with("start_timecode"))
    return (
        f"{formats}: the picture's first timecode, 'HH:MM:SS:FF' (e.g. '{timecode.EXAMPLE}'; 'HH:MM:SS;FF' drop-frame, "
        "29.97 and 59.94 fps only), FF below the frame rate. Default: the source's own, else 00:00:00:00."
    )


def describe_raster() -> str:
    formats = ", ".join(formats_with("raster"))
    rasters = " or ".join(f"{w}x{h}" for f in CATALOGUE.values() for w, h in f.broadcast_rasters)
    return (
        f"{_or(RASTER_MODES)}; {formats} only. Default broadcast: a picture that is not {rasters} is scaled and padded "
        "(aspect kept) to the nearest; 'source' keeps the source's."
    )


def multilingual() -> list[str]:
    """The formats that take several languages: the masters (a track each) and the streaming packages."""
    return [f.name for f in CATALOGUE.values() if f.multiple_languages]


def describe_languages() -> str:
    return (
        "A language id or short_name (es-es); several in track order, comma-separated (es-es,fr-fr); or 'all': "
        "every dubbed language of the run, in import order. Several languages need a format that takes them: "
        f"{_or(tuple(multilingual()))}."
    )


def describe_loudness() -> str:
    targets = [
        f"{t.name}: {t.integrated:g}±{t.tolerance:g} LUFS{' dialogue' * t.dialogue_gated}, {t.true_peak:g} dBTP"
        for t in LOUDNESS_TARGETS.values()
    ]
    return "; ".join(targets) + ". Dialogue needs a transcript or voice stem. Default null: untouched."


_CHANNEL_WORDS = {1: "mono", 2: "stereo", 6: "5.1"}


def _or(values: tuple[Any, ...]) -> str:
    words = [str(v) for v in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
