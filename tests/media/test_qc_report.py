"""The QC report's one shape survives its JSON round trip."""

import json

from altdub.media.qc_report import Check, QcReport, Series, Target, TrackReport


def test_round_trip_through_json() -> None:
    track = TrackReport(
        0, "es-es", "Spanish (Spain)", True, "dub", -27.1, -26.8, -3.2, 6.5, 0,
        Series(1.0, (None, -30.5, -27.0)), Series(1.0, (-60.0, -4.1, -3.2)), ((0.5, 2.5),), (),
    )  # fmt: skip
    report = QcReport(
        "netflix", Target(-27.0, 2.0, -2.0, True), False,
        (Check("true_peak", "<= -2.0 dBTP", "-1.2 dBTP", False, 0), Check("duration", "3.00 s", "3.00 s", True)),
        (track,), 3.0, 3.0, ("a note",),
    )  # fmt: skip
    again = QcReport.from_dict(json.loads(json.dumps(report.as_dict())))
    assert again == report
    assert [c.name for c in again.failed] == ["true_peak"]
