"""``GET /runs/{run_id}/exports/{task_id}/qc``: a real export with a preset, its report as JSON and as a page.

The report's figures are the meter's (tests/service checks them against independent meters); here:
that the endpoint answers the stored report, whole, in both forms, to its workspace only, and says
why when there is none; on SQLite and on PostgreSQL (the exports list reads the verdict out of the
stored JSON in SQL, which each database spells its own way).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.api.qc_page import STYLE_SOURCE
from altdub.config import Settings
from altdub.media.qc_report import QcReport
from altdub.media.synth import make_tone
from tests.api.conftest import new_key
from tests.api.test_qc_page import Page
from tests.conftest import SOURCE_SECONDS, Media, auth, make_run, wait_for_task
from tests.scaleout.conftest import postgres  # noqa: F401  (the PostgreSQL fixture)

SRT = "1\n00:00:00,200 --> 00:00:01,800\nHola.\n\n2\n00:00:02,100 --> 00:00:03,800\nAdiós.\n"


@dataclass(frozen=True)
class Made:
    client: TestClient
    key: str
    other_key: str
    run_id: int
    other_run_id: int
    task_id: str  # an m4a with loudness netflix (dialogue-gated over the transcript)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def made(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, media: Media) -> Iterator[Made]:
    directory = tmp_path_factory.mktemp("qc-endpoint")
    transcript = directory / "es.srt"
    transcript.write_text(SRT, encoding="utf-8")
    database = {} if request.param == "sqlite" else {"database_url": request.getfixturevalue("postgres").create()}
    settings = Settings(data_dir=directory / "data", create_demo=False, workers=2, task_time_limit=120, **database)
    with TestClient(create_app(settings)) as client:
        key, other_key = new_key(client, "qc"), new_key(client, "qc-other")
        dub = make_tone(directory / "dub.wav", SOURCE_SECONDS, tone_hz=440)
        run_id = make_run(client, key, {"source": media.video, "dub_es-es": dub, "transcript_es-es": transcript})
        other_run_id = make_run(client, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
        answer = client.post(
            f"/runs/{run_id}/exports", headers=auth(key), json={"output_format": "m4a", "loudness": "netflix"}
        )
        assert answer.status_code == 200, answer.text
        task_id = answer.json()["task_id"]
        assert wait_for_task(client, key, task_id)["status"] == "SUCCESS"
        yield Made(client, key, other_key, run_id, other_run_id, task_id)


def qc_path(run_id: int, task_id: str) -> str:
    return f"/runs/{run_id}/exports/{task_id}/qc"


def test_the_json_is_the_stored_report_of_the_preset(made: Made) -> None:
    response = made.client.get(qc_path(made.run_id, made.task_id), headers=auth(made.key))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert set(data) >= {"preset", "passed", "checks", "tracks"}  # spec §6
    report = QcReport.from_dict(data)
    assert json.loads(json.dumps(report.as_dict())) == data  # the one shape, whole
    assert report.preset == "netflix"
    assert report.target is not None and report.target.integrated == -27.0 and report.target.dialogue_gated
    assert report.passed == all(check.passed for check in report.checks)
    names = {check.name for check in report.checks}
    assert {"duration", "dialogue_loudness", "true_peak"} <= names
    (track,) = report.tracks
    assert track.language == "es-es" and track.default
    assert track.speech  # the transcript's segments
    assert abs(report.duration - SOURCE_SECONDS) <= 0.05


def test_the_html_page_shows_that_report(made: Made) -> None:
    data = made.client.get(qc_path(made.run_id, made.task_id), headers=auth(made.key)).json()
    response = made.client.get(qc_path(made.run_id, made.task_id), params={"format": "html"}, headers=auth(made.key))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and f"style-src {STYLE_SOURCE}" in policy and "img-src data:" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    page = Page(response.text)
    failing_first = [c for c in data["checks"] if not c["passed"]] + [c for c in data["checks"] if c["passed"]]
    assert [row["data-check"] for row in page.rows] == [c["name"] for c in failing_first]
    assert len(page.svgs()) == len(data["tracks"]) == 1
    assert ("Passed" if data["passed"] else "Failed") in " ".join(page.text)
    assert page.all("header")[0]["data-passed"] == str(data["passed"]).lower()


def test_the_run_exports_list_carries_the_verdict(made: Made) -> None:
    data = made.client.get(qc_path(made.run_id, made.task_id), headers=auth(made.key)).json()
    (entry,) = made.client.get(f"/runs/{made.run_id}/exports", headers=auth(made.key)).json()
    failed = list(dict.fromkeys(c["name"] for c in data["checks"] if not c["passed"]))
    assert entry["qc"] == {"passed": data["passed"], "failed": failed}


def test_a_format_other_than_json_or_html_is_a_422_naming_format(made: Made) -> None:
    response = made.client.get(qc_path(made.run_id, made.task_id), params={"format": "pdf"}, headers=auth(made.key))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "format"]


def test_another_workspace_a_wrong_run_or_an_unknown_task_is_a_404(made: Made) -> None:
    for key, run_id, task_id in (
        (made.other_key, made.run_id, made.task_id),  # another workspace's export
        (made.key, made.other_run_id, made.task_id),  # the task is not of this run
        (made.key, made.run_id, "no-such-task"),
    ):
        for params in ({}, {"format": "html"}):
            response = made.client.get(qc_path(run_id, task_id), params=params, headers=auth(key))
            assert response.status_code == 404, (key, run_id, task_id, response.text)
    assert made.client.get(qc_path(made.run_id, made.task_id)).status_code == 401


def test_an_export_not_finished_is_a_409_saying_so(idle_client: TestClient, media: Media) -> None:
    key = new_key(idle_client, "idle")
    run_id = make_run(idle_client, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    task_id = idle_client.post(f"/runs/{run_id}/exports", headers=auth(key), json={"output_format": "mp3"}).json()[
        "task_id"
    ]
    response = idle_client.get(qc_path(run_id, task_id), headers=auth(key))
    assert response.status_code == 409, response.text
    assert "PENDING" in response.json()["detail"]


def test_the_route_is_documented(made: Made) -> None:
    operation = made.client.get("/openapi.json").json()["paths"]["/runs/{run_id}/exports/{task_id}/qc"]["get"]
    assert {"200", "404", "409", "422"} <= set(operation["responses"])
    assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/html"}
    (fmt,) = [p for p in operation["parameters"] if p["name"] == "format"]
    assert fmt["in"] == "query" and fmt["schema"]["enum"] == ["json", "html"]
