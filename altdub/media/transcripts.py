"""Timed transcripts: read SRT, WebVTT (pysubs2) or JSON segments; validate; write SRT, WebVTT, text."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import pysubs2
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from altdub.media.text import label_problem, text_problem

MAX_TRANSCRIPT_BYTES = 10 * 1024 * 1024
_TOLERANCE = 0.05  # seconds a cue may run past the media (spec §4's duration tolerance)

TextFormat = Literal["txt", "srt", "vtt"]
# A WebVTT voice span's opening tag, <v Name> or <v.class Name>: the annotation after the space names the speaker.
# Subtitle tools write the same tag into SRT, which players ignore; both are read.
_VOICE_TAG = re.compile(r"<v(?:\.[^\s>]*)?[ \t]+([^>]+)>")


class TranscriptError(ValueError):
    """The transcript cannot be used; the message says which cue and why."""


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    speaker: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class _JsonSegment(BaseModel):
    model_config = ConfigDict(extra="ignore")
    start: float
    end: float
    text: str
    speaker: str | None = None


_JSON_SEGMENTS = TypeAdapter(list[_JsonSegment])


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a time")


def parse_transcript(data: bytes) -> list[Segment]:
    """Segments from JSON ``[{start, end, text, speaker}]``, SRT or WebVTT (told apart by content)."""
    if len(data) > MAX_TRANSCRIPT_BYTES:
        raise TranscriptError(f"larger than {MAX_TRANSCRIPT_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TranscriptError("not UTF-8 text") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.lstrip().startswith("["):
        try:
            items = _JSON_SEGMENTS.validate_python(json.loads(text, parse_constant=_refuse_constant))
        except (json.JSONDecodeError, ValidationError, ValueError) as exc:
            raise TranscriptError(f"invalid JSON segments: {str(exc).splitlines()[0]}") from None
        return [Segment(i.start, i.end, i.text.strip(), (i.speaker or "").strip()) for i in items]
    try:
        kind = pysubs2.formats.autodetect_format(text)
    except pysubs2.exceptions.FormatAutodetectionError:
        kind = None
    if kind not in ("srt", "vtt"):
        raise TranscriptError("expected SRT, WebVTT, or JSON segments [{start, end, text, speaker}]")
    try:  # once as text (pysubs2 strips the tags), once keeping the tags it does not know (the voice tags)
        subs = pysubs2.SSAFile.from_string(text, format_=kind)
        tagged = pysubs2.SSAFile.from_string(text, format_=kind, keep_unknown_html_tags=True)
    except Exception as exc:  # pysubs2 raises assorted errors on malformed cues
        raise TranscriptError(f"unreadable {kind.upper()}: {exc}") from None
    return [
        Segment(e.start / 1000, e.end / 1000, e.plaintext.strip(), _speaker(t.text))
        for e, t in zip(subs.events, tagged.events, strict=True)
        if not e.is_comment
    ]


def _speaker(tagged_text: str) -> str:
    """The cue's voices in the order they speak, ", "-joined ("Ana, Luis" for a cue of two voices); "" for none."""
    voices = (" ".join(name.split()) for name in _VOICE_TAG.findall(tagged_text))
    return ", ".join(dict.fromkeys(v for v in voices if v))


def validate(segments: list[Segment], duration: float) -> None:
    """Times ordered and inside the media, no overlaps, text present and of characters that can be shown."""
    if not segments:
        raise TranscriptError("no cues")
    previous: Segment | None = None
    for number, seg in enumerate(segments, start=1):
        if not (math.isfinite(seg.start) and math.isfinite(seg.end)):
            raise TranscriptError(f"cue {number}: times must be finite numbers of seconds")
        if seg.start < 0 or seg.end <= seg.start:
            raise TranscriptError(f"cue {number}: end ({seg.end:.3f} s) must come after start ({seg.start:.3f} s)")
        if seg.end > duration + _TOLERANCE:
            raise TranscriptError(f"cue {number}: ends at {seg.end:.3f} s, past the media's {duration:.3f} s")
        if not seg.text:
            raise TranscriptError(f"cue {number}: no text")
        for part, problem in (("text", text_problem(seg.text)), ("speaker", label_problem(seg.speaker))):
            if problem:
                raise TranscriptError(f"cue {number}: the {part} {problem}")
        if previous is not None:
            if seg.start < previous.start:
                raise TranscriptError(f"cue {number}: starts before cue {number - 1} (cues must be in time order)")
            if seg.start < previous.end:
                raise TranscriptError(f"cue {number}: overlaps cue {number - 1}")
        previous = seg


def _subs(segments: list[Segment]) -> pysubs2.SSAFile:
    subs = pysubs2.SSAFile()
    for seg in segments:
        text = f"{seg.speaker}: {seg.text}" if seg.speaker else seg.text
        start, end = round(seg.start * 1000), round(seg.end * 1000)
        subs.append(pysubs2.SSAEvent(start=start, end=end, text=text.replace("\n", r"\N")))
    return subs


def render(segments: list[Segment], text_format: TextFormat) -> str:
    if text_format == "txt":
        return "\n".join(f"{s.speaker}: {s.text}" if s.speaker else s.text for s in segments) + "\n"
    return _subs(segments).to_string(text_format)


def write_text_track(segments: list[Segment], path: Path) -> Path:
    """The segments as a subtitle file, SubRip or WebVTT by the path's extension (``.srt``, ``.vtt``)."""
    text_format = path.suffix.removeprefix(".")
    if text_format not in ("srt", "vtt"):
        raise ValueError(f"no subtitle format for {path.name}")
    path.write_text(render(segments, text_format), encoding="utf-8")  # type: ignore[arg-type]
    return path
