"""Which characters a run's text may hold: what FFmpeg, the database and a reader's screen carry faithfully.

Control characters are refused, not cleaned: a NUL cannot pass through FFmpeg's command line (an
export titled with it could never run), and the others are invisible or rewrite what follows
them. Transcript text keeps the tab and the line break it legitimately holds.

Bidirectional controls are part of right-to-left writing, so the policy depends on the field:

- transcript text keeps them all: Arabic, Hebrew or Persian subtitles use embeddings and marks to
  place punctuation and Latin words, and every renderer ends their effect with the cue (a subtitle,
  a line of text, an isolated element in the dashboard);
- a label (a run name, a speaker) keeps only the marks LRM, RLM and ALM, which set the direction of
  neighbouring punctuation and move nothing; overrides, embeddings and isolates are refused, as
  they can make a label read as something else (``invoice\\u202etxt.exe`` shows as ``invoiceexe.txt``).
"""

from __future__ import annotations

import re

_CONTROLS = "\x00-\x1f\x7f-\x9f"  # C0, DEL and C1
_LABEL_REFUSED = re.compile(f"[{_CONTROLS}\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_TEXT_REFUSED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")  # tab and line feed allowed

_WHAT = [
    (re.compile(f"[{_CONTROLS}]"), "the control character"),
    (re.compile("[\u202a-\u202e\u2066-\u2069]"), "the bidirectional override, embedding or isolate"),
    (re.compile("[\ud800-\udfff]"), "the lone surrogate"),
]


def _describe(found: re.Match[str]) -> str:
    character = found.group()
    what = next(name for pattern, name in _WHAT if pattern.fullmatch(character))
    return f"holds {what} U+{ord(character):04X} at character {found.start() + 1}"


def label_problem(value: str) -> str | None:
    """Why ``value`` cannot be a one-line label (a run name, a speaker); None when it can."""
    found = _LABEL_REFUSED.search(value)
    return _describe(found) if found else None


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be a transcript's text; None when it can."""
    found = _TEXT_REFUSED.search(value)
    return _describe(found) if found else None
