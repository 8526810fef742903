"""Unit tests of build_plan: FFmpeg argument lists, with no FFmpeg run except where said."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import pytest

import altdub.media.ffmpeg as ffmpeg_module
from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.formats import FORMATS, ExportInputs, build_plan
from altdub.media.probe import MediaInfo, StreamInfo, probe
from tests.conftest import Media

VIDEO_FORMATS = [name for name, f in FORMATS.items() if f.is_video]
AUDIO_FORMATS = [name for name, f in FORMATS.items() if not f.is_video]
# Names chosen to break anything that splits on spaces, reads options, or goes through a shell.
HOSTILE = "-i evil; touch pwned $(touch pwned2) `x` concat:a|b.wav"


def _video(codec: str = "h264", index: int = 0) -> StreamInfo:
    return StreamInfo(index=index, kind="video", codec=codec, width=320, height=240, pixel_format="yuv420p")


def _audio(
    codec: str = "pcm_s16le", index: int = 0, channels: int = 2, bits: int = 16, duration: float = 4.0
) -> StreamInfo:
    return StreamInfo(
        index=index,
        kind="audio",
        codec=codec,
        duration=duration,
        sample_rate=48000,
        channels=channels,
        channel_layout="stereo" if channels == 2 else None,
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
) -> ExportInputs:
    dub = dub or _audio()
    source = None
    if with_source:
        streams = [_video(video_codec), _audio("aac", index=1)] if video_codec else [_audio("mp3")]
        source = MediaInfo("mov,mp4,m4a,3gp,3g2,mj2", 4.0, streams)
    return ExportInputs(
        dub_path=tmp_path / dub_name,
        dub=MediaInfo("wav", dub.duration or 4.0, [dub]),
        source_path=tmp_path / source_name if with_source else None,
        source=source,
        duration=4.0,
        language="spa",
        title="Trailer (Spanish (Spain))",
    )


def _inputs_of(args: list[str]) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == "-i"]


def _pairs(args: list[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(args))


# --- paths: always file: URLs, one argument each ----------------------------------------------------


@pytest.mark.parametrize("output_format", list(FORMATS))
def test_every_path_argument_is_a_file_url(tmp_path: Path, output_format: str) -> None:
    output = tmp_path / f"out.{output_format}"
    plan = build_plan(output_format, _inputs(tmp_path), output)
    assert all(isinstance(arg, str) for arg in plan.args)
    inputs = _inputs_of(plan.args)
    assert len(inputs) == (2 if FORMATS[output_format].is_video else 1)
    assert all(path.startswith("file:") for path in inputs), inputs
    assert plan.args[-1] == file_arg(output) and plan.args[-1].startswith("file:")
    assert _pairs(plan.args) >= {("-f", FORMATS[output_format].muxer)}


@pytest.mark.parametrize("output_format", list(FORMATS))
def test_hostile_file_names_stay_single_file_urls(tmp_path: Path, output_format: str) -> None:
    inputs = _inputs(tmp_path, dub_name=HOSTILE, source_name="-y " + HOSTILE + ".mp4")
    output = tmp_path / ("-" + HOSTILE + "." + output_format)
    plan = build_plan(output_format, inputs, output)
    expected = [file_arg(inputs.dub_path)]
    if FORMATS[output_format].is_video:
        expected.insert(0, file_arg(inputs.source_path))
    assert _inputs_of(plan.args) == expected
    assert plan.args[-1] == file_arg(output)
    assert not [arg for arg in plan.args if HOSTILE in arg and not arg.startswith("file:/")]


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
    inputs = ExportInputs(dub_path, dub, None, None, dub.duration, "spa", "t")
    output = tmp_path / ("-" + HOSTILE + ".flac")
    plan = build_plan("flac", inputs, output)
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
    with pytest.raises(ValueError):
        build_plan(output_format, _inputs(tmp_path, with_source=False), tmp_path / "out")


@pytest.mark.parametrize("output_format", VIDEO_FORMATS)
def test_video_format_from_an_audio_source_is_a_value_error(tmp_path: Path, output_format: str) -> None:
    with pytest.raises(ValueError):
        build_plan(output_format, _inputs(tmp_path, video_codec=None), tmp_path / "out")


@pytest.mark.parametrize("output_format", AUDIO_FORMATS)
def test_audio_format_needs_no_source(tmp_path: Path, output_format: str) -> None:
    plan = build_plan(output_format, _inputs(tmp_path, with_source=False), tmp_path / "out")
    assert _inputs_of(plan.args) == [file_arg(tmp_path / "dub.wav")]
    assert plan.video_copied is False


# --- length, title, language ----------------------------------------------------------------------


@pytest.mark.parametrize("output_format", list(FORMATS))
def test_length_title_and_language_are_asked_for(tmp_path: Path, output_format: str) -> None:
    plan = build_plan(output_format, _inputs(tmp_path), tmp_path / "out")
    pairs = _pairs(plan.args)
    assert ("-t", "4.000000") in pairs
    assert ("-map_metadata", "-1") in pairs  # nothing of the source's tags leaks through
    assert ("-metadata", "title=Trailer (Spanish (Spain))") in pairs
    if FORMATS[output_format].is_video or output_format == "m4a":
        assert ("-metadata:s:a:0", "language=spa") in pairs
        assert ("-disposition:a:0", "default") in pairs
    else:
        assert ("-metadata", "language=spa") in pairs


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
        ("mov", "prores", True),
        ("mov", "mpeg2video", True),
        ("mov", "vp9", False),
        ("mkv", "vp9", True),
        ("mkv", "h264", True),
        ("mxf", "mpeg2video", True),
        ("mxf", "dnxhd", True),
        ("mxf", "h264", False),
    ],
)
def test_video_copy_or_encode(tmp_path: Path, output_format: str, video_codec: str, copied: bool) -> None:
    plan = build_plan(output_format, _inputs(tmp_path, video_codec=video_codec), tmp_path / "out")
    assert plan.video_copied is copied
    pairs = _pairs(plan.args)
    if copied:
        assert ("-c:v", "copy") in pairs
    elif output_format == "mxf":
        assert {("-c:v", "mpeg2video"), ("-pix_fmt", "yuv422p")} <= pairs
    else:
        assert {("-c:v", "libx264"), ("-pix_fmt", "yuv420p")} <= pairs


def test_hevc_in_mp4_is_tagged_hvc1(tmp_path: Path) -> None:
    plan = build_plan("mp4", _inputs(tmp_path, video_codec="hevc"), tmp_path / "out")
    assert ("-tag:v", "hvc1") in _pairs(plan.args)


@pytest.mark.parametrize("codec", ["flac", "pcm_s16le", "pcm_s24le", "aac", "opus", "mp3"])
def test_mkv_copies_a_full_length_dub_matroska_holds(tmp_path: Path, codec: str) -> None:
    plan = build_plan("mkv", _inputs(tmp_path, dub=_audio(codec)), tmp_path / "out")
    assert plan.audio_copied is True
    assert ("-c:a", "copy") in _pairs(plan.args)


def test_mkv_pads_a_short_dub_and_encodes_flac(tmp_path: Path) -> None:
    plan = build_plan("mkv", _inputs(tmp_path, dub=_audio("pcm_s16le", duration=3.9)), tmp_path / "out")
    assert plan.audio_copied is False
    pairs = _pairs(plan.args)
    assert ("-af", "apad=whole_dur=4.000000") in pairs
    assert ("-c:a", "flac") in pairs


def test_mkv_encodes_flac_when_matroska_cannot_hold_the_dub(tmp_path: Path) -> None:
    plan = build_plan("mkv", _inputs(tmp_path, dub=_audio("pcm_s16be")), tmp_path / "out")
    assert plan.audio_copied is False
    assert ("-c:a", "flac") in _pairs(plan.args)


@pytest.mark.parametrize(("bits", "codec"), [(16, "pcm_s16le"), (24, "pcm_s24le")])
def test_wav_depth_follows_the_dub(tmp_path: Path, bits: int, codec: str) -> None:
    plan = build_plan("wav", _inputs(tmp_path, dub=_audio(f"pcm_s{bits}le", bits=bits)), tmp_path / "out")
    pairs = _pairs(plan.args)
    assert ("-c:a", codec) in pairs
    assert ("-rf64", "auto") in pairs


def test_mxf_splits_channels_into_mono_pcm_s24_tracks(tmp_path: Path) -> None:
    plan = build_plan("mxf", _inputs(tmp_path, dub=_audio(channels=2)), tmp_path / "out")
    pairs = _pairs(plan.args)
    assert {("-map", "[a0]"), ("-map", "[a1]"), ("-c:a", "pcm_s24le"), ("-ar", "48000")} <= pairs
    graph = plan.args[plan.args.index("-filter_complex") + 1]
    assert "channelsplit=channel_layout=stereo" in graph


@pytest.mark.parametrize("output_format", ["mp4", "m4a", "mov"])
def test_iso_formats_ask_for_fast_start(tmp_path: Path, output_format: str) -> None:
    plan = build_plan(output_format, _inputs(tmp_path), tmp_path / "out")
    assert ("-movflags", "+faststart") in _pairs(plan.args)
