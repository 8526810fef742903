"""Generate test media with FFmpeg's lavfi sources (the demo run, tests, benchmarks)."""

from __future__ import annotations

from pathlib import Path

from altdub.media.ffmpeg import file_arg, run_ffmpeg


def make_video(
    path: Path,
    duration: float,
    *,
    size: str = "320x240",
    rate: int = 25,
    tone_hz: int = 440,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
) -> Path:
    """A test-pattern video with a stereo 48 kHz tone."""
    run_ffmpeg(
        [
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={duration}",
            "-f", "lavfi", "-i", f"sine=frequency={tone_hz}:sample_rate=48000:duration={duration}",
            "-ac", "2", "-c:v", video_codec, *(["-pix_fmt", "yuv420p"] if video_codec == "libx264" else []),
            "-g", str(rate), "-c:a", audio_codec, "-shortest", file_arg(path),
        ]
    )  # fmt: skip
    return path


def make_tone(
    path: Path,
    duration: float,
    *,
    tone_hz: int = 660,
    sample_rate: int = 48000,
    channels: int = 2,
    codec: str = "pcm_s16le",
) -> Path:
    """A sine tone (a stand-in for a dubbed track): pick the container with the extension."""
    run_ffmpeg(
        [
            "-f", "lavfi", "-i", f"sine=frequency={tone_hz}:sample_rate={sample_rate}:duration={duration}",
            "-ac", str(channels), "-c:a", codec, file_arg(path),
        ]
    )  # fmt: skip
    return path
