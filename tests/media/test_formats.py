"""Spec §4, checked by probing what the HTTP API delivers: every export is requested with
POST /dub-alt-format/{run_id}/es-es, waited for, downloaded through its signed URL, then opened
with altdub's probe and with PyAV directly."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.probe import MediaInfo, probe
from tests.conftest import Media, auth
from tests.media.conftest import Exports

LANGUAGE = "es-es"
ISO639_2 = "spa"
TOLERANCE = 0.050  # seconds, spec §4
AUDIO_FORMATS = ["flac", "wav", "mp3", "aac", "m4a"]
VIDEO_FORMATS = ["mp4", "mov", "mkv", "mxf"]
ALL_FORMATS = AUDIO_FORMATS + VIDEO_FORMATS
MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"
# FFmpeg's demuxer name, and for the ISO family the major brand that tells them apart.
CONTAINERS = {
    "flac": ("flac", None),
    "wav": ("wav", None),
    "mp3": ("mp3", None),
    "aac": ("aac", None),
    "m4a": (MP4_FAMILY, "M4A "),
    "mp4": (MP4_FAMILY, "isom"),
    "mov": (MP4_FAMILY, "qt  "),
    "mkv": ("matroska,webm", None),
    "mxf": ("mxf", None),
}
# The dub (s16 PCM WAV) becomes: (codec id name of the audio, per spec §4).
AUDIO_CODECS = {
    "flac": "flac",
    "wav": "pcm_s16le",
    "mp3": "mp3",
    "aac": "aac",
    "m4a": "aac",
    "mp4": "aac",
    "mov": "aac",
    "mkv": "pcm_s16le",  # Matroska holds PCM as is: copied
    "mxf": "pcm_s24le",
}
# Containers that carry the track's language as a file-level tag (ID3 TLAN, Vorbis LANGUAGE, RIFF ILNG).
FILE_LEVEL_LANGUAGE = {"flac", "wav", "mp3", "aac"}
STREAM_LANGUAGE = {"m4a", "mp4", "mov", "mkv"}
OP1A_UL = "0d010201.01010900"


# --- extra sources ------------------------------------------------------------------------------


def _make_source(path: Path, video_args: list[str]) -> Path:
    """A 4 s test pattern + stereo tone, like the conftest's, with a video codec of our choosing."""
    run_ffmpeg(
        [
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4",
            "-ac", "2", *video_args, "-g", "25", "-c:a", "aac", "-shortest", file_arg(path),
        ]
    )  # fmt: skip
    return path


@dataclass(frozen=True)
class Extra:
    hevc_video: Path  # HEVC in MP4
    av1_video: Path  # AV1 in MP4


@pytest.fixture(scope="module")
def extra(tmp_path_factory: pytest.TempPathFactory) -> Extra:
    d = tmp_path_factory.mktemp("extra-media")
    return Extra(
        hevc_video=_make_source(d / "source-hevc.mp4", ["-c:v", "libx265", "-preset", "ultrafast"]),
        av1_video=_make_source(d / "source-av1.mp4", ["-c:v", "libsvtav1", "-preset", "12"]),
    )


# --- the runs and exports of this module, all requested up front so conversions overlap ----------

RUNS: dict[str, Callable[[Media, Extra], dict[str, Path]]] = {
    "h264": lambda m, x: {"source": m.video, "dub_es-es": m.dub_wav},
    "s24": lambda m, x: {"source": m.video, "dub_es-es": m.dub_s24},
    "short": lambda m, x: {"source": m.video, "dub_es-es": m.dub_short_ok},
    "flac_dub": lambda m, x: {"source": m.video, "dub_es-es": m.dub_flac},
    "mp3_dub": lambda m, x: {"source": m.video, "dub_es-es": m.audio_source},
    "vp9": lambda m, x: {"source": m.vp9_video, "dub_es-es": m.dub_wav},
    "mpeg2": lambda m, x: {"source": m.mpeg2_video, "dub_es-es": m.dub_wav},
    "hevc": lambda m, x: {"source": x.hevc_video, "dub_es-es": m.dub_wav},
    "av1": lambda m, x: {"source": x.av1_video, "dub_es-es": m.dub_wav},
    "audio_only": lambda m, x: {"source": m.audio_source, "dub_es-es": m.dub_wav},
}
PLANNED = {
    "h264": ALL_FORMATS,
    "s24": ["wav", "flac", "mkv"],
    "short": ["wav", "flac", "mkv"],
    "flac_dub": ["mkv"],
    "mp3_dub": ["mkv"],
    "vp9": ["mp4", "mov", "mkv"],
    "mpeg2": ["mxf", "mov"],
    "hevc": ["mp4"],
    "av1": ["mp4", "mkv"],
    "audio_only": AUDIO_FORMATS,
}


class Lab:
    def __init__(self, exports: Exports, media: Media, extra: Extra) -> None:
        self.exports, self.media, self.extra = exports, media, extra
        self.run_ids = {name: exports.run(files(media, extra)) for name, files in RUNS.items()}
        for name, formats in PLANNED.items():
            for output_format in formats:
                exports.request(self.run_ids[name], output_format, LANGUAGE)

    def inputs(self, run: str) -> dict[str, Path]:
        return RUNS[run](self.media, self.extra)

    def status(self, run: str, output_format: str) -> dict:
        return self.exports.status(self.run_ids[run], output_format, LANGUAGE)

    def file(self, run: str, output_format: str) -> Path:
        return self.exports.file(self.run_ids[run], output_format, LANGUAGE)


@pytest.fixture(scope="module")
def lab(exports: Exports, media: Media, extra: Extra) -> Lab:
    return Lab(exports, media, extra)


# --- helpers ------------------------------------------------------------------------------------


def codec_id_name(stream: av.stream.Stream) -> str:
    """The codec's own name ("mp3", "av1"), not the decoder PyAV picked ("mp3float", "libdav1d")."""
    return stream.codec_context.codec.canonical_name


def audio_codec_names(path: Path) -> list[str]:
    with av.open(str(path)) as container:
        return [codec_id_name(s) for s in container.streams.audio]


def decode_audio(path: Path, index: int = 0) -> np.ndarray:
    """All samples of the index-th audio stream as integers, shaped (channels, samples)."""
    chunks = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[index]
        for frame in container.decode(stream):
            array = frame.to_ndarray()
            if not frame.format.is_planar:
                array = array.reshape(-1, len(frame.layout.channels)).T
            chunks.append(array)
    samples = np.concatenate(chunks, axis=1)
    assert samples.dtype.kind == "i", f"{path.name} decodes to {samples.dtype}, not integer samples"
    return samples.astype(np.int64)


def assert_dub_then_silence(output: np.ndarray, dub: np.ndarray, shift: int = 0) -> None:
    """The output holds the dub's samples (scaled by 2**shift), then only zeros."""
    assert output.shape[0] == dub.shape[0], f"{output.shape[0]} channels instead of {dub.shape[0]}"
    n = dub.shape[1]
    assert output.shape[1] >= n, f"{output.shape[1]} samples, fewer than the dub's {n}"
    head = output[:, :n]
    mismatch = np.flatnonzero((head != dub << shift).any(axis=0))
    assert mismatch.size == 0, f"{mismatch.size} sample frames differ, first at {mismatch[:1]}"
    assert not output[:, n:].any(), "the padding after the dub is not silence"


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [bytes(packet) for packet in container.demux(stream) if packet.size]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [bytes(packet) for packet in container.demux(stream) if packet.size]


def audio_end(path: Path, index: int = 0) -> float:
    """When the index-th audio stream's last packet ends, in seconds (its real length)."""
    end = 0.0
    with av.open(str(path)) as container:
        stream = container.streams.audio[index]
        for packet in container.demux(stream):
            if packet.pts is not None and packet.duration:
                end = max(end, float((packet.pts + packet.duration) * stream.time_base))
    return end


def top_level_atoms(path: Path) -> list[str]:
    """The types of an ISO-BMFF file's top-level boxes, in order (32- and 64-bit sizes)."""
    data = path.read_bytes()
    atoms, pos = [], 0
    while pos < len(data):
        assert pos + 8 <= len(data), f"truncated box header at {pos}"
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:  # runs to the end of the file
            size = len(data) - pos
        assert size >= header, f"box {kind!r} at {pos} has size {size}"
        atoms.append(kind.decode("latin-1"))
        pos += size
    assert pos == len(data), "boxes overrun the file"
    return atoms


def id3v2_size(data: bytes) -> int:
    """Length of the leading ID3v2 tag (header included), from its syncsafe size."""
    assert data[:3] == b"ID3", f"no ID3v2 tag: file starts with {data[:3]!r}"
    size = 0
    for byte in data[6:10]:
        assert byte < 0x80, "ID3v2 size is not syncsafe"
        size = size << 7 | byte
    footer = 10 if data[5] & 0x10 else 0
    return 10 + size + footer


def title_of(info: MediaInfo) -> str | None:
    """The title as the container spells it: a title tag, or MXF's material package name."""
    return info.tags.get("title") or info.tags.get("material_package_name")


# --- every format on the reference run (H.264 + AAC source, s16 stereo WAV dub) -----------------


@pytest.mark.parametrize("output_format", ALL_FORMATS)
def test_export_succeeds_and_downloads(lab: Lab, output_format: str) -> None:
    status = lab.status("h264", output_format)
    assert status["status"] == "SUCCESS", status
    assert lab.file("h264", output_format).stat().st_size > 1000


@pytest.mark.parametrize("output_format", ALL_FORMATS)
def test_container_and_audio_codec(lab: Lab, output_format: str) -> None:
    info = probe(lab.file("h264", output_format))
    format_name, brand = CONTAINERS[output_format]
    assert info.format_name == format_name
    if brand is not None:
        assert info.tags.get("major_brand") == brand
    codecs = audio_codec_names(lab.file("h264", output_format))
    expected_tracks = 2 if output_format == "mxf" else 1  # MXF: one mono track per channel
    assert codecs == [AUDIO_CODECS[output_format]] * expected_tracks


@pytest.mark.parametrize("output_format", ALL_FORMATS)
def test_duration_is_the_sources(lab: Lab, output_format: str) -> None:
    source = probe(lab.inputs("h264")["source"])
    assert source.duration == pytest.approx(4.0, abs=0.001)
    output = lab.file("h264", output_format)
    info = probe(output)
    assert abs(info.duration - source.duration) <= TOLERANCE, info.duration
    for index in range(len(info.audio)):  # the dub itself, not just the container, lasts as long
        assert abs(audio_end(output, index) - source.duration) <= TOLERANCE


@pytest.mark.parametrize("output_format", ALL_FORMATS)
def test_title_metadata(lab: Lab, output_format: str) -> None:
    info = probe(lab.file("h264", output_format))
    title = title_of(info)
    assert title, f"no title in {output_format}: container tags are {info.tags}"


@pytest.mark.parametrize("output_format", sorted(STREAM_LANGUAGE))
def test_dub_track_language_and_default_on_stream(lab: Lab, output_format: str) -> None:
    info = probe(lab.file("h264", output_format))
    assert len(info.audio) == 1, info.audio
    dub = info.audio[0]
    assert dub.language == ISO639_2
    assert dub.default is True


@pytest.mark.parametrize("output_format", sorted(FILE_LEVEL_LANGUAGE))
def test_dub_language_as_file_tag(lab: Lab, output_format: str) -> None:
    """One-track audio files carry the track's language as the file's tag (TLAN, LANGUAGE, ILNG)."""
    info = probe(lab.file("h264", output_format))
    assert len(info.audio) == 1
    assert info.tags.get("language") == ISO639_2, info.tags


@pytest.mark.parametrize("output_format", VIDEO_FORMATS)
def test_video_formats_hold_one_picture_and_only_the_dub(lab: Lab, output_format: str) -> None:
    info = probe(lab.file("h264", output_format))
    assert len(info.video) == 1
    # MXF is a broadcast raster: the 320x240 source is scaled and pillarboxed to 1920x1080 (DELIVERIES.md §3)
    expected = (1920, 1080) if output_format == "mxf" else (320, 240)
    assert (info.video[0].width, info.video[0].height) == expected
    assert not info.subtitles
    assert len(info.audio) == (2 if output_format == "mxf" else 1)  # no original-language audio


def test_mxf_tracks_carry_no_language_or_default_flag(lab: Lab) -> None:
    """What is true of MXF: FFmpeg's OP1a muxer writes no track language and no default flag,
    though the plan asks for both (the spec's "tagged and default" cannot be met by this muxer)."""
    info = probe(lab.file("h264", "mxf"))
    assert len(info.audio) == 2
    assert [a.language for a in info.audio] == [None, None]
    assert [a.default for a in info.audio] == [False, False]


# --- flac and wav: lossless, sample-exact ----------------------------------------------------------


@pytest.mark.parametrize("output_format", ["flac", "wav"])
@pytest.mark.parametrize("run", ["h264", "s24", "short"])
def test_lossless_formats_are_sample_exact(lab: Lab, run: str, output_format: str) -> None:
    dub_path = lab.inputs(run)["dub_es-es"]
    output = lab.file(run, output_format)
    dub, out = probe(dub_path).audio[0], probe(output).audio[0]
    assert (out.sample_rate, out.channels) == (dub.sample_rate, dub.channels)
    samples = decode_audio(output)
    assert_dub_then_silence(samples, decode_audio(dub_path))
    expected = round(probe(lab.inputs(run)["source"]).duration * dub.sample_rate)
    assert abs(samples.shape[1] - expected) <= TOLERANCE * dub.sample_rate


@pytest.mark.parametrize(("run", "codec"), [("h264", "pcm_s16le"), ("s24", "pcm_s24le")])
def test_wav_sample_format_follows_the_dub(lab: Lab, run: str, codec: str) -> None:
    output = lab.file(run, "wav")
    assert audio_codec_names(output) == [codec]
    assert output.read_bytes()[:4] == b"RIFF"  # RF64 only beyond 4 GiB


@pytest.mark.parametrize(("run", "bits"), [("h264", 16), ("s24", 24)])
def test_flac_keeps_the_dub_bit_depth(lab: Lab, run: str, bits: int) -> None:
    data = lab.file(run, "flac").read_bytes()
    assert data[:4] == b"fLaC"
    assert data[4] & 0x7F == 0, "the first metadata block is not STREAMINFO"
    fields = int.from_bytes(data[8 + 10 : 8 + 18], "big")  # rate:20 channels-1:3 bps-1:5 samples:36
    assert (fields >> 44, ((fields >> 41) & 7) + 1, ((fields >> 36) & 31) + 1) == (48000, 2, bits)


# --- mp3 -----------------------------------------------------------------------------------------


def test_mp3_is_lame_mpeg1_layer3_at_192k_with_id3v2(lab: Lab) -> None:
    output = lab.file("h264", "mp3")
    data = output.read_bytes()
    tag_size = id3v2_size(data)
    assert data[3] in (3, 4), f"ID3v2.{data[3]}"
    assert b"TIT2" in data[:tag_size]
    frame = data[tag_size : tag_size + 4]
    assert frame[0] == 0xFF and frame[1] & 0xFE == 0xFA, f"not an MPEG-1 Layer III frame: {frame.hex()}"
    assert b"LAME" in data[: tag_size + 4096], "no LAME encoder signature"
    with av.open(str(output)) as container:
        stream = container.streams.audio[0]
        assert codec_id_name(stream) == "mp3"
        nominal = stream.codec_context.bit_rate
        payload = sum(packet.size for packet in container.demux(stream))
    assert abs(nominal - 192_000) <= 19_200, nominal
    average = payload * 8 / probe(output).duration
    assert abs(average - 192_000) <= 19_200, average


# --- aac (ADTS), m4a, mp4, mov -----------------------------------------------------------------


@pytest.mark.parametrize("output_format", ["aac", "m4a", "mp4", "mov"])
def test_aac_is_low_complexity(lab: Lab, output_format: str) -> None:
    with av.open(str(lab.file("h264", output_format))) as container:
        stream = container.streams.audio[0]
        assert codec_id_name(stream) == "aac"
        assert stream.codec_context.profile == "LC"


def test_aac_is_adts(lab: Lab) -> None:
    data = lab.file("h264", "aac").read_bytes()
    start = id3v2_size(data) if data[:3] == b"ID3" else 0
    header = data[start : start + 7]
    assert header[0] == 0xFF and header[1] & 0xF6 == 0xF0, f"no ADTS sync word: {header.hex()}"
    assert header[2] >> 6 == 1, "ADTS profile field is not AAC-LC"
    assert probe(lab.file("h264", "aac")).format_name == "aac"


@pytest.mark.parametrize("output_format", ["m4a", "mp4"])
def test_fast_start(lab: Lab, output_format: str) -> None:
    atoms = top_level_atoms(lab.file("h264", output_format))
    assert atoms[0] == "ftyp", atoms
    assert "moov" in atoms and "mdat" in atoms, atoms
    assert atoms.index("moov") < atoms.index("mdat"), atoms


# --- video: stream copy where the container holds the codec, else encode -------------------------


@pytest.mark.parametrize(
    ("run", "output_format"),
    [
        ("h264", "mp4"),
        ("h264", "mov"),
        ("h264", "mkv"),
        ("hevc", "mp4"),
        ("av1", "mp4"),
        ("av1", "mkv"),
        ("vp9", "mkv"),
        ("mpeg2", "mxf"),
        ("mpeg2", "mov"),
    ],
)
def test_video_is_stream_copied(lab: Lab, run: str, output_format: str) -> None:
    source, output = lab.inputs(run)["source"], lab.file(run, output_format)
    with av.open(str(source)) as container:
        source_codec = codec_id_name(container.streams.video[0])
    with av.open(str(output)) as container:
        output_codec = codec_id_name(container.streams.video[0])
    assert output_codec == source_codec, f"{source_codec} source became {output_codec}: not copied"
    expected, actual = video_packets(source), video_packets(output)
    assert len(actual) == len(expected)
    assert actual == expected, "video packets differ from the source's"


def test_hevc_in_mp4_is_tagged_hvc1(lab: Lab) -> None:
    atoms = lab.file("hevc", "mp4").read_bytes()
    assert b"hvc1" in atoms and b"hev1" not in atoms


@pytest.mark.parametrize("output_format", ["mp4", "mov"])
def test_vp9_is_encoded_to_h264(lab: Lab, output_format: str) -> None:
    output = lab.file("vp9", output_format)
    info = probe(output)
    assert info.video[0].codec == "h264"
    assert info.video[0].pixel_format == "yuv420p"
    assert (info.video[0].width, info.video[0].height) == (320, 240)
    assert abs(info.duration - probe(lab.inputs("vp9")["source"]).duration) <= TOLERANCE
    assert audio_codec_names(output) == ["aac"]


# --- mxf ---------------------------------------------------------------------------------------


def test_mxf_is_op1a_xdcam_hd422_with_mono_pcm_tracks(lab: Lab) -> None:
    output = lab.file("h264", "mxf")
    info = probe(output)
    assert info.format_name == "mxf"
    assert OP1A_UL in info.tags.get("operational_pattern_ul", ""), info.tags
    video = info.video[0]
    assert (video.codec, video.pixel_format) == ("mpeg2video", "yuv422p")
    with av.open(str(output)) as container:
        assert container.streams.video[0].codec_context.profile == "4:2:2"
    assert len(info.audio) == 2  # stereo dub: one mono track per channel
    for track in info.audio:
        assert (track.codec, track.sample_rate, track.channels) == ("pcm_s24le", 48000, 1)
        assert track.bits_per_sample == 24


def test_mxf_mono_tracks_are_the_dub_channels(lab: Lab) -> None:
    """Track i is channel i of the dub, widened from 16 to 24 bits (decoded as s32: << 16)."""
    dub = decode_audio(lab.inputs("h264")["dub_es-es"])
    output = lab.file("h264", "mxf")
    for channel in range(2):
        track = decode_audio(output, channel)
        assert track.shape[0] == 1
        assert_dub_then_silence(track, dub[channel : channel + 1], shift=16)


def test_mxf_from_mpeg2_copies_the_video_and_still_splits_audio(lab: Lab) -> None:
    info = probe(lab.file("mpeg2", "mxf"))
    assert OP1A_UL in info.tags.get("operational_pattern_ul", "")
    assert info.video[0].codec == "mpeg2video"
    assert [(a.codec, a.sample_rate, a.channels) for a in info.audio] == [("pcm_s24le", 48000, 1)] * 2


# --- mkv audio: copied when Matroska holds it, padded when short -----------------------------------


@pytest.mark.parametrize(
    ("run", "codec"),
    [("h264", "pcm_s16le"), ("s24", "pcm_s24le"), ("flac_dub", "flac"), ("mp3_dub", "mp3")],
)
def test_mkv_copies_a_full_length_dub(lab: Lab, run: str, codec: str) -> None:
    dub_path, output = lab.inputs(run)["dub_es-es"], lab.file(run, "mkv")
    assert audio_codec_names(output) == [codec], f"the {codec} dub was re-encoded, not copied"
    copied, original = audio_packets(output), audio_packets(dub_path)
    assert copied == original[: len(copied)], "audio packets are not the dub's"
    assert abs(probe(output).duration - probe(lab.inputs(run)["source"]).duration) <= TOLERANCE


def test_mkv_pads_a_short_dub_to_the_picture(lab: Lab) -> None:
    assert probe(lab.inputs("short")["dub_es-es"]).duration == pytest.approx(3.95)
    output = lab.file("short", "mkv")
    info = probe(output)
    assert abs(info.duration - 4.0) <= TOLERANCE, info.duration
    end = audio_end(output)
    assert abs(end - 4.0) <= TOLERANCE, f"the dub track ends at {end:.3f} s: not padded to the 4 s picture"
    assert info.audio[0].language == ISO639_2 and info.audio[0].default


# --- audio-only runs ---------------------------------------------------------------------------


@pytest.mark.parametrize("output_format", AUDIO_FORMATS)
def test_audio_only_run_exports_every_audio_format(lab: Lab, output_format: str) -> None:
    status = lab.status("audio_only", output_format)
    assert status["status"] == "SUCCESS", status
    info = probe(lab.file("audio_only", output_format))
    assert info.format_name == CONTAINERS[output_format][0]
    assert not info.video
    assert audio_codec_names(lab.file("audio_only", output_format)) == [AUDIO_CODECS[output_format]]
    source = probe(lab.inputs("audio_only")["source"])
    assert abs(info.duration - source.duration) <= TOLERANCE, (info.duration, source.duration)


@pytest.mark.parametrize("output_format", VIDEO_FORMATS)
def test_audio_only_run_refuses_video_formats(lab: Lab, output_format: str) -> None:
    exports = lab.exports
    response = exports.client.post(
        f"/dub-alt-format/{lab.run_ids['audio_only']}/{LANGUAGE}",
        headers=auth(exports.key),
        json={"output_format": output_format},
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    assert detail[0]["loc"] == ["body", "output_format"]
    assert isinstance(detail[0]["msg"], str) and isinstance(detail[0]["type"], str)


# --- probe: codec names (what the plans compare against) -------------------------------------------


@pytest.mark.parametrize(("which", "codec"), [("mp3", "mp3"), ("av1", "av1")])
def test_probe_names_codecs_not_decoders(lab: Lab, which: str, codec: str) -> None:
    """build_plan decides copy vs encode by StreamInfo.codec against codec names ("mp3", "av1")."""
    info = probe(lab.media.audio_source if which == "mp3" else lab.extra.av1_video)
    stream = info.audio[0] if which == "mp3" else info.video[0]
    assert stream.codec == codec
