"""The QC report's HTML page, rendered from constructed reports and read back with an HTML parser.

Each plot is decoded from its data: URI and parsed as SVG; matplotlib writes every text of a plot as
a comment beside its glyphs, which is how the tests see the legend and the axes.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser

from altdub.api.qc_page import STYLE_SOURCE, render_page, visible_spans
from altdub.media.qc_report import DIALOGUE_GATE_NOTE, Check, QcReport, Series, Target, TrackReport

NETFLIX = Target(integrated=-27.0, tolerance=2.0, true_peak=-2.0, dialogue_gated=True)


class Page(HTMLParser):
    """What the tests read of a page: elements with their attributes, the text of each, the style."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[dict[str, str | None]] = []
        self.row_texts: list[str] = []
        self.style = ""
        self.text: list[str] = []
        self._in_row = False
        self._in_style = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "tr" and "data-check" in dict(attrs):
            self.rows.append(dict(attrs))
            self.row_texts.append("")
            self._in_row = True
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._in_row = False
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        else:
            self.text.append(data)
        if self._in_row:
            self.row_texts[-1] += data

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.elements if name == tag]

    def svgs(self) -> list[str]:
        found = []
        for img in self.all("img"):
            src = img["src"] or ""
            assert src.startswith("data:image/svg+xml;base64,"), src[:40]
            found.append(base64.b64decode(src.split(",", 1)[1]).decode())
        return found


def plot_texts(svg: str) -> list[str]:
    ET.fromstring(svg)  # a whole, well-formed SVG document
    return re.findall(r"<!-- (.*?) -->", svg)


def track(index: int, language: str | None = "es-es", title: str = "Spanish", **changes: object) -> TrackReport:
    """A ten-minute track: short-term loudness swinging around -27 with gaps below the gate, peaks under -2."""
    values = tuple(None if i % 70 < 5 else -27.0 + 5 * math.sin(i / 40) for i in range(6000))
    peaks = tuple(-8.0 + 3 * math.sin(i / 13) for i in range(6000))
    made = TrackReport(
        index=index,
        language=language,
        title=title,
        default=index == 0,
        role="dub",
        integrated=-26.4,
        dialogue_integrated=-27.2,
        true_peak=-5.1,
        lra=7.5,
        clipped_samples=0,
        short_term=Series(0.1, values),
        true_peak_series=Series(0.1, peaks),
        speech=tuple((i * 20.0, i * 20.0 + 12.0) for i in range(30)),
    )
    return replace(made, **changes)


def report(**changes: object) -> QcReport:
    checks = (
        Check("duration", "600.000 s ± 0.050", "600.012 s", True),
        Check("dialogue_loudness", "-27.0 LKFS ± 2.0 (dialogue)", "-27.2 LKFS", True, 0),
        Check("true_peak", "<= -2.0 dBTP", "-5.1 dBTP", True, 0),
    )
    made = QcReport(
        preset="netflix",
        target=NETFLIX,
        passed=True,
        checks=checks,
        tracks=(track(0),),
        duration=600.012,
        source_duration=600.0,
        notes=(DIALOGUE_GATE_NOTE,),
    )
    return replace(made, **changes)


def test_a_failing_report_lists_its_failing_checks_first_and_marks_them():
    checks = (
        Check("duration", "600.000 s ± 0.050", "571.300 s", False),
        Check("dialogue_loudness", "-27.0 LKFS ± 2.0 (dialogue)", "-27.2 LKFS", True, 0),
        Check("silence_in_speech", "none over 3 s", "1: 1:40.0 to 1:45.5", False, 1),
        Check("true_peak", "<= -2.0 dBTP", "-5.1 dBTP", True, 1),
    )
    tracks = (track(0), track(1, "fr-fr", "French", silences=((100.0, 105.5),)))
    page = Page(render_page(report(passed=False, checks=checks, tracks=tracks)))

    assert [row["data-check"] for row in page.rows] == [
        "duration",
        "silence_in_speech",
        "dialogue_loudness",
        "true_peak",
    ]
    assert [row["class"] for row in page.rows] == ["fail", "fail", "pass", "pass"]
    assert "FAIL" in page.row_texts[0] and "571.300 s" in page.row_texts[0]
    assert "Track 2 (fr-fr)" in page.row_texts[1] and "whole file" in page.row_texts[0]
    text = " ".join(page.text)
    assert "Failed" in text and "2 of 4 checks failed." in text
    assert page.all("header")[0]["data-passed"] == "false"

    plots = page.svgs()
    assert len(plots) == 2  # one a track
    assert "silence > 3 s in speech" not in plot_texts(plots[0])
    assert "silence > 3 s in speech" in {t.replace("&gt;", ">") for t in plot_texts(plots[1])}


def test_the_subject_heads_the_page_escaped():
    html = render_page(report(), subject="Run 7, export <x>")
    page = Page(html)
    assert len([attrs for tag, attrs in page.elements if tag == "p" and attrs.get("class") == "subject"]) == 1
    assert "Run 7, export <x>" in page.text  # one text node, shown as written
    assert "export &lt;x&gt;" in html and "<x>" not in html


def test_a_passing_report_with_several_tracks_has_one_plot_each_with_the_target_band_and_ceiling():
    tracks = (track(0), track(1, "fr-fr", "French"), track(2, "en-us", "Original", role="original"))
    page = Page(render_page(report(tracks=tracks)))

    text = " ".join(page.text)
    assert "Passed" in text and "All 3 checks passed." in text
    assert "-27.0 LUFS ± 2.0 LU (dialogue-gated), true peak ≤ -2.0 dBTP" in text
    assert [row["class"] for row in page.rows] == ["pass"] * 3
    assert [a["data-track"] for a in page.all("article")] == ["0", "1", "2"]
    plots = page.svgs()
    assert len(plots) == 3
    for svg in plots:
        texts = plot_texts(svg)
        for label in ("short-term loudness", "true peak", "speech", "target ± 2 LU", "ceiling -2 dBTP", "10:00"):
            assert label in texts
    assert DIALOGUE_GATE_NOTE in text


def test_a_report_without_target_draws_no_band_nor_ceiling():
    page = Page(render_page(report(preset=None, target=None, notes=())))
    text = " ".join(page.text)
    assert "none: loudness left as delivered" in text
    assert "Notes" not in text
    (svg,) = page.svgs()
    texts = plot_texts(svg)
    assert "short-term loudness" in texts and "true peak" in texts
    assert not [t for t in texts if t.startswith(("target", "ceiling"))]


def test_a_silent_track_plots_without_values():
    silent = track(0, integrated=None, dialogue_integrated=None, speech=(), short_term=Series(0.1, (None,) * 50))
    page = Page(render_page(report(tracks=(silent,))))
    assert len(page.svgs()) == 1
    assert "Integrated —" in " ".join(" ".join(page.text).split())


def test_every_string_of_the_report_is_escaped():
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    checks = (Check("<b>odd</b>", hostile, "&amp; \"quoted\" 'single'", False, 0),)
    page_html = render_page(
        report(
            preset="<i>preset</i>",
            passed=False,
            checks=checks,
            tracks=(track(0, language='es"-es', title=hostile),),
            notes=(hostile,),
        )
    )
    assert "<script" not in page_html and "onerror=alert" not in page_html.replace("onerror=alert(1)&gt;", "")
    assert "<b>odd</b>" not in page_html and "<i>preset</i>" not in page_html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page_html
    assert "&amp;amp; &#34;quoted&#34; &#39;single&#39;" in page_html
    page = Page(page_html)
    assert [tag for tag, _ in page.elements].count("script") == 0
    assert len(page.all("img")) == 1  # only the plot: the title's <img> stayed text
    assert hostile in " ".join(page.text)  # shown as the text it is


def test_the_page_reads_on_a_phone_and_loads_nothing():
    page_html = render_page(report())
    page = Page(page_html)
    (viewport,) = [m for m in page.all("meta") if m.get("name") == "viewport"]
    assert viewport["content"] == "width=device-width, initial-scale=1"
    assert "@media (max-width: 40rem)" in page.style and "max-width: 52rem" in page.style
    for img in page.all("img"):
        assert img["width"] and img["height"] and img["alt"]
    assert not page.all("link") and not page.all("script")
    assert not [attrs for _, attrs in page.elements if "style" in attrs]  # STYLE_SOURCE covers all the style
    digest = base64.b64encode(hashlib.sha256(page.style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" == STYLE_SOURCE


def test_spans_closer_than_a_pixel_are_drawn_as_one():
    lines = [(n * 4.0, n * 4.0 + 3.2) for n in range(900)]  # a film's transcript: a line every 4 s
    assert visible_spans(lines, 3600.0 / 1000) == [(0.0, 3599.2)]  # 0.8 s pauses: under a pixel of an hour
    assert visible_spans(lines[:3], 0.5) == lines[:3]  # on a short axis each line shows
    assert visible_spans([(5.0, 6.0), (0.0, 2.0), (1.0, 3.0)], 0.1) == [(0.0, 3.0), (5.0, 6.0)]


def test_a_film_report_stays_a_reasonable_page():
    """Eight one-hour tracks, 900 speech regions each: every plot there, the page under a megabyte."""
    film = replace(
        track(0),
        short_term=Series(6.0, tuple(-27 + 6 * math.sin(i / 8) for i in range(600))),
        true_peak_series=Series(6.0, tuple(-19 + 6 * math.sin(i / 8) for i in range(600))),
        speech=tuple((n * 4.0, n * 4.0 + 3.2) for n in range(900)),
    )
    html = render_page(report(tracks=tuple(replace(film, index=n) for n in range(8)), duration=3600.0))
    assert len(Page(html).svgs()) == 8
    assert len(html) < 1024 * 1024, len(html)
