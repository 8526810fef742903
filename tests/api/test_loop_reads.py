"""The cached export POST reads on the event loop's held connection (service/loop_reads.py): it must see
every commit made meanwhile, by any connection, at its very next read."""

from __future__ import annotations

import hashlib

from sqlalchemy import select, update

from altdub.db.models import ApiKey, ExportTask
from altdub.db.session import session_scope
from altdub.service.keys import revoke_key
from tests.conftest import auth, export, make_run


def _post(client, key: str, run_id: int):
    return client.post(f"/dub-alt-format/{run_id}/es-es", headers=auth(key), json={"output_format": "mp3"})


def test_a_key_revoked_between_two_cached_answers_is_refused_at_once(client, api_key, media):
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    assert export(client, api_key, run_id, "es-es", "mp3")["status"] == "SUCCESS"
    first = _post(client, api_key, run_id)
    assert first.status_code == 200 and "output_url" in first.json()  # answered on the held connection
    with session_scope(client.app.state.context.sessions) as session:
        key_hash = hashlib.sha256(api_key.encode()).hexdigest()
        revoke_key(session, session.scalar(select(ApiKey.id).where(ApiKey.key_hash == key_hash)))
    assert _post(client, api_key, run_id).status_code == 401


def test_an_export_removed_between_two_cached_answers_is_not_answered_with_its_url(client, api_key, media):
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    assert export(client, api_key, run_id, "es-es", "mp3")["status"] == "SUCCESS"
    assert "output_url" in _post(client, api_key, run_id).json()
    with session_scope(client.app.state.context.sessions) as session:  # as the storage lifecycle removes one
        session.execute(update(ExportTask).values(storage_key=None, evicted_at=ExportTask.created_at))
    answer = _post(client, api_key, run_id)
    assert answer.status_code == 200 and "task_id" in answer.json()  # made anew, not the removed file's URL
