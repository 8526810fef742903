"""The hand-off track layout the AAF, OTIO and EDL share: pieces of each stem, names, timecode labels (no FFmpeg)."""

from pathlib import Path

import pytest

from altdub.media.timeline import Clip, LanguageClips, Stem, Timeline
from altdub.media.timeline_layout import (
    Piece,
    channel_labels,
    clip_label,
    safe_speaker,
    stem_pieces,
    timecode_at,
    track_name,
)
from tests.media.handoff_stems import ES_CLIPS, FR_CLIPS, SAMPLES

VOICE = Stem(Path("voice.wav"), "voice", "es-es", "Spanish (Spain)", 2)
MIX = Stem(Path("mix.wav"), "mix", "fr-fr", "French (France)", 1)
ME = Stem(Path("me.wav"), "me", None, None, 6)


def _timeline(start: str = "00:00:00:00", rate: float = 25.0) -> Timeline:
    clips = (LanguageClips("es-es", VOICE, ES_CLIPS), LanguageClips("fr-fr", MIX, FR_CLIPS))
    return Timeline("run-1", SAMPLES, start, rate, (VOICE, MIX, ME), clips)


def test_voice_pieces_keep_every_start_and_fill_gaps_with_silence() -> None:
    alice, bob, carol, no_speaker, zoe = ES_CLIPS
    assert stem_pieces(_timeline(), VOICE) == (
        Piece(0, 4800, silent=True),
        Piece(4800, 20000, alice),  # Bob starts inside Alice's segment: Alice ends there
        Piece(20000, 50000, bob),
        Piece(50000, 55000, silent=True),
        Piece(55000, 60000, carol),
        Piece(60000, 70000, no_speaker),  # a segment inside Carol's splits it
        Piece(70000, 90000, carol),
        Piece(90000, 96000, silent=True),
        Piece(96000, SAMPLES, zoe),
    )


def test_mix_pieces_keep_the_mix_between_lines_and_a_stem_without_clips_is_one_piece() -> None:
    jean, marie = FR_CLIPS
    assert stem_pieces(_timeline(), MIX) == (
        Piece(0, 1000),
        Piece(1000, 40000, jean),
        Piece(40000, 50000),
        Piece(50000, 80000, marie),
        Piece(80000, SAMPLES),
    )
    assert stem_pieces(_timeline(), ME) == (Piece(0, SAMPLES),)


def test_segments_outside_the_programme_are_clamped_or_dropped() -> None:
    clips = (
        Clip(1, -100, 100, "A", ""),
        Clip(2, SAMPLES - 10, SAMPLES + 500, "B", ""),
        Clip(3, SAMPLES + 1, SAMPLES + 9, "", ""),
    )
    line = Timeline("run-1", SAMPLES, "00:00:00:00", 25.0, (VOICE,), (LanguageClips("es-es", VOICE, clips),))
    assert stem_pieces(line, VOICE) == (
        Piece(0, 100, clips[0]),
        Piece(100, SAMPLES - 10, silent=True),
        Piece(SAMPLES - 10, SAMPLES, clips[1]),
    )


def test_names() -> None:
    assert [clip_label(c) for c in ES_CLIPS] == ["0001 Alice", "0002 Bob", "0003 Carol", "0004", "0005 Zoë"]
    assert [safe_speaker(s) for s in ("Zoë", "", "Dr. Who / II", "漢字", "x" * 60)] == [
        "Zoe", "unknown", "Dr-Who-II", "unknown", "x" * 40,
    ]  # fmt: skip
    assert [channel_labels(n) for n in (1, 2, 6, 3)] == [
        ("",),
        ("L", "R"),
        ("L", "R", "C", "LFE", "Ls", "Rs"),
        ("1", "2", "3"),
    ]
    assert [track_name(VOICE, "L"), track_name(MIX, ""), track_name(ME, "LFE")] == [
        "Spanish (Spain) voice L", "French (France) mix", "M&E LFE",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("start", "rate", "sample", "label"),
    [
        ("10:00:00:00", 25.0, 0, "10:00:00:00"),
        ("10:00:00:00", 25.0, 4800, "10:00:00:02"),  # 2.5 frames in: the frame it falls in
        ("10:00:00:00", 25.0, 96000, "10:00:02:00"),
        ("00:59:59;28", 29.97, 1601, "00:59:59;28"),  # a 29.97 frame is 1601.6 samples
        ("00:59:59;28", 29.97, 1602, "00:59:59;29"),
        ("00:59:59;28", 29.97, 4800, "01:00:00;00"),
        ("00:59:59;28", 29.97, 96000, "01:00:01;27"),  # 59.94 frames in
        ("00:00:59;29", 29.97, 1602, "00:01:00;02"),  # drop-frame skips ;00 and ;01 at minute 1
        ("00:00:59:29", 29.97, 1602, "00:01:00:00"),  # non-drop 29.97 does not
    ],
)
def test_timecode_labels(start: str, rate: float, sample: int, label: str) -> None:
    assert timecode_at(_timeline(start, rate), sample) == label
