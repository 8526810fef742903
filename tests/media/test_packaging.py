"""Streaming packages (DELIVERIES.md §4) at the media level: package_plan's FFmpeg arguments, then
finish_package and verify_package on what FFmpeg really wrote.

Packages are made by packaging.package_plan, never by formats.build_plan (tests/media/test_plans.py
covers the formats build_plan makes). What a client gets through HTTP is tests/api/test_packages.py's.
"""

from __future__ import annotations

import itertools
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import m3u8
import pytest

from altdub.media.catalogue import CATALOGUE
from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.formats import AudioTrack, ExportInputs, TextTrack, build_plan
from altdub.media.options import ExportOptions, resolve_options
from altdub.media.packaging import (
    DASH_MANIFEST,
    HLS_MASTER,
    SEGMENT_SECONDS,
    finish_package,
    package_plan,
    verify_package,
)
from altdub.media.probe import probe
from altdub.media.synth import make_tone
from tests.media.test_plans import _audio, _video

PACKAGE_FORMATS = [name for name, f in CATALOGUE.items() if f.package_entry is not None]
MPD = "{urn:mpeg:dash:schema:mpd:2011}"
ROLE_SCHEME = "urn:mpeg:dash:role:2011"
HOSTILE = "-i evil; touch pwned $(touch pwned2) `x` concat:a|b.wav"
SECONDS = 14.0  # three segments: 6 s, 6 s, 2 s
VTT = "WEBVTT\n\n00:00:00.500 --> 00:00:02.000\nHola.\n"

# (file, ISO 639-2/B, display name, BCP-47, stream): 44.1 kHz stereo, 48 kHz stereo, 48 kHz mono
_DUBS = (
    ("es.flac", "spa", "Spanish (Spain)", "es-ES", 44100, 2),
    ("fr.wav", "fre", "French (France)", "fr-FR", 48000, 2),
    ("de.wav", "ger", "German (Germany)", "de-DE", 48000, 1),
)


def test_package_formats_are_hls_and_dash_made_by_package_plan_not_build_plan(tmp_path: Path) -> None:
    assert PACKAGE_FORMATS == ["hls", "dash"]
    assert [CATALOGUE[f].package_entry for f in PACKAGE_FORMATS] == [HLS_MASTER, DASH_MANIFEST]
    for output_format in PACKAGE_FORMATS:
        inputs = _plan_inputs(tmp_path)
        with pytest.raises(ValueError, match="package"):
            build_plan(output_format, inputs, _options(output_format, inputs), tmp_path / "out")


# --- package_plan: FFmpeg's arguments, no FFmpeg run ---------------------------------------------------------


def _plan_inputs(
    tmp_path: Path, video_codec: str | None = "h264", *, default_dub: int = 1, source_name: str = "source.mp4"
) -> ExportInputs:
    dubs = tuple(
        AudioTrack(
            tmp_path / name, _audio(duration=SECONDS, sample_rate=rate, channels=channels), SECONDS, code, title, tag
        )
        for name, code, title, tag, rate, channels in _DUBS
    )
    source = tmp_path / source_name
    original = AudioTrack(
        source, _audio("aac", 1, duration=SECONDS), SECONDS, "eng", "English (United States) (original)"
    )
    return ExportInputs(
        dubs=dubs,
        duration=SECONDS,
        title="t",
        default_dub=default_dub,
        video_path=source if video_codec else None,
        video=_video(video_codec) if video_codec else None,
        original=replace(original, tag="en-US"),
    )


def _options(output_format: str, inputs: ExportInputs, **requested: Any) -> ExportOptions:
    return resolve_options(output_format, requested, inputs.dubs[inputs.default_dub].stream)


def _args(tmp_path: Path, inputs: ExportInputs, output_format: str = "hls", **requested: Any) -> list[str]:
    options = _options(output_format, inputs, **requested)
    return package_plan(output_format, inputs, options, tmp_path / "package").args


def _values(args: list[str], option: str) -> list[str]:
    return [value for name, value in itertools.pairwise(args) if name == option]


def _pairs(args: list[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(args))


@pytest.mark.parametrize("output_format", PACKAGE_FORMATS)
def test_the_dash_muxer_writes_segments_and_both_manifests_into_the_folder(tmp_path: Path, output_format: str) -> None:
    args = _args(tmp_path, _plan_inputs(tmp_path), output_format)
    assert args[-1] == file_arg(tmp_path / "package" / DASH_MANIFEST)
    assert {
        ("-f", "dash"),
        ("-seg_duration", str(SEGMENT_SECONDS)),
        ("-use_template", "1"),
        ("-hls_playlist", "1"),
    } <= _pairs(args)
    # a SegmentTimeline: the MPD describes the segments as cut (at the source's keyframes), not as 6 s each
    assert ("-use_timeline", "1") in _pairs(args)
    assert _values(args, "-t") == [f"{SECONDS:.6f}"]


def test_two_formats_one_plan(tmp_path: Path) -> None:
    """HLS and DASH are one set of segments: the same FFmpeg run makes either."""
    inputs = _plan_inputs(tmp_path)
    assert _args(tmp_path, inputs, "hls") == _args(tmp_path, inputs, "dash")


@pytest.mark.parametrize(("video_codec", "copied"), [("h264", True), ("hevc", True)])
def test_h264_and_hevc_are_stream_copied(tmp_path: Path, video_codec: str, copied: bool) -> None:
    options = _options("hls", _plan_inputs(tmp_path, video_codec))
    plan = package_plan("hls", _plan_inputs(tmp_path, video_codec), options, tmp_path)
    assert plan.video_copied is copied
    assert ("-c:v", "copy") in _pairs(plan.args)
    assert "-force_key_frames" not in plan.args
    assert (("-tag:v", "hvc1") in _pairs(plan.args)) is (video_codec == "hevc")


@pytest.mark.parametrize("video_codec", ["vp9", "av1", "mpeg2video", "prores", "mpeg4"])
def test_other_pictures_are_encoded_to_h264_with_a_keyframe_at_each_segment_start(
    tmp_path: Path, video_codec: str
) -> None:
    inputs = _plan_inputs(tmp_path, video_codec)
    plan = package_plan("hls", inputs, _options("hls", inputs), tmp_path)
    assert plan.video_copied is False
    assert {("-c:v", "libx264"), ("-pix_fmt", "yuv420p")} <= _pairs(plan.args)
    assert _values(plan.args, "-force_key_frames") == [f"expr:gte(t,n_forced*{SEGMENT_SECONDS})"]


@pytest.mark.parametrize("include_original_audio", [False, True])
def test_one_aac_lc_rendition_per_language_each_its_own_adaptation_set(
    tmp_path: Path, include_original_audio: bool
) -> None:
    inputs = _plan_inputs(tmp_path)
    args = _args(tmp_path, inputs, include_original_audio=include_original_audio, audio_bitrate="96k")
    count = len(_DUBS) + include_original_audio
    # fr-fr (track 1) and the original (48 kHz stereo) need no change of their samples: mapped as they are
    as_is = {1: "2:0", 3: "0:1"}
    assert _values(args, "-map") == ["0:0", *(as_is.get(n, f"[a{n}]") for n in range(count))]
    for n in range(count):
        assert _values(args, f"-c:a:{n}") == ["aac"]
        assert _values(args, f"-profile:a:{n}") == ["aac_low"]
        assert _values(args, f"-b:a:{n}") == ["96000"]
    languages = [f"language={code}" for _, code, *_ in _DUBS] + (["language=eng"] if include_original_audio else [])
    assert [_values(args, f"-metadata:s:a:{n}") for n in range(count)] == [[lang] for lang in languages]
    sets = ["id=0,streams=v", *(f"id={n + 1},streams={n + 1}" for n in range(count))]
    assert _values(args, "-adaptation_sets") == [" ".join(sets)]


def test_every_rendition_is_made_stereo_at_the_resolved_rate(tmp_path: Path) -> None:
    """The default language's rate (fr-fr, 48 kHz) for every rendition; the mono dub made stereo."""
    inputs = _plan_inputs(tmp_path)
    graph = _values(_args(tmp_path, inputs), "-filter_complex")[0].split(";")
    spanish, german = graph  # French is mapped as it is: no chain at all
    assert spanish.startswith("[1:0]") and "aresample=48000" in spanish
    assert "2:0" in _values(_args(tmp_path, inputs), "-map")
    assert german.startswith("[3:0]") and "aformat=channel_layouts=stereo" in german


def test_a_picture_is_required(tmp_path: Path) -> None:
    inputs = _plan_inputs(tmp_path, video_codec=None)
    with pytest.raises(ValueError, match="no video"):
        package_plan("hls", inputs, _options("hls", inputs), tmp_path)


def test_hostile_file_names_stay_single_file_urls(tmp_path: Path) -> None:
    inputs = _plan_inputs(tmp_path, source_name="-y " + HOSTILE + ".mp4")
    inputs = replace(
        inputs, dubs=tuple(replace(d, path=tmp_path / f"{HOSTILE}{n}.wav") for n, d in enumerate(inputs.dubs))
    )
    args = package_plan("hls", inputs, _options("hls", inputs), tmp_path / ("-" + HOSTILE)).args
    assert _values(args, "-i") == [file_arg(inputs.video_path), *(file_arg(d.path) for d in inputs.dubs)]
    assert not [arg for arg in args if HOSTILE in arg and not arg.startswith("file:/")]


# --- finish_package and verify_package on FFmpeg's own output -------------------------------------------------


@dataclass(frozen=True)
class Made:
    """A package FFmpeg cut, before finish_package, with what it was made from."""

    folder: Path
    inputs: ExportInputs
    options: ExportOptions


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> ExportInputs:
    """A 14 s H.264 source with a keyframe every 2 s; the three dubs of ``_DUBS``; transcripts for the first two."""
    d = tmp_path_factory.mktemp("package-sources")
    source = d / "source.mp4"
    run_ffmpeg([
        "-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=25:duration={SECONDS}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={SECONDS}",
        "-ac", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "50", "-sc_threshold", "0",
        "-c:a", "aac", "-shortest", file_arg(source),
    ])  # fmt: skip
    info = probe(source)
    dubs = []
    for name, code, title, tag, rate, channels in _DUBS:
        path = make_tone(
            d / name, SECONDS, sample_rate=rate, channels=channels, codec="flac" if "flac" in name else "pcm_s16le"
        )
        dubs.append(AudioTrack(path, probe(path).audio[0], SECONDS, code, title, tag))
    texts = []
    for _, code, title, tag, _, _ in _DUBS[:2]:
        path = d / f"subtitles-{tag}.vtt"
        path.write_text(VTT, encoding="utf-8")
        texts.append(TextTrack(path, code, title, tag))
    original = AudioTrack(source, info.audio[0], info.duration, "eng", "English (United States) (original)", "en-US")
    return ExportInputs(
        dubs=tuple(dubs),
        duration=info.duration,
        title="t",
        default_dub=1,
        video_path=source,
        video=info.video[0],
        original=original,
        subtitles=tuple(texts),
    )


def _cut(folder: Path, inputs: ExportInputs, **requested: Any) -> Made:
    """Run FFmpeg on the plan and copy the transcripts in, as service.conversion does before finish_package."""
    folder.mkdir(parents=True)
    options = _options("hls", inputs, **requested)
    run_ffmpeg(package_plan("hls", inputs, options, folder).args, duration=inputs.duration)
    if options.subtitles == "soft":
        for text in inputs.subtitles:
            shutil.copyfile(text.path, folder / text.path.name)
    return Made(folder, inputs, options)


@pytest.fixture(scope="module")
def cut(tmp_path_factory: pytest.TempPathFactory, sources: ExportInputs) -> Made:
    """FFmpeg's package of the three dubs (fr-fr default) with the two transcripts, as FFmpeg left it."""
    return _cut(tmp_path_factory.mktemp("cut") / "package", sources, subtitles="soft")


@pytest.fixture
def finished(cut: Made, tmp_path: Path) -> Iterator[Made]:
    """A copy of the cut package, finished: each test may break its own."""
    folder = tmp_path / "package"
    shutil.copytree(cut.folder, folder)
    finish_package(folder, cut.inputs, cut.options)
    yield replace(cut, folder=folder)


def _audio_media(master: m3u8.M3U8) -> list[m3u8.Media]:
    return [m for m in master.media if m.type == "AUDIO"]


def test_the_master_names_every_language_by_tag_and_name_with_one_default(finished: Made) -> None:
    master = m3u8.load(str(finished.folder / HLS_MASTER))
    audio = _audio_media(master)
    assert [(m.language, m.name) for m in audio] == [(tag, title) for _, _, title, tag, _, _ in _DUBS]
    assert [m.default for m in audio] == ["NO", "YES", "NO"]
    assert {(m.autoselect, m.channels, m.group_id) for m in audio} == {("YES", "2", "audio")}
    (variant,) = master.playlists
    assert variant.stream_info.audio == "audio" and variant.stream_info.subtitles == "subs"
    assert {m.uri for m in audio} | {variant.uri} <= {p.name for p in finished.folder.glob("media_*.m3u8")}


def test_one_subtitles_rendition_per_transcript_none_default(finished: Made) -> None:
    master = m3u8.load(str(finished.folder / HLS_MASTER))
    texts = [m for m in master.media if m.type == "SUBTITLES"]
    assert [(m.language, m.name, m.group_id, m.default) for m in texts] == [
        ("es-ES", "Spanish (Spain)", "subs", "NO"),
        ("fr-FR", "French (France)", "subs", "NO"),
    ]
    for text in texts:
        playlist = m3u8.load(str(finished.folder / text.uri))
        (segment,) = playlist.segments
        assert (finished.folder / segment.uri).read_text(encoding="utf-8") == VTT
        assert segment.duration == pytest.approx(finished.inputs.duration)
        assert playlist.is_endlist and playlist.playlist_type == "vod"


def test_ffmpegs_own_master_is_gone_and_no_segment_has_a_wall_clock_date(finished: Made) -> None:
    assert sorted(
        p.name for p in finished.folder.glob("*.m3u8") if not p.name.startswith(("media_", "subtitles-"))
    ) == [HLS_MASTER]
    for playlist in finished.folder.glob("media_*.m3u8"):
        assert "PROGRAM-DATE-TIME" not in playlist.read_text(encoding="utf-8"), playlist.name


def _adaptation_sets(folder: Path) -> list[ET.Element]:
    period = ET.parse(folder / DASH_MANIFEST).getroot().find(f"{MPD}Period")
    assert period is not None
    return period.findall(f"{MPD}AdaptationSet")


def test_the_mpd_gives_each_language_its_lang_label_and_role(finished: Made) -> None:
    sets = _adaptation_sets(finished.folder)
    audio = [s for s in sets if s.get("contentType") == "audio"]
    assert [s.get("lang") for s in audio] == [tag for _, _, _, tag, _, _ in _DUBS]
    assert [s.findtext(f"{MPD}Label") for s in audio] == [title for _, _, title, _, _, _ in _DUBS]
    roles = [s.findall(f"{MPD}Role") for s in audio]
    assert [[(r.get("schemeIdUri"), r.get("value")) for r in found] for found in roles] == [
        [(ROLE_SCHEME, "dub")],
        [(ROLE_SCHEME, "main")],
        [(ROLE_SCHEME, "dub")],
    ]
    text = [s for s in sets if s.get("contentType") == "text"]
    assert [(s.get("lang"), s.get("mimeType"), s.findtext(f"{MPD}Label")) for s in text] == [
        ("es-ES", "text/vtt", "Spanish (Spain)"),
        ("fr-FR", "text/vtt", "French (France)"),
    ]
    assert [s.findtext(f"{MPD}Representation/{MPD}BaseURL") for s in text] == [
        "subtitles-es-ES.vtt",
        "subtitles-fr-FR.vtt",
    ]
    assert len({s.get("id") for s in sets}) == len(sets)


def test_label_and_role_come_in_the_mpd_schemas_order(finished: Made) -> None:
    """DASH's AdaptationSetType: the RepresentationBase elements (Label among them) before Role, and both
    before the Representations."""
    for adaptation in _adaptation_sets(finished.folder):
        tags = [child.tag.removeprefix(MPD) for child in adaptation]
        if "Role" not in tags:
            continue
        assert tags.index("Label") < tags.index("Role") < tags.index("Representation"), tags


def test_a_finished_package_verifies(finished: Made) -> None:
    assert verify_package(finished.folder, finished.inputs.duration) == []


def test_a_missing_segment_a_missing_init_and_a_missing_playlist_are_named(finished: Made) -> None:
    (finished.folder / "chunk-2-00002.m4s").unlink()
    (finished.folder / "init-3.m4s").unlink()
    (finished.folder / "subtitles-fr-FR.m3u8").unlink()
    problems = verify_package(finished.folder, finished.inputs.duration)
    assert sorted(problems) == [
        "chunk-2-00002.m4s (of media_2.m3u8) is missing",
        "init-3.m4s (of media_3.m3u8) is missing",
        "subtitles-fr-FR.m3u8 is missing",
    ]


def test_a_playlist_shorter_than_the_programme_and_a_missing_manifest_are_named(finished: Made) -> None:
    playlist = m3u8.load(str(finished.folder / "media_1.m3u8"))
    playlist.segments.pop()
    (finished.folder / "media_1.m3u8").write_text(playlist.dumps(), encoding="utf-8")
    (finished.folder / DASH_MANIFEST).unlink()
    problems = verify_package(finished.folder, finished.inputs.duration)
    assert len(problems) == 2, problems
    assert re.fullmatch(
        rf"media_1\.m3u8 lasts 1[12]\.\d{{3}} s instead of {finished.inputs.duration:.3f} s", problems[0]
    )
    assert problems[1] == f"{DASH_MANIFEST} is missing"


def test_without_subtitles_no_subtitles_group(sources: ExportInputs, tmp_path: Path) -> None:
    made = _cut(tmp_path / "package", sources)
    finish_package(made.folder, made.inputs, made.options)
    master = m3u8.load(str(made.folder / HLS_MASTER))
    assert [m.type for m in master.media] == ["AUDIO"] * len(_DUBS)
    assert master.playlists[0].stream_info.subtitles is None
    assert not [s for s in _adaptation_sets(made.folder) if s.get("contentType") == "text"]
    assert not list(made.folder.glob("*.vtt"))
    assert verify_package(made.folder, made.inputs.duration) == []


def test_the_original_is_the_last_rendition_never_default(sources: ExportInputs, tmp_path: Path) -> None:
    made = _cut(tmp_path / "package", replace(sources, default_dub=0), include_original_audio=True)
    finish_package(made.folder, made.inputs, made.options)
    audio = _audio_media(m3u8.load(str(made.folder / HLS_MASTER)))
    assert [(m.language, m.name, m.default) for m in audio] == [
        ("es-ES", "Spanish (Spain)", "YES"),
        ("fr-FR", "French (France)", "NO"),
        ("de-DE", "German (Germany)", "NO"),
        ("en-US", "English (United States) (original)", "NO"),
    ]
    roles = [s.find(f"{MPD}Role") for s in _adaptation_sets(made.folder) if s.get("contentType") == "audio"]
    assert [r.get("value") for r in roles if r is not None] == ["main", "dub", "dub", "dub"]
    assert verify_package(made.folder, made.inputs.duration) == []


def test_an_empty_file_in_ffmpegs_draft_stops_the_finish(cut: Made, tmp_path: Path) -> None:
    """FFmpeg's DASH muxer ends with status 0 on a full disk, its later files left empty."""
    folder = tmp_path / "package"
    shutil.copytree(cut.folder, folder)
    for name in ("chunk-0-00003.m4s", "media_0.m3u8"):
        (folder / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"^FFmpeg left 2 empty files \(chunk-0-00003.m4s, media_0.m3u8\)"):
        finish_package(folder, cut.inputs, cut.options)
