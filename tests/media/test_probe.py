"""Probing: outside files are distrusted and counted; this service's own outputs are read from their headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.probe import ProbeError, probe, probe_output
from tests.conftest import Media


@pytest.mark.parametrize(("extension", "codec"), [("aac", "aac"), ("mp3", "libmp3lame"), ("flac", "flac")])
def test_ffmpeg_reports_the_seconds_it_wrote(media: Media, tmp_path: Path, extension: str, codec: str) -> None:
    output = tmp_path / f"cut.{extension}"
    written = run_ffmpeg(["-i", file_arg(media.dub_wav), "-t", "2.5", "-c:a", codec, file_arg(output)])
    assert written.written_seconds is not None
    # packet counting (the distrustful probe) and FFmpeg's own count agree to within an audio frame
    assert written.written_seconds == pytest.approx(probe(output).duration, abs=0.05)
    assert probe_output(output, written.written_seconds).duration == pytest.approx(2.5, abs=0.05)


def test_adts_output_takes_its_length_from_ffmpeg(media: Media, tmp_path: Path) -> None:
    """ADTS holds no duration: the bitrate estimate is never used, FFmpeg's count stands in."""
    output = tmp_path / "dub.aac"
    run_ffmpeg(["-i", file_arg(media.dub_wav), "-c:a", "aac", file_arg(output)])
    assert probe_output(output, 3.25).duration == 3.25
    with pytest.raises(ProbeError, match="holds no duration"):
        probe_output(output, None)


@pytest.mark.parametrize("name", ["dub_wav", "dub_flac", "dub_s24", "audio_source", "video", "mpeg2_video"])
def test_output_probe_finds_what_the_full_probe_finds(media: Media, name: str) -> None:
    """The output probe reads 32 KiB instead of 5 MB: the same streams, codecs and length."""
    path = getattr(media, name)
    full, quick = probe(path), probe_output(path, None)
    assert [(s.kind, s.codec, s.channels, s.sample_rate) for s in quick.streams] == [
        (s.kind, s.codec, s.channels, s.sample_rate) for s in full.streams
    ]
    assert quick.duration == pytest.approx(full.duration, abs=0.05)


def test_output_probe_refuses_what_is_not_media(media: Media) -> None:
    with pytest.raises(ProbeError):
        probe_output(media.garbage, 4.0)
