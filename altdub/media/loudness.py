"""Two-pass loudness normalisation with FFmpeg's loudnorm, and measurement with its ebur128 meter."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from altdub.media.ffmpeg import FFmpegError, file_arg, run_ffmpeg
from altdub.media.options import LoudnessTarget

_JSON_BLOCK = re.compile(r"\{[^{}]*\"input_i\"[^{}]*\}", re.DOTALL)
_SUMMARY = {
    "integrated": re.compile(r"I:\s+(-?[0-9.]+|-inf) LUFS"),
    "lra": re.compile(r"LRA:\s+(-?[0-9.]+) LU"),
    "true_peak": re.compile(r"Peak:\s+(-?[0-9.]+|-inf) dBFS"),
}
_SILENCE = -70.0  # the meter's floor: below it, loudness is undefined


@dataclass(frozen=True)
class LoudnessFigures:
    integrated: float  # LUFS
    true_peak: float  # dBTP
    lra: float  # LU

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def loudnorm_args(target: LoudnessTarget, true_peak: float) -> str:
    return f"loudnorm=I={target.integrated}:TP={true_peak}:LRA={target.lra}"


def measure_for_loudnorm(path: Path, stream: str, pre_filters: str, target: LoudnessTarget, true_peak: float) -> str:
    """First pass: measure the audio as pass two will see it; returns pass two's loudnorm filter.

    ``stream`` is FFmpeg's input stream specifier (``0:1``), ``pre_filters`` the chain before loudnorm.
    """
    chain = ",".join(f for f in (pre_filters, f"{loudnorm_args(target, true_peak)}:print_format=json") if f)
    log = run_ffmpeg(
        ["-i", file_arg(path), "-filter_complex", f"[{stream}]{chain}", "-f", "null", "-"], loglevel="info"
    )
    block = _JSON_BLOCK.search(log)
    if block is None:
        raise FFmpegError("loudnorm printed no measurement")
    m = json.loads(block.group(0))
    if float(m["input_i"]) < _SILENCE or m["input_i"] == "-inf":
        raise FFmpegError("the audio is silent: its loudness cannot be normalised")
    return (
        f"{loudnorm_args(target, true_peak)}:measured_I={m['input_i']}:measured_TP={m['input_tp']}"
        f":measured_LRA={m['input_lra']}:measured_thresh={m['input_thresh']}:offset={m['target_offset']}"
        ":linear=true"
    )


def measure(path: Path, audio_streams: list[int]) -> LoudnessFigures:
    """Integrated loudness, true peak and range of the given audio streams played together."""
    if len(audio_streams) == 1:
        graph = f"[0:{audio_streams[0]}]ebur128=peak=true:framelog=quiet"
    else:  # broadcast MXF: one mono track per channel, measured as one programme
        inputs = "".join(f"[0:{i}]" for i in audio_streams)
        graph = f"{inputs}amerge=inputs={len(audio_streams)},ebur128=peak=true:framelog=quiet"
    log = run_ffmpeg(["-i", file_arg(path), "-filter_complex", graph, "-f", "null", "-"], loglevel="info")
    summary = log[log.rfind("Summary:") :]
    values = {}
    for name, pattern in _SUMMARY.items():
        found = pattern.search(summary)
        if found is None:
            raise FFmpegError(f"ebur128 printed no {name}")
        values[name] = float(found.group(1))
    return LoudnessFigures(**values)
