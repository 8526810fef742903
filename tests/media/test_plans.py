"""Unit tests of build_plan: FFmpeg argument lists, with no FFmpeg run except where said."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import pytest

import altdub.media.ffmpeg as ffmpeg_module
from altdub.media.catalogue import CATALOGUE
from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.formats import AudioTrack, ExportInputs, ExportPlan, TextTrack, build_plan, pre_loudness_chain
from altdub.media.options import ExportOptions, resolve_options
from altdub.media.probe import StreamInfo, probe
from tests.conftest import Media

# The formats build_plan makes: streaming packages are packaging.package_plan's (tests/media/test_packaging.py).
PLANNED_FORMATS = [name for name, f in CATALOGUE.items() if f.package_entry is None and not f.handoff]
VIDEO_FORMATS = [name for name in PLANNED_FORMATS if CATALOGUE[name].is_video]
AUDIO_FORMATS = [name for name in PLANNED_FORMATS if not CATALOGUE[name].is_video]
SUBTITLE_CODECS = {"mp4": "mov_text", "mov": "mov_text", "mkv": "subrip"}
# Names chosen to break anything that splits on spaces, reads options, or goes through a shell.
HOSTILE = "-i evil; touch pwned $(touch pwned2) `x` concat:a|b.wav"
_OUTPUT_LABELS = re.compile(r"(\[[^\]]+\])+$")
LOUDNORM = "volume=6.880dB"  # a measured normalisation: altdub.media.loudness.Normalisation.filter()


def _video(codec: str = "h264", index: int = 0) -> StreamInfo:
    return StreamInfo(index=index, kind="video", codec=codec, width=1920, height=1080, pixel_format="yuv420p")


def _audio(
    codec: str = "pcm_s16le",
    index: int = 0,
    channels: int = 2,
    bits: int = 16,
    duration: float = 4.0,
    sample_rate: int = 48000,
    layout: str | None = None,
) -> StreamInfo:
    return StreamInfo(
        index=index,
        kind="audio",
        codec=codec,
        duration=duration,
        sample_rate=sample_rate,
        channels=channels,
        channel_layout=layout or ("stereo" if channels == 2 else None),
        sample_format="s16" if bits == 16 else "s32",
        bits_per_sample=bits,
    )


def _inputs(
    tmp_path: Path,
    *,
    video_codec: str | None = "h264",
    with_source: bool = True,
    dub: StreamInfo | None = None,
    dub_name: str = "dub.wav",
    source_name: str = "source.mp4",
    original: StreamInfo | None = None,
    loudnorm: str | None = None,
    original_loudnorm: str | None = None,
    subtitles_name: str | None = "subtitles.srt",
    subtitles_language: str = "spa",
) -> ExportInputs:
    """A dub, and (unless ``with_source`` is false) a source: video + AAC, or an mp3 when ``video_codec`` is None."""
    dub = dub or _audio()
    audio = AudioTrack(tmp_path / dub_name, dub, dub.duration or 4.0, "spa", loudnorm=loudnorm)
    video_path = video = source_audio = None
    if with_source:
        source_path = tmp_path / source_name
        if video_codec:
            video_path, video = source_path, _video(video_codec)
            original = original or _audio("aac", index=1, sample_rate=48000)
        else:
            original = original or _audio("mp3", index=0, sample_rate=44100)
        source_audio = AudioTrack(source_path, original, original.duration or 4.0, "eng", loudnorm=original_loudnorm)
    subtitles = (TextTrack(tmp_path / subtitles_name, subtitles_language, "Spanish (Spain)"),) if subtitles_name else ()
    return ExportInputs(
        dubs=(audio,),
        duration=4.0,
        title="Trailer (Spanish (Spain))",
        video_path=video_path,
        video=video,
        original=source_audio,
        subtitles=subtitles,
    )


def _options(output_format: str, inputs: ExportInputs, **requested: Any) -> ExportOptions:
    return resolve_options(output_format, requested, inputs.dubs[0].stream)


def _plan(output_format: str, inputs: ExportInputs, output: Path, **requested: Any) -> ExportPlan:
    return build_plan(output_format, inputs, _options(output_format, inputs, **requested), output)


def _inputs_of(args: list[str]) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == "-i"]


def _pairs(args: list[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(args))


def _values(args: list[str], option: str) -> list[str]:
    """Every value given to ``option``, in order."""
    return [value for name, value in itertools.pairwise(args) if name == option]


def _graph(args: list[str]) -> str:
    assert args.count("-filter_complex") == 1, args
    return args[args.index("-filter_complex") + 1]


def _chains(args: list[str]) -> dict[str, str]:
    """The filter graph's chains by output label: ``{"[a0]": "[1:0]apad=...,aresample=44100"}``."""
    chains = {}
    for chain in _graph(args).split(";"):
        outputs = _OUTPUT_LABELS.search(chain)
        assert outputs is not None, chain
        for label in re.findall(r"\[[^\]]+\]", outputs.group(0)):
            chains[label] = chain[: outputs.start()]
    return chains


def _filters(chain: str) -> list[str]:
    """The filters of one chain, its input label dropped."""
    return chain[chain.index("]") + 1 :].split(",")


# --- paths: always file: URLs, one argument each ----------------------------------------------------


@pytest.mark.parametrize("output_format", PLANNED_FORMATS)
def test_every_path_argument_is_a_file_url(tmp_path: Path, output_format: str) -> None:
    output = tmp_path / f"out.{output_format}"
    plan = _plan(output_format, _inputs(tmp_path), output)
    assert all(isinstance(arg, str) for arg in plan.args)
    inputs = _inputs_of(plan.args)
    assert len(inputs) == (2 if CATALOGUE[output_format].is_video else 1)
    assert all(path.startswith("file:") for path in inputs), inputs
    assert plan.args[-1] == file_arg(output) and plan.args[-1].startswith("file:")
    assert _pairs(plan.args) >= {("-f", CATALOGUE[output_format].muxer)}


@pytest.mark.parametrize("output_format", SUBTITLE_CODECS)
def test_every_path_is_a_file_url_with_original_audio_and_subtitles(tmp_path: Path, output_format: str) -> None:
    inputs = _inputs(tmp_path)
    plan = _plan(output_format, inputs, tmp_path / "out", include_original_audio=True, subtitles="soft")
    # The original audio comes from the source already opened for its picture: no second -i for it.
    assert _inputs_of(plan.args) == [
        file_arg(tmp_path / "source.mp4"),
        file_arg(tmp_path / "dub.wav"),
        file_arg(tmp_path / "subtitles.srt"),
    ]


@pytest.mark.parametrize("output_format", PLANNED_FORMATS)
def test_hostile_file_names_stay_single_file_urls(tmp_path: Path, output_format: str) -> None:
    is_video = CATALOGUE[output_format].is_video
    inputs = _inputs(
        tmp_path, dub_name=HOSTILE, source_name="-y " + HOSTILE + ".mp4", subtitles_name="-c:s " + HOSTILE + ".srt"
    )
    output = tmp_path / ("-" + HOSTILE + "." + output_format)
    requested: dict[str, Any] = {"include_original_audio": True} if is_video else {}
    if output_format in SUBTITLE_CODECS:
        requested["subtitles"] = "soft"
    plan = _plan(output_format, inputs, output, **requested)
    expected = [file_arg(inputs.dubs[0].path)]
    if is_video:
        expected.insert(0, file_arg(inputs.video_path))
    if output_format in SUBTITLE_CODECS:
        expected.append(file_arg(inputs.subtitles[0].path))
    assert _inputs_of(plan.args) == expected
    assert plan.args[-1] == file_arg(output)
    assert not [arg for arg in plan.args if HOSTILE in arg and not arg.startswith("file:/")]


@pytest.mark.parametrize("output_format", PLANNED_FORMATS)
def test_a_hostile_title_stays_one_metadata_value(tmp_path: Path, output_format: str) -> None:
    plan = _plan(output_format, replace(_inputs(tmp_path), title=HOSTILE), tmp_path / "out")
    expected = [f"title={HOSTILE}"] + ([f"material_package_name={HOSTILE}"] if output_format == "mxf" else [])
    assert [arg for arg in plan.args if HOSTILE in arg] == expected
    assert _values(plan.args, "-metadata")[: len(expected)] == expected


def test_run_ffmpeg_uses_an_argument_list_and_no_shell(
    tmp_path: Path, media: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real conversion of a dub named like a shell injection: one process, no shell, no side effects."""
    calls: list[tuple[object, dict]] = []
    real_popen = subprocess.Popen

    def recording_popen(command, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((command, kwargs))
        return real_popen(command, *args, **kwargs)

    monkeypatch.setattr(ffmpeg_module.subprocess, "Popen", recording_popen)
    monkeypatch.chdir(tmp_path)
    dub_path = tmp_path / HOSTILE
    shutil.copyfile(media.dub_wav, dub_path)
    dub = probe(dub_path)
    inputs = ExportInputs((AudioTrack(dub_path, dub.audio[0], dub.duration, "spa"),), dub.duration, "t")
    output = tmp_path / ("-" + HOSTILE + ".flac")
    plan = build_plan("flac", inputs, resolve_options("flac", {}, dub.audio[0]), output)
    run_ffmpeg(plan.args, duration=inputs.duration)

    assert len(calls) == 1
    command, kwargs = calls[0]
    assert isinstance(command, list) and all(isinstance(arg, str) for arg in command)
    assert not kwargs.get("shell", False)
    assert command[-len(plan.args) :] == plan.args
    assert probe(output).audio[0].codec == "flac"
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


# --- what cannot be made --------------------------------------------------------------------------


@pytest.mark.parametrize("output_format", VIDEO_FORMATS)
def test_video_format_without_a_source_is_a_value_error(tmp_path: Path, output_format: str) -> None:
    inputs = _inputs(tmp_path, with_source=False)
    with pytest.raises(ValueError):
        _plan(output_format, inputs, tmp_path / "out")


@pytest.mark.parametrize("output_format", VIDEO_FORMATS)
def test_video_format_from_an_audio_source_is_a_value_error(tmp_path: Path, output_format: str) -> None:
    inputs = _inputs(tmp_path, video_codec=None)
    assert inputs.original is not None and inputs.video is None
    with pytest.raises(ValueError):
        _plan(output_format, inputs, tmp_path / "out")


@pytest.mark.parametrize("output_format", AUDIO_FORMATS)
def test_audio_format_needs_no_source(tmp_path: Path, output_format: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path, with_source=False), tmp_path / "out")
    assert _inputs_of(plan.args) == [file_arg(tmp_path / "dub.wav")]
    assert plan.video_copied is False


@pytest.mark.parametrize("output_format", AUDIO_FORMATS)
def test_audio_format_ignores_an_audio_source(tmp_path: Path, output_format: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path, video_codec=None), tmp_path / "out")
    assert _inputs_of(plan.args) == [file_arg(tmp_path / "dub.wav")]


@pytest.mark.parametrize("output_format", AUDIO_FORMATS)
@pytest.mark.parametrize("option", ["include_original_audio", "subtitles"])
def test_audio_format_refuses_a_second_track_or_subtitles(tmp_path: Path, output_format: str, option: str) -> None:
    """Options that resolve_options would refuse are refused by build_plan as well, not silently dropped."""
    options = ExportOptions(
        sample_rate=48000,
        channels=2,
        include_original_audio=option == "include_original_audio",
        subtitles="soft" if option == "subtitles" else "none",
    )
    with pytest.raises(ValueError):
        build_plan(output_format, _inputs(tmp_path), options, tmp_path / "out")


@pytest.mark.parametrize("output_format", VIDEO_FORMATS)
def test_original_audio_without_an_original_is_a_value_error(tmp_path: Path, output_format: str) -> None:
    inputs = replace(_inputs(tmp_path), original=None)
    with pytest.raises(ValueError):
        _plan(output_format, inputs, tmp_path / "out", include_original_audio=True)


@pytest.mark.parametrize("output_format", SUBTITLE_CODECS)
def test_soft_subtitles_without_a_transcript_is_a_value_error(tmp_path: Path, output_format: str) -> None:
    inputs = _inputs(tmp_path, subtitles_name=None)
    with pytest.raises(ValueError):
        _plan(output_format, inputs, tmp_path / "out", subtitles="soft")


# --- length, title, language ----------------------------------------------------------------------


@pytest.mark.parametrize("output_format", PLANNED_FORMATS)
def test_length_title_and_language_are_asked_for(tmp_path: Path, output_format: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path), tmp_path / "out")
    pairs = _pairs(plan.args)
    assert ("-t", "4.000000") in pairs
    assert ("-map_metadata", "-1") in pairs  # nothing of the source's tags leaks through
    assert ("-metadata", "title=Trailer (Spanish (Spain))") in pairs
    assert ("-metadata:s:a:0", "language=spa") in pairs
    assert ("-disposition:a:0", "default") in pairs
    if not CATALOGUE[output_format].is_video:  # ID3 TLAN, Vorbis LANGUAGE, RIFF ILNG
        assert ("-metadata", "language=spa") in pairs
    if output_format == "mxf":
        assert ("-metadata", "material_package_name=Trailer (Spanish (Spain))") in pairs


@pytest.mark.parametrize("output_format", PLANNED_FORMATS)
def test_the_dub_is_padded_to_the_picture(tmp_path: Path, output_format: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path, dub=_audio(duration=3.9)), tmp_path / "out")
    first = _chains(plan.args)["[m0c0]" if output_format == "mxf" else "[a0]"]
    assert first.startswith("[1:0]" if CATALOGUE[output_format].is_video else "[0:0]")
    assert _filters(first)[0] == "apad=whole_dur=4.000000"


# --- no filter graph when no sample changes (issue 17: the plain floor) -----------------------------

ENCODED_FORMATS = [f for f in PLANNED_FORMATS if CATALOGUE[f].copyable_audio is None and f != "mxf"]


@pytest.mark.parametrize("output_format", ENCODED_FORMATS)
@pytest.mark.parametrize("dub_seconds", [4.0, 4.5])
def test_a_dub_as_long_as_the_picture_is_encoded_with_no_graph(
    tmp_path: Path, output_format: str, dub_seconds: float
) -> None:
    """Same rate, same channels, no gain, at least as long: the encoder reads the dub itself; -t trims a longer one."""
    plan = _plan(output_format, _inputs(tmp_path, dub=_audio(duration=dub_seconds)), tmp_path / "out")
    assert "-filter_complex" not in plan.args
    dub_stream = "1:0" if CATALOGUE[output_format].is_video else "0:0"
    assert dub_stream in _values(plan.args, "-map")
    assert _values(plan.args, "-c:a:0") == [CATALOGUE[output_format].audio_codecs[0]]
    assert ("-t", "4.000000") in _pairs(plan.args)
    assert plan.audio_copied is False


@pytest.mark.parametrize(
    ("change", "requested"),
    [("rate", {"sample_rate": 44100}), ("channels", {"channels": 1}), ("short", {}), ("loudness", {})],
)
def test_any_sample_change_keeps_the_graph(tmp_path: Path, change: str, requested: dict[str, Any]) -> None:
    dub = _audio(duration=3.9) if change == "short" else _audio()
    inputs = _inputs(tmp_path, dub=dub, loudnorm=LOUDNORM if change == "loudness" else None)
    plan = _plan("mp3", inputs, tmp_path / "out", **requested)
    assert _chains(plan.args)["[a0]"].startswith("[0:0]")


@pytest.mark.parametrize("output_format", ["flac", "mp3", "aac", "m4a"])
def test_no_graph_writes_the_packets_the_padding_graph_wrote(tmp_path: Path, media: Media, output_format: str) -> None:
    """The graph dropped was a no-op: the same samples reach the encoder, so the same packets come out."""
    inputs = _real_inputs(media, media.dub_wav, with_video=False)
    options = resolve_options(output_format, {}, inputs.dubs[0].stream)
    plain, padded = tmp_path / f"plain.{output_format}", tmp_path / f"padded.{output_format}"
    plain_plan = build_plan(output_format, inputs, options, plain)
    assert "-filter_complex" not in plain_plan.args
    # the dub said to be a little short: the plan pads it with the graph, which finds nothing to pad
    short = replace(inputs, dubs=(replace(inputs.dubs[0], duration=inputs.duration - 0.5),))
    padded_plan = build_plan(output_format, short, options, padded)
    assert "apad" in _graph(padded_plan.args)
    for plan in (plain_plan, padded_plan):
        run_ffmpeg(plan.args, duration=inputs.duration)
    assert _packets(plain) == _packets(padded)


def _packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(audio=0) if packet.size]


# --- copy or encode ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output_format", "video_codec", "copied"),
    [
        ("mp4", "h264", True),
        ("mp4", "hevc", True),
        ("mp4", "av1", True),
        ("mp4", "mpeg4", True),
        ("mp4", "vp9", False),
        ("mov", "h264", True),
        ("mov", "hevc", True),
        ("mov", "prores", True),
        ("mov", "mpeg2video", True),
        ("mov", "vp9", False),
        ("mkv", "vp9", True),
        ("mkv", "h264", True),
        ("mkv", "mpeg2video", True),
        ("mxf", "mpeg2video", True),
        ("mxf", "dnxhd", True),
        ("mxf", "h264", False),
    ],
)
def test_video_copy_or_encode(tmp_path: Path, output_format: str, video_codec: str, copied: bool) -> None:
    plan = _plan(output_format, _inputs(tmp_path, video_codec=video_codec), tmp_path / "out")
    assert plan.video_copied is copied
    pairs = _pairs(plan.args)
    assert ("-map", "0:0") in pairs
    if copied:
        assert ("-c:v", "copy") in pairs
    elif output_format == "mxf":
        assert {("-c:v", "mpeg2video"), ("-pix_fmt", "yuv422p")} <= pairs
    else:
        assert {("-c:v", "libx264"), ("-pix_fmt", "yuv420p")} <= pairs


@pytest.mark.parametrize("output_format", ["mp4", "mov"])
def test_hevc_in_iso_formats_is_tagged_hvc1(tmp_path: Path, output_format: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path, video_codec="hevc"), tmp_path / "out")
    assert ("-tag:v", "hvc1") in _pairs(plan.args)


@pytest.mark.parametrize(("output_format", "video_codec"), [("mp4", "h264"), ("mkv", "hevc"), ("mov", "prores")])
def test_only_hevc_in_iso_formats_is_retagged(tmp_path: Path, output_format: str, video_codec: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path, video_codec=video_codec), tmp_path / "out")
    assert "-tag:v" not in plan.args


@pytest.mark.parametrize("codec", ["flac", "pcm_s16le", "pcm_s24le", "aac", "opus", "mp3"])
def test_mkv_copies_a_full_length_dub_matroska_holds(tmp_path: Path, codec: str) -> None:
    plan = _plan("mkv", _inputs(tmp_path, dub=_audio(codec)), tmp_path / "out")
    assert plan.audio_copied is True
    pairs = _pairs(plan.args)
    assert {("-map", "1:0"), ("-c:a:0", "copy")} <= pairs
    assert "-filter_complex" not in plan.args


def test_mkv_pads_a_short_dub_and_encodes_flac(tmp_path: Path) -> None:
    plan = _plan("mkv", _inputs(tmp_path, dub=_audio("pcm_s16le", duration=3.9)), tmp_path / "out")
    assert plan.audio_copied is False
    pairs = _pairs(plan.args)
    assert _filters(_chains(plan.args)["[a0]"])[0] == "apad=whole_dur=4.000000"
    assert {("-map", "[a0]"), ("-c:a:0", "flac")} <= pairs
    assert ("-c:a:0", "copy") not in pairs


def test_mkv_encodes_flac_when_matroska_cannot_hold_the_dub(tmp_path: Path) -> None:
    plan = _plan("mkv", _inputs(tmp_path, dub=_audio("pcm_s16be")), tmp_path / "out")
    assert plan.audio_copied is False
    assert ("-c:a:0", "flac") in _pairs(plan.args)


@pytest.mark.parametrize(("bits", "sample_format"), [(16, "s16"), (24, "s32")])
def test_mkv_and_flac_keep_the_dub_depth(tmp_path: Path, bits: int, sample_format: str) -> None:
    dub = _audio(f"pcm_s{bits}le", bits=bits, duration=3.9)  # short: encoded, not copied
    for output_format in ("flac", "mkv"):
        plan = _plan(output_format, _inputs(tmp_path, dub=dub), tmp_path / "out")
        assert {("-c:a:0", "flac"), ("-sample_fmt:a:0", sample_format)} <= _pairs(plan.args)


@pytest.mark.parametrize(("bits", "codec"), [(16, "pcm_s16le"), (24, "pcm_s24le")])
def test_wav_depth_follows_the_dub(tmp_path: Path, bits: int, codec: str) -> None:
    plan = _plan("wav", _inputs(tmp_path, dub=_audio(f"pcm_s{bits}le", bits=bits)), tmp_path / "out")
    pairs = _pairs(plan.args)
    assert ("-c:a:0", codec) in pairs
    assert ("-rf64", "auto") in pairs


@pytest.mark.parametrize(("output_format", "encoder"), [("mp3", "libmp3lame"), *((f, "aac") for f in ("aac", "m4a"))])
def test_lossy_audio_formats_encode(tmp_path: Path, output_format: str, encoder: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path), tmp_path / "out")
    pairs = _pairs(plan.args)
    assert ("-c:a:0", encoder) in pairs
    if encoder == "aac":
        assert ("-profile:a:0", "aac_low") in pairs
    assert plan.audio_copied is False


@pytest.mark.parametrize("output_format", ["mp4", "mov"])
def test_iso_video_formats_encode_aac_lc(tmp_path: Path, output_format: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path, dub=_audio("aac")), tmp_path / "out")
    assert {("-c:a:0", "aac"), ("-profile:a:0", "aac_low")} <= _pairs(plan.args)
    assert plan.audio_copied is False


def test_mxf_splits_channels_into_mono_pcm_s24_tracks(tmp_path: Path) -> None:
    plan = _plan("mxf", _inputs(tmp_path, dub=_audio(channels=2)), tmp_path / "out")
    pairs = _pairs(plan.args)
    assert {("-map", "[m0c0]"), ("-map", "[m0c1]"), ("-c:a", "pcm_s24le"), ("-ar", "48000")} <= pairs
    assert _values(plan.args, "-map") == ["0:0", "[m0c0]", "[m0c1]"]
    assert "channelsplit=channel_layout=stereo" in _graph(plan.args)
    assert _values(plan.args, "-disposition:a:0") == ["default"]
    assert _values(plan.args, "-disposition:a:1") == ["0"]
    assert ("-metadata:s:a:1", "language=spa") in pairs


def test_mxf_six_channels_make_six_mono_tracks(tmp_path: Path) -> None:
    plan = _plan("mxf", _inputs(tmp_path, dub=_audio(channels=6, layout="5.1")), tmp_path / "out")
    assert _values(plan.args, "-map") == ["0:0", *(f"[m0c{i}]" for i in range(6))]
    assert "channelsplit=channel_layout=5.1[m0c0][m0c1][m0c2][m0c3][m0c4][m0c5]" in _graph(plan.args)


def test_mxf_keeps_a_mono_dub_as_one_track(tmp_path: Path) -> None:
    plan = _plan("mxf", _inputs(tmp_path, dub=_audio(channels=1)), tmp_path / "out")
    assert _values(plan.args, "-map") == ["0:0", "[m0c0]"]
    assert "channelsplit" not in _graph(plan.args)


@pytest.mark.parametrize("output_format", ["mp4", "m4a", "mov"])
def test_iso_formats_ask_for_fast_start(tmp_path: Path, output_format: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path), tmp_path / "out")
    assert ("-movflags", "+faststart") in _pairs(plan.args)


# --- options: bitrate, sample rate, channels --------------------------------------------------------


@pytest.mark.parametrize("output_format", ["mp3", "aac", "m4a", "mp4", "mov"])
@pytest.mark.parametrize(("requested", "expected"), [(None, "192000"), ("256k", "256000"), ("32k", "32000")])
def test_the_bitrate_goes_to_the_first_audio_track(
    tmp_path: Path, output_format: str, requested: str | None, expected: str
) -> None:
    plan = _plan(output_format, _inputs(tmp_path), tmp_path / "out", audio_bitrate=requested)
    assert _values(plan.args, "-b:a:0") == [expected]
    assert "-b:a" not in plan.args


@pytest.mark.parametrize("output_format", ["flac", "wav", "mkv", "mxf"])
def test_lossless_and_pcm_formats_ask_for_no_bitrate(tmp_path: Path, output_format: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path, dub=_audio(duration=3.9)), tmp_path / "out")
    assert not [arg for arg in plan.args if arg.startswith("-b:a")]


@pytest.mark.parametrize("output_format", [f for f in PLANNED_FORMATS if f != "mxf"])
@pytest.mark.parametrize("rate", [22050, 44100])
def test_a_new_sample_rate_is_resampled(tmp_path: Path, output_format: str, rate: int) -> None:
    plan = _plan(output_format, _inputs(tmp_path), tmp_path / "out", sample_rate=rate)
    assert _filters(_chains(plan.args)["[a0]"])[-1] == f"aresample={rate}"
    assert plan.audio_copied is False


@pytest.mark.parametrize("output_format", PLANNED_FORMATS)
@pytest.mark.parametrize("requested", [{}, {"sample_rate": 48000}])
def test_the_dub_rate_is_not_resampled(tmp_path: Path, output_format: str, requested: dict[str, Any]) -> None:
    plan = _plan(output_format, _inputs(tmp_path, dub=_audio(duration=3.9)), tmp_path / "out", **requested)
    assert "aresample" not in _graph(plan.args)


def test_mxf_resamples_a_44k_dub_to_48k(tmp_path: Path) -> None:
    plan = _plan("mxf", _inputs(tmp_path, dub=_audio(sample_rate=44100)), tmp_path / "out")
    assert "aresample=48000" in _filters(_chains(plan.args)["[m0c0]"])


def test_mp3_resamples_a_96k_dub_to_48k(tmp_path: Path) -> None:
    plan = _plan("mp3", _inputs(tmp_path, dub=_audio(sample_rate=96000)), tmp_path / "out")
    assert _filters(_chains(plan.args)["[a0]"])[-1] == "aresample=48000"


@pytest.mark.parametrize(
    ("output_format", "channels", "layout"),
    [
        *((f, 1, "mono") for f in PLANNED_FORMATS if f != "mxf"),
        *((f, 6, "5.1") for f in PLANNED_FORMATS if f not in ("mxf", "mp3")),  # mp3: mono or stereo only
    ],
)
def test_new_channels_are_formatted_to_their_layout(
    tmp_path: Path, output_format: str, channels: int, layout: str
) -> None:
    plan = _plan(output_format, _inputs(tmp_path), tmp_path / "out", channels=channels)
    assert f"aformat=channel_layouts={layout}" in _filters(_chains(plan.args)["[a0]"])
    assert plan.audio_copied is False


@pytest.mark.parametrize("output_format", PLANNED_FORMATS)
def test_the_dub_channels_are_not_reformatted(tmp_path: Path, output_format: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path, dub=_audio(duration=3.9)), tmp_path / "out", channels=2)
    chain = _chains(plan.args)["[m0c0]" if output_format == "mxf" else "[a0]"]
    if output_format == "mxf":  # the split names the layout it splits, and only that
        assert [f for f in _filters(chain) if f.startswith("aformat")] == ["aformat=channel_layouts=stereo"]
    else:
        assert "aformat" not in chain


def test_mp3_downmixes_a_six_channel_dub_to_stereo(tmp_path: Path) -> None:
    plan = _plan("mp3", _inputs(tmp_path, dub=_audio(channels=6, layout="5.1")), tmp_path / "out")
    assert "aformat=channel_layouts=stereo" in _filters(_chains(plan.args)["[a0]"])


def test_mxf_splits_the_layout_asked_for(tmp_path: Path) -> None:
    plan = _plan("mxf", _inputs(tmp_path), tmp_path / "out", channels=6)
    assert _values(plan.args, "-map") == ["0:0", *(f"[m0c{i}]" for i in range(6))]
    assert "channelsplit=channel_layout=5.1" in _graph(plan.args)


# --- loudness ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("output_format", PLANNED_FORMATS)
def test_the_normalisation_filter_runs_after_the_padding(tmp_path: Path, output_format: str) -> None:
    inputs = _inputs(tmp_path, loudnorm=LOUDNORM)
    plan = _plan(output_format, inputs, tmp_path / "out", loudness="ebu_r128")
    filters = _filters(_chains(plan.args)["[m0c0]" if output_format == "mxf" else "[a0]"])
    assert filters[0] == "apad=whole_dur=4.000000"
    assert LOUDNORM in filters  # one filter, exactly as measured
    assert "aresample=48000" not in filters  # the rate does not change: nothing to resample
    assert plan.audio_copied is False


@pytest.mark.parametrize("output_format", ["flac", "mp4"])
def test_loudnorm_resamples_to_a_rate_asked_for(tmp_path: Path, output_format: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path, loudnorm=LOUDNORM), tmp_path / "out", sample_rate=44100)
    filters = _filters(_chains(plan.args)["[a0]"])
    assert filters[filters.index(LOUDNORM) + 1 :] == ["aresample=44100"]


def test_loudnorm_comes_after_the_channel_change_it_measured(tmp_path: Path) -> None:
    """pre_loudness_chain is what pass one measured: pass two must run it before loudnorm."""
    inputs = _inputs(tmp_path, loudnorm=LOUDNORM)
    options = _options("flac", inputs, channels=1, loudness="ebu_r128")
    plan = build_plan("flac", inputs, options, tmp_path / "out")
    filters = _filters(_chains(plan.args)["[a0]"])
    measured = pre_loudness_chain(inputs.dubs[0], options, inputs.duration).split(",")
    assert "aformat=channel_layouts=mono" in measured
    assert filters[: len(measured)] == measured
    assert filters[len(measured)] == LOUDNORM


# --- the original audio as a second track ---------------------------------------------------------


@pytest.mark.parametrize("output_format", ["mp4", "mov", "mkv"])
def test_original_audio_is_a_second_non_default_track(tmp_path: Path, output_format: str) -> None:
    inputs = _inputs(tmp_path, dub=_audio(duration=3.9))
    plan = _plan(output_format, inputs, tmp_path / "out", include_original_audio=True)
    pairs = _pairs(plan.args)
    maps = _values(plan.args, "-map")
    assert maps[0] == "0:0" and maps[1] == "[a0]"
    assert maps[2] in ("0:1", "[a1]")  # the source's own audio stream, copied (mkv) or through the graph
    if maps[2] == "[a1]":
        assert _chains(plan.args)["[a1]"].startswith("[0:1]")
    assert {("-metadata:s:a:0", "language=spa"), ("-metadata:s:a:1", "language=eng")} <= pairs
    assert _values(plan.args, "-disposition:a:0") == ["default"]
    assert _values(plan.args, "-disposition:a:1") == ["0"]
    assert len(_values(plan.args, "-map")) == 3


@pytest.mark.parametrize("output_format", ["mp4", "mov"])
def test_original_audio_is_encoded_like_the_dub(tmp_path: Path, output_format: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path), tmp_path / "out", include_original_audio=True, audio_bitrate="96k")
    pairs = _pairs(plan.args)
    assert {("-c:a:1", "aac"), ("-profile:a:1", "aac_low"), ("-b:a:1", "96000"), ("-b:a:0", "96000")} <= pairs


def test_original_audio_is_resampled_and_reformatted_to_the_options(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path, original=_audio("aac", index=1, sample_rate=44100, channels=2))
    plan = _plan("mp4", inputs, tmp_path / "out", include_original_audio=True, channels=1)
    filters = _filters(_chains(plan.args)["[a1]"])
    assert "aformat=channel_layouts=mono" in filters
    assert filters[-1] == "aresample=48000"


def test_original_audio_is_normalised_with_its_own_measurement(tmp_path: Path) -> None:
    other = "volume=-4.500dB"
    inputs = _inputs(tmp_path, loudnorm=LOUDNORM, original_loudnorm=other)
    plan = _plan("mp4", inputs, tmp_path / "out", include_original_audio=True, loudness="ebu_r128")
    chains = _chains(plan.args)
    assert LOUDNORM in _filters(chains["[a0]"]) and other not in _filters(chains["[a0]"])
    assert other in _filters(chains["[a1]"]) and LOUDNORM not in _filters(chains["[a1]"])


@pytest.mark.parametrize("output_format", VIDEO_FORMATS)
def test_without_the_option_the_original_is_not_mapped(tmp_path: Path, output_format: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path), tmp_path / "out", include_original_audio=False)
    maps = _values(plan.args, "-map")
    assert "0:1" not in maps and "[a1]" not in maps and "[m1c0]" not in maps
    assert "language=eng" not in plan.args
    assert len(maps) == (3 if output_format == "mxf" else 2)  # the picture and the dub (two mono tracks in MXF)


@pytest.mark.parametrize(("channels", "layout"), [(1, None), (2, "stereo"), (6, "5.1")])
def test_mxf_original_channels_become_further_mono_tracks(tmp_path: Path, channels: int, layout: str | None) -> None:
    dub = _audio(channels=channels, layout=layout)
    original = _audio("aac", index=1, channels=channels, layout=layout)
    plan = _plan("mxf", _inputs(tmp_path, dub=dub, original=original), tmp_path / "out", include_original_audio=True)
    dub_labels = [f"[m0c{i}]" for i in range(channels)]
    original_labels = [f"[m1c{i}]" for i in range(channels)]
    assert _values(plan.args, "-map") == ["0:0", *dub_labels, *original_labels]
    chains = _chains(plan.args)
    assert all(chains[label].startswith("[1:0]") for label in dub_labels)
    assert all(chains[label].startswith("[0:1]") for label in original_labels)
    pairs = _pairs(plan.args)
    for index in range(2 * channels):
        language = "spa" if index < channels else "eng"
        assert (f"-metadata:s:a:{index}", f"language={language}") in pairs
        assert _values(plan.args, f"-disposition:a:{index}") == ["default" if index == 0 else "0"]
    assert {("-c:a", "pcm_s24le"), ("-ar", "48000")} <= pairs


# --- soft subtitles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("output_format", "codec"), list(SUBTITLE_CODECS.items()))
def test_soft_subtitles_map_the_srt_as_a_text_track(tmp_path: Path, output_format: str, codec: str) -> None:
    inputs = _inputs(tmp_path, subtitles_language="ita")
    plan = _plan(output_format, inputs, tmp_path / "out", subtitles="soft")
    index = _inputs_of(plan.args).index(file_arg(tmp_path / "subtitles.srt"))
    pairs = _pairs(plan.args)
    assert ("-map", f"{index}:0") in pairs
    assert ("-c:s", codec) in pairs
    assert ("-metadata:s:s:0", "language=ita") in pairs
    assert ("-disposition:s:0", "default") not in pairs


@pytest.mark.parametrize("output_format", PLANNED_FORMATS)
def test_without_soft_subtitles_no_text_track(tmp_path: Path, output_format: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path), tmp_path / "out", subtitles="none")
    assert file_arg(tmp_path / "subtitles.srt") not in plan.args
    assert "-c:s" not in plan.args and "-metadata:s:s:0" not in plan.args


@pytest.mark.parametrize("output_format", SUBTITLE_CODECS)
def test_subtitles_and_original_audio_together(tmp_path: Path, output_format: str) -> None:
    plan = _plan(output_format, _inputs(tmp_path), tmp_path / "out", include_original_audio=True, subtitles="soft")
    maps = _values(plan.args, "-map")
    assert maps[0] == "0:0" and maps[-1] == "2:0" and len(maps) == 4


# --- Matroska: copy only when nothing changes -------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "copied"),
    [
        ({}, True),
        ({"sample_rate": 48000, "channels": 2}, True),
        ({"loudnorm": LOUDNORM}, False),
        ({"sample_rate": 44100}, False),
        ({"channels": 1}, False),
        ({"channels": 6}, False),
        ({"duration": 3.9}, False),
        ({"duration": 3.9995}, True),  # within Matroska's millisecond
    ],
)
def test_mkv_copies_audio_only_when_nothing_changes(tmp_path: Path, changes: dict[str, Any], copied: bool) -> None:
    changes = dict(changes)
    loudnorm = changes.pop("loudnorm", None)
    duration = changes.pop("duration", 4.0)
    inputs = _inputs(tmp_path, dub=_audio("flac", duration=duration), loudnorm=loudnorm)
    if loudnorm:
        changes["loudness"] = "ebu_r128"
    plan = _plan("mkv", inputs, tmp_path / "out", **changes)
    assert plan.audio_copied is copied
    pairs = _pairs(plan.args)
    assert (("-c:a:0", "copy") in pairs) is copied
    assert (("-c:a:0", "flac") in pairs) is not copied
    assert (("-map", "1:0") in pairs) is copied


def test_mkv_copies_the_original_when_it_can_but_reports_only_the_dub(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path, dub=_audio(duration=3.9))
    plan = _plan("mkv", inputs, tmp_path / "out", include_original_audio=True)
    pairs = _pairs(plan.args)
    assert {("-map", "[a0]"), ("-c:a:0", "flac"), ("-map", "0:1"), ("-c:a:1", "copy")} <= pairs
    assert plan.audio_copied is False


# --- FFmpeg accepts the plans (real conversions of the 4 s test media) -------------------------------


def _real_inputs(media: Media, dub_path: Path, *, with_video: bool = True) -> ExportInputs:
    dub = probe(dub_path)
    source = probe(media.video)
    return ExportInputs(
        dubs=(AudioTrack(dub_path, dub.audio[0], dub.duration, "spa"),),
        duration=source.duration,
        title="t",
        video_path=media.video if with_video else None,
        video=source.video[0] if with_video else None,
        original=AudioTrack(media.video, source.audio[0], source.duration, "eng"),
    )


@pytest.mark.parametrize("output_format", VIDEO_FORMATS)
def test_ffmpeg_makes_original_audio_and_subtitles(tmp_path: Path, media: Media, output_format: str) -> None:
    subtitles = tmp_path / "subtitles.srt"
    subtitles.write_text("1\n00:00:00,500 --> 00:00:02,000\nHola.\n\n2\n00:00:02,000 --> 00:00:03,500\nAdiós.\n")
    inputs = replace(_real_inputs(media, media.dub_wav), subtitles=(TextTrack(subtitles, "spa", "Spanish (Spain)"),))
    requested: dict[str, Any] = {"include_original_audio": True, "sample_rate": 48000}
    if output_format in SUBTITLE_CODECS:
        requested["subtitles"] = "soft"
    output = tmp_path / f"out.{output_format}"
    plan = build_plan(output_format, inputs, resolve_options(output_format, requested, inputs.dubs[0].stream), output)
    run_ffmpeg(plan.args, duration=inputs.duration)
    info = probe(output)
    per_track = 2 if output_format == "mxf" else 1
    assert len(info.audio) == 2 * per_track
    if output_format != "mxf":  # FFmpeg's MXF muxer writes no track language or default flag (test_formats)
        assert [s.language for s in info.audio] == ["spa", "eng"]
        assert [s.default for s in info.audio] == [True, False]
    assert [s.language for s in info.subtitles] == (["spa"] if output_format in SUBTITLE_CODECS else [])
    assert abs(info.duration - inputs.duration) <= 0.05


@pytest.mark.parametrize("output_format", AUDIO_FORMATS)
def test_ffmpeg_resamples_and_downmixes(tmp_path: Path, media: Media, output_format: str) -> None:
    inputs = _real_inputs(media, media.dub_wav, with_video=False)
    options = resolve_options(output_format, {"sample_rate": 44100, "channels": 1}, inputs.dubs[0].stream)
    output = tmp_path / f"out.{output_format}"
    run_ffmpeg(build_plan(output_format, inputs, options, output).args, duration=inputs.duration)
    audio = probe(output).audio
    assert [(s.sample_rate, s.channels) for s in audio] == [(44100, 1)]


# --- start timecode (DELIVERIES.md §3) ----------------------------------------------------------------------


@pytest.mark.parametrize("output_format", VIDEO_FORMATS)
@pytest.mark.parametrize("timecode", ["10:00:00:00", "01:00:00;00"])
def test_video_formats_write_the_source_start_timecode(tmp_path: Path, output_format: str, timecode: str) -> None:
    inputs = replace(_inputs(tmp_path, subtitles_name=None), timecode=timecode)
    assert _values(_plan(output_format, inputs, tmp_path / "out").args, "-timecode") == [timecode]


@pytest.mark.parametrize("output_format", [*VIDEO_FORMATS, *AUDIO_FORMATS])
def test_no_timecode_is_written_when_the_source_has_none(tmp_path: Path, output_format: str) -> None:
    args = _plan(output_format, _inputs(tmp_path, subtitles_name=None), tmp_path / "out").args
    assert "-timecode" not in args


@pytest.mark.parametrize("output_format", VIDEO_FORMATS)
def test_start_timecode_option_overrides_the_source(tmp_path: Path, output_format: str) -> None:
    inputs = replace(_inputs(tmp_path, subtitles_name=None), timecode="10:00:00:00")
    args = _plan(output_format, inputs, tmp_path / "out", start_timecode="01:00:00:00").args
    assert _values(args, "-timecode") == ["01:00:00:00"]


# --- MXF raster (DELIVERIES.md §3) --------------------------------------------------------------------------


def _sized_inputs(tmp_path: Path, width: int, height: int, codec: str = "h264") -> ExportInputs:
    inputs = _inputs(tmp_path, subtitles_name=None)
    assert inputs.video is not None
    return replace(inputs, video=replace(inputs.video, codec=codec, width=width, height=height))


@pytest.mark.parametrize(
    ("width", "height", "raster"),
    [(640, 480, "1920:1080"), (720, 576, "1920:1080"), (8192, 256, "1920:1080"), (1280, 800, "1280:720"),
     (960, 720, "1280:720"), (3840, 2160, "1920:1080"), (1440, 1080, "1920:1080")],
)  # fmt: skip
def test_mxf_scales_and_pads_to_the_nearest_broadcast_raster(
    tmp_path: Path, width: int, height: int, raster: str
) -> None:
    args = _plan("mxf", _sized_inputs(tmp_path, width, height, "mpeg2video"), tmp_path / "out").args
    (chain,) = _values(args, "-vf")
    assert chain.startswith(f"scale={raster}:force_original_aspect_ratio=decrease,pad={raster}:"), chain
    assert _values(args, "-c:v") == ["mpeg2video"]


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (1280, 720)])
def test_mxf_keeps_a_broadcast_raster_and_copies_mpeg2(tmp_path: Path, width: int, height: int) -> None:
    plan = _plan("mxf", _sized_inputs(tmp_path, width, height, "mpeg2video"), tmp_path / "out")
    assert "-vf" not in plan.args and plan.video_copied


def test_mxf_raster_source_keeps_the_picture(tmp_path: Path) -> None:
    plan = _plan("mxf", _sized_inputs(tmp_path, 640, 480, "mpeg2video"), tmp_path / "out", raster="source")
    assert "-vf" not in plan.args and plan.video_copied


@pytest.mark.parametrize(("width", "height"), [(8192, 256), (640, 4096), (16384, 128)])
def test_mxf_raster_source_refuses_a_picture_mpeg2_cannot_hold(tmp_path: Path, width: int, height: int) -> None:
    with pytest.raises(ValueError, match="raster 'broadcast'"):
        _plan("mxf", _sized_inputs(tmp_path, width, height), tmp_path / "out", raster="source")


@pytest.mark.parametrize("output_format", ["mp4", "mov", "mkv"])
def test_other_video_formats_keep_the_source_raster(tmp_path: Path, output_format: str) -> None:
    assert "-vf" not in _plan(output_format, _sized_inputs(tmp_path, 640, 480), tmp_path / "out").args


# --- masters: several dubs (DELIVERIES.md §2) ---------------------------------------------------------------

# (file, ISO 639-2/B, title, stream): a 44.1 kHz stereo FLAC, the default's 48 kHz stereo WAV, a 48 kHz mono WAV
_MASTER_DUBS = (
    ("es.flac", "spa", "Spanish (Spain)", _audio("flac", sample_rate=44100)),
    ("fr.wav", "fre", "French (France)", _audio()),
    ("de.wav", "ger", "German (Germany)", _audio(channels=1)),
)
MASTER_FORMATS = [name for name in PLANNED_FORMATS if CATALOGUE[name].multiple_languages]


def _master(tmp_path: Path, *, default_dub: int = 1, transcripts: int = 2) -> ExportInputs:
    """The three dubs above after a video source; transcripts for the first ``transcripts`` of them."""
    dubs = tuple(AudioTrack(tmp_path / name, stream, 4.0, code, title) for name, code, title, stream in _MASTER_DUBS)
    subtitles = tuple(
        TextTrack(tmp_path / f"{code}.srt", code, title) for _, code, title, _ in _MASTER_DUBS[:transcripts]
    )
    return replace(_inputs(tmp_path), dubs=dubs, default_dub=default_dub, subtitles=subtitles)


def _master_plan(output_format: str, inputs: ExportInputs, **requested: Any) -> ExportPlan:
    """The plan with the options a master resolves: the default dub's rate and channels for every track."""
    options = resolve_options(output_format, requested, inputs.dubs[inputs.default_dub].stream)
    return build_plan(output_format, inputs, options, inputs.dubs[0].path.parent / f"out.{output_format}")


def _mapped_input(args: list[str], target: str) -> str:
    """The ``input:stream`` a ``-map`` target reads: itself, or the input label of its filter chain."""
    return _chains(args)[target][1:].split("]")[0] if target.startswith("[") else target


@pytest.mark.parametrize("output_format", ["mkv", "mp4", "mov"])
def test_a_master_maps_one_audio_track_per_dub_in_order(tmp_path: Path, output_format: str) -> None:
    inputs = _master(tmp_path)
    plan = _master_plan(output_format, inputs)
    files = _inputs_of(plan.args)
    assert files[:4] == [file_arg(tmp_path / "source.mp4"), *(file_arg(tmp_path / d[0]) for d in _MASTER_DUBS)]
    audio = _values(plan.args, "-map")[1:4]
    assert [_mapped_input(plan.args, target) for target in audio] == ["1:0", "2:0", "3:0"]


@pytest.mark.parametrize("output_format", ["mkv", "mp4", "mov"])
def test_a_master_titles_and_tags_every_track(tmp_path: Path, output_format: str) -> None:
    plan = _master_plan(output_format, _master(tmp_path))
    mov = {"fre": "fra"}  # FFmpeg's MOV table knows French by its terminological code only
    for index, (_, code, title, _) in enumerate(_MASTER_DUBS):
        language = mov.get(code, code) if output_format == "mov" else code
        assert _values(plan.args, f"-metadata:s:a:{index}") == [f"language={language}", f"title={title}"]


@pytest.mark.parametrize("output_format", MASTER_FORMATS)
@pytest.mark.parametrize("default_dub", [0, 1, 2])
def test_a_master_has_one_default_track_the_default_dub(tmp_path: Path, output_format: str, default_dub: int) -> None:
    plan = _master_plan(output_format, _master(tmp_path, default_dub=default_dub), include_original_audio=True)
    # MXF: a track per channel of the default dub (de-de is mono: one each), the default its first
    per_track = (_MASTER_DUBS[default_dub][3].channels or 2) if output_format == "mxf" else 1
    dispositions = [_values(plan.args, f"-disposition:a:{i}") for i in range(4 * per_track)]
    assert dispositions == [["default" if i == default_dub * per_track else "0"] for i in range(4 * per_track)]
    assert f"-disposition:a:{4 * per_track}" not in plan.args


def test_every_track_of_a_master_takes_the_default_dubs_rate_and_channels(tmp_path: Path) -> None:
    plan = _master_plan("mp4", _master(tmp_path))
    chains = _chains(plan.args)
    spanish, german = _filters(chains["[a0]"]), _filters(chains["[a2]"])
    assert spanish[-1] == "aresample=48000" and not any(f.startswith("aformat") for f in spanish)
    assert _values(plan.args, "-map")[2] == "2:0" and "[a1]" not in chains  # French as it is: no chain at all
    assert "aformat=channel_layouts=stereo" in german and not any(f.startswith("aresample") for f in german)


def test_the_original_follows_every_dub_of_a_master(tmp_path: Path) -> None:
    plan = _master_plan("mkv", _master(tmp_path), include_original_audio=True)
    maps = _values(plan.args, "-map")
    assert _mapped_input(plan.args, maps[4]) == "0:1"  # after the picture and the three dubs
    assert ("-metadata:s:a:3", "language=eng") in _pairs(plan.args)
    assert _values(plan.args, "-disposition:a:3") == ["0"]


def test_an_mxf_master_splits_each_language_into_mono_tracks_in_order(tmp_path: Path) -> None:
    plan = _master_plan("mxf", _master(tmp_path))
    labels = [f"[m{n}c{c}]" for n in range(3) for c in range(2)]
    assert _values(plan.args, "-map") == ["0:0", *labels]
    chains = _chains(plan.args)
    for n, (_, code, title, _) in enumerate(_MASTER_DUBS):
        for c in range(2):
            assert chains[f"[m{n}c{c}]"].startswith(f"[{n + 1}:0]")
            assert _values(plan.args, f"-metadata:s:a:{2 * n + c}") == [f"language={code}", f"title={title}"]
    # the mono dub is made stereo before the split: every language fills two tracks
    assert "aformat=channel_layouts=stereo,channelsplit=channel_layout=stereo" in chains["[m2c0]"]


@pytest.mark.parametrize(("output_format", "codec"), list(SUBTITLE_CODECS.items()))
def test_a_master_has_one_text_track_per_transcript_none_default(
    tmp_path: Path, output_format: str, codec: str
) -> None:
    plan = _master_plan(output_format, _master(tmp_path, transcripts=2), subtitles="soft")
    files = _inputs_of(plan.args)
    texts = _values(plan.args, "-map")[-2:]
    assert texts == [f"{files.index(file_arg(tmp_path / f'{code}.srt'))}:0" for code in ("spa", "fre")]
    assert ("-c:s", codec) in _pairs(plan.args)
    for index, (_, code, title, _) in enumerate(_MASTER_DUBS[:2]):
        language = "fra" if (output_format, code) == ("mov", "fre") else code
        assert _values(plan.args, f"-metadata:s:s:{index}") == [f"language={language}", f"title={title}"]
        assert _values(plan.args, f"-disposition:s:{index}") == ["0"]
    assert "-metadata:s:s:2" not in plan.args


@pytest.mark.parametrize(
    ("output_format", "subtitles"), [(f, "none") for f in VIDEO_FORMATS] + [(f, "soft") for f in SUBTITLE_CODECS]
)
def test_only_mp4_and_mov_with_soft_subtitles_disable_text_tracks(
    tmp_path: Path, output_format: str, subtitles: str
) -> None:
    plan = _master_plan(output_format, _master(tmp_path), subtitles=subtitles)
    assert plan.disable_text_tracks is (output_format in ("mp4", "mov") and subtitles == "soft")


@pytest.mark.parametrize("output_format", AUDIO_FORMATS)
def test_several_dubs_in_an_audio_format_is_a_value_error(tmp_path: Path, output_format: str) -> None:
    inputs = replace(_master(tmp_path, default_dub=0), dubs=_master(tmp_path).dubs[:2], subtitles=())
    with pytest.raises(ValueError, match="carries one language"):
        _master_plan(output_format, inputs)
