"""The hand-off's stem plan (media/handoff.py): FFmpeg's arguments without FFmpeg, then the check of what it wrote."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.formats import AudioTrack, ExportInputs, build_plan
from altdub.media.handoff import StemSource, bext_description, stem_problems, stems_plan
from altdub.media.options import resolve_options
from altdub.media.probe import StreamInfo
from altdub.media.synth import make_tone
from altdub.media.timeline import Stem, Timeline

ORIGINATION = datetime(2026, 12, 1, 18, 30, 5, tzinfo=UTC)


def _stream(index: int = 0, channels: int = 2, rate: int = 44100) -> StreamInfo:
    return StreamInfo(index=index, kind="audio", codec="flac", duration=4.0, sample_rate=rate, channels=channels)


def _timeline(tmp_path: Path, start: str = "10:00:00:00") -> Timeline:
    stems = (
        Stem(tmp_path / "run-3_es-es_mix.wav", "mix", "es-es", "Spanish (Spain)", 2),
        Stem(tmp_path / "run-3_es-es_voice.wav", "voice", "es-es", "Spanish (Spain)", 1),
        Stem(tmp_path / "run-3_ME.wav", "me", None, None, 2),
        Stem(tmp_path / "run-3_en-us_original.wav", "original", "en-us", "English (United States)", 2),
    )
    return Timeline("run-3", 192_000, start, 25.0, stems)


def _sources(tmp_path: Path) -> list[StemSource]:
    source = tmp_path / "source.mp4"  # the picture's file: its audio is stream 1
    return [
        StemSource(tmp_path / "dub.flac", _stream()),
        StemSource(tmp_path / "voice.wav", _stream(channels=1, rate=48000)),
        StemSource(tmp_path / "background.wav", _stream()),
        StemSource(source, _stream(index=1)),
    ]


def _outputs(args: list[str]) -> list[list[str]]:
    """The argument list of each output, from just after the filter graph (or the previous output) to its file."""
    start = args.index("-filter_complex") + 2
    outputs, current = [], []
    for arg in args[start:]:
        current.append(arg)
        if arg.startswith("file:"):
            outputs.append(current)
            current = []
    assert not current, current
    return outputs


def _metadata(output: list[str]) -> dict[str, str]:
    pairs = [output[i + 1] for i, arg in enumerate(output) if arg == "-metadata"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_one_input_a_file_and_one_output_a_stem(tmp_path: Path) -> None:
    timeline = _timeline(tmp_path)
    args = stems_plan(timeline, _sources(tmp_path), "Episode 4", ORIGINATION)
    inputs = [args[i + 1] for i, arg in enumerate(args) if arg == "-i"]
    assert inputs == [file_arg(tmp_path / n) for n in ("dub.flac", "voice.wav", "background.wav", "source.mp4")]
    outputs = _outputs(args)
    assert [output[-1] for output in outputs] == [file_arg(stem.path) for stem in timeline.stems]
    for output in outputs:
        assert output[output.index("-c:a") + 1] == "pcm_s24le"
        assert output[output.index("-ar") + 1] == "48000"
        assert output[output.index("-write_bext") + 1] == "1"
        assert output[output.index("-f") + 1] == "wav"
        assert output[output.index("-map_metadata") + 1] == "-1"  # no tag of the inputs rides along


def test_every_stem_is_resampled_and_cut_to_the_programme_to_the_sample(tmp_path: Path) -> None:
    args = stems_plan(_timeline(tmp_path), _sources(tmp_path), "Episode 4", ORIGINATION)
    graphs = args[args.index("-filter_complex") + 1].split(";")
    assert graphs == [
        f"[{i}:{s}]aresample=48000,apad=whole_len=192000,atrim=end_sample=192000[s{i}]"
        for i, s in ((0, 0), (1, 0), (2, 0), (3, 1))
    ]
    assert [o[o.index("-map") + 1] for o in _outputs(args)] == ["[s0]", "[s1]", "[s2]", "[s3]"]


def test_one_file_feeding_two_stems_is_read_once(tmp_path: Path) -> None:
    timeline = _timeline(tmp_path)
    same = tmp_path / "all.mkv"
    sources = [StemSource(same, _stream(index=i)) for i in range(4)]
    args = stems_plan(timeline, sources, "x", ORIGINATION)
    assert [args[i + 1] for i, arg in enumerate(args) if arg == "-i"] == [file_arg(same)]
    assert args[args.index("-filter_complex") + 1].startswith("[0:0]")


@pytest.mark.parametrize(
    ("start", "reference"),
    [("10:00:00:00", 36_000 * 48_000), ("00:00:00:00", 0), ("00:00:01:05", 48_000 + 5 * 1920)],
)
def test_bext_time_reference_date_originator_and_description(tmp_path: Path, start: str, reference: int) -> None:
    timeline = _timeline(tmp_path, start)
    outputs = _outputs(stems_plan(timeline, _sources(tmp_path), "Episode 4", ORIGINATION))
    descriptions = []
    for output in outputs:
        bext = _metadata(output)
        assert bext["time_reference"] == str(reference)
        assert (bext["origination_date"], bext["origination_time"]) == ("2026-12-01", "18:30:05")
        assert bext["originator"] == "altdub"
        descriptions.append(bext["description"])
    assert descriptions == [
        "run-3 Spanish (Spain) mix: Episode 4",
        "run-3 Spanish (Spain) voice: Episode 4",
        "run-3 M&E: Episode 4",
        "run-3 English (United States) original: Episode 4",
    ]


def test_the_description_is_ascii_within_256_characters(tmp_path: Path) -> None:
    timeline = _timeline(tmp_path)
    stem = timeline.stems[0]
    assert bext_description(timeline, stem, "Café  Señor\tÅngström") == "run-3 Spanish (Spain) mix: Cafe Senor Angstrom"
    assert bext_description(timeline, stem, "日本語") == "run-3 Spanish (Spain) mix:"
    long = bext_description(timeline, stem, "x" * 1000)
    assert len(long) == 256 and long.isascii()


def test_sources_and_stems_must_pair(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 sources for 4 stems"):
        stems_plan(_timeline(tmp_path), _sources(tmp_path)[:3], "x", ORIGINATION)


# --- the check of what FFmpeg wrote ----------------------------------------------------------------------


def _write(path: Path, seconds: float, channels: int, codec: str = "pcm_s24le", rate: int = 48000) -> Path:
    run_ffmpeg(["-f", "lavfi", "-i", f"anullsrc=r={rate}:cl={'mono' if channels == 1 else 'stereo'}",
                "-t", f"{seconds}", "-c:a", codec, "-f", "wav", file_arg(path)])  # fmt: skip
    return path


def test_stems_of_the_right_form_and_length_pass(tmp_path: Path) -> None:
    stem = Stem(_write(tmp_path / "a.wav", 4.0, 1), "mix", "es-es", "Spanish (Spain)", 1)
    assert stem_problems(Timeline("run-3", 192_000, "00:00:00:00", 25.0, (stem,))) == []


def test_stems_of_another_length_form_or_none_are_named(tmp_path: Path) -> None:
    short = Stem(_write(tmp_path / "short.wav", 3.5, 2), "mix", "es-es", "Spanish (Spain)", 2)
    shallow = Stem(_write(tmp_path / "s16.wav", 4.0, 2, "pcm_s16le"), "voice", "es-es", "Spanish (Spain)", 2)
    slow = Stem(_write(tmp_path / "44k.wav", 4.0, 2, rate=44100), "me", None, None, 2)
    mono = Stem(_write(tmp_path / "mono.wav", 4.0, 1), "original", "en-us", "English", 2)
    missing = Stem(tmp_path / "missing.wav", "mix", "fr-fr", "French (France)", 2)
    stray = Stem(make_tone(tmp_path / "tone.wav", 4.0, codec="pcm_s24le"), "mix", "de-de", "German", 2)
    timeline = Timeline("run-3", 192_000, "00:00:00:00", 25.0, (short, shallow, slow, mono, missing, stray))
    problems = stem_problems(timeline)
    assert problems[0] == "short.wav lasts 3.500000 s instead of 192000 samples"
    assert problems[1] == "s16.wav holds pcm_s16le 48000 Hz 2 ch"
    assert problems[2] == "44k.wav holds pcm_s24le 44100 Hz 2 ch"
    assert problems[3] == "mono.wav holds pcm_s24le 48000 Hz 1 ch"
    assert problems[4].startswith("missing.wav is unreadable")
    assert len(problems) == 5  # the 24-bit 48 kHz stereo tone of 4 s is a stem as it should be


def test_build_plan_leaves_hand_offs_to_their_writers(tmp_path: Path) -> None:
    dub = _stream(rate=48000)
    inputs = ExportInputs((AudioTrack(tmp_path / "dub.wav", dub, 4.0, "spa"),), 4.0, "x")
    with pytest.raises(ValueError, match="tracks_zip is a hand-off for audio post"):
        build_plan("tracks_zip", inputs, resolve_options("tracks_zip", {}, dub), tmp_path / "out.zip")
