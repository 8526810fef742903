"""The interactive API documentation at ``/docs``, served whole by this process (no CDN, works offline).

FastAPI's default page loads Swagger UI from cdn.jsdelivr.net, so it is blank on a machine
without internet access. The page here loads the same files from the package
(``altdub/web/vendor/swagger-ui/``, served under ``/web/``); ReDoc, a second CDN page, is not offered.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

# Where mount_web serves altdub/web/vendor/swagger-ui/ (its version and licence: the README there).
SWAGGER_UI_PATH = "/web/vendor/swagger-ui/"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for this service's OpenAPI document, every file from this origin."""
    root = request.scope.get("root_path", "").rstrip("/")
    assets = root + SWAGGER_UI_PATH
    return get_swagger_ui_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} - API docs",
        swagger_js_url=assets + "swagger-ui-bundle.js",
        swagger_css_url=assets + "swagger-ui.css",
        swagger_favicon_url=assets + "favicon-32x32.png",
    )
