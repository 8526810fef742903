"""The QC report as one self-contained HTML page (spec DELIVERIES §6): verdict, checks, a plot per track.

Presentation of the answer to ``GET /runs/{run_id}/exports/{task_id}/qc?format=html``, so it lives in
``api/``: the service hands out the report's data (``QcReport``), and how a person sees it is the HTTP
layer's answer body, as the JSON is. Nothing below ``api/`` needs it.

The page loads nothing: its stylesheet is one inline ``<style>`` whose hash ``STYLE_SOURCE`` gives to
Content-Security-Policies (no ``style`` attribute anywhere, so no ``'unsafe-inline'`` is needed), and
each plot is an SVG in a ``data:`` URI ``<img>`` (an image document: no policy reaches into it, it
scales with the page). Every string of the report (track titles come from users) is escaped by
Jinja2's autoescaping.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display; plots are written to memory

from jinja2 import Environment
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from altdub.media import qc_text
from altdub.media.qc_report import QcReport, Series, Target, TrackReport

_SPEECH_COLOUR = "#9ecae1"
_SILENCE_COLOUR = "#d62728"
_BAND_COLOUR = "#2ca02c"
_LOUDNESS_COLOUR = "#1f4e99"
_PEAK_COLOUR = "#6a3d9a"
_FLOOR = -70.0  # LUFS: the meter's absolute gate, the lowest a plot goes
# Inches at 96 dpi: narrow enough that the text stays legible when a phone scales the plot to its width.
_PLOT_SIZE = (7.2, 5.0)
_DPI = 96
_FONT = 12
_PIXELS = 1000  # about the plot area's width in pixels on a wide screen (and at twice the density on a phone)

_STYLE = """
:root { color-scheme: light;
  font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; }
body { margin: 0; background: #f4f5f7; color: #1b1f24; line-height: 1.45; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
h3 { font-size: 1rem; margin: 0 0 .5rem; overflow-wrap: anywhere; }
section > h2:first-child { margin-top: 0; }
.subject { color: #57606a; margin: 0; overflow-wrap: anywhere; }
section, header.verdict, article.track { background: #fff; border-radius: .5rem; padding: 1rem;
  margin-bottom: 1rem; box-shadow: 0 1px 2px rgba(0, 0, 0, .08); }
header.verdict { border-left: .5rem solid; }
header.verdict.pass { border-color: #1a7f37; }
header.verdict.fail { border-color: #cf222e; }
.verdict-word { font-size: 1.8rem; font-weight: 700; margin: 0; }
.pass .verdict-word, .result-pass { color: #1a7f37; }
.fail .verdict-word, .result-fail { color: #cf222e; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: .75rem 0 0; }
dl.facts dt { color: #57606a; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
table { width: 100%; border-collapse: collapse; font-size: .95rem; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid #d0d7de; vertical-align: top; }
th { color: #57606a; font-weight: 600; }
tr.fail td { background: #fff1f0; }
.result { font-weight: 700; white-space: nowrap; }
figure { margin: .75rem 0 0; }
figure img { display: block; width: 100%; max-width: 52rem; height: auto; }
figcaption { color: #57606a; font-size: .85rem; }
ul.notes { margin: 0; padding-left: 1.25rem; }
@media (max-width: 40rem) {
  main { padding: .5rem; }
  table.checks thead { display: none; }
  table.checks tr { display: block; border-bottom: 1px solid #d0d7de; padding: .25rem 0; }
  table.checks td { display: grid; grid-template-columns: 7rem 1fr; border: 0; padding: .15rem .5rem; }
  table.checks td::before { content: attr(data-label); color: #57606a; }
}
"""

STYLE_SOURCE = f"'sha256-{base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()}'"
"""The page's stylesheet as a CSP source: where this page is shown under a policy (the dashboard's blob:
pages inherit its policy), ``style-src`` lists it."""

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>QC report: {{ verdict }}{% if report.preset %} · {{ report.preset }}{% endif %}</title>
<style>{{ style | safe }}</style>
</head>
<body>
<main>
<header class="verdict {{ 'pass' if report.passed else 'fail' }}" data-passed="{{ report.passed | lower }}">
<h1>QC report</h1>
{% if subject %}<p class="subject">{{ subject }}</p>{% endif %}
<p class="verdict-word">{{ '✓' if report.passed else '✕' }} {{ verdict }}</p>
<p>{{ summary }}</p>
<dl class="facts">
<dt>Preset</dt><dd>{{ report.preset or 'none' }}</dd>
<dt>Target</dt><dd>{{ target_text }}</dd>
<dt>Duration</dt><dd>{{ seconds(report.duration) }}{% if report.source_duration is not none %}
 (source {{ seconds(report.source_duration) }}){% endif %}</dd>
<dt>Audio tracks</dt><dd>{{ report.tracks | length }}</dd>
</dl>
</header>
<section>
<h2>Checks</h2>
<table class="checks">
<thead><tr><th>Result</th><th>Check</th><th>Track</th><th>Expected</th><th>Measured</th></tr></thead>
<tbody>
{% for check in checks %}
<tr class="{{ 'pass' if check.passed else 'fail' }}" data-check="{{ check.name }}">
<td data-label="Result" class="result result-{{ 'pass' if check.passed else 'fail' }}">
{{ '✓ pass' if check.passed else '✕ FAIL' }}</td>
<td data-label="Check">{{ check_label(check.name) }}</td>
<td data-label="Track">{{ track_label(check.track) }}</td>
<td data-label="Expected">{{ check.expected }}</td>
<td data-label="Measured">{{ check.measured }}</td>
</tr>
{% endfor %}
</tbody>
</table>
</section>
{% if tracks %}
<h2>Tracks</h2>
{% for track, plot in tracks %}
<article class="track" data-track="{{ track.index }}">
<h3>{{ track_label(track.index) }}: {{ track.title }}</h3>
<dl class="facts">
<dt>Language</dt><dd>{{ track.language or 'unlabelled' }}{% if track.default %} · default track{% endif %}
 · {{ track.role }}</dd>
<dt>Integrated</dt><dd>{{ lufs(track.integrated) }}</dd>
<dt>Dialogue-gated</dt><dd>{{ lufs(track.dialogue_integrated) }}</dd>
<dt>True peak</dt><dd>{{ '%.1f' | format(track.true_peak) }} dBTP</dd>
<dt>Loudness range</dt><dd>{{ '%.1f' | format(track.lra) }} LU</dd>
<dt>Clipped samples</dt><dd>{{ track.clipped_samples }}</dd>
<dt>Speech</dt><dd>{{ track.speech | length }} region{{ '' if track.speech | length == 1 else 's' }},
 {{ seconds(speech_seconds(track)) }}</dd>
<dt>Silences in speech</dt><dd>{{ spans(track.silences) }}</dd>
</dl>
<figure>
<img src="{{ plot }}" width="{{ plot_width }}" height="{{ plot_height }}"
 alt="Short-term loudness and true peak over time of {{ track_label(track.index) }}">
<figcaption>Top: short-term loudness (3 s window){% if report.target %}, the target band shaded green{% endif %}.
Bottom: true peak{% if report.target %}, the ceiling dashed{% endif %}. Speech regions shaded blue, silences
over 3 s inside speech red.</figcaption>
</figure>
</article>
{% endfor %}
{% endif %}
{% if report.notes %}
<section>
<h2>Notes</h2>
<ul class="notes">{% for note in report.notes %}<li>{{ note }}</li>{% endfor %}</ul>
</section>
{% endif %}
</main>
</body>
</html>
"""

_ENVIRONMENT = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_PAGE = _ENVIRONMENT.from_string(_TEMPLATE)


def render_page(report: QcReport, subject: str | None = None) -> str:
    """The whole page: verdict and target, the checks (failing first), per track its figures and plot, the notes.

    ``subject`` says which export it is about (the report itself does not), under the heading.
    """
    return _PAGE.render(
        report=report,
        subject=subject,
        style=_STYLE,  # the one unescaped value: a constant, hashed as is into STYLE_SOURCE
        verdict=qc_text.verdict(report),
        summary=qc_text.summary(report),
        target_text=qc_text.target_text(report.target),
        checks=qc_text.ordered_checks(report.checks),
        tracks=[(track, plot_uri(track, report.target, report.duration)) for track in report.tracks],
        plot_width=round(_PLOT_SIZE[0] * _DPI),
        plot_height=round(_PLOT_SIZE[1] * _DPI),
        check_label=qc_text.check_label,
        track_label=lambda index: qc_text.track_label(report.tracks, index),
        lufs=qc_text.lufs,
        seconds=qc_text.clock,
        speech_seconds=qc_text.speech_seconds,
        spans=qc_text.spans_text,
    )


def _times_and_values(series: Series) -> tuple[list[float], list[float]]:
    """Each point at its time; None (below the gate) as NaN, which a line plot leaves as a gap."""
    times = [i * series.step for i in range(len(series.values))]
    return times, [math.nan if v is None else v for v in series.values]


def plot_uri(track: TrackReport, target: Target | None, duration: float) -> str:
    """The track's plot as an SVG ``data:`` URI over the programme's ``duration`` (seconds): short-term loudness
    above, true peak below, on one time axis."""
    figure = Figure(figsize=_PLOT_SIZE, dpi=_DPI)
    # Fixed margins (room for the labels and a legend of up to three rows): a layout engine measures
    # the text by drawing the figure once more, which doubled a plot's time.
    figure.subplots_adjust(left=0.12, right=0.95, top=0.94, bottom=0.27, hspace=0.3)
    loudness_axes, peak_axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    for axes in (loudness_axes, peak_axes):
        _shade(axes, visible_spans(track.speech, duration / _PIXELS), _SPEECH_COLOUR, 0.35, "speech")
        _shade(axes, visible_spans(track.silences, duration / _PIXELS), _SILENCE_COLOUR, 0.3, "silence > 3 s in speech")
        axes.grid(True, color="#d0d7de", lw=0.6)
        axes.tick_params(labelsize=_FONT)
        axes.set_xlim(0, duration or 1.0)

    times, short_term = _times_and_values(track.short_term)
    present = [v for v in short_term if not math.isnan(v)]
    if target is not None:
        low, high = target.integrated - target.tolerance, target.integrated + target.tolerance
        band = f"target ± {target.tolerance:g} LU"
        loudness_axes.axhspan(low, high, color=_BAND_COLOUR, alpha=0.18, lw=0, label=band)
        loudness_axes.axhline(target.integrated, color=_BAND_COLOUR, lw=1)
        present += [low, high]
    loudness_axes.plot(times, short_term, color=_LOUDNESS_COLOUR, lw=1.2, label="short-term loudness")
    if track.silences:  # also marked above the plot: on a long programme a few seconds of shading is a hairline
        middles = [(start + end) / 2 for start, end in track.silences]
        loudness_axes.plot(
            middles, [1.0] * len(middles), "v", color=_SILENCE_COLOUR, ms=9, clip_on=False,
            transform=loudness_axes.get_xaxis_transform(),
        )  # fmt: skip
    if present:
        loudness_axes.set_ylim(max(min(present) - 3, _FLOOR), max(present) + 3)
    loudness_axes.set_ylabel("LUFS", fontsize=_FONT)
    loudness_axes.set_title("Short-term loudness (3 s)", loc="left", fontsize=_FONT + 1)

    times, peaks = _times_and_values(track.true_peak_series)
    peak_axes.plot(times, peaks, color=_PEAK_COLOUR, lw=1, label="true peak")
    if target is not None:
        peak_axes.axhline(
            target.true_peak, color=_SILENCE_COLOUR, lw=1.2, ls="--", label=f"ceiling {target.true_peak:g} dBTP"
        )
    present = [v for v in peaks if not math.isnan(v)] + ([target.true_peak] if target is not None else [])
    if present:
        peak_axes.set_ylim(min(present) - 2, max(present) + 2)
    peak_axes.set_ylabel("dBTP", fontsize=_FONT)
    peak_axes.set_title("True peak", loc="left", fontsize=_FONT + 1)
    peak_axes.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 3, 6, 10]))  # whole minutes, mostly
    peak_axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _axis_clock(value)))
    peak_axes.set_xlabel("time (m:ss)", fontsize=_FONT)

    handles, labels = [], []
    for axes in (loudness_axes, peak_axes):
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    figure.legend(handles, labels, loc="lower center", ncols=min(len(labels), 2), frameon=False, fontsize=_FONT)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def visible_spans(spans: Sequence[tuple[float, float]], gap: float) -> list[tuple[float, float]]:
    """The spans as drawn: those apart by less than ``gap`` (a pixel) joined into one, which looks the same.

    A film's transcript has a line every few seconds; on an hour's axis the pauses between lines are
    narrower than a pixel, and drawing each line's box made a plot of half a megabyte.
    """
    joined: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if joined and start - joined[-1][1] < gap:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end))
        else:
            joined.append((start, end))
    return joined


def _shade(axes: Axes, spans: Sequence[tuple[float, float]], colour: str, alpha: float, label: str) -> None:
    """Time spans shaded the axes' full height, as one collection: a film's hundreds of speech regions
    drawn as separate patches (``axvspan``) took seconds a plot."""
    if not spans:
        return
    boxes = [[(start, 0.0), (start, 1.0), (end, 1.0), (end, 0.0)] for start, end in spans]
    shading = PolyCollection(
        boxes, transform=axes.get_xaxis_transform(), facecolors=colour, alpha=alpha, linewidths=0, label=label
    )
    axes.add_collection(shading, autolim=False)


def _axis_clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{int(minutes)}:{int(rest):02d}"
