"""Media that lies about its length or its codec, or goes past a limit: built by FFmpeg, then patched.

Shared by the probe's unit tests and the real-HTTP hostile-media tests.
"""

from __future__ import annotations

import wave
from pathlib import Path

from altdub.media.ffmpeg import file_arg, run_ffmpeg

JUMP_SECONDS = 3600  # how far the lying timestamps jump
JUMP_AT = 2.0  # seconds of audio before the jump
SECONDS = 4.0  # what every file here holds
# From JUMP_AT on, every audio frame is shifted by an hour: the file holds 4 s, its timeline says 3604 s.
_HOUR_JUMP = f"asetpts='if(gte(T,{JUMP_AT}),PTS+{JUMP_SECONDS}/TB,PTS)'"
# Each second of audio shifted by 4 s more than the last: gaps of 4 s, each under the jump tolerance.
_STEPS = "asetpts='PTS+floor(T)*4/TB'"
_TONE = f"sine=frequency=440:sample_rate=48000:duration={SECONDS}"
_PICTURE = f"testsrc2=size=160x120:rate=25:duration={SECONDS}"
_H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]

# container -> (file name, audio codec) of the hour-jump files
JUMP_CODECS = {"ts": ("jump.ts", "mp2"), "mka": ("jump.mka", "pcm_s16le"), "m4a": ("jump.m4a", "aac")}


def tone(path: Path, codec: str, *, audio_filter: str | None = None) -> Path:
    """A 4 s 48 kHz mono tone, through ``audio_filter`` (``asetpts`` here: it rewrites the timestamps)."""
    run_ffmpeg(["-f", "lavfi", "-i", _TONE, *(["-af", audio_filter] if audio_filter else []), "-c:a", codec,
                file_arg(path)])  # fmt: skip
    return path


def hour_jump(directory: Path, container: str) -> Path:
    """41 KB to 400 KB holding 4 s, whose timestamps jump by an hour after 2 s (M4A: one sample lasts an hour)."""
    name, codec = JUMP_CODECS[container]
    return tone(directory / name, codec, audio_filter=_HOUR_JUMP)


def stepped(directory: Path) -> Path:
    """4 s of audio spread over 16 s by gaps of 4 s each: no single jump, but it declares 4x what it holds."""
    return tone(directory / "steps.mka", "pcm_s16le", audio_filter=_STEPS)


def audio_an_hour_late(directory: Path, container: str = "mkv") -> Path:
    """A 4 s video whose 4 s of audio start an hour in (MP4: an empty edit in its edit list): it declares 3604 s."""
    path = directory / f"late-audio.{container}"
    run_ffmpeg(["-f", "lavfi", "-i", _PICTURE, "-itsoffset", str(JUMP_SECONDS), "-f", "lavfi", "-i", _TONE,
                *_H264, "-c:a", "aac", file_arg(path)])  # fmt: skip
    return path


def patched(source: Path, target: Path, old: bytes, new: bytes) -> Path:
    """``source`` with its one ``old`` (a codec id or sample entry) replaced by ``new`` of the same length."""
    data = source.read_bytes()
    assert len(old) == len(new) and old in data, (old, source)
    at = data.index(old)
    target.write_bytes(data[:at] + new + data[at + len(old) :])
    return target


def unknown_codecs(directory: Path) -> dict[str, Path]:
    """Files whose audio (or video) codec FFmpeg does not know: patched Matroska CodecIDs and MP4 sample entries."""
    pcm_mka = tone(directory / "pcm.mka", "pcm_s16le")
    aac_mka = tone(directory / "aac.mka", "aac")
    pcm_mov = tone(directory / "pcm.mov", "pcm_s16le")  # sample entry 'sowt'
    alac_mp4 = tone(directory / "alac.mp4", "alac")  # sample entry 'alac' (then its 'alac' cookie)
    video = directory / "h264.mkv"
    run_ffmpeg(["-f", "lavfi", "-i", _PICTURE, "-f", "lavfi", "-i", _TONE, *_H264, "-c:a", "aac", file_arg(video)])
    return {
        "mka-pcm-codecid": patched(pcm_mka, directory / "unknown-pcm.mka", b"A_PCM/INT/LIT", b"A_QQQ/QQQ/QQQ"),
        "mka-aac-codecid": patched(aac_mka, directory / "unknown-aac.mka", b"A_AAC", b"A_QQQ"),
        "mov-qqqq": patched(pcm_mov, directory / "unknown-qqqq.mov", b"sowt", b"qqqq"),
        "mp4-qqqq": patched(alac_mp4, directory / "unknown-qqqq.mp4", b"alac", b"qqqq"),
        "mkv-video-codecid": patched(video, directory / "unknown-video.mkv", b"V_MPEG4/ISO/AVC", b"V_QQQQQ/QQQ/QQQ"),
    }


def huge_picture(directory: Path, size: str = "8192x8192") -> Path:
    """Half a second of a ``size`` picture (MJPEG at its lowest quality: a few hundred KB) and a tone."""
    path = directory / f"picture-{size}.mkv"
    run_ffmpeg(["-f", "lavfi", "-i", f"color=c=gray:size={size}:rate=2:duration=0.5",
                "-f", "lavfi", "-i", "sine=sample_rate=48000:duration=0.5",
                "-c:v", "mjpeg", "-q:v", "31", "-c:a", "pcm_s16le", file_arg(path)])  # fmt: skip
    return path


def fast_picture(directory: Path, rate: int = 1000) -> Path:
    """0.2 s of a tiny picture at ``rate`` frames a second, and a tone."""
    path = directory / f"picture-{rate}fps.mkv"
    run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size=64x48:rate={rate}:duration=0.2",
                "-f", "lavfi", "-i", "sine=sample_rate=48000:duration=0.2", *_H264, "-c:a", "aac",
                file_arg(path)])  # fmt: skip
    return path


def wide_wav(path: Path, *, channels: int = 2, rate: int = 48000, seconds: float = 0.1) -> Path:
    """Silence with any channel count or sample rate (FFmpeg will not make 255 channels; the wave module will)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(2 * channels * int(rate * seconds)))
    return path


def still_frame_video(directory: Path) -> Path:
    """Variable frame rate: 4 s of 25 fps video and audio with a 2 s still (frames 25 to 74 dropped, not retimed)."""
    path = directory / "vfr.mkv"
    run_ffmpeg(["-f", "lavfi", "-i", _PICTURE, "-f", "lavfi", "-i", _TONE, "-vf", "select='not(between(n,25,74))'",
                "-fps_mode", "vfr", *_H264, "-c:a", "aac", file_arg(path)])  # fmt: skip
    return path


def late_audio(directory: Path, delay: float = 0.5) -> Path:
    """A 4 s video whose audio starts ``delay`` s after the picture (and ends with it)."""
    path = directory / "late-audio-0.5.mp4"
    audio = f"sine=sample_rate=48000:duration={SECONDS - delay}"
    run_ffmpeg(["-f", "lavfi", "-i", _PICTURE, "-itsoffset", str(delay), "-f", "lavfi", "-i", audio, *_H264,
                "-c:a", "aac", file_arg(path)])  # fmt: skip
    return path
