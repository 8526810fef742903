"""altdub/media/isobmff.py: the text tracks FFmpeg enables in an MP4/MOV are disabled in place, one byte each."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.isobmff import disable_text_tracks
from tests.conftest import Media, required_tool

SRT = "1\n00:00:00,500 --> 00:00:01,500\n{}\n"


def with_two_text_tracks(directory: Path, media: Media, muxer: str) -> Path:
    """The test video with two mov_text tracks and no disposition asked for: FFmpeg enables the first."""
    first, second = directory / "es.srt", directory / "de.srt"
    first.write_text(SRT.format("Hola."))
    second.write_text(SRT.format("Hallo."))
    output = directory / f"two-texts.{muxer}"
    run_ffmpeg(["-i", file_arg(media.video), "-i", file_arg(first), "-i", file_arg(second),
                "-map", "0", "-map", "1", "-map", "2", "-c", "copy", "-c:s", "mov_text",
                "-f", muxer, file_arg(output)])  # fmt: skip
    return output


def text_defaults(path: Path) -> list[str]:
    """MediaInfo's Default of each text track (an enabled text track is a default one to it)."""
    executable = required_tool("mediainfo", "mediainfo")
    out = subprocess.run([executable, "--Output=JSON", str(path)], capture_output=True, check=True).stdout
    return [t.get("Default") for t in json.loads(out)["media"]["track"] if t["@type"] == "Text"]


@pytest.mark.parametrize("muxer", ["mp4", "mov"])
def test_the_text_track_ffmpeg_enabled_is_disabled_once(tmp_path: Path, media: Media, muxer: str) -> None:
    path = with_two_text_tracks(tmp_path, media, muxer)
    assert disable_text_tracks(path) == 1
    assert disable_text_tracks(path) == 0


@pytest.mark.parametrize("muxer", ["mp4", "mov"])
def test_mediainfo_then_reads_no_default_text_track(tmp_path: Path, media: Media, muxer: str) -> None:
    path = with_two_text_tracks(tmp_path, media, muxer)
    assert text_defaults(path) == ["Yes", "No"]  # as FFmpeg makes it: the edit has something to do
    disable_text_tracks(path)
    assert text_defaults(path) == ["No", "No"]


@pytest.mark.parametrize("muxer", ["mp4", "mov"])
def test_only_the_enabled_flag_changes(tmp_path: Path, media: Media, muxer: str) -> None:
    path = with_two_text_tracks(tmp_path, media, muxer)
    before = path.read_bytes()
    disable_text_tracks(path)
    after = path.read_bytes()
    assert len(after) == len(before)
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(changed) == 1, changed
    (position,) = changed
    assert before[position - 7 : position - 3] == b"tkhd"  # the last byte of the tkhd box's flags
    assert after[position] == before[position] & ~1  # track_enabled (0x000001) cleared, nothing else


FTYP = b"\x00\x00\x00\x10ftypisom\x00\x00\x02\x00"


@pytest.mark.parametrize(
    "content",
    [
        FTYP + b"\x00\x00\x00\x10mdat" + bytes(8),  # boxes, none of them moov
        FTYP + b"\x00\x00\x01",  # cut short inside the next box's header
        FTYP + b"\x00\x00\x00\x01mdat\x00\x00",  # cut short inside a 64-bit size
        b"",
    ],
    ids=["no-moov", "truncated-header", "truncated-largesize", "empty"],
)
def test_a_file_without_a_moov_box_is_a_value_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="no moov"):
        disable_text_tracks(path)


def test_a_riff_file_is_a_value_error(media: Media) -> None:
    with pytest.raises(ValueError, match="no moov"):
        disable_text_tracks(media.dub_wav)  # no box structure at all
