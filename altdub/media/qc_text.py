"""How a QC report reads to people: the checks' names, the target, a track, a time; and the report as terminal text.

One place for these words, read by the HTML page (``api/qc_page.py``) and by ``altdub qc`` and
``altdub export`` (``cli.py``, which has only the JSON from the server: no plotting library loads there).
"""

from __future__ import annotations

from collections.abc import Sequence

from altdub.media.qc_report import Check, QcReport, Target, TrackReport

CHECK_LABELS = {
    "duration": "Duration against the source",
    "integrated_loudness": "Integrated loudness (full programme)",
    "dialogue_loudness": "Integrated loudness (dialogue-gated)",
    "true_peak": "True peak",
    "loudness_range": "Loudness range",
    "clipping": "Clipping",
    "silence_in_speech": "Silences over 3 s inside speech",
    "track_tags": "Track language and title",
    "default_track": "Default track",
    "timecode": "Timecode",
    "audio_start": "Audio start against video start",
}


def check_label(name: str) -> str:
    """A check's name for people; a name this version does not know, as it is."""
    return CHECK_LABELS.get(name, name)


def ordered_checks(checks: Sequence[Check]) -> list[Check]:
    """Failing checks first, each group in the report's order."""
    return sorted(checks, key=lambda check: check.passed)


def verdict(report: QcReport) -> str:
    return "Passed" if report.passed else "Failed"


def summary(report: QcReport) -> str:
    """``2 of 11 checks failed.`` or ``All 11 checks passed.``"""
    failed, total = len(report.failed), len(report.checks)
    return f"{failed} of {total} checks failed." if failed else f"All {total} checks passed."


def target_text(target: Target | None) -> str:
    if target is None:
        return "none: loudness left as delivered"
    gate = "dialogue-gated" if target.dialogue_gated else "full programme"
    return f"{target.integrated:.1f} LUFS ± {target.tolerance:.1f} LU ({gate}), true peak ≤ {target.true_peak:.1f} dBTP"


def track_label(tracks: Sequence[TrackReport], index: int | None) -> str:
    """``Track 2 (fr-fr)``; ``whole file`` for a check about no one track."""
    if index is None:
        return "whole file"
    language = next((t.language for t in tracks if t.index == index), None)
    return f"Track {index + 1}" + (f" ({language})" if language else "")


def clock(seconds: float) -> str:
    """``1:02.5``: minutes and seconds to a tenth, as the plots' axes read."""
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}"


def lufs(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} LUFS"


def speech_seconds(track: TrackReport) -> float:
    return sum(end - start for start, end in track.speech)


def spans_text(spans: Sequence[tuple[float, float]]) -> str:
    """``2: 1:40.0 to 1:44.0, 3:02.0 to 3:06.5``; ``none``."""
    if not spans:
        return "none"
    return f"{len(spans)}: " + ", ".join(f"{clock(start)} to {clock(end)}" for start, end in spans)


def failing_lines(report: QcReport) -> list[str]:
    """One line a failing check: what, where, expected and measured (for the terminal)."""
    return [
        f"  FAIL {check_label(c.name)} [{track_label(report.tracks, c.track)}]: "
        f"expected {c.expected}, measured {c.measured}"
        for c in report.failed
    ]


def terminal_text(report: QcReport) -> str:
    """The whole report for ``altdub qc``: verdict and target, the checks failing first, per track its figures."""
    lines = [
        f"QC {verdict(report).upper()}: {summary(report)}",
        f"preset: {report.preset or 'none'}; target: {target_text(report.target)}",
        f"duration: {clock(report.duration)}"
        + ("" if report.source_duration is None else f" (source {clock(report.source_duration)})"),
        "",
        "checks:",
    ]
    lines += failing_lines(report)
    lines += [
        f"  ok   {check_label(c.name)} [{track_label(report.tracks, c.track)}]: {c.measured} (expected {c.expected})"
        for c in report.checks
        if c.passed
    ]
    for track in report.tracks:
        flags = ", ".join(f for f in ("default" if track.default else "", track.role) if f)
        lines += [
            "",
            f"{track_label(report.tracks, track.index)}: {track.title} ({flags})",
            f"  integrated {lufs(track.integrated)}; dialogue-gated {lufs(track.dialogue_integrated)}",
            f"  true peak {track.true_peak:.1f} dBTP; loudness range {track.lra:.1f} LU; "
            f"clipped samples {track.clipped_samples}",
            f"  speech: {len(track.speech)} region{'' if len(track.speech) == 1 else 's'}, "
            f"{clock(speech_seconds(track))}; "
            f"silences over 3 s in speech: {spans_text(track.silences)}",
        ]
    if report.notes:
        lines += ["", "notes:", *(f"  {note}" for note in report.notes)]
    return "\n".join(lines)
