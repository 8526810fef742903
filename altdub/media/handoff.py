"""The hand-off's stems as Broadcast WAV (spec §5): the FFmpeg plan that renders them, and their check.

Every stem of a ``Timeline`` is rendered by one FFmpeg run: resampled to 48 kHz, padded or trimmed to
the programme's length to the sample, written as 24-bit PCM with a ``bext`` chunk whose
``TimeReference`` places sample 0 at the start timecode.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from altdub.media.ffmpeg import file_arg
from altdub.media.formats import InputFiles
from altdub.media.probe import ProbeError, StreamInfo, probe
from altdub.media.timeline import HANDOFF_BITS, Stem, Timeline

ORIGINATOR = "altdub"  # bext Originator: the system that made the file
_DESCRIPTION_CHARS = 256  # bext Description's size
_PCM_CODEC = f"pcm_s{HANDOFF_BITS}le"


@dataclass(frozen=True)
class StemSource:
    """Where a stem's audio comes from: a stored file and its audio stream."""

    path: Path
    stream: StreamInfo


def bext_description(timeline: Timeline, stem: Stem, title: str) -> str:
    """``run-12 Spanish (Spain) mix: <the run's name>`` in ASCII, as BWF's Description field holds it."""
    text = f"{timeline.name} {stem.name}: {title}"
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return " ".join(ascii_text.split())[:_DESCRIPTION_CHARS]


def stems_plan(timeline: Timeline, sources: Sequence[StemSource], title: str, origination: datetime) -> list[str]:
    """FFmpeg's arguments writing every stem of ``timeline`` (``sources[i]`` is the audio of ``timeline.stems[i]``).

    ``title`` is the run's name, in each file's Description; ``origination`` (UTC) its date and time.
    """
    if len(sources) != len(timeline.stems):
        raise ValueError(f"{len(sources)} sources for {len(timeline.stems)} stems")
    files = InputFiles()
    graphs: list[str] = []
    outputs: list[str] = []
    length = timeline.duration
    for number, (stem, source) in enumerate(zip(timeline.stems, sources, strict=True)):
        stream = f"{files.index(source.path)}:{source.stream.index}"
        label = f"[s{number}]"
        graphs.append(
            f"[{stream}]aresample={timeline.sample_rate},apad=whole_len={length},atrim=end_sample={length}{label}"
        )
        outputs += ["-map", label, "-c:a", _PCM_CODEC, "-ar", str(timeline.sample_rate), "-rf64", "auto"]
        outputs += ["-map_metadata", "-1", "-map_chapters", "-1", "-write_bext", "1"]
        bext = {
            "description": bext_description(timeline, stem, title),
            "originator": ORIGINATOR,
            "origination_date": origination.strftime("%Y-%m-%d"),
            "origination_time": origination.strftime("%H:%M:%S"),
            "time_reference": str(timeline.start_samples),
        }
        for key, value in bext.items():
            outputs += ["-metadata", f"{key}={value}"]
        outputs += ["-f", "wav", file_arg(stem.path)]
    return [*files.args(), "-filter_complex", ";".join(graphs), *outputs]


def stem_problems(timeline: Timeline) -> list[str]:
    """What is wrong with the rendered stems: each must be 24-bit PCM at the timeline's rate, as long as it."""
    problems = []
    for stem in timeline.stems:
        try:
            info = probe(stem.path)
        except ProbeError as exc:
            problems.append(f"{stem.path.name} is unreadable: {exc}")
            continue
        audio = info.audio[0] if info.audio else None
        if audio is None or (audio.codec, audio.sample_rate, audio.channels) != (
            _PCM_CODEC,
            timeline.sample_rate,
            stem.channels,
        ):
            found = f"{audio.codec} {audio.sample_rate} Hz {audio.channels} ch" if audio else "no audio"
            problems.append(f"{stem.path.name} holds {found}")
        elif round(info.duration * timeline.sample_rate) != timeline.duration:
            problems.append(f"{stem.path.name} lasts {info.duration:.6f} s instead of {timeline.duration} samples")
    return problems
