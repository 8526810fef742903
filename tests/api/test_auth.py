"""Spec §1: every endpoint but health, language lists and signed downloads needs a valid x-api-key."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select, text

from altdub.db.models import ApiKey
from altdub.db.session import session_scope
from altdub.service.keys import revoke_key
from tests.conftest import auth, make_run

MISSING = {"detail": "Missing x-api-key header"}
INVALID = {"detail": "Invalid or revoked API key"}

# (method, path, json body) of every endpoint that needs a key. Run 1 and the task need not exist:
# an unauthenticated caller must get 401 before anything about the resource is revealed.
PROTECTED = [
    ("GET", "/runs", None),
    ("POST", "/runs", None),
    ("GET", "/runs/1", None),
    ("DELETE", "/runs/1", None),
    ("POST", "/dub-alt-format/1/es-es", {"output_format": "mp3"}),
    ("GET", "/dub-alt-format/00000000-0000-0000-0000-000000000000", None),
]


def _call(client, method, path, body, headers=None):
    return client.request(method, path, json=body, headers=headers or {})


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_missing_key_is_401(client, method, path, body):
    response = _call(client, method, path, body)
    assert response.status_code == 401, response.text
    assert response.json() == MISSING


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_empty_key_is_401(client, method, path, body):
    response = _call(client, method, path, body, {"x-api-key": ""})
    assert response.status_code == 401, response.text
    assert response.json() == MISSING


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_unknown_key_is_401(client, api_key, method, path, body):
    response = _call(client, method, path, body, auth("altdub_" + "x" * 43))
    assert response.status_code == 401, response.text
    assert response.json() == INVALID


def test_key_is_case_sensitive(client, api_key):
    assert client.get("/runs", headers=auth(api_key)).status_code == 200
    response = client.get("/runs", headers=auth(api_key.upper()))
    assert response.status_code == 401
    assert response.json() == INVALID


def _key_row(client, raw_key):
    with session_scope(client.app.state.context.sessions) as session:
        row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hashlib.sha256(raw_key.encode()).hexdigest()))
        assert row is not None, "no api_keys row holds the SHA-256 of the key"
        return row.id


def test_revoked_key_is_401(client, api_key, other_key, media):
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    assert client.get(f"/runs/{run_id}", headers=auth(api_key)).status_code == 200

    key_id = _key_row(client, api_key)
    with session_scope(client.app.state.context.sessions) as session:
        revoke_key(session, key_id)

    for method, path, body in [
        ("GET", "/runs", None),
        ("GET", f"/runs/{run_id}", None),
        ("POST", f"/dub-alt-format/{run_id}/es-es", {"output_format": "mp3"}),
    ]:
        response = _call(client, method, path, body, auth(api_key))
        assert response.status_code == 401, (path, response.text)
        assert response.json() == INVALID
    # the other workspace's key is untouched
    assert client.get("/runs", headers=auth(other_key)).status_code == 200


def test_keys_are_stored_hashed(client, api_key, other_key, settings):
    engine = client.app.state.context.engine
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM api_keys"))]
    assert len(rows) == 2
    for row in rows:
        for value in row.values():
            assert api_key not in str(value)
            assert other_key not in str(value)
    hashes = {row["key_hash"] for row in rows}
    assert hashes == {hashlib.sha256(k.encode()).hexdigest() for k in (api_key, other_key)}

    # nor anywhere in the database files themselves (main file, WAL)
    engine.dispose()
    for path in settings.resolved_data_dir.glob("altdub.db*"):
        blob = path.read_bytes()
        assert api_key.encode() not in blob, path
        assert other_key.encode() not in blob, path


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/source-languages", "/target-languages", "/formats", "/docs", "/openapi.json"]
)
def test_public_endpoints_need_no_key(client, path):
    response = client.get(path)
    assert response.status_code == 200, response.text


def test_health_bodies(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ok"
    assert ready["checks"]["database"] == "ok"
    assert ready["checks"]["storage"] == "ok"


def test_openapi_declares_the_key(client):
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert any(
        s.get("type") == "apiKey" and s.get("name") == "x-api-key" and s.get("in") == "header" for s in schemes.values()
    )
