"""Hand-off stems for the writers' tests: 48 kHz 24-bit WAVs of known random samples, and a reader for them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.timeline import HANDOFF_SAMPLE_RATE, Clip, LanguageClips, Stem, Timeline

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


SAMPLES = 2 * HANDOFF_SAMPLE_RATE + 1234  # not a whole number of frames at 25 or 29.97
ES_CLIPS = (
    Clip(1, 4800, 30001, "Alice", "Hola."),
    Clip(2, 20000, 50000, "Bob", "¿Qué, tú?"),  # starts inside Alice's
    Clip(3, 55000, 90000, "Carol", "Un momento..."),
    Clip(4, 60000, 70000, "", "Sí."),  # inside Carol's, no speaker
    Clip(5, 96000, SAMPLES, "Zoë", "Adiós."),
)
FR_CLIPS = (Clip(1, 1000, 40000, "Jean", "Bonjour."), Clip(2, 50000, 80000, "Marie", "Merci."))

ES_VOICE_TRACK = [  # (start, end, clip name or None for Filler): the AAF and OTIO tracks as a mixer would list them
    (0, 4800, None),
    (4800, 20000, "0001 Alice"),
    (20000, 50000, "0002 Bob"),
    (50000, 55000, None),
    (55000, 60000, "0003 Carol"),
    (60000, 70000, "0004"),
    (70000, 90000, "0003 Carol"),
    (90000, 96000, None),
    (96000, SAMPLES, "0005 Zoë"),
]
FR_MIX_TRACK = [
    (0, 1000, "French (France) mix"),
    (1000, 40000, "0001 Jean"),
    (40000, 50000, "French (France) mix"),
    (50000, 80000, "0002 Marie"),
    (80000, SAMPLES, "French (France) mix"),
]


@dataclass(frozen=True)
class Programme:
    """The stems of a two-language run and their samples: Spanish mix and voice (stereo), a French mix
    (mono, no voice: its clips are cut from the mix), the M&E (stereo) and the English original (mono)."""

    es_mix: Stem
    es_voice: Stem
    fr_mix: Stem
    me: Stem
    original: Stem
    samples: dict[Path, np.ndarray]

    def timeline(self, start_timecode: str = "00:00:00:00", frame_rate: float = 25.0) -> Timeline:
        """Every stem, both languages' clips."""
        return Timeline(
            "run-7",
            SAMPLES,
            start_timecode,
            frame_rate,
            (self.es_mix, self.es_voice, self.fr_mix, self.me, self.original),
            (LanguageClips("es-es", self.es_voice, ES_CLIPS), LanguageClips("fr-fr", self.fr_mix, FR_CLIPS)),
        )

    def bare_timeline(self, start_timecode: str = "00:00:00:00", frame_rate: float = 25.0) -> Timeline:
        """A run without stems nor transcript: the French mix alone."""
        return Timeline("run-8", SAMPLES, start_timecode, frame_rate, (self.fr_mix,))


def make_programme(directory: Path) -> Programme:
    made = [
        noise_stem(directory / "run-7_es-es_mix.wav", SAMPLES, 2, "mix", "es-es", "Spanish (Spain)", 1),
        noise_stem(directory / "run-7_es-es_voice.wav", SAMPLES, 2, "voice", "es-es", "Spanish (Spain)", 2),
        noise_stem(directory / "run-7_fr-fr_mix.wav", SAMPLES, 1, "mix", "fr-fr", "French (France)", 3),
        noise_stem(directory / "run-7_ME.wav", SAMPLES, 2, "me", None, None, 4),
        noise_stem(directory / "run-7_en-us_original.wav", SAMPLES, 1, "original", "en-us", "English (US)", 5),
    ]
    stems = [stem for stem, _ in made]
    return Programme(*stems, samples={stem.path: data for stem, data in made})  # type: ignore[arg-type]
