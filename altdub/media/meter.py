"""The meter: every loudness figure the QC report shows, from one decode of each audio programme.

One filter graph per programme (``meter_graph``), all its findings written by ``ametadata`` to two files
(FFmpeg's log is not read):

- ``ebur128`` with ``metadata=1``: every 100 ms, the momentary loudness (the 400 ms block ending there),
  the short-term loudness (3 s) and the running integrated loudness and loudness range;
- ``astats`` after it, per channel: the peak and the count of samples at it, counted as clipped when
  that channel's peak is at full scale;
- ``silencedetect``: the silences of ``SILENCE_SECONDS`` or more;
- a branch oversampled 4x to 192 kHz (as ITU-R BS.1770-4 Annex 2 asks, and as ``ebur128=peak=true``
  does internally) whose ``astats`` peak per 100 ms is the true peak of each step: ``ebur128``'s own
  true-peak metadata is the running maximum, which cannot show where the peaks are.

The graph runs either in a pass of its own over a file (``read``, ``read_programmes``: several
programmes of a file in one pass), or inside the FFmpeg run that encodes the file, on its encoders'
output through loopback decoders (``Tap``): then it costs no second decode, and runs beside the
encoder instead of after it.

Integrated loudness over given regions (the dialogue gate) is computed here from the momentary
values, the way BS.1770-4 gates (``gated_loudness``): the 400 ms blocks overlap by 75 %, so one
block ends every 100 ms, and ``ebur128``'s momentary value at each step is that block's loudness
``l_j = -0.691 + 10 log10(sum_i G_i z_ij)``. A block belongs to the gate when it lies wholly inside
one region (a block across a region's edge would bring in what is outside: music, effects; a region
shorter than 400 ms holds no block). Of those, blocks under the absolute gate (-70 LKFS) are dropped;
the relative gate is 10 LU below the loudness of the mean power of the rest; the integrated
loudness is the loudness of the mean power of the blocks above both gates. Over the whole
programme this is FFmpeg's own computation, which it matches to within 0.1 LU (FFmpeg bins block
powers in a histogram).
"""

from __future__ import annotations

import bisect
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from altdub.media.ffmpeg import FFmpegError, Limits, file_arg, run_ffmpeg

STEP = 0.1  # seconds between two momentary values: one 400 ms block ends every step (75 % overlap)
BLOCK = 0.4  # seconds: the gating block of BS.1770-4
ABSOLUTE_GATE = -70.0  # LKFS
RELATIVE_GATE = 10.0  # LU under the ungated-by-the-relative-gate mean
SILENCE_SECONDS = 3.0  # shorter silences are pauses; the QC reports longer ones inside speech
SILENCE_DB = -60.0  # dBFS: below this on every channel, a track is silent (dead air)
VOICE_SILENCE_DB = -50.0  # dBFS: a voice stem quieter than this is not speaking (TTS pauses are near digital silence)
VOICE_PAUSE_SECONDS = 0.5  # shorter pauses are inside one stretch of speech
FULL_SCALE_DB = -0.01  # dBFS: a sample peak this high is at full scale (16-bit 32767 reads -0.0003 dBFS)
_OVERSAMPLED = 192000
_NO_LEVEL = -120.0  # ebur128 prints -120.7 for an empty or silent block

_SILENCE_LOG = re.compile(r"silence_(start|end): (-?[0-9.]+)")
_FRAME = re.compile(r"frame:\d+\s+pts:-?\d+\s+pts_time:(-?[0-9.]+)")

# Input options of a pass over a file: its picture, subtitles and data are not read. Without them FFmpeg 9 decodes
# a file's video even when only its audio feeds the graph: 60 s instead of 0.6 s over a 10-minute 1080p MKV.
AUDIO_ONLY = ("-vn", "-sn", "-dn")

Regions = tuple[tuple[float, float], ...]  # seconds from the programme's start: (start, end), in order


@dataclass(frozen=True)
class Reading:
    """What the meter read of one programme, at ``STEP`` resolution from its start."""

    momentary: tuple[float, ...]  # LUFS of the 400 ms block ending at (i + 1) * STEP
    short_term: tuple[float, ...]  # LUFS of the 3 s window ending at (i + 1) * STEP
    true_peak: tuple[float, ...]  # dBTP: the highest 4x-oversampled peak in each step
    integrated: float  # LUFS over the whole programme (FFmpeg's own gating; -70 or less when silent)
    lra: float  # LU
    clipped_samples: int  # samples at full scale
    silences: tuple[tuple[float, float], ...]  # seconds: silences of SILENCE_SECONDS or more

    @property
    def duration(self) -> float:
        return len(self.momentary) * STEP

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, to be kept with what was measured (an intermediate's reading, reused by its copies)."""
        return {
            "momentary": list(self.momentary),
            "short_term": list(self.short_term),
            "true_peak": list(self.true_peak),
            "integrated": self.integrated,
            "lra": self.lra,
            "clipped_samples": self.clipped_samples,
            "silences": [list(silence) for silence in self.silences],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reading:
        return cls(
            momentary=tuple(data["momentary"]),
            short_term=tuple(data["short_term"]),
            true_peak=tuple(data["true_peak"]),
            integrated=data["integrated"],
            lra=data["lra"],
            clipped_samples=data["clipped_samples"],
            silences=tuple((start, end) for start, end in data["silences"]),
        )

    @property
    def peak(self) -> float:
        """The programme's true peak, dBTP."""
        return max(self.true_peak, default=-math.inf)

    def gated_loudness(self, regions: Regions | None = None) -> float | None:
        """BS.1770-4 integrated loudness of the blocks wholly inside ``regions`` (None: every block).

        None when no block is left above the absolute gate (silence, or no region long enough).
        """
        blocks = self.momentary
        if regions is not None:
            inside = _Regions(regions)
            blocks = tuple(m for i, m in enumerate(blocks) if inside.holds((i + 1) * STEP - BLOCK, (i + 1) * STEP))
        return gated_loudness(blocks)

    def silences_within(self, regions: Regions) -> Regions:
        """The parts of the silences that lie inside ``regions`` and last ``SILENCE_SECONDS`` or more."""
        found = []
        for start, end in self.silences:
            for region_start, region_end in regions:
                overlap = (max(start, region_start), min(end, region_end))
                if overlap[1] - overlap[0] >= SILENCE_SECONDS:
                    found.append((round(overlap[0], 3), round(overlap[1], 3)))
        return tuple(found)


def gated_loudness(momentary: tuple[float, ...]) -> float | None:
    """Integrated loudness of these 400 ms blocks by BS.1770-4's two gates (see the module's docstring)."""
    powers = [10 ** ((m + 0.691) / 10) for m in momentary if m > ABSOLUTE_GATE]
    if not powers:
        return None
    relative = _loudness(sum(powers) / len(powers)) - RELATIVE_GATE
    kept = [p for p in powers if _loudness(p) > relative]
    return _loudness(sum(kept) / len(kept))


def _loudness(power: float) -> float:
    return -0.691 + 10 * math.log10(power)


class _Regions:
    """Regions sorted by start, so that finding the one a span may lie in is a bisection (an hour's 36,000
    blocks against a film's thousand transcript segments)."""

    def __init__(self, regions: Regions) -> None:
        self._regions = sorted(regions)
        self._starts = [low for low, _ in self._regions]

    def holds(self, start: float, end: float) -> bool:
        """Whether ``[start, end]`` lies wholly inside one region (to the nearest millisecond)."""
        index = bisect.bisect_right(self._starts, start + 0.001) - 1
        return index >= 0 and end <= self._regions[index][1] + 0.001


def meter_graph(inputs: str, chain: str, metadata: Path, peaks: Path, output: str = "") -> str:
    """The filter graph of one programme: ``inputs`` (stream labels) through ``chain`` into the meters.

    Everything the meters find goes to the two ``ametadata`` files; ``output`` labels the graph's audio
    output (a tap's, mapped to its null output), else it is left unlabelled.
    """
    window = int(_OVERSAMPLED * STEP)
    head = f"{inputs}{chain + ',' if chain else ''}asplit[meter][peaks]"
    return (
        f"{head};[peaks]aresample={_OVERSAMPLED},asetnsamples=n={window}:p=0,"
        "astats=metadata=1:reset=1:measure_perchannel=none:measure_overall=Peak_level,"
        f"ametadata=print:key=lavfi.astats.Overall.Peak_level:file={_filter_path(peaks)},anullsink;"
        "[meter]ebur128=peak=none:metadata=1:framelog=quiet,"
        "astats=metadata=1:measure_perchannel=Peak_level+Peak_count:measure_overall=none,"
        f"silencedetect=n={SILENCE_DB:g}dB:d={SILENCE_SECONDS:g},ametadata=print:file={_filter_path(metadata)}{output}"
    )


def _filter_path(path: Path) -> str:
    """A path as a filter option's value: escaped for the option, then for the graph (FFmpeg's two levels)."""
    value = re.sub(r"([\\':])", r"\\\1", str(path))
    return re.sub(r"([\\'\[\],;])", r"\\\1", value)


def _programme_graph(number: int, inputs: list[str], chain: str, folder: Path, output: str = "") -> str:
    """Programme ``number``'s graph, its streams merged (MXF: a mono stream per channel), its files in ``folder``."""
    merged = f"amerge=inputs={len(inputs)}" if len(inputs) > 1 else ""
    filters = ",".join(f for f in (merged, chain) if f)
    graph = meter_graph("".join(inputs), filters, folder / f"r128-{number}.txt", folder / f"tp-{number}.txt", output)
    return graph.replace("[meter]", f"[meter{number}]").replace("[peaks]", f"[peaks{number}]")


def _readings(folder: Path, count: int) -> list[Reading]:
    return [
        _reading(
            _frames((folder / f"r128-{number}.txt").read_text(encoding="utf-8", errors="replace")),
            _frames((folder / f"tp-{number}.txt").read_text(encoding="utf-8", errors="replace")),
        )
        for number in range(count)
    ]


def read(path: Path, streams: list[str], chain: str = "", limits: Limits | None = None) -> Reading:
    """Measure the programme of ``streams`` (FFmpeg input labels, ``0:1``; several are merged: MXF's
    per-channel tracks) after ``chain`` (filters, may be empty), in one FFmpeg pass."""
    return read_programmes(path, [streams], chain, limits)[0]


def read_programmes(
    path: Path, programmes: list[list[str]], chain: str = "", limits: Limits | None = None
) -> list[Reading]:
    """Measure several programmes of one file (a master's tracks) in one FFmpeg pass: one decode of the file."""
    limits = limits or Limits()
    with tempfile.TemporaryDirectory(prefix="meter-") as name:
        folder = Path(name)
        graphs = [
            _programme_graph(n, [f"[{s}]" for s in streams], chain, folder) for n, streams in enumerate(programmes)
        ]
        run_ffmpeg(
            [*AUDIO_ONLY, "-i", file_arg(path), *separate_graphs(graphs), "-f", "null", "-"],
            time_limit=limits.time_limit,
            cancel=limits.cancel,
        )
        return _readings(folder, len(programmes))


def separate_graphs(graphs: list[str]) -> list[str]:
    """One ``-filter_complex`` per programme: FFmpeg runs each filter graph in a thread of its own, so the
    meters of a master's tracks (or a hand-off's stems) share the cores instead of taking turns on one."""
    return [arg for graph in graphs for arg in ("-filter_complex", graph)]


@dataclass(frozen=True)
class Tap:
    """The meter on an encoding FFmpeg run's own output: a loopback decoder (``-dec``) per encoded output
    stream feeds the meters, whose audio goes to one more, null output.

    The encoder's packets are measured as the file holds them, while the file is written: the meters run
    beside the encoder (a core of their own) instead of after it, and the file is not decoded again.
    ``programmes`` are output streams as ``file:stream`` (``0:1``), one list per programme (MXF: a stream
    per channel; a hand-off: one output file per stem).
    """

    folder: Path
    programmes: list[list[str]]
    duration: float  # seconds: the programme's, as the file is cut (the decoded encoder tail goes no further)

    def args(self) -> list[str]:
        """What to append to the encoding command, after its output file."""
        args: list[str] = []
        graphs, maps, decoder = [], [], 0
        for number, streams in enumerate(self.programmes):
            inputs = []
            for stream in streams:
                args += ["-dec", stream]
                inputs.append(f"[dec:{decoder}]")
                decoder += 1
            graphs.append(_programme_graph(number, inputs, "", self.folder, f"[metered{number}]"))
            maps += ["-map", f"[metered{number}]"]
        return [*args, *separate_graphs(graphs), *maps, "-t", f"{self.duration:.6f}", "-f", "null", "-"]

    def readings(self) -> list[Reading]:
        """The readings, once the FFmpeg run has ended."""
        return _readings(self.folder, len(self.programmes))


def active_regions(path: Path, stream: str, duration: float, limits: Limits | None = None) -> Regions:
    """Where a voice stem speaks: the complement of its pauses (``VOICE_PAUSE_SECONDS`` or more under
    ``VOICE_SILENCE_DB`` on every channel), within ``[0, duration]``. One FFmpeg pass, no loudness meter."""
    limits = limits or Limits()
    log = run_ffmpeg(
        [*AUDIO_ONLY, "-i", file_arg(path), "-filter_complex",
         f"[{stream}]silencedetect=n={VOICE_SILENCE_DB:g}dB:d={VOICE_PAUSE_SECONDS:g}", "-f", "null", "-"],
        loglevel="info", time_limit=limits.time_limit, cancel=limits.cancel,
    ).log  # fmt: skip
    regions, speaking_from = [], 0.0
    for kind, value in _SILENCE_LOG.findall(log):
        at = min(max(0.0, float(value)), duration)
        if kind == "start":
            if at > speaking_from:
                regions.append((round(speaking_from, 3), round(at, 3)))
            speaking_from = duration  # until the pause ends
        else:
            speaking_from = at
    if speaking_from < duration:
        regions.append((round(speaking_from, 3), round(duration, 3)))
    return tuple(regions)


def _frames(text: str) -> list[tuple[float, dict[str, str]]]:
    """``ametadata=print``'s file: each frame's time and its ``key=value`` lines."""
    frames: list[tuple[float, dict[str, str]]] = []
    for line in text.splitlines():
        found = _FRAME.match(line)
        if found:
            frames.append((float(found.group(1)), {}))
        elif frames and "=" in line:
            key, _, value = line.partition("=")
            frames[-1][1][key.strip()] = value.strip()
    return frames


def _level(value: str | None) -> float:
    if value is None:
        return _NO_LEVEL
    number = float(value)  # "-inf" reads as -inf; digital silence is "nan" in some meters' lines
    return _NO_LEVEL - 1 if math.isnan(number) else max(number, _NO_LEVEL - 1)


def _reading(frames: list[tuple[float, dict[str, str]]], peak_frames: list[tuple[float, dict[str, str]]]) -> Reading:
    """A programme's reading from its two metadata files: the last frames hold the running totals (integrated
    loudness, range, each channel's peak and count of samples at it)."""
    loudness = next((keys for _, keys in reversed(frames) if "lavfi.r128.I" in keys), None)
    if loudness is None:  # (ebur128 writes its keys on each whole 100 ms; a last, shorter frame has none)
        raise FFmpegError("the loudness meter measured no audio")
    last = frames[-1][1]
    levels = [float(v) for k, v in sorted(last.items()) if k.startswith("lavfi.astats.") and k.endswith(".Peak_level")]
    counts = [float(v) for k, v in sorted(last.items()) if k.startswith("lavfi.astats.") and k.endswith(".Peak_count")]
    if not levels or len(levels) != len(counts):
        raise FFmpegError("the sample meter printed no peaks")
    clipped = sum(int(n) for level, n in zip(levels, counts, strict=True) if level >= FULL_SCALE_DB)
    momentary = tuple(_level(keys.get("lavfi.r128.M")) for _, keys in frames if "lavfi.r128.M" in keys)
    short_term = tuple(_level(keys.get("lavfi.r128.S")) for _, keys in frames if "lavfi.r128.S" in keys)
    true_peak = tuple(_level(keys.get("lavfi.astats.Overall.Peak_level")) for _, keys in peak_frames)
    silences: list[tuple[float, float]] = []
    start: float | None = None
    for _, keys in frames:
        if "lavfi.silence_start" in keys:
            start = max(0.0, float(keys["lavfi.silence_start"]))
        if "lavfi.silence_end" in keys and start is not None:
            silences.append((round(start, 3), round(float(keys["lavfi.silence_end"]), 3)))
            start = None
    if start is not None:  # silent to the end: silencedetect tells no end in the metadata
        silences.append((round(start, 3), round(len(momentary) * STEP, 3)))
    return Reading(
        momentary=momentary,
        short_term=short_term,
        true_peak=true_peak,
        integrated=float(loudness["lavfi.r128.I"]),
        lra=float(loudness["lavfi.r128.LRA"]),
        clipped_samples=clipped,
        silences=tuple(silences),
    )
