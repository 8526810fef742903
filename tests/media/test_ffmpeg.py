"""The FFmpeg runner: what it reports of a run, and what it keeps from the caller."""

from __future__ import annotations

from pathlib import Path

import pytest

from altdub.media.ffmpeg import FFmpegTimeout, file_arg, run_ffmpeg


def test_a_run_reports_what_it_wrote_but_not_its_last_progress_block(tmp_path: Path) -> None:
    """A run shorter than FFmpeg's half-second report period sends only the final block: nothing is passed on."""
    seen: list[float] = []
    output = tmp_path / "tone.wav"
    result = run_ffmpeg(
        ["-f", "lavfi", "-i", "sine=duration=1.5:sample_rate=48000", file_arg(output)],
        duration=1.5,
        on_progress=seen.append,
    )
    assert seen == []
    assert result.written_seconds == pytest.approx(1.5, abs=0.03)
    assert output.stat().st_size > 1.5 * 48000 * 2


def test_progress_of_a_longer_run_rises_and_stays_below_the_end(tmp_path: Path) -> None:
    """Realtime input (-re) makes the run last ~2 s: the reports of blocks before the last come through."""
    seen: list[float] = []
    run_ffmpeg(
        ["-re", "-f", "lavfi", "-i", "sine=duration=2:sample_rate=8000", file_arg(tmp_path / "slow.wav")],
        duration=2.0,
        on_progress=seen.append,
    )
    assert seen, "no progress was reported during a 2 s run"
    assert seen == sorted(seen)
    assert all(0 <= fraction < 1 for fraction in seen)


def test_the_time_limit_kills_a_run_that_would_go_on(tmp_path: Path) -> None:
    with pytest.raises(FFmpegTimeout):
        run_ffmpeg(["-re", "-f", "lavfi", "-i", "sine=duration=30", file_arg(tmp_path / "long.wav")], time_limit=0.5)
