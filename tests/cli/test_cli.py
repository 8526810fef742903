"""The real ``altdub`` command, run as a subprocess (and, where it talks to one, against a real server)."""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import m3u8
import pytest

from altdub.media.probe import probe
from tests.e2e.conftest import ALTDUB, Server, ServerFactory, clean_env

SOURCE_SECONDS = 4.0
DURATION_TOLERANCE = 0.05  # spec §4


def altdub(
    *args: str, data_dir: Path | None = None, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``altdub ARGS`` with a clean environment (ALTDUB_DATA_DIR set when ``data_dir`` is given)."""
    overrides = dict(env)
    if data_dir is not None:
        overrides["ALTDUB_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [str(ALTDUB), *args],
        env=clean_env(**overrides),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    factory = ServerFactory()
    started = factory(tmp_path_factory.mktemp("cli-data"))
    assert started.api_key
    yield started
    factory.stop_all()


@pytest.fixture(scope="module")
def run_id(server: Server, media, tmp_path_factory: pytest.TempPathFactory) -> int:
    """A run imported with ``altdub runs import`` (flags for the server and key)."""
    result = ok(
        altdub(
            "runs", "import",
            "--url", server.base_url, "--api-key", server.api_key,
            "--source", str(media.video), "--source-language", "en-us",
            "--dub", f"es-es={media.dub_wav}",
            "--name", "cli import",
            cwd=tmp_path_factory.mktemp("cwd"),
        )
    )  # fmt: skip
    match = re.fullmatch(r"run (\d+): es-es", result.stdout.strip())
    assert match, result.stdout
    return int(match.group(1))


# --- help -----------------------------------------------------------------------------------------


ALL_COMMANDS = [
    [],
    ["serve"],
    ["worker"],
    ["keys"],
    ["keys", "create"],
    ["keys", "list"],
    ["keys", "revoke"],
    ["db"],
    ["db", "upgrade"],
    ["runs"],
    ["runs", "import"],
    ["export"],
    ["qc"],
    ["workspaces"],
    ["workspaces", "list"],
    ["workspaces", "quota"],
    ["workspaces", "webhook"],
]


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: " ".join(c) or "altdub")
def test_help(command: list[str], tmp_path: Path) -> None:
    result = ok(altdub(*command, "--help", cwd=tmp_path))
    assert "Usage:" in result.stdout
    assert not (tmp_path / "altdub-data").exists(), "--help must not create a data directory"


# --- keys and the database ------------------------------------------------------------------------


def test_db_upgrade_on_a_fresh_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ok(altdub("db", "upgrade", data_dir=data_dir, cwd=tmp_path))
    assert (data_dir / "altdub.db").is_file()
    ok(altdub("db", "upgrade", data_dir=data_dir, cwd=tmp_path))  # idempotent


@pytest.mark.e2e
def test_db_upgrade_on_a_served_data_dir(server: Server, tmp_path: Path) -> None:
    ok(altdub("db", "upgrade", data_dir=server.data_dir, cwd=tmp_path))


@pytest.mark.e2e
def test_keys_create_list_revoke(server: Server, tmp_path: Path) -> None:
    created = ok(altdub("keys", "create", "--workspace", "acme", data_dir=server.data_dir, cwd=tmp_path))
    lines = created.stdout.strip().splitlines()
    key = lines[-1]
    assert re.fullmatch(r"altdub_[A-Za-z0-9_-]{20,}", key), f"the key is not alone on the last line: {lines}"
    key_id = int(re.search(r"Created key (\d+)", created.stdout).group(1))

    runs = f"{server.base_url}/runs"
    answer = httpx.get(runs, headers={"x-api-key": key}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["total"] == 0, "a new workspace sees none of another workspace's runs"

    listed = ok(altdub("keys", "list", data_dir=server.data_dir, cwd=tmp_path)).stdout
    row = next((line for line in listed.splitlines() if line.split("\t")[0] == str(key_id)), None)
    assert row is not None, listed
    assert "acme" in row and key[:13] in row and "active" in row
    assert key not in listed, "the full key is never shown again"

    revoked = ok(altdub("keys", "revoke", str(key_id), data_dir=server.data_dir, cwd=tmp_path))
    assert str(key_id) in revoked.stdout
    assert httpx.get(runs, headers={"x-api-key": key}, timeout=10).status_code == 401
    listed = ok(altdub("keys", "list", data_dir=server.data_dir, cwd=tmp_path)).stdout
    row = next(line for line in listed.splitlines() if line.split("\t")[0] == str(key_id))
    assert "revoked" in row
    # The server's own key is untouched.
    assert httpx.get(runs, headers={"x-api-key": server.api_key}, timeout=10).status_code == 200


def test_keys_revoke_unknown_id(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ok(altdub("db", "upgrade", data_dir=data_dir, cwd=tmp_path))
    result = altdub("keys", "revoke", "999", data_dir=data_dir, cwd=tmp_path)
    assert result.returncode != 0
    assert "999" in result.stderr


def test_workspaces_webhook_sets_rotates_clears_and_refuses(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ok(altdub("keys", "create", "--workspace", "acme", data_dir=data_dir, cwd=tmp_path))

    def webhook(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return altdub("workspaces", "webhook", *args, data_dir=data_dir, cwd=tmp_path, **env)

    shown = ok(webhook("acme")).stdout.strip().splitlines()
    assert shown[0] == "webhook of 'acme': none (callback URLs only)"
    secret = shown[1]
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{40,}", secret), shown
    assert ok(webhook("acme")).stdout.strip().splitlines()[1] == secret, "the secret changed without --rotate"

    for url, words in [
        ("http://127.0.0.1:8080/hooks", "loopback"),
        ("http://10.0.0.1/hooks", "private"),
        ("http://169.254.169.254/", "link-local"),
        ("ftp://example.com/hooks", "http:// or https://"),
        ("https://user:pw@example.com/", "credentials"),
    ]:
        refused = webhook("acme", "--url", url)
        assert refused.returncode == 1, refused.stdout
        assert words in refused.stderr and "refused" in refused.stderr, refused.stderr
    assert ok(webhook("acme")).stdout.startswith("webhook of 'acme': none")

    local = "http://127.0.0.1:8080/hooks"
    set_it = ok(webhook("acme", "--url", local, ALTDUB_WEBHOOK_ALLOW_PRIVATE="true")).stdout.strip().splitlines()
    assert set_it == [f"webhook of 'acme': {local}", secret]
    rotated = ok(webhook("acme", "--rotate")).stdout.strip().splitlines()
    assert rotated[0] == f"webhook of 'acme': {local}" and rotated[1] != secret
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{40,}", rotated[1])
    cleared = ok(webhook("acme", "--clear")).stdout.strip().splitlines()
    assert cleared == ["webhook of 'acme': none (callback URLs only)", rotated[1]]

    both = webhook("acme", "--url", local, "--clear", ALTDUB_WEBHOOK_ALLOW_PRIVATE="true")
    assert both.returncode == 2 and "not both" in both.stderr
    missing = webhook("nobody", "--rotate")
    assert missing.returncode == 1 and "nobody" in missing.stderr


@pytest.mark.e2e
def test_workspaces_webhook_on_a_served_data_dir_is_what_the_api_shows(server: Server, tmp_path: Path) -> None:
    created = ok(altdub("keys", "create", "--workspace", "hooked", data_dir=server.data_dir, cwd=tmp_path))
    key = created.stdout.strip().splitlines()[-1]
    url = "http://127.0.0.1:9/altdub"  # stored only: nothing is exported in this workspace
    done = altdub(
        "workspaces", "webhook", "hooked", "--url", url,
        data_dir=server.data_dir, cwd=tmp_path, ALTDUB_WEBHOOK_ALLOW_PRIVATE="true",
    )  # fmt: skip
    secret = ok(done).stdout.strip().splitlines()[-1]
    shown = httpx.get(f"{server.base_url}/webhooks", headers={"x-api-key": key}, timeout=10)
    assert shown.status_code == 200, shown.text
    assert shown.json() == {"url": url, "signing_secret": secret}
    other = httpx.get(f"{server.base_url}/webhooks", headers={"x-api-key": server.api_key}, timeout=10).json()
    assert other["url"] is None and other["signing_secret"] != secret


# --- client commands against a server -------------------------------------------------------------


@pytest.mark.e2e
def test_runs_import_prints_the_run_id(server: Server, run_id: int) -> None:
    run = httpx.get(f"{server.base_url}/runs/{run_id}", headers={"x-api-key": server.api_key}, timeout=10)
    assert run.status_code == 200, run.text
    assert run.json()["name"] == "cli import"
    assert [lang["short_name"] for lang in run.json()["languages"]] == ["es-es"]


@pytest.mark.e2e
def test_export_wait_download_mp3(server: Server, run_id: int, tmp_path: Path) -> None:
    out = tmp_path / "out.mp3"
    result = ok(
        altdub(
            "export", str(run_id), "es-es", "mp3", "--wait", "-o", str(out),
            "--url", server.base_url, "--api-key", server.api_key,
            cwd=tmp_path,
        )
    )  # fmt: skip
    assert f"saved {out}" in result.stdout
    assert not (tmp_path / "out.mp3.part").exists()
    info = probe(out)
    assert info.format_name == "mp3"
    assert len(info.audio) == 1 and info.audio[0].codec.startswith("mp3")
    assert not info.video
    assert abs(info.duration - SOURCE_SECONDS) <= DURATION_TOLERANCE


@pytest.mark.e2e
def test_env_vars_instead_of_flags(server: Server, run_id: int, media, tmp_path: Path) -> None:
    out = tmp_path / "dub.mkv"
    env = {"ALTDUB_URL": server.base_url, "ALTDUB_API_KEY": server.api_key}
    ok(altdub("export", str(run_id), "es-es", "mkv", "-o", str(out), cwd=tmp_path, **env))
    info = probe(out)
    assert info.video and info.audio
    assert info.audio[0].language == "spa"

    # Without --wait or -o: a task id, or the URL once the export exists (it does now).
    printed = ok(altdub("export", str(run_id), "es-es", "mkv", cwd=tmp_path, **env)).stdout.strip()
    assert printed.startswith(f"{server.base_url}/files/"), printed
    assert httpx.get(printed, timeout=30).content == out.read_bytes()

    imported = ok(altdub("runs", "import", "--source", str(media.video), "--source-language", "en-us",
                         "--dub", f"fr-fr={media.dub_flac}", cwd=tmp_path, **env))  # fmt: skip
    assert re.fullmatch(r"run \d+: fr-fr", imported.stdout.strip()), imported.stdout


@pytest.mark.e2e
def test_export_of_language_not_in_run_fails_with_reason(server: Server, run_id: int, tmp_path: Path) -> None:
    result = altdub(
        "export", str(run_id), "fr-fr", "mp3", "--wait", "-o", str(tmp_path / "x.mp3"),
        "--url", server.base_url, "--api-key", server.api_key,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0, result.stdout
    assert "404" in result.stderr
    assert f"language fr-fr is not in run {run_id}" in result.stderr
    assert not (tmp_path / "x.mp3").exists()


@pytest.mark.e2e
def test_export_with_bad_key_or_format_fails(server: Server, run_id: int, tmp_path: Path) -> None:
    bad_key = altdub(
        "export", str(run_id), "es-es", "mp3", "--url", server.base_url, "--api-key", "altdub_wrong",
        cwd=tmp_path,
    )  # fmt: skip
    assert bad_key.returncode != 0 and "401" in bad_key.stderr, bad_key.stderr
    bad_format = altdub(
        "export", str(run_id), "es-es", "ogg", "--url", server.base_url, "--api-key", server.api_key,
        cwd=tmp_path,
    )  # fmt: skip
    assert bad_format.returncode != 0 and "422" in bad_format.stderr, bad_format.stderr
    assert "output_format" in bad_format.stderr


@pytest.mark.e2e
def test_runs_import_rejects_a_bad_file(server: Server, media, tmp_path: Path) -> None:
    result = altdub(
        "runs", "import", "--url", server.base_url, "--api-key", server.api_key,
        "--source", str(media.video), "--source-language", "en-us", "--dub", f"es-es={media.text}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0
    assert "422" in result.stderr and "dub_es-es" in result.stderr, result.stderr


@pytest.mark.e2e
def test_export_options_and_transcript_from_the_command_line(server: Server, media, tmp_path: Path) -> None:
    """`runs import --transcript` and `export` with the API's options: the file shows each option."""
    transcript = tmp_path / "es.srt"
    transcript.write_text("1\n00:00:00,500 --> 00:00:01,500\nHola\n\n2\n00:00:02,000 --> 00:00:03,000\nAdiós\n")
    env = {"ALTDUB_URL": server.base_url, "ALTDUB_API_KEY": server.api_key}
    imported = ok(
        altdub(
            "runs", "import", "--source", str(media.video), "--source-language", "en-us",
            "--dub", f"es-es={media.dub_wav}", "--transcript", f"es-es={transcript}",
            cwd=tmp_path, **env,
        )
    )  # fmt: skip
    run = re.fullmatch(r"run (\d+): es-es", imported.stdout.strip())
    assert run, imported.stdout
    out = tmp_path / "dub.mp4"
    ok(
        altdub(
            "export", run.group(1), "es-es", "mp4", "--audio-bitrate", "128k", "--sample-rate", "44100",
            "--channels", "1", "--loudness", "ebu_r128", "--include-original-audio", "--subtitles", "soft",
            "-o", str(out), cwd=tmp_path, **env,
        )
    )  # fmt: skip
    info = probe(out)
    dub, original = info.audio
    assert (dub.language, dub.default, dub.sample_rate, dub.channels) == ("spa", True, 44100, 1)
    assert (original.language, original.default) == ("eng", False)
    assert [s.codec for s in info.subtitles] == ["mov_text"]

    refused = altdub("export", run.group(1), "es-es", "flac", "--audio-bitrate", "128k", cwd=tmp_path, **env)
    assert refused.returncode != 0
    assert "422" in refused.stderr and "audio_bitrate" in refused.stderr


# --- masters: several languages in one file ----------------------------------------------------------------


@pytest.fixture(scope="module")
def master_run_id(server: Server, media, tmp_path_factory: pytest.TempPathFactory) -> int:
    """A video run dubbed into French, Spanish and German, imported in that order (not the ids' order)."""
    result = ok(
        altdub(
            "runs", "import", "--url", server.base_url, "--api-key", server.api_key,
            "--source", str(media.video), "--source-language", "en-us",
            "--dub", f"fr-fr={media.dub_flac}", "--dub", f"es-es={media.dub_wav}", "--dub", f"de-de={media.dub_s24}",
            cwd=tmp_path_factory.mktemp("cwd"),
        )
    )  # fmt: skip
    match = re.fullmatch(r"run (\d+): fr-fr, es-es, de-de", result.stdout.strip())
    assert match, result.stdout
    return int(match.group(1))


def _mkv_audio(path: Path) -> list[tuple[str, str, bool]]:
    """(language, title, default) of each audio track, as mkvmerge reads them."""
    done = subprocess.run(["mkvmerge", "-J", str(path)], capture_output=True, text=True, timeout=60, check=True)
    tracks = json.loads(done.stdout)["tracks"]
    return [
        (t["properties"]["language"], t["properties"].get("track_name"), t["properties"]["default_track"])
        for t in tracks
        if t["type"] == "audio"
    ]


@pytest.mark.e2e
def test_export_a_master_with_a_default_language(server: Server, master_run_id: int, tmp_path: Path) -> None:
    env = {"ALTDUB_URL": server.base_url, "ALTDUB_API_KEY": server.api_key}
    master = [str(master_run_id), "es-es,fr-fr", "mkv", "--default-language", "fr-fr"]
    out = tmp_path / "master.mkv"
    result = ok(altdub("export", *master, "-o", str(out), cwd=tmp_path, **env))
    assert result.stdout.strip() == f"saved {out} ({out.stat().st_size} bytes)", result.stdout
    info = probe(out)
    assert [s.codec for s in info.video] == ["h264"]
    assert [(a.language, a.default) for a in info.audio] == [("spa", False), ("fre", True)]
    assert abs(info.duration - SOURCE_SECONDS) <= DURATION_TOLERANCE
    assert _mkv_audio(out) == [("spa", "Spanish (Spain)", False), ("fre", "French (France)", True)]

    # The same master asked again: the URL at once, the same file.
    again = ok(altdub("export", *master, cwd=tmp_path, **env))
    assert httpx.get(again.stdout.strip(), timeout=30).content == out.read_bytes()


@pytest.mark.e2e
def test_export_all_languages_in_import_order(server: Server, master_run_id: int, tmp_path: Path) -> None:
    env = {"ALTDUB_URL": server.base_url, "ALTDUB_API_KEY": server.api_key}
    waited = ok(altdub("export", str(master_run_id), "all", "mkv", "--wait", cwd=tmp_path, **env))
    url = waited.stdout.strip()
    assert re.fullmatch(rf"{re.escape(server.base_url)}/files/\S+", url), waited.stdout
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200
    disposition = response.headers["content-disposition"]
    assert disposition == f"attachment; filename*=utf-8''run-{master_run_id}_fr-fr%2Bes-es%2Bde-de.mkv", disposition
    out = tmp_path / "all.mkv"
    out.write_bytes(response.content)
    assert [(a.language, a.default) for a in probe(out).audio] == [("fre", True), ("spa", False), ("ger", False)]
    assert [title for _, title, _ in _mkv_audio(out)] == ["French (France)", "Spanish (Spain)", "German (Germany)"]


@pytest.mark.e2e
def test_export_several_languages_refused_readably(server: Server, master_run_id: int, tmp_path: Path) -> None:
    env = {"ALTDUB_URL": server.base_url, "ALTDUB_API_KEY": server.api_key}
    refused = altdub(
        "export", str(master_run_id), "es-es,fr-fr", "mp3", "-o", str(tmp_path / "x.mp3"), cwd=tmp_path, **env
    )
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr.startswith("error: HTTP 422: body.languages: "), refused.stderr
    assert "mp4, mov, mkv" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    assert not (tmp_path / "x.mp3").exists()

    not_among = altdub(
        "export", str(master_run_id), "es-es,fr-fr", "mkv", "--default-language", "de-de", cwd=tmp_path, **env
    )
    assert not_among.returncode == 1
    assert not_among.stderr.startswith("error: HTTP 422: body.default_language: "), not_among.stderr

    empty = altdub("export", str(master_run_id), "es-es,,fr-fr", "mkv", cwd=tmp_path, **env)
    assert empty.returncode == 2 and "LANGUAGES" in empty.stderr, empty.stderr


@pytest.mark.e2e
def test_export_a_streaming_package_as_its_zip(server: Server, master_run_id: int, tmp_path: Path) -> None:
    """Issue 13: ``altdub export RUN all hls -o title.zip`` saves the package's package.zip."""
    env = {"ALTDUB_URL": server.base_url, "ALTDUB_API_KEY": server.api_key}
    out = tmp_path / "title.zip"
    result = ok(altdub("export", str(master_run_id), "all", "hls", "-o", str(out), cwd=tmp_path, **env))
    assert result.stdout.strip() == f"saved {out} ({out.stat().st_size} bytes)", result.stdout
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
        names = set(archive.namelist())
        assert {"master.m3u8", "manifest.mpd"} <= names
        master = m3u8.loads(archive.read("master.m3u8").decode())
        # every playlist and segment the master leads to is in the zip
        for playlist_name in [p.uri for p in master.playlists] + [m.uri for m in master.media]:
            assert playlist_name in names, playlist_name
            playlist = m3u8.loads(archive.read(playlist_name).decode())
            segments = [s.uri for s in playlist.segments] + [m.uri for m in playlist.segment_map or [] if m.uri]
            assert segments and set(segments) <= names, (playlist_name, sorted(set(segments) - names))
        assert sum(name.endswith(".m4s") for name in names) > 4  # init and media segments of picture and sound
        master_bytes = archive.read("master.m3u8")
    audio = [(m.name, m.default) for m in master.media if m.type == "AUDIO"]
    assert audio == [("French (France)", "YES"), ("Spanish (Spain)", "NO"), ("German (Germany)", "NO")]

    # without -o: the URL of the playlist, whose folder the zip was
    url = ok(altdub("export", str(master_run_id), "all", "hls", cwd=tmp_path, **env)).stdout.strip()
    assert url.endswith("/master.m3u8"), url
    assert httpx.get(url, timeout=30).content == master_bytes


@pytest.mark.e2e
def test_export_a_tracks_zip_for_audio_post(server: Server, master_run_id: int, tmp_path: Path) -> None:
    """Issue 14: ``altdub export RUN es-es,fr-fr tracks_zip -o stems.zip`` saves the Broadcast WAV stems."""
    env = {"ALTDUB_URL": server.base_url, "ALTDUB_API_KEY": server.api_key}
    out = tmp_path / "stems.zip"
    command = ["export", str(master_run_id), "es-es,fr-fr", "tracks_zip", "--start-timecode", "01:00:00:00"]
    result = ok(altdub(*command, "-o", str(out), cwd=tmp_path, **env))
    assert result.stdout.strip() == f"saved {out} ({out.stat().st_size} bytes)", result.stdout
    run = f"run-{master_run_id}"
    wavs = [f"{run}_es-es_mix.wav", f"{run}_fr-fr_mix.wav", f"{run}_en-us_original.wav"]
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["manifest.json", *wavs]
        manifest = json.loads(archive.read("manifest.json"))
        archive.extractall(tmp_path / "stems")
    assert [(f["file"], f["timecode"]) for f in manifest["files"]] == [(w, "01:00:00:00") for w in wavs]
    for wav in wavs:
        audio = probe(tmp_path / "stems" / wav).audio[0]
        assert (audio.codec, audio.sample_rate) == ("pcm_s24le", 48000), wav

    refused = altdub("export", str(master_run_id), "es-es", "tracks_zip", "--stem", "voice", cwd=tmp_path, **env)
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr.startswith("error: HTTP 422: body.stem: does not apply to tracks_zip"), refused.stderr


# --- every command's help has an example; progress bars on stderr ---------------------------------


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: " ".join(c) or "altdub")
def test_help_has_an_example(command: list[str], tmp_path: Path) -> None:
    result = ok(altdub(*command, "--help", cwd=tmp_path))
    text = result.stdout
    assert "Example: altdub" in text or ("Example:" in text and " altdub " in text.split("Example:", 1)[1]), text
    assert not (tmp_path / "altdub-data").exists(), "--help must not create a data directory"


def _pty_run(args: list[str], cwd: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run ``altdub ARGS`` with stderr on a pseudo-terminal (as in a shell); returns what the terminal showed."""
    import os
    import pty
    import threading

    master, slave = pty.openpty()
    shown: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not data:
                return
            shown.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        result = subprocess.run(
            [str(ALTDUB), *args],
            env=clean_env(COLUMNS="120", **env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
            timeout=120,
        )
    finally:
        os.close(slave)
        reader.join(timeout=10)
        os.close(master)
    return result, b"".join(shown).decode("utf-8", "replace")


@pytest.mark.e2e
def test_export_download_progress_in_a_pipe(server: Server, run_id: int, tmp_path: Path) -> None:
    """Not a terminal: the bars print their labels (with the size) once, stdout keeps only the result."""
    out = tmp_path / "progress.wav"
    result = ok(
        altdub(
            "export", str(run_id), "es-es", "wav", "--sample-rate", "44100", "-o", str(out),
            "--url", server.base_url, "--api-key", server.api_key, cwd=tmp_path,
        )
    )  # fmt: skip
    size = out.stat().st_size
    assert result.stdout.strip() == f"saved {out} ({size} bytes)", result.stdout
    lines = result.stderr.splitlines()
    assert "converting" in lines, result.stderr
    assert any(re.fullmatch(r"downloading progress\.wav \(\d+(\.\d)? [kM]B\)", line) for line in lines), lines
    assert any(re.fullmatch(r"downloading progress\.wav: \d+(\.\d)? [kM]B done", line) for line in lines), lines
    assert "\x1b" not in result.stderr and "\r" not in result.stderr, "no terminal control codes in a pipe"
    assert info_ok(out)

    # --wait without -o: stdout is the URL alone (the bar went to stderr).
    waited = ok(
        altdub(
            "export", str(run_id), "es-es", "wav", "--sample-rate", "22050", "--wait",
            "--url", server.base_url, "--api-key", server.api_key, cwd=tmp_path,
        )
    )  # fmt: skip
    assert re.fullmatch(rf"{re.escape(server.base_url)}/files/\S+", waited.stdout.strip()), waited.stdout
    assert "converting" in waited.stderr


def info_ok(path: Path) -> bool:
    info = probe(path)
    return bool(info.audio) and abs(info.duration - SOURCE_SECONDS) <= DURATION_TOLERANCE


@pytest.mark.e2e
def test_runs_import_upload_progress_in_a_pipe(server: Server, media, tmp_path: Path) -> None:
    result = ok(
        altdub(
            "runs", "import", "--url", server.base_url, "--api-key", server.api_key,
            "--source", str(media.video), "--source-language", "en-us", "--dub", f"es-es={media.dub_wav}",
            cwd=tmp_path,
        )
    )  # fmt: skip
    assert re.fullmatch(r"run \d+: es-es", result.stdout.strip()), result.stdout
    total = media.video.stat().st_size + media.dub_wav.stat().st_size
    lines = result.stderr.splitlines()
    label = next((line for line in lines if line.startswith("uploading 2 files (")), None)
    assert label is not None, result.stderr
    shown = re.fullmatch(r"uploading 2 files \((\d+(?:\.\d)?) ([kM])B\)", label)
    assert shown, label
    megabytes = float(shown.group(1)) * (1e-3 if shown.group(2) == "k" else 1)
    assert abs(megabytes - total / 1e6) < 0.1, (label, total)  # the body: the files plus a few headers
    assert any(line.startswith("uploading 2 files: ") and line.endswith(" done") for line in lines), lines


@pytest.mark.e2e
def test_progress_bars_on_a_terminal(server: Server, media, tmp_path: Path) -> None:
    """On a terminal: upload and download bars that fill up to 100 %, sizes shown as they grow."""
    env = {"ALTDUB_URL": server.base_url, "ALTDUB_API_KEY": server.api_key}
    imported, shown = _pty_run(
        ["runs", "import", "--source", str(media.video), "--source-language", "en-us",
         "--dub", f"fr-fr={media.dub_flac}"],
        tmp_path, **env,
    )  # fmt: skip
    assert imported.returncode == 0, shown
    match = re.fullmatch(r"run (\d+): fr-fr", imported.stdout.strip())
    assert match, imported.stdout
    assert "uploading 2 files (" in shown and "100%" in shown, shown
    assert re.search(r"\d+(\.\d)? [kM]B of \d+(\.\d)? [kM]B", shown), shown

    out = tmp_path / "tty.flac"
    exported, shown = _pty_run(["export", match.group(1), "fr-fr", "flac", "-o", str(out)], tmp_path, **env)
    assert exported.returncode == 0, shown
    assert exported.stdout.strip() == f"saved {out} ({out.stat().st_size} bytes)"
    assert "converting" in shown and "downloading tty.flac (" in shown, shown
    assert shown.count("100%") >= 2, shown  # the conversion bar and the download bar both completed
    assert info_ok(out)


def test_unreachable_server_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    from tests.e2e.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = altdub("export", "1", "es-es", "mp3", "--wait", "--url", url, "--api-key", "altdub_x", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"error: cannot talk to {url}: ConnectError"), result.stderr
    assert "Traceback" not in result.stderr
