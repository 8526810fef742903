"""The ``altdub`` command: run the service, manage keys and the database, and act as a client."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlparse

import typer

from altdub.config import SERVE_HOST, SERVE_PORT, Settings, served_url
from altdub.media import catalogue

if TYPE_CHECKING:
    from altdub.client import AltdubClient
    from altdub.service.context import Context

app = typer.Typer(
    help="altdub: deliver dubbed media in the format asked for.\n\nExample: altdub serve", no_args_is_help=True
)
keys_app = typer.Typer(help="Manage API keys.\n\nExample: altdub keys create --workspace acme", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database.\n\nExample: altdub db upgrade", no_args_is_help=True)
runs_app = typer.Typer(
    help="Work with runs on a server.\n\nExample: altdub runs import --source film.mp4 --source-language en-us "
    "--dub es-es=es.wav",
    no_args_is_help=True,
)
workspaces_app = typer.Typer(
    help="Workspaces and their export quotas.\n\nExample: altdub workspaces quota acme --minutes 600",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(runs_app, name="runs")
storage_app = typer.Typer(help="The storage lifecycle.\n\nExample: altdub storage usage", no_args_is_help=True)
app.add_typer(workspaces_app, name="workspaces")
app.add_typer(storage_app, name="storage")

DEFAULT_URL = served_url(SERVE_HOST, SERVE_PORT)
UrlOpt = Annotated[str, typer.Option("--url", envvar="ALTDUB_URL", help="Server URL.")]
KeyOpt = Annotated[str, typer.Option("--api-key", envvar="ALTDUB_API_KEY", help="API key.")]


def _context() -> Context:
    """The service context, for the commands that run the service or manage its data (files private).

    Imported lazily so that the client commands start fast.
    """
    from altdub.service.context import build_context

    settings = Settings()
    _private_files(settings)
    return build_context(settings)


def _private_files(settings: Settings) -> None:
    """Make every file this process creates readable by its own user only (0600, folders 0700).

    Covers the database (and its -wal/-shm), stored media, scratch and secret.key; the data
    directory itself, and a local storage root elsewhere, are closed to other users, which
    also hides what an older version left readable inside them.
    """
    os.umask(0o077)
    folders = [settings.resolved_data_dir]
    storage = urlparse(settings.effective_storage_url)
    if storage.scheme == "file":
        storage_root = Path(storage.path)
        storage_root.mkdir(parents=True, exist_ok=True)
        folders.append(storage_root)
    for folder in folders:
        folder.chmod(0o700)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = SERVE_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = SERVE_PORT,
    no_workers: Annotated[bool, typer.Option("--no-workers", help="Serve the API only.")] = False,
) -> None:
    """Run the API (and in-process workers). Example: altdub serve --port 8000"""
    from altdub.api.app import create_app
    from altdub.api.serving import AltdubServer, uvicorn_config
    from altdub.service.bootstrap import bootstrap_if_empty

    settings = Settings()
    link_hint = settings.public_url is None and host in ("0.0.0.0", "::")  # links to a wildcard reach nobody
    if settings.public_url is None:
        settings.public_url = served_url(host, port)  # download links point where clients reached us
    context = _context()
    first = bootstrap_if_empty(context, demo=settings.create_demo)
    context.engine.dispose()
    base = settings.public_url
    typer.echo(f"altdub data directory: {settings.resolved_data_dir}")
    if first is not None:
        typer.echo("First start: created workspace 'default'. Its API key (shown once):")
        typer.echo(f"  {first.api_key}")
        if first.demo_run_id is not None:
            typer.echo(f"Demo run {first.demo_run_id} (English source, es-es and fr-fr dubs). Try:")
            typer.echo(
                f"  curl -s -X POST {base}/dub-alt-format/{first.demo_run_id}/es-es "
                f"-H 'x-api-key: {first.api_key}' -H 'content-type: application/json' "
                '-d \'{"output_format": "mp3"}\''
            )
    if settings.broker_url:
        typer.echo("Conversions run in `altdub worker` processes (ALTDUB_BROKER_URL is set).")
    if link_hint:
        typer.echo(f"Download links point at {base}: set ALTDUB_PUBLIC_URL to the address clients use.")
    typer.echo(f"Dashboard: {base}/  (sign in with an API key)")
    typer.echo(f"API docs: {base}/docs")  # the last line before uvicorn's: the e2e tests wait for it
    api = create_app(settings, workers=not no_workers)
    AltdubServer(uvicorn_config(api, settings, host=host, port=port)).run()


@app.command()
def worker() -> None:
    """Run conversions from the broker (ALTDUB_BROKER_URL), one at a time, until stopped.

    Example: ALTDUB_BROKER_URL=redis://queue:6379/0 ALTDUB_DATABASE_URL=postgresql+psycopg://… altdub worker
    """
    from altdub.service.context import remove_stale_scratch
    from altdub.service.workers import consume_broker

    settings = Settings()
    if not settings.broker_url:
        typer.echo("error: set ALTDUB_BROKER_URL (a Redis URL) to run workers", err=True)
        raise typer.Exit(2)
    # Celery configures its own loggers only (it leaves the root alone): altdub's lines need a handler too.
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s: %(levelname)s/%(name)s] %(message)s")
    context = _context()
    remove_stale_scratch(settings)
    consume_broker(context)


@keys_app.command("create")
def keys_create(workspace: Annotated[str, typer.Option(help="Workspace name (created if new).")]) -> None:
    """Create an API key, printed once alone on the last line.

    Example: altdub keys create --workspace acme
    """
    from altdub.db.session import session_scope
    from altdub.service.keys import create_key

    context = _context()
    with session_scope(context.sessions) as session:
        raw, key = create_key(session, workspace)
        typer.echo(f"Created key {key.id} ({key.prefix}…) for workspace {workspace!r}:")
    typer.echo(raw)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (id, workspace, prefix, state). Example: altdub keys list"""
    from altdub.service.keys import list_keys

    context = _context()
    with context.sessions() as session:
        for key in list_keys(session):
            state = "revoked" if key.revoked_at else "active"
            typer.echo(f"{key.id}\t{key.workspace.name}\t{key.prefix}…\t{state}\t{key.created_at:%Y-%m-%d %H:%M}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="Key id from `altdub keys list`.")]) -> None:
    """Revoke a key at once. Example: altdub keys revoke 3"""
    from altdub.db.session import session_scope
    from altdub.service.errors import NotFound
    from altdub.service.keys import revoke_key

    context = _context()
    try:
        with session_scope(context.sessions) as session:
            revoke_key(session, key_id)
    except NotFound as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Revoked key {key_id}")


@workspaces_app.command("list")
def workspaces_list() -> None:
    """Workspaces with the export minutes they used and their quota. Example: altdub workspaces list"""
    from altdub.service.keys import list_workspaces

    settings = Settings()
    context = _context()
    with context.sessions() as session:
        for workspace in list_workspaces(session):
            quota = workspace.quota_minutes if workspace.quota_minutes is not None else settings.export_quota_minutes
            limit = "unlimited" if quota is None else f"{quota:g} min"
            typer.echo(f"{workspace.id}\t{workspace.name}\tused {workspace.used_minutes:.1f} min\tquota {limit}")


@workspaces_app.command("quota")
def workspaces_quota(
    workspace: Annotated[str, typer.Argument(help="Workspace name.")],
    minutes: Annotated[float | None, typer.Option(min=0, help="Export minutes allowed.")] = None,
    default: Annotated[bool, typer.Option("--default", help="Back to ALTDUB_EXPORT_QUOTA_MINUTES.")] = False,
) -> None:
    """Set a workspace's export quota in minutes. Example: altdub workspaces quota acme --minutes 600"""
    from altdub.db.session import session_scope
    from altdub.service.errors import NotFound
    from altdub.service.keys import set_quota

    if (minutes is None) == (not default):
        typer.echo("error: give --minutes N or --default", err=True)
        raise typer.Exit(2)
    context = _context()
    try:
        with session_scope(context.sessions) as session:
            set_quota(session, workspace, minutes)
    except NotFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"quota of {workspace!r}: {'server default' if minutes is None else f'{minutes:g} minutes'}")


@workspaces_app.command("webhook")
def workspaces_webhook(
    workspace: Annotated[str, typer.Argument(help="Workspace name.")],
    url: Annotated[
        str | None, typer.Option(help="Told of every export of the workspace: a public http(s) URL.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the webhook (callback URLs still work).")] = False,
    rotate: Annotated[bool, typer.Option("--rotate", help="Replace the signing secret.")] = False,
) -> None:
    """Set a workspace's webhook and print its signing secret. Example: altdub workspaces webhook acme --url https://…

    Without options it prints the webhook and the secret (made on first use). Receivers verify the
    header altdub-signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>"> with the secret.
    """
    from altdub.db.session import session_scope
    from altdub.service.errors import InvalidInput, NotFound
    from altdub.service.webhooks import set_webhook

    if url is not None and clear:
        typer.echo("error: give --url URL or --clear, not both", err=True)
        raise typer.Exit(2)
    context = _context()
    try:
        with session_scope(context.sessions) as session:
            current, secret = set_webhook(context.settings, session, workspace, url, clear=clear, rotate=rotate)
    except (NotFound, InvalidInput) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"webhook of {workspace!r}: {current or 'none (callback URLs only)'}")
    typer.echo(secret)


@storage_app.command("usage")
def storage_usage() -> None:
    """Bytes stored per workspace and per kind, and the lifecycle's settings. Example: altdub storage usage"""
    from altdub.service.lifecycle import usage

    context = _context()
    settings = context.settings
    rows = usage(context)
    typer.echo("workspace\tinputs\texports\tkept\tremoved")
    for row in rows:
        typer.echo(
            f"{row.name}\t{_size(row.inputs_bytes)}\t{_size(row.exports_bytes)}\t{row.exports}\t{row.removed_exports}"
        )
    total = sum(r.inputs_bytes + r.exports_bytes for r in rows)
    budget = "none" if settings.storage_budget_gb is None else f"{settings.storage_budget_gb:g} GB"
    ttl = "none" if settings.export_ttl_days is None else f"{settings.export_ttl_days:g} days"
    typer.echo(f"total {_size(total)}; budget {budget}; exports kept unused for at most {ttl}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations. Example: ALTDUB_DATABASE_URL=postgresql+psycopg://… altdub db upgrade"""
    from altdub.db.migrate import upgrade

    settings = Settings()
    _private_files(settings)
    upgrade(settings.effective_database_url)
    typer.echo("database is up to date")


@contextmanager
def _client_errors(url: str) -> Iterator[None]:
    """The server's refusal, or why it could not be reached, on stderr and exit status 1."""
    import httpx

    from altdub.client import ClientError

    try:
        yield
    except ClientError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot talk to {url}: {exc.__class__.__name__}: {exc}", err=True)
        raise typer.Exit(1) from None


def _size(n: float) -> str:
    """Decimal units, as the storage budget is given (GB = 10^9 bytes)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


@contextmanager
def _byte_bar(label: str) -> Iterator[Callable[[int, int | None], None]]:
    """A progress callback ``(bytes_done, total)`` drawing a bar of bytes on stderr.

    The bar opens at the first report, when the total (Content-Length) is known, and closes when
    the last byte is through. On a terminal it redraws in place; when stderr is not a terminal (a
    pipe, a log, a test) click prints the label, with the total size, once, and one more line says
    when the transfer is done.
    """
    state: dict[str, Any] = {"bar": None, "shown": 0, "closed": False}

    def close(done: int) -> None:
        state["closed"] = True
        if state["bar"]:
            state["bar"].__exit__(None, None, None)
        if not sys.stderr.isatty():
            typer.echo(f"{label}: {_size(done)} done", err=True)

    def report(done: int, total: int | None) -> None:
        if state["closed"]:
            return
        if state["bar"] is None:
            if total is None:  # no length: no bar, just say what is happening
                typer.echo(f"{label} …", err=True)
                state["bar"] = False
                return
            state["bar"] = typer.progressbar(
                length=total,
                label=f"{label} ({_size(total)})",
                file=sys.stderr,
                item_show_func=lambda n: None if n is None else f"{_size(n)} of {_size(total)}",
            ).__enter__()
        bar = state["bar"]
        if not bar:
            return
        step = done - state["shown"]
        if step > 0 and (step * 200 >= bar.length or done >= bar.length):  # redraw every 0.5 %
            bar.current_item = done  # shown by item_show_func
            bar.update(step)
            state["shown"] = done
        if done >= bar.length:
            close(done)

    try:
        yield report
    finally:
        if state["bar"] and not state["closed"]:  # failed half-way, or ended without a length
            state["closed"] = True
            state["bar"].__exit__(None, None, None)


def _pairs(values: list[str], option: str) -> dict[str, Path]:
    result = {}
    for value in values:
        language, sep, path = value.partition("=")
        if not sep or not language or not path:
            raise typer.BadParameter(f"expected LANGUAGE=FILE, got {value!r}", param_hint=option)
        result[language] = Path(path)
    return result


@runs_app.command("import")
def runs_import(
    api_key: KeyOpt,
    source_language: Annotated[str, typer.Option(help="Language id or short_name of the source.")],
    dub: Annotated[list[str], typer.Option(help="LANGUAGE=FILE, once per dubbed language.")],
    url: UrlOpt = DEFAULT_URL,
    source: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="Original media.")] = None,
    voice: Annotated[list[str] | None, typer.Option(help="LANGUAGE=FILE speech-only stem.")] = None,
    background: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="M&E stem.")] = None,
    transcript: Annotated[list[str] | None, typer.Option(help="LANGUAGE=FILE: SRT, WebVTT or JSON segments.")] = None,
    name: Annotated[str | None, typer.Option(help="A name for the run.")] = None,
) -> None:
    """Upload a run to a server (progress on stderr); prints `run ID: LANGUAGES`.

    Example: altdub runs import --source film.mp4 --source-language en-us --dub es-es=es.wav
    """
    from altdub.client import AltdubClient

    files: dict[str, Path] = {f"dub_{k}": v for k, v in _pairs(dub, "--dub").items()}
    files |= {f"voice_{k}": v for k, v in _pairs(voice or [], "--voice").items()}
    files |= {f"transcript_{k}": v for k, v in _pairs(transcript or [], "--transcript").items()}
    if source:
        files["source"] = source
    if background:
        files["background"] = background
    fields = {"source_language": source_language} | ({"name": name} if name else {})
    label = f"uploading {len(files)} file{'s' * (len(files) != 1)}"
    with _client_errors(url), AltdubClient(url, api_key) as client, _byte_bar(label) as progress:
        run = client.import_run(fields, files, on_progress=progress)
    typer.echo(f"run {run['run_id']}: {', '.join(lang['short_name'] for lang in run['languages'])}")


def _languages(value: str) -> list[str] | str:
    """``es-es,fr-fr`` as the list the API takes, in that order; ``all`` as it is."""
    if value.strip().lower() == "all":
        return "all"
    names = [name.strip() for name in value.split(",")]
    if not all(names):
        raise typer.BadParameter(f"expected LANGUAGE[,LANGUAGE...] or 'all', got {value!r}", param_hint="LANGUAGES")
    return names


@app.command("export")
def export(
    run_id: Annotated[int, typer.Argument(help="Run id.")],
    languages: Annotated[str, typer.Argument(metavar="LANGUAGES", help=catalogue.describe_languages())],
    output_format: Annotated[
        str,
        typer.Argument(
            metavar="FORMAT",
            help=f"{', '.join(catalogue.FORMAT_NAMES)} (hand-offs for audio post: {', '.join(catalogue.handoffs())})",
        ),
    ],
    api_key: KeyOpt,
    url: UrlOpt = DEFAULT_URL,
    default_language: Annotated[
        str | None, typer.Option(help="The default audio track of a master: one of LANGUAGES. Default: the first.")
    ] = None,
    audio_bitrate: Annotated[str | None, typer.Option(help=catalogue.describe_bitrates())] = None,
    sample_rate: Annotated[int | None, typer.Option(help=catalogue.describe_sample_rates())] = None,
    channels: Annotated[int | None, typer.Option(help=catalogue.describe_channels())] = None,
    loudness: Annotated[str | None, typer.Option(help=catalogue.describe_loudness())] = None,
    stem: Annotated[str | None, typer.Option(help=catalogue.describe_stems())] = None,
    include_original_audio: Annotated[
        bool, typer.Option("--include-original-audio", help=catalogue.describe_original_audio())
    ] = False,
    subtitles: Annotated[str | None, typer.Option(help=catalogue.describe_subtitles())] = None,
    start_timecode: Annotated[str | None, typer.Option(help=catalogue.describe_start_timecode())] = None,
    raster: Annotated[str | None, typer.Option(help=catalogue.describe_raster())] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the task to finish.")] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Download to this file (implies --wait); a streaming package (hls, dash) as its zip."
        ),
    ] = None,
) -> None:
    """Request an export from a server, with the options of the API: one language, or a master of several.

    Without --wait or -o, prints the task id, or the URL when the export exists.

    With --wait, prints the URL when done; with -o, downloads the file. Progress bars go to stderr.

    Example: altdub export 1 es-es mp4 --loudness ebu_r128 --include-original-audio --wait -o dub.mp4

    A master, one audio track per language, French the default: altdub export 1 es-es,fr-fr mkv
    --default-language fr-fr -o master.mkv

    A streaming package of every language, downloaded as one zip: altdub export 1 all hls -o title.zip
    """
    from altdub.client import AltdubClient, package_zip_url

    tracks = _languages(languages)

    given = {
        "audio_bitrate": audio_bitrate,
        "sample_rate": sample_rate,
        "channels": channels,
        "loudness": loudness,
        "stem": stem,
        "include_original_audio": include_original_audio or None,
        "subtitles": subtitles,
        "start_timecode": start_timecode,
        "raster": raster,
    }
    options = {key: value for key, value in given.items() if value is not None}
    with _client_errors(url), AltdubClient(url, api_key) as client:
        answer = client.request_export(run_id, output_format, options, tracks, default_language)
        output_url = answer.get("output_url")
        if output_url is None and not (wait or output):
            typer.echo(f"task {answer['task_id']}")
            return
        if output_url is None:
            with typer.progressbar(length=100, label="converting", file=sys.stderr) as bar:
                done = [0]

                def advance(progress: int) -> None:
                    bar.update(max(0, progress - done[0]))
                    done[0] = max(done[0], progress)

                output_url = client.wait(answer["task_id"], on_progress=advance)
        _echo_verdict(client, run_id, answer.get("task_id"), output_url)
        if output is None:
            typer.echo(output_url)
            return
        fmt = catalogue.CATALOGUE.get(output_format)
        if fmt is not None and fmt.package_entry is not None:
            output_url = package_zip_url(output_url)  # the package's folder, whole
        with _byte_bar(f"downloading {output.name}") as progress:
            size = client.download(output_url, output, on_progress=progress)
    typer.echo(f"saved {output} ({size} bytes)")


def _echo_verdict(client: AltdubClient, run_id: int, task_id: str | None, output_url: str) -> None:
    """The finished export's QC verdict and failing checks, on stderr (stdout keeps the URL or the saved file).

    An export that existed already was answered with its URL alone: its task is the run's finished
    export whose id is in that URL's path (an export is stored as ``<task id>.<ext>``, a package under
    ``<task id>/``; task ids are UUIDs, so one id cannot be found inside another's path).
    """
    from altdub.client import ClientError
    from altdub.media import qc_text
    from altdub.media.qc_report import QcReport

    try:
        if task_id is None:
            path = urlparse(output_url).path
            done = (e["task_id"] for e in client.run_exports(run_id) if e["status"] == "SUCCESS")
            task_id = next((t for t in done if t in path), None)
            if task_id is None:
                typer.echo("QC: this export's task was not found among the run's exports", err=True)
                return
        report = QcReport.from_dict(client.qc_report(run_id, task_id))
    except ClientError as exc:  # the export is done and its file delivered all the same: not a failure
        typer.echo(f"QC: no report ({exc})", err=True)
        return
    lines = [f"QC {qc_text.verdict(report).upper()}: {qc_text.summary(report)}", *qc_text.failing_lines(report)]
    lines.append(f"the whole report: altdub qc {run_id} {task_id}")
    typer.echo("\n".join(lines), err=True)


@app.command("qc")
def qc(
    run_id: Annotated[int, typer.Argument(help="Run id.")],
    task_id: Annotated[str, typer.Argument(metavar="TASK", help="The export's task id.")],
    api_key: KeyOpt,
    url: UrlOpt = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report's JSON as the server sends it.")] = False,
    html: Annotated[
        Path | None, typer.Option("--html", dir_okay=False, help="Also save the report's HTML page (plots) here.")
    ] = None,
) -> None:
    """Print an export's QC report: the verdict, the failing checks first, each track's figures.

    The exit status is 0 whether the report passed or failed (the file is delivered either way):
    read the first line, or `passed` in --json.

    Example: altdub qc 1 0c6c2b3e… --html report.html
    """
    import json

    from altdub.client import AltdubClient
    from altdub.media import qc_text
    from altdub.media.qc_report import QcReport

    with _client_errors(url), AltdubClient(url, api_key) as client:
        data = client.qc_report(run_id, task_id)
        page = client.qc_page(run_id, task_id) if html is not None else None
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        typer.echo(qc_text.terminal_text(QcReport.from_dict(data)))
    if html is not None and page is not None:
        partial = html.with_name(html.name + ".part")  # a whole page or none
        partial.write_text(page, encoding="utf-8")
        partial.replace(html)
        typer.echo(f"saved {html}", err=True)
