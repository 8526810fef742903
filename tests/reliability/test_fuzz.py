"""Issue 5, hostile requests: schemathesis over the service's own OpenAPI schema, in-process, authenticated.

Every operation of the schema is fuzzed with schema-conforming (positive) and schema-violating
(negative) requests, with a valid API key added by a ``map_headers`` hook, against a data directory
holding a real run (video, dub, voice stem, transcript) and finished exports, so that generated ids
reach real rows too. Checks: ``not_a_server_error`` (no 5xx) and ``response_schema_conformance``
(each answer matches the schema it is documented with).

A short run (~100 cases) always runs; the long run (>= 1,000 cases) is marked ``fuzz``. The seed is
fixed (``derandomize``) so that CI is repeatable; ``ALTDUB_FUZZ_SEED=<n>`` explores another one.
"""

from __future__ import annotations

import os
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from altdub.api.app import create_app
from altdub.config import Settings
from tests.api.conftest import new_key
from tests.conftest import auth, export, make_run

CHECKS = [not_a_server_error, response_schema_conformance]


@dataclass
class Target:
    schema: schemathesis.BaseSchema
    key: str
    run_id: int


@dataclass
class Tally:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    per_operation: Counter[str] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    unauthenticated: int = 0  # 401s of positive cases (negative ones drop the key on purpose)
    seconds: Counter[str] = field(default_factory=Counter)


@pytest.fixture
def target(tmp_path: Path, media) -> Iterator[Target]:
    """An app on a data directory with a real run and two finished exports; fuzzed without workers, so that
    the thousands of export requests it gets queue tasks instead of running conversions."""
    settings = Settings(data_dir=tmp_path / "data", create_demo=False, task_time_limit=60)
    with TestClient(create_app(settings)) as client:
        key = new_key(client, "fuzz")
        transcript = '[{"start": 0.5, "end": 1.5, "text": "hola", "speaker": "A"}]'
        files = {"source": media.video, "dub_es-es": media.dub_wav, "voice_es-es": media.dub_flac}
        run_id = make_run(client, key, files, name="fuzz", **{"transcript_es-es": transcript})
        for output_format in ("mp3", "mp4"):
            assert export(client, key, run_id, "es-es", output_format)["status"] == "SUCCESS"
    app = create_app(settings, workers=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    @schema.hook
    def map_headers(context, headers):
        return {**(headers or {}), **auth(key)}

    yield Target(schema, key, run_id)


def fuzz(target: Target, examples_per_operation: int, *, shrink: bool) -> Tally:
    """Every operation, positive then negative, ``examples_per_operation`` cases each at most."""
    tally = Tally()
    operations = [result.ok() for result in target.schema.get_all_operations()]
    operations.sort(key=lambda op: op.method.upper() == "DELETE")  # deleting the run last keeps the rest deep
    seed_value = os.environ.get("ALTDUB_FUZZ_SEED")
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{mode.value} {operation.method.upper()} {operation.path}"
            try:
                strategy = operation.as_strategy(generation_mode=mode, hooks=target.schema.hooks)
            except Exception as exc:
                if mode.is_positive:
                    tally.failures[label] = f"no strategy: {exc!r}"
                continue  # an operation with nothing to negate

            run = _property(
                strategy, label, tally, examples_per_operation, derandomize=seed_value is None, shrink=shrink
            )
            if seed_value is not None:
                run = seed(int(seed_value))(run)
            started = time.monotonic()
            try:
                run()
            except Exception as exc:  # a check failed, or the app raised (a 500 behind a real server)
                tally.failures[label] = "".join(traceback.format_exception_only(exc)).strip()[-3000:]
            tally.seconds[label] += time.monotonic() - started
    return tally


def _property(strategy, label: str, tally: Tally, examples: int, *, derandomize: bool, shrink: bool):
    """The Hypothesis test of one operation and mode: call, then check the answer."""

    @hypothesis_settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=derandomize,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if shrink else [])],
        report_multiple_bugs=False,
    )
    @given(case=strategy)
    def run(case) -> None:
        tally.cases += 1
        tally.per_operation[label] += 1
        response = case.call()
        tally.statuses[response.status_code] += 1
        if response.status_code == 401 and label.startswith("positive"):
            tally.unauthenticated += 1
        case.validate_response(response, checks=CHECKS)

    return run


def report(tally: Tally, elapsed: float) -> str:
    statuses = ", ".join(f"{code}: {count}" for code, count in sorted(tally.statuses.items()))
    lines = [
        f"fuzz: {tally.cases} cases over {len(tally.per_operation)} operation modes in {elapsed:.1f} s; "
        f"statuses {{{statuses}}}; {len(tally.failures)} failing operation mode(s)"
    ]
    lines += [f"  {label}: {n} cases, {tally.seconds[label]:.1f} s" for label, n in tally.per_operation.items()]
    lines += [f"--- {label}\n{message}" for label, message in tally.failures.items()]
    return "\n".join(lines)


def _run(target: Target, per_operation: int, minimum: int, *, shrink: bool) -> None:
    started = time.monotonic()
    tally = fuzz(target, per_operation, shrink=shrink)
    summary = report(tally, time.monotonic() - started)
    print(summary)
    Path(os.environ.get("ALTDUB_FUZZ_REPORT", os.devnull)).write_text(summary + "\n")
    assert tally.cases >= minimum, f"only {tally.cases} cases ran\n{summary}"
    assert tally.unauthenticated == 0, "positive cases went unauthenticated: the header hook did not apply"
    assert not tally.failures, summary


def test_fuzz_short(target: Target) -> None:
    """Always on: about 100 cases."""
    _run(target, per_operation=5, minimum=100, shrink=False)


@pytest.mark.fuzz
def test_fuzz_long(target: Target) -> None:
    """At least 1,000 cases across every operation."""
    _run(target, per_operation=48, minimum=1000, shrink=True)


# --- what the fuzzer found, pinned ----------------------------------------------------------------------


def integer_parameters(app) -> list[tuple[str, str, str, str]]:
    """(method, path, parameter, location) of every integer path or query parameter of the schema."""
    found = []
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            for param in operation.get("parameters", []):
                schema = param.get("schema", {})
                types = [schema.get("type")] + [s.get("type") for s in schema.get("anyOf", [])]
                if "integer" in types and param["in"] in ("path", "query"):
                    found.append((method.upper(), path, param["name"], param["in"]))
    return found


@pytest.mark.parametrize("value", [2**62, 2**63, -(2**63) - 1, 10**30])
def test_integers_past_64_bits_are_not_server_errors(client, api_key, media, value: int) -> None:
    """Every integer parameter of the schema, given a value SQLite cannot hold (or, for ``page``, one whose
    offset it cannot hold): a 404 or 422, never a 5xx."""
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    unchecked = TestClient(client.app, raise_server_exceptions=False)  # shares the running app's state
    params = integer_parameters(client.app)
    assert len(params) >= 8, params
    errors = []
    for method, path, name, location in params:
        values = {"run_id": run_id, "task_id": "00000000-0000-0000-0000-000000000000", "language": "es-es", "key": "x"}
        query: dict[str, object] = {}
        if location == "path":
            values[name] = value
        else:
            query[name] = value
        url = path.format(**values)
        if path == "/files/{key}":
            query |= {"filename": "x", "expires": "1", "signature": "x"}
        body = {"output_format": "mp3"} if method == "POST" and "dub-alt-format" in path else None
        response = unchecked.request(method, url, params=query, json=body, headers=auth(api_key))
        if response.status_code >= 500:
            errors.append(f"{method} {url} {query}: {response.status_code}")
    assert not errors, "\n".join(errors)
