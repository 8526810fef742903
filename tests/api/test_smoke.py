from tests.conftest import auth, download, export, make_run


def test_import_and_export_mp3(client, api_key, media, tmp_path):
    run_id = make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav})
    status = export(client, api_key, run_id, "es-es", "mp3")
    assert status["status"] == "SUCCESS", status
    out = download(client, status["output_url"], tmp_path / "out.mp3")
    assert out.stat().st_size > 1000
    assert client.get(f"/runs/{run_id}", headers=auth(api_key)).status_code == 200
