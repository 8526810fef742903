"""Unit tests of altdub.media.transcripts: parse SRT, WebVTT and JSON; validate; render srt, vtt and txt."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from altdub.media.transcripts import (
    MAX_TRANSCRIPT_BYTES,
    Segment,
    TranscriptError,
    parse_transcript,
    render,
    validate,
    write_text_track,
)

SRT = """1
00:00:00,500 --> 00:00:02,250
Hola, <i>mundo</i>.

2
00:00:02,250 --> 00:00:04,000
Segunda línea
y otra.

3
00:01:01,234 --> 01:02:03,456
ñ ü 日本
"""

VTT = """WEBVTT

NOTE a comment that is no cue

intro
00:00:00.500 --> 00:00:02.250 align:start position:10%
Hola, mundo.

00:00:02.250 --> 00:00:04.000
Segunda línea
y otra.

00:01:01.234 --> 01:02:03.456
ñ ü 日本
"""

EXPECTED = [
    Segment(0.5, 2.25, "Hola, mundo."),
    Segment(2.25, 4.0, "Segunda línea\ny otra."),
    Segment(61.234, 3723.456, "ñ ü 日本"),
]


def _srt(*cues: tuple[str, str, str]) -> bytes:
    blocks = [f"{n}\n{start} --> {end}\n{text}\n" for n, (start, end, text) in enumerate(cues, start=1)]
    return "\n".join(blocks).encode()


def _json(*segments: dict[str, object]) -> bytes:
    return json.dumps(list(segments)).encode()


def _times_and_text(segments: list[Segment]) -> list[tuple[float, float, str]]:
    return [(s.start, s.end, s.text) for s in segments]


# --- parse ------------------------------------------------------------------------------------------


def test_parse_srt() -> None:
    assert parse_transcript(SRT.encode()) == EXPECTED


def test_parse_srt_with_a_byte_order_mark() -> None:
    assert parse_transcript("\ufeff".encode() + SRT.encode()) == EXPECTED


@pytest.mark.parametrize("source", [SRT, VTT])
def test_crlf_line_ends_read_like_lf(source: str) -> None:
    """Windows subtitle tools write CRLF: a two-line cue must not keep a carriage return in its text."""
    assert parse_transcript(source.replace("\n", "\r\n").encode()) == EXPECTED


def test_parse_webvtt() -> None:
    assert parse_transcript(VTT.encode()) == EXPECTED


def test_parse_webvtt_short_timestamps() -> None:
    data = b"WEBVTT\n\n00:01.500 --> 00:02.750\nhi\n"
    assert parse_transcript(data) == [Segment(1.5, 2.75, "hi")]


@pytest.mark.parametrize(
    ("cue", "speaker", "text"),
    [
        ("<v Ana>Hola, <i>mundo</i>.</v>", "Ana", "Hola, mundo."),
        ("<v Ana>Hola.", "Ana", "Hola."),  # the closing tag may be left out
        ("<v.loud.first  Bob   Smith >Hi", "Bob Smith", "Hi"),  # classes, and the name's spaces, tidied
        ("<v Ana>Hola.</v>\n<v Luis>¿Qué?</v>", "Ana, Luis", "Hola.\n¿Qué?"),  # two voices in one cue
        ("<v Ana>Sí</v> <v Ana>claro</v>", "Ana", "Sí claro"),
        ("<c.yellow>Hola</c> <lang es>mundo</lang>", "", "Hola mundo"),  # other tags name no one
        ("<v>Hola", "", "Hola"),  # a voice without its annotation
        ("ANA: Hola.", "", "ANA: Hola."),  # a name before a colon is text: it may be anything ("Nota: ...")
    ],
)
@pytest.mark.parametrize("kind", ["srt", "vtt"])
def test_voice_tags_name_the_speaker(kind: str, cue: str, speaker: str, text: str) -> None:
    if kind == "srt":
        data = _srt(("00:00:01,000", "00:00:02,500", cue))
    else:
        data = f"WEBVTT\n\n00:00:01.000 --> 00:00:02.500\n{cue}\n".encode()
    assert parse_transcript(data) == [Segment(1.0, 2.5, text, speaker)]


def test_voice_tags_in_a_longer_webvtt() -> None:
    voiced = VTT.replace("Hola, mundo.", "<v Ana>Hola, mundo.</v>").replace("ñ ü 日本", "<v 田中>ñ ü 日本")
    assert parse_transcript(voiced.encode()) == [
        Segment(0.5, 2.25, "Hola, mundo.", "Ana"),
        Segment(2.25, 4.0, "Segunda línea\ny otra.", ""),
        Segment(61.234, 3723.456, "ñ ü 日本", "田中"),
    ]


def test_parse_json_segments() -> None:
    data = _json(
        {"start": 0.5, "end": 2.25, "text": "  Hola, mundo.  ", "speaker": " Ana "},
        {"start": 2.25, "end": 4, "text": "Segunda", "speaker": None},
        {"start": 4.5, "end": 5.0, "text": "Tercera", "confidence": 0.9},  # unknown keys are ignored
    )
    assert parse_transcript(data) == [
        Segment(0.5, 2.25, "Hola, mundo.", "Ana"),
        Segment(2.25, 4.0, "Segunda", ""),
        Segment(4.5, 5.0, "Tercera", ""),
    ]


def test_parse_json_keeps_unicode_text() -> None:
    data = json.dumps([{"start": 0, "end": 1, "text": "日本語 — ñ"}], ensure_ascii=False).encode()
    assert parse_transcript(data) == [Segment(0.0, 1.0, "日本語 — ñ")]


def test_parse_empty_json_list_is_no_cues_for_validate() -> None:
    segments = parse_transcript(b"[]")
    assert segments == []
    with pytest.raises(TranscriptError, match="no cues"):
        validate(segments, 10.0)


@pytest.mark.parametrize(
    "data",
    [
        b'[{"start": 0, "end": 1}]',  # no text
        b'[{"end": 1, "text": "x"}]',  # no start
        b'[{"start": "soon", "end": 1, "text": "x"}]',
        b'[{"start": 0, "end": 1, "text": 5}]',
        b"[1, 2]",
        b'[{"start": 0, "end": 1, "text": "x"}',  # truncated
    ],
)
def test_bad_json_segments_are_refused(data: bytes) -> None:
    with pytest.raises(TranscriptError, match="JSON"):
        parse_transcript(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"just some words\nwithout any times\n",
        b'{"segments": []}',
        b"[Script Info]\nTitle: x\n",  # not JSON, though it starts with a bracket
        b"<tt xmlns='http://www.w3.org/ns/ttml'><body/></tt>",
    ],
)
def test_unknown_formats_are_refused(data: bytes) -> None:
    with pytest.raises(TranscriptError):
        parse_transcript(data)


def test_ass_is_not_accepted() -> None:
    """pysubs2 reads ASS too, but the spec takes SRT, WebVTT or JSON only."""
    ass = (
        "[Script Info]\nScriptType: v4.00+\n\n[Events]\n"
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
        "Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,hola\n"
    )
    with pytest.raises(TranscriptError):
        parse_transcript(ass.encode())


@pytest.mark.parametrize(
    "data",
    [
        "1\n00:00:01,000 --> 00:00:02,000\nhé\n".encode("latin-1"),
        "1\n00:00:01,000 --> 00:00:02,000\nhé\n".encode("utf-16"),
        b"\xff\xfe\x00garbage",
        _json({"start": 0, "end": 1, "text": "x"})[:-2] + b"\xe9}]",
    ],
)
def test_non_utf8_is_refused(data: bytes) -> None:
    with pytest.raises(TranscriptError, match="UTF-8"):
        parse_transcript(data)


def test_oversized_transcripts_are_refused_before_decoding() -> None:
    with pytest.raises(TranscriptError, match="MiB"):
        parse_transcript(b"\xff" * (MAX_TRANSCRIPT_BYTES + 1))


# --- validate ---------------------------------------------------------------------------------------


def test_a_good_transcript_validates() -> None:
    validate(EXPECTED, 3723.456)


def test_touching_cues_are_not_overlapping() -> None:
    validate([Segment(0.0, 1.0, "a"), Segment(1.0, 2.0, "b")], 2.0)


@pytest.mark.parametrize(("end", "valid"), [(10.0, True), (10.04, True), (10.05, True), (10.06, False), (11, False)])
def test_cues_may_run_past_the_media_by_50_ms(end: float, valid: bool) -> None:
    segments = [Segment(9.0, end, "last")]
    if valid:
        validate(segments, 10.0)
    else:
        with pytest.raises(TranscriptError, match="past the media"):
            validate(segments, 10.0)


@pytest.mark.parametrize(
    ("segments", "reason"),
    [
        ([], "no cues"),
        ([Segment(2.0, 1.0, "a")], "end"),
        ([Segment(2.0, 2.0, "a")], "end"),
        ([Segment(-0.5, 1.0, "a")], "start"),
        ([Segment(1.0, 12.0, "a")], "past the media"),
        ([Segment(1.0, math.inf, "a")], "finite"),
        ([Segment(1.0, 2.0, "")], "no text"),
        ([Segment(0.0, 1.0, "a"), Segment(1.0, 2.0, "")], "cue 2: no text"),
        ([Segment(3.0, 4.0, "a"), Segment(1.0, 2.0, "b")], "cue 2: starts before cue 1"),
        ([Segment(1.0, 3.0, "a"), Segment(2.0, 4.0, "b")], "cue 2: overlaps cue 1"),
        ([Segment(1.0, 5.0, "a"), Segment(2.0, 3.0, "b")], "cue 2: overlaps cue 1"),  # inside the one before
        ([Segment(0.0, 1.0, "a"), Segment(1.0, 3.0, "b"), Segment(2.5, 4.0, "c")], "cue 3: overlaps cue 2"),
    ],
)
def test_validate_refuses(segments: list[Segment], reason: str) -> None:
    with pytest.raises(TranscriptError, match=reason):
        validate(segments, 10.0)


@pytest.mark.parametrize(
    ("segment", "reason"),
    [
        (Segment(0.0, 1.0, "a\x00b"), r"cue 1: the text holds the control character U\+0000 at character 2"),
        (Segment(0.0, 1.0, "\x1b[2J"), "the text holds the control character U\\+001B"),
        (Segment(0.0, 1.0, "bell\x07"), "U\\+0007"),
        (Segment(0.0, 1.0, "del\x7f"), "U\\+007F"),
        (Segment(0.0, 1.0, "c1\x9b"), "U\\+009B"),
        (Segment(0.0, 1.0, "half\ud800"), "lone surrogate U\\+D800"),
        (Segment(0.0, 1.0, "ok", "\u202eAna"), "the speaker holds the bidirectional override.* U\\+202E"),
        (Segment(0.0, 1.0, "ok", "\u2067Ana\u2069"), "the speaker holds the bidirectional .* U\\+2067"),
        (Segment(0.0, 1.0, "ok", "Ana\tBob"), "the speaker holds the control character U\\+0009"),
        (Segment(0.0, 1.0, "ok", "Ana\nBob"), "the speaker holds the control character U\\+000A"),
    ],
    ids=["nul", "escape", "bell", "del", "c1", "surrogate", "speaker-rlo", "speaker-isolate", "speaker-tab",
         "speaker-newline"],
)  # fmt: skip
def test_control_characters_are_refused(segment: Segment, reason: str) -> None:
    with pytest.raises(TranscriptError, match=reason):
        validate([segment], 10.0)


def test_text_keeps_tabs_line_breaks_and_bidi_controls() -> None:
    """Right-to-left subtitles place punctuation with embeddings and marks; speakers keep the marks."""
    validate([Segment(0.0, 1.0, "\u202b\u05e9\u05dc\u05d5\u05dd!\u202c\n\t\u2067x\u2069\u200f", "\u05d0\u200f")], 10.0)


@pytest.mark.parametrize(
    "segment",
    [
        {"start": float("nan"), "end": 1.0, "text": "x"},
        {"start": 0.0, "end": float("nan"), "text": "x"},
        {"start": float("nan"), "end": float("nan"), "text": "x"},
    ],
)
def test_times_that_are_not_numbers_are_refused(segment: dict[str, object]) -> None:
    """Python's json reads NaN; a cue whose times are NaN has no end after its start and must not validate."""
    data = json.dumps([segment]).encode()
    assert b"NaN" in data
    with pytest.raises(TranscriptError):
        validate(parse_transcript(data), 10.0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_srt(("00:00:01,000", "00:00:02,000", "   "), ("00:00:03,000", "00:00:04,000", "b")), "cue 1: no text"),
        (_srt(("00:00:01,000", "00:00:02,000", "<i></i>")), "no text"),
        (_srt(("00:00:03,000", "00:00:04,000", "a"), ("00:00:01,000", "00:00:02,000", "b")), "starts before"),
        (_srt(("00:00:01,000", "00:00:03,000", "a"), ("00:00:02,000", "00:00:04,000", "b")), "overlaps"),
        (_srt(("00:00:02,000", "00:00:01,000", "a")), "end"),
        (_srt(("00:00:02,000", "00:00:12,000", "a")), "past the media"),
        (b"WEBVTT\n\n00:00:02.000 --> 00:00:02.000\na\n", "end"),
        (b"WEBVTT\n\n", "no cues"),
        (_json({"start": 0, "end": 1, "text": "   "}), "no text"),
        (_json({"start": 2, "end": 1, "text": "a"}), "end"),
    ],
)
def test_parsed_transcripts_are_refused_by_validate(data: bytes, reason: str) -> None:
    """What parse_transcript reads as it is (no reordering, no dropped cues) is what validate judges."""
    with pytest.raises(TranscriptError, match=reason):
        validate(parse_transcript(data), 10.0)


# --- render -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text_format", ["srt", "vtt"])
def test_render_round_trips_times_and_text(text_format: str) -> None:
    rendered = render(EXPECTED, text_format)
    assert _times_and_text(parse_transcript(rendered.encode())) == _times_and_text(EXPECTED)
    assert parse_transcript(rendered.encode()) == EXPECTED


@pytest.mark.parametrize("text_format", ["srt", "vtt"])
@pytest.mark.parametrize("source", [SRT, VTT])
def test_parse_render_parse_is_stable(text_format: str, source: str) -> None:
    segments = parse_transcript(source.encode())
    assert parse_transcript(render(segments, text_format).encode()) == segments


@pytest.mark.parametrize("text_format", ["srt", "vtt"])
def test_render_round_trips_millisecond_times(text_format: str) -> None:
    segments = [Segment(i * 1.001, i * 1.001 + 0.999, f"cue {i}") for i in range(50)]
    back = parse_transcript(render(segments, text_format).encode())
    assert [(s.start, s.end) for s in back] == [(round(s.start, 3), round(s.end, 3)) for s in segments]
    assert [s.text for s in back] == [s.text for s in segments]


def test_render_srt_text() -> None:
    assert render(EXPECTED[:2], "srt") == (
        "1\n00:00:00,500 --> 00:00:02,250\nHola, mundo.\n\n2\n00:00:02,250 --> 00:00:04,000\nSegunda línea\ny otra.\n\n"
    )


def test_render_vtt_has_its_header_and_dot_times() -> None:
    rendered = render(EXPECTED[:1], "vtt")
    assert rendered.startswith("WEBVTT\n")
    assert "00:00:00.500 --> 00:00:02.250\nHola, mundo.\n" in rendered


def test_render_txt_is_the_text_a_line_a_cue_with_speakers() -> None:
    segments = [Segment(0.0, 1.0, "Hola.", "Ana"), Segment(1.0, 2.0, "¿Qué tal?"), Segment(2.0, 3.0, "Bien", "Luis")]
    assert render(segments, "txt") == "Ana: Hola.\n¿Qué tal?\nLuis: Bien\n"


@pytest.mark.parametrize("text_format", ["srt", "vtt"])
def test_render_puts_the_speaker_before_the_text(text_format: str) -> None:
    rendered = render([Segment(0.0, 1.0, "Hola.", "Ana")], text_format)
    assert _times_and_text(parse_transcript(rendered.encode())) == [(0.0, 1.0, "Ana: Hola.")]


@pytest.mark.parametrize("text_format", ["srt", "vtt"])
def test_write_text_track_by_extension(tmp_path: Path, text_format: str) -> None:
    path = write_text_track(EXPECTED, tmp_path / f"subtitles.{text_format}")
    assert path == tmp_path / f"subtitles.{text_format}"
    assert path.read_bytes().decode("utf-8") == render(EXPECTED, text_format)
    assert parse_transcript(path.read_bytes()) == EXPECTED


def test_write_text_track_refuses_other_extensions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no subtitle format"):
        write_text_track(EXPECTED, tmp_path / "subtitles.txt")


def test_segment_as_dict() -> None:
    assert Segment(0.5, 1.0, "x", "Ana").as_dict() == {"start": 0.5, "end": 1.0, "text": "x", "speaker": "Ana"}
    assert Segment(**Segment(0.5, 1.0, "x").as_dict()) == Segment(0.5, 1.0, "x")
