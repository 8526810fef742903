"""The FastAPI application: routes, error mapping, and the workers' lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from altdub import __version__
from altdub.api.bodies import BodySizeLimit, json_safe
from altdub.api.routes import (
    docs,
    exports,
    files,
    formats,
    health,
    languages,
    metrics,
    packages,
    qc,
    results,
    runs,
    storage,
    webhooks,
)
from altdub.api.routes.files import DownloadHeaders
from altdub.api.routes.metrics import metrics_registry
from altdub.api.routes.web import mount_web
from altdub.config import Settings
from altdub.service.context import build_context, remove_stale_scratch
from altdub.service.errors import InsufficientStorage, InvalidInput, NoReport, NotFound, TooLarge, TooManyPending
from altdub.service.lifecycle import Sweeper
from altdub.service.loop_reads import HeldConnection
from altdub.service.workers import attach_executor, webhooks_sender

# The event loop uvicorn serves with. Not uvloop: under saturation uvloop served some connections
# 10-20x later than others (p99 540 ms against 34 ms with asyncio's loop, at the same throughput,
# for a handler doing 0.3 ms of work on the loop; bench/REPORT.md, target 3).
EVENT_LOOP = "asyncio"


def _unprocessable(errors: Sequence[Any]) -> JSONResponse:
    """The 422 of FastAPI's shape, ``{"detail": [{"loc", "msg", "type", ...}]}``, encodable whatever it echoes."""
    return JSONResponse({"detail": json_safe(errors)}, status_code=422)


def _location(request: Request, field: str | None) -> list[str]:
    """FastAPI's ``loc`` of a value a use-case refused: a parameter of the route's path, else the body's field."""
    if field is None:
        return ["body"]
    return ["path" if field in request.path_params else "body", field]


def create_app(settings: Settings | None = None, *, workers: bool = True) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = build_context(settings)
        remove_stale_scratch(settings)
        app.state.context = context
        app.state.loop_reads = HeldConnection(context.engine)  # the event loop's quick reads (loop_reads.py)
        app.state.metrics = metrics_registry(context)
        attach_executor(context, workers=workers)
        sender = webhooks_sender(context)
        sweeper = Sweeper(context).start()
        try:
            yield
        finally:
            sweeper.stop()
            sender.stop()
            context.stopping.set()  # running conversions stop; their tasks stay PENDING and resume
            if context.executor is not None:
                context.executor.shutdown()
            app.state.loop_reads.close()
            context.engine.dispose()

    app = FastAPI(
        title="altdub",
        version=__version__,
        description="Deliver the dubbed output of a run in the format asked for (Camb.ai-compatible).",
        lifespan=lifespan,
        docs_url=None,  # served by routes/docs.py from the package, not from a CDN
        redoc_url=None,  # ReDoc would load from a CDN too: /docs is the one documentation page
    )
    # exports first: each request is matched against the routers in this order, and the cached export POST is
    # the hottest path (0.34 -> 0.26 ms of CPU per request; bench/FINDINGS.md, round two); no path overlaps
    for module in (
        exports,
        docs,
        health,
        metrics,
        languages,
        formats,
        runs,
        results,
        webhooks,
        storage,
        files,
        packages,
        qc,
    ):
        app.include_router(module.router)
    mount_web(app)  # the dashboard at / and /web/: last, after every API route
    app.add_middleware(DownloadHeaders)
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_json_bytes, streamed={("POST", app.url_path_for("import_run"))}
    )

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc) or "Not found"}, status_code=404)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _unprocessable(exc.errors())

    @app.exception_handler(InvalidInput)
    async def invalid_input(request: Request, exc: InvalidInput) -> JSONResponse:
        return _unprocessable([{"loc": _location(request, exc.field), "msg": exc.message, "type": exc.kind}])

    @app.exception_handler(NoReport)
    async def no_report(_: Request, exc: NoReport) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(TooLarge)
    async def too_large(_: Request, exc: TooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(TooManyPending)
    async def too_many_pending(_: Request, exc: TooManyPending) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc), "limit": exc.limit},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )

    @app.exception_handler(InsufficientStorage)
    async def insufficient_storage(_: Request, exc: InsufficientStorage) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=507)

    return app
