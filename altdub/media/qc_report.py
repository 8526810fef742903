"""The QC report of an export (spec DELIVERIES §6): its checks, and per track the figures its plots show.

Computed once when the export is made and stored with it; the JSON answer of
``GET /runs/{run_id}/exports/{task_id}/qc`` is ``QcReport.as_dict()``, and the HTML page, the
dashboard badge and ``altdub qc`` all read this one shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DIALOGUE_GATE_NOTE = (
    "Dialogue-gated loudness is measured over the transcript's segments (else the voice stem's active "
    "regions): an approximation of Dolby's Dialogue Intelligence gate, not the same algorithm."
)


@dataclass(frozen=True)
class Check:
    name: str  # "duration", "integrated_loudness", "dialogue_loudness", "true_peak", "loudness_range", "clipping",
    # "silence_in_speech", "track_tags", "default_track", "timecode", "audio_start"
    expected: str  # for people: "-27.0 LKFS ± 2.0 (dialogue)", "<= -2.0 dBTP"
    measured: str  # for people: "-26.4 LKFS"
    passed: bool
    track: int | None = None  # the index in ``tracks`` the check is about; None: the whole file


@dataclass(frozen=True)
class Series:
    """Values at a fixed step from the programme's start; None where there is nothing to show (below the gate)."""

    step: float  # seconds between points
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class TrackReport:
    index: int  # the audio track's position in the file (0-based, audio tracks only)
    language: str | None  # short_name; None for an unlabelled track
    title: str
    default: bool
    role: str  # "dub" or "original"
    integrated: float | None  # LUFS over the whole programme; None when silent
    dialogue_integrated: float | None  # LUFS over the speech regions; None without speech regions
    true_peak: float  # dBTP
    lra: float  # LU
    clipped_samples: int
    short_term: Series  # short-term loudness (3 s window), LUFS
    true_peak_series: Series  # the highest true peak in each step, dBTP
    speech: tuple[tuple[float, float], ...] = ()  # seconds: the dialogue gate's regions
    silences: tuple[tuple[float, float], ...] = ()  # seconds: silences longer than 3 s inside speech


@dataclass(frozen=True)
class Target:
    integrated: float  # LUFS / LKFS
    tolerance: float  # LU either side
    true_peak: float  # dBTP ceiling
    dialogue_gated: bool


@dataclass(frozen=True)
class QcReport:
    preset: str | None  # the loudness option's name; None when the export asked for none
    target: Target | None
    passed: bool
    checks: tuple[Check, ...]
    tracks: tuple[TrackReport, ...]
    duration: float  # seconds, the output's
    source_duration: float | None  # seconds, the picture's (else the dub's) the output must match
    notes: tuple[str, ...] = field(default_factory=tuple)  # e.g. DIALOGUE_GATE_NOTE, the MXF track sheet

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QcReport:
        def series(d: dict[str, Any]) -> Series:
            return Series(d["step"], tuple(d["values"]))

        def spans(items: list[list[float]]) -> tuple[tuple[float, float], ...]:
            return tuple((a, b) for a, b in items)

        tracks = tuple(
            TrackReport(
                **{
                    **t,
                    "short_term": series(t["short_term"]),
                    "true_peak_series": series(t["true_peak_series"]),
                    "speech": spans(t["speech"]),
                    "silences": spans(t["silences"]),
                }
            )
            for t in data["tracks"]
        )
        target = Target(**data["target"]) if data.get("target") else None
        return cls(
            preset=data["preset"],
            target=target,
            passed=data["passed"],
            checks=tuple(Check(**c) for c in data["checks"]),
            tracks=tracks,
            duration=data["duration"],
            source_duration=data["source_duration"],
            notes=tuple(data.get("notes", ())),
        )
