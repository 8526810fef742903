"""Loudness normalisation by measurement, and the ebur128 meter that checks it.

Pass one measures the audio as the conversion will feed it (integrated loudness and true
peak, media/meter.py: FFmpeg's EBU R128 meter; for a dialogue-gated target, the loudness of the
speech regions only). When the gain to the target keeps the true peak under the
ceiling, the filter is that gain alone: exact and transparent. Otherwise the gain is
followed by a limiter running at 192 kHz (4x oversampling, so it catches inter-sample
peaks), and the limited chain is measured again to make up the loudness the limiter took,
until it is on target. (FFmpeg's loudnorm falls back to a dynamic mode in that case that
can land several LU short of the target on peaky material.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from altdub.media import meter
from altdub.media.ffmpeg import FFmpegError
from altdub.media.meter import Limits, Regions
from altdub.media.options import LoudnessTarget

__all__ = ["Limits", "LoudnessFigures", "Normalisation", "measure", "plan_normalisation"]

_SILENCE = meter.ABSOLUTE_GATE  # quieter than this has no integrated loudness
ON_TARGET = 0.2  # LU: close enough to stop correcting
_CORRECTIONS = 8
_MAX_STEP = 12.0  # dB per correction
_PEAK_MARGIN = 0.05  # dB under the ceiling a lowered limit aims
_OVERSAMPLED = 192000


@dataclass(frozen=True)
class LoudnessFigures:
    integrated: float  # LUFS (over the dialogue gate's regions when measured with some)
    true_peak: float  # dBTP
    lra: float  # LU

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def of(cls, reading: meter.Reading, regions: Regions | None = None) -> LoudnessFigures:
        """The figures of a reading: integrated over the whole programme, or over ``regions``."""
        integrated = reading.integrated if regions is None else reading.gated_loudness(regions)
        if integrated is None:
            raise FFmpegError("the speech regions hold no audio above -70 LUFS: the dialogue cannot be measured")
        return cls(integrated, reading.peak, reading.lra)


def measure(path: Path, audio_streams: list[int], limits: Limits = Limits()) -> LoudnessFigures:
    """Integrated loudness, true peak and range of the given audio streams played together."""
    return LoudnessFigures.of(meter.read(path, [f"0:{i}" for i in audio_streams], limits=limits))


def _measure_chain(path: Path, stream: str, chain: str, limits: Limits, regions: Regions | None) -> LoudnessFigures:
    reading = meter.read(path, [stream], chain, limits)
    if reading.integrated < _SILENCE:
        raise FFmpegError("the audio is silent: its loudness cannot be normalised")
    return LoudnessFigures.of(reading, regions)


@dataclass(frozen=True)
class Normalisation:
    """A gain, with a 4x-oversampled limiter when the gain would push the true peak over the ceiling."""

    gain: float  # dB
    ceiling: float  # dBTP: the limiter's limit (lowered where resampling after it overshoots)
    sample_rate: int
    limited: bool

    def filter(self) -> str:
        if not self.limited:
            return f"volume={self.gain:.3f}dB"
        limit = 10 ** (self.ceiling / 20)
        return (
            f"aresample={_OVERSAMPLED},volume={self.gain:.3f}dB,"
            f"alimiter=limit={limit:.5f}:attack=1:release=50:level=0,aresample={self.sample_rate}"
        )

    def corrected(self, by: float) -> Normalisation:
        """The same with ``by`` dB more gain (to make up what an encoder took)."""
        return replace(self, gain=self.gain + by)


def plan_normalisation(
    path: Path,
    stream: str,
    pre_filters: str,
    target: LoudnessTarget,
    ceiling: float,
    sample_rate: int,
    limits: Limits = Limits(),
    speech: Regions | None = None,
) -> Normalisation:
    """What brings ``stream`` (after ``pre_filters``) to ``target`` with its true peak under ``ceiling``.

    With ``speech`` (a dialogue-gated target), the loudness aimed at is the dialogue's: measured over
    those regions only (``meter.Reading.gated_loudness``); the true peak is always the whole programme's.
    """
    first = _measure_chain(path, stream, pre_filters, limits, speech)
    plan = Normalisation(target.integrated - first.integrated, ceiling, sample_rate, limited=False)
    if first.true_peak + plan.gain <= ceiling:
        return plan
    # The limiter takes loudness back, the more so the harder it works: find the gain by secant steps.
    plan = replace(plan, limited=True)
    tried: list[tuple[float, float]] = []
    for _ in range(_CORRECTIONS):
        check = _measure_chain(path, stream, f"{pre_filters},{plan.filter()}", limits, speech)
        over = check.true_peak - ceiling
        if over > 0:  # the resampling back from 192 kHz rings past the limit on sharp transients: limit lower
            plan = replace(plan, ceiling=plan.ceiling - over - _PEAK_MARGIN)
            tried.clear()  # another limit, another curve of loudness against gain
            continue
        tried.append((plan.gain, check.integrated))
        if abs(target.integrated - check.integrated) <= ON_TARGET:
            break
        plan = replace(plan, gain=_next_gain(tried, target.integrated))
    return plan


def _next_gain(tried: list[tuple[float, float]], target: float) -> float:
    gain, level = tried[-1]
    slope = 1.0
    if len(tried) > 1:
        previous_gain, previous_level = tried[-2]
        if gain != previous_gain:
            slope = (level - previous_level) / (gain - previous_gain)
    slope = min(1.0, max(slope, 0.05))  # each dB of gain adds between 0.05 and 1 dB of loudness
    return gain + min((target - level) / slope, _MAX_STEP)
