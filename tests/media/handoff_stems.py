"""Hand-off stems for the writers' tests: 48 kHz 24-bit WAVs of known random samples, and a reader for them."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.timeline import HANDOFF_SAMPLE_RATE, Stem

_FULL_SCALE = 1 << 23


def noise_stem(
    path: Path, samples: int, channels: int, role: str, language: str | None, language_name: str | None, seed: int
) -> tuple[Stem, np.ndarray]:
    """A stem of random 24-bit samples (every sample tells where it came from), written by FFmpeg as the
    service renders stems; returns the stem and its samples, shape (samples, channels)."""
    data = np.random.default_rng(seed).integers(-_FULL_SCALE, _FULL_SCALE, size=(samples, channels), dtype=np.int32)
    raw = path.with_suffix(".s24")
    little = data.astype("<i4").view(np.uint8).reshape(samples, channels, 4)[:, :, :3]
    raw.write_bytes(little.tobytes())
    run_ffmpeg(["-f", "s24le", "-ar", str(HANDOFF_SAMPLE_RATE), "-ac", str(channels), "-i", file_arg(raw),
                "-c:a", "pcm_s24le", file_arg(path)])  # fmt: skip
    raw.unlink()
    return Stem(path, role, language, language_name, channels), data  # type: ignore[arg-type]


def wav_samples(path: Path) -> np.ndarray:
    """A 24-bit WAV's samples, shape (samples, channels), decoded by libav (PyAV): not by the code under test."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "pcm_s24le", stream.codec_context.name
        assert stream.rate == HANDOFF_SAMPLE_RATE
        frames = [frame.to_ndarray() for frame in container.decode(stream)]
    interleaved = np.concatenate(frames, axis=1).reshape(-1, stream.channels)  # packed s32: one row
    return interleaved >> 8  # s24 decodes to s32 with the low byte zero


def int24_samples(data: bytes, channels: int) -> np.ndarray:
    """Little-endian signed 24-bit PCM bytes as samples, shape (samples, channels)."""
    triples = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
    values = np.where(values >= _FULL_SCALE, values - (1 << 24), values)
    return values.reshape(-1, channels)
