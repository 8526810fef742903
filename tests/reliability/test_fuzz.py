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

import json
import math
import os
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


# --- issue 11: hostile values in every slot of every operation ------------------------------------------

HOSTILE_NUMBERS: list[object] = [math.nan, math.inf, -math.inf, 2**64, -(2**63) - 1, 10**400]
HOSTILE_TEXT = ["\x00", "a\x00b", "\x1b[2J", "\x07\x08\x7f", "\x85\x9b", "\u202eevil", "\u2066x", "x" * 100_000,
                "NaN", "Infinity", "1e400", "-1", "", " ", "%00", "../../etc/passwd", "é🎬"]  # fmt: skip
BODY_ONLY_TEXT = ["\ud800", "\udfffx"]  # lone surrogates: JSON can escape them; a URL or a form cannot carry them
EXAMPLE_KEYS = {"^dub_.+$": "dub_es-es", "^voice_.+$": "voice_es-es", "^transcript_.+$": "transcript_es-es"}


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


@dataclass
class Slot:
    """One operation with a valid request to change one part of."""

    operation: Any
    key: str
    path_parameters: dict[str, Any]
    media_type: str | None
    valid_body: dict[str, Any]

    def case(self, path: dict[str, Any] | None = None, query: dict[str, Any] | None = None, body: Any = None) -> Any:
        headers = auth(self.key)
        extra: dict[str, Any] = {}
        if self.media_type:
            extra = {"body": self.valid_body if body is None else body, "media_type": self.media_type}
        return self.operation.Case(
            path_parameters={**self.path_parameters, **(path or {})}, query=query or {}, headers=headers, **extra
        )


def hostile_cases(target: Target) -> Iterator[tuple[str, Any]]:
    """(label, case) for every parameter and body key of every operation of the schema, each hostile value in
    turn, the rest of the request valid: the schema says where the slots are, this fills them."""
    spec = target.schema.raw_schema
    baseline = {"run_id": target.run_id, "language": "es-es", "task_id": str(uuid.uuid4()), "key": "x"}
    operations = sorted(
        (result.ok() for result in target.schema.get_all_operations()), key=lambda op: op.method.upper() == "DELETE"
    )
    for operation in operations:
        definition = spec["paths"][operation.path][operation.method.lower()]
        parameters = [p for p in definition.get("parameters", []) if p["in"] in ("path", "query")]
        content = definition.get("requestBody", {}).get("content", {})
        media_type = next(iter(content), None)
        body_schema = _resolve(spec, content[media_type]["schema"]) if media_type else {}
        slot = Slot(
            operation,
            target.key,
            {p["name"]: baseline.get(p["name"], "x") for p in parameters if p["in"] == "path"},
            media_type,
            {"output_format": "mp3"} if media_type == "application/json" else {"source_language": "en-us"},
        )
        label = f"{operation.method.upper()} {operation.path}"
        for parameter in parameters:
            for value in HOSTILE_NUMBERS + HOSTILE_TEXT:
                given = {parameter["name"]: value if isinstance(value, str) else str(value)}
                yield (
                    f"{label} {parameter['in']}.{parameter['name']}",
                    (slot.case(path=given) if parameter["in"] == "path" else slot.case(query=given)),
                )
        if media_type is None:
            continue
        patterns = body_schema.get("patternProperties", {})
        keys = [*body_schema.get("properties", {}), *(EXAMPLE_KEYS[p] for p in patterns), "unknown_key"]
        values = HOSTILE_NUMBERS + HOSTILE_TEXT + BODY_ONLY_TEXT if media_type == "application/json" else HOSTILE_TEXT
        for key in keys:
            for value in values:
                yield f"{label} body.{key}", slot.case(body={**slot.valid_body, key: value})
        if media_type == "application/json":
            for value in HOSTILE_NUMBERS + BODY_ONLY_TEXT:
                yield f"{label} body", slot.case(body=value)


def send(case: Any) -> Any:
    """Call the case; a JSON body is encoded here, as a hostile client would, with NaN and Infinity literals
    (the test client refuses to write them)."""
    if case.media_type != "application/json":
        return case.call()
    raw = json.dumps(case.body, allow_nan=True).encode()
    return case.call(data=raw, json=None, headers={"content-type": "application/json"})


def test_hostile_values_in_every_field_of_every_operation(target: Target) -> None:
    """Non-finite numbers, huge integers, control and bidi characters, lone surrogates and 100,000-character
    strings, in every path and query parameter and every body key of every operation: zero 5xx."""
    started = time.monotonic()
    statuses: Counter[int] = Counter()
    slots: set[str] = set()
    failures = []
    for label, case in hostile_cases(target):
        slots.add(label)
        try:
            response = send(case)
        except Exception as exc:  # the app raised: a 500 behind a real server
            statuses[500] += 1
            failures.append(f"{label}: {exc!r}"[:300])
            continue
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except Exception as exc:
            failures.append(f"{label}: {response.status_code} {str(exc)[:300]}")
    cases = sum(statuses.values())
    summary = (
        f"hostile values: {cases} cases over {len(slots)} slots in {time.monotonic() - started:.1f} s; "
        f"statuses {dict(sorted(statuses.items()))}; {len(failures)} failure(s)"
    )
    print(summary)
    assert cases >= 500 and len(slots) >= 30, summary  # the schema still has its slots
    assert not failures, summary + "\n" + "\n".join(failures[:50])
