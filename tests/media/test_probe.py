"""Probing: outside files are distrusted and counted; this service's own outputs are read from their headers."""

from __future__ import annotations

import contextlib
import random
import re
from dataclasses import replace
from pathlib import Path

import av
import pytest

from altdub.config import Settings
from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.probe import MediaInfo, MediaLimits, MediaRefused, ProbeError, probe, probe_output
from tests.conftest import SOURCE_SECONDS, Media
from tests.media import lies


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


# --- media that lies about its length, its codec, or goes past a limit ------------------------------------

LIMITS = MediaLimits(  # the defaults of the settings
    *(
        Settings.model_fields[name].default
        for name in (
            "max_video_pixels",
            "max_video_frame_rate",
            "max_audio_sample_rate",
            "max_audio_channels",
            "max_audio_packets",
        )
    )
)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lies")


@pytest.mark.parametrize("container", sorted(lies.JUMP_CODECS))
def test_an_hour_jump_is_refused(made: Path, container: str) -> None:
    """A few KB that hold 4 s, whose timestamps jump by an hour: FFmpeg would export 3604 s of it."""
    path = lies.hour_jump(made, container)
    assert path.stat().st_size < 400_000
    with pytest.raises(MediaRefused, match=r"its timestamps jump by 3600\.0 s at [23]\.\d s: .* holds 4\.0 s"):
        probe(path)


def test_many_small_gaps_declare_more_than_the_audio_holds(made: Path) -> None:
    """Gaps of 4 s, each under the jump tolerance, add up: the length declared is 4 times the length held."""
    with pytest.raises(MediaRefused, match=r"it declares 16\.0 s but its audio holds 4\.0 s"):
        probe(lies.stepped(made))


@pytest.mark.parametrize("container", ["mkv", "mp4"])
def test_audio_that_starts_an_hour_late_is_refused(made: Path, container: str) -> None:
    with pytest.raises(MediaRefused, match=r"it declares 3604\.\d s but its audio holds 4\.\d s"):
        probe(lies.audio_an_hour_late(made, container))


def test_unknown_codecs_are_unreadable_media(made: Path) -> None:
    """A codec id FFmpeg does not know leaves no codec context: a ProbeError naming the stream, never AttributeError."""
    for case, path in lies.unknown_codecs(made).items():
        with pytest.raises(ProbeError, match=r"stream #\d has a codec FFmpeg does not know") as raised:
            probe(path)
        assert not isinstance(raised.value, MediaRefused), case
    for control in ("pcm.mka", "aac.mka", "pcm.mov", "alac.mp4", "h264.mkv"):  # the same files before the patch
        assert probe(made / control).duration == pytest.approx(SOURCE_SECONDS, abs=0.05), control


def test_pixels_past_the_limit_are_refused(made: Path, media: Media) -> None:
    with pytest.raises(MediaRefused, match=r"is 8192x8192 \(67,108,864 pixels a frame\), more than the 16,777,216"):
        probe(lies.huge_picture(made), LIMITS)
    assert probe(media.video, replace(LIMITS, video_pixels=320 * 240)).video[0].width == 320  # the limit is allowed
    with pytest.raises(MediaRefused, match=r"is 320x240 \(76,800 pixels a frame\), more than the 76,799 allowed"):
        probe(media.video, replace(LIMITS, video_pixels=320 * 240 - 1))


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda d: lies.wide_wav(d / "255ch.wav", channels=255), "has 255 channels, more than the 24 allowed"),
        (lambda d: lies.wide_wav(d / "25ch.wav", channels=25), "has 25 channels, more than the 24 allowed"),
        (lambda d: lies.wide_wav(d / "768k.wav", rate=768_000), "sampled at 768,000 Hz, more than the 384,000 Hz"),
        (lies.fast_picture, "runs at 1,000 frames a second, more than the 300 allowed"),
    ],
    ids=["255-channels", "25-channels", "768-khz", "1000-fps"],
)
def test_what_exports_cannot_deliver_is_refused(made: Path, build, reason: str) -> None:
    with pytest.raises(MediaRefused, match=re.escape(reason)):
        probe(build(made), LIMITS)


@pytest.mark.parametrize(
    "build",
    [
        lambda d: lies.wide_wav(d / "24ch.wav", channels=24),
        lambda d: lies.wide_wav(d / "384k.wav", rate=384_000),
        lambda d: lies.fast_picture(d, rate=240),
    ],
    ids=["24-channels", "384-khz", "240-fps"],
)
def test_the_limits_themselves_are_allowed(made: Path, build) -> None:
    probe(build(made), LIMITS)


HONEST = {
    "aac-priming-m4a": lambda d: lies.tone(d / "priming.m4a", "aac"),  # its first packet starts at -21 ms
    "aac-mpegts": lambda d: lies.tone(d / "tone.ts", "aac"),  # MPEG-TS starts its timeline at 1.4 s
    "mp2-mpegts": lambda d: lies.tone(d / "tone-mp2.ts", "mp2"),
    "opus-mka": lambda d: lies.tone(d / "tone.mka", "libopus"),  # 1 ms Matroska timestamps round 20 ms packets
    "flac-mka": lambda d: lies.tone(d / "tone-flac.mka", "flac"),
    "vorbis-ogg": lambda d: lies.tone(d / "tone.ogg", "libvorbis"),
    "ac3": lambda d: lies.tone(d / "tone.ac3", "ac3"),
    "tta-one-second-frames": lambda d: lies.tone(d / "tone.tta", "tta"),
    "wavpack": lambda d: lies.tone(d / "tone.wv", "wavpack"),
    "wma": lambda d: lies.tone(d / "tone.wma", "wmav2"),
    "pcm-avi": lambda d: lies.tone(d / "tone.avi", "pcm_s16le"),
    "pcm-caf": lambda d: lies.tone(d / "tone.caf", "pcm_s16le"),
    "still-frame-vfr-mkv": lies.still_frame_video,
    "audio-half-a-second-late-mp4": lies.late_audio,
}


@pytest.mark.parametrize(
    "name", ["video", "dub_wav", "dub_flac", "dub_s24", "audio_source", "mpeg2_video", "vp9_video"]
)
def test_honest_fixtures_keep_their_length(media: Media, name: str) -> None:
    """The shared fixtures (AAC priming, an MP3's encoder delay, MXF, Opus in Matroska) import as before."""
    assert probe(getattr(media, name), LIMITS).duration == pytest.approx(SOURCE_SECONDS, abs=0.05)


@pytest.mark.parametrize("case", sorted(HONEST))
def test_honest_files_keep_their_length(made: Path, case: str) -> None:
    """Codec delays, a stream that starts later, a still picture, rounded timestamps: none of them is a lie."""
    info = probe(HONEST[case](made), LIMITS)
    assert info.duration == pytest.approx(SOURCE_SECONDS, abs=0.05), info


@pytest.mark.parametrize("seed", range(6))
def test_damaged_headers_are_probe_errors_or_media(made: Path, media: Media, seed: int) -> None:
    """Bytes overwritten at random in the first 4 KiB of each container: a ProbeError or a description, no other
    exception (the import would answer 500)."""
    rng = random.Random(seed)
    sources = [media.video, media.dub_flac, media.audio_source, media.vp9_video, lies.tone(made / "t.ts", "aac")]
    for source in sources:
        data = bytearray(source.read_bytes())
        for attempt in range(20):
            damaged = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                damaged[rng.randrange(min(4096, len(data)))] = rng.randrange(256)
            path = made / f"damaged-{seed}-{attempt}{source.suffix}"
            path.write_bytes(bytes(damaged))
            with contextlib.suppress(ProbeError):
                probe(path, LIMITS)
            path.unlink()


def test_the_packet_walk_is_bounded(media: Media) -> None:
    """The probe reads every audio packet: past the budget, the file is refused before it costs more."""
    with av.open(str(media.video)) as container:
        packets = sum(1 for _ in container.demux(container.streams.audio[0]))
    assert packets > 150  # 4 s of AAC at 48 kHz
    assert probe(media.video, replace(LIMITS, audio_packets=packets)).duration == pytest.approx(SOURCE_SECONDS)
    with pytest.raises(MediaRefused, match=f"it holds more than the {packets - 1} audio packets allowed"):
        probe(media.video, replace(LIMITS, audio_packets=packets - 1))


@pytest.mark.parametrize("reader", [probe, lambda path: probe_output(path, None)], ids=["probe", "probe_output"])
@pytest.mark.parametrize("content", [b"", bytes(range(256)) * 64, b"not media\n" * 100], ids=["empty", "bytes", "text"])
def test_unreadable_files_are_described_without_their_path(tmp_path: Path, reader, content: bytes) -> None:
    """PyAV's errors name the path read (a server's scratch file, ``…/upload-x/part-3``): the reason alone is kept."""
    path = tmp_path / "upload-x" / "part-3"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(ProbeError) as raised:
        reader(path)
    assert str(raised.value) == "invalid data found when processing input", raised.value
    with pytest.raises(ProbeError) as missing:
        reader(tmp_path / "gone")
    assert str(missing.value) == "no such file or directory", missing.value


def test_a_stored_probe_without_timecode_reads_as_none() -> None:
    """Probes stored before the start timecode was read have no such key."""
    stored = {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": 4.0, "streams": [], "tags": {}}
    assert MediaInfo.from_json(stored).timecode is None
    assert MediaInfo.from_json({**stored, "timecode": "10:00:00:00"}).timecode == "10:00:00:00"
