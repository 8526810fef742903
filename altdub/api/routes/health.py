from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from altdub.api.deps import ContextDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
@router.head("/healthz", include_in_schema=False)  # load balancers and uptime checks that send HEAD
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
@router.head("/readyz", include_in_schema=False)
def readyz(context: ContextDep) -> JSONResponse:
    """Database, storage and broker are reachable (503 naming what is not)."""
    checks: dict[str, str] = {}
    try:
        with context.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        context.storage.check()
        checks["storage"] = "ok"
    except Exception as exc:
        checks["storage"] = f"error: {exc}"
    if context.settings.broker_url and context.executor is not None:
        try:
            context.executor.check()
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"error: {exc.__class__.__name__}"
    else:
        checks["broker"] = "not used (in-process workers)"
    ready = not any(v.startswith("error") for v in checks.values())
    return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503)
