"""GET /docs (Swagger UI) and /redoc (ReDoc), with every asset served by the service itself.

FastAPI's own docs pages load their JavaScript, CSS and favicon from public CDNs, so on a
machine without internet (a cluster, an air-gapped site) they render blank. The assets come
from the fastapi-offline package instead (pinned in requirements/serve.lock: Swagger UI 5 and
ReDoc 2), served under /docs/assets/ by these routes, so the request metrics name the route.
"""

from __future__ import annotations

import functools
import hashlib
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse, Response

from service.http.routes.files import STATIC_HEADERS, WholeFiles

ASSETS_DIR = Path(str(files("fastapi_offline").joinpath("static")))
ASSETS_PATH = "/docs/assets"
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"
# ReDoc's bundle draws its vendor's logo from a CDN: served with an empty picture in its place,
# so the page asks nothing of the internet (the policy below blocked it, with a console error).
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
EMPTY_PICTURE = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"
# Nothing but this service: the pages never reach the internet, even where they could. Both
# UIs start from an inline script and set inline styles; ReDoc's search runs in a blob: worker.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

router = APIRouter(tags=["docs"], include_in_schema=False)
_assets = WholeFiles(directory=ASSETS_DIR)


def _confined(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def _urls(request: Request) -> tuple[str, str]:
    """The OpenAPI document's URL and the assets' prefix, behind a proxy's root_path too."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return f"{root}{request.app.openapi_url}", f"{root}{ASSETS_PATH}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    openapi_url, assets = _urls(request)
    return _confined(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{request.app.title} - Swagger UI",
            swagger_js_url=f"{assets}/{SWAGGER_JS}",
            swagger_css_url=f"{assets}/{SWAGGER_CSS}",
            swagger_favicon_url=f"{assets}/{FAVICON}",
            swagger_ui_parameters=request.app.swagger_ui_parameters,
        )
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    openapi_url, assets = _urls(request)
    return _confined(
        get_redoc_html(
            openapi_url=openapi_url,
            title=f"{request.app.title} - ReDoc",
            redoc_js_url=f"{assets}/{REDOC_JS}",
            redoc_favicon_url=f"{assets}/{FAVICON}",
            with_google_fonts=False,
        )
    )


@functools.cache
def _redoc_bundle() -> tuple[bytes, str]:
    """ReDoc's bundle without its CDN logo, and its ETag (read once, on first use)."""
    bundle = (ASSETS_DIR / REDOC_JS).read_bytes().replace(REDOC_LOGO, EMPTY_PICTURE)
    return bundle, f'"{hashlib.sha256(bundle).hexdigest()[:32]}"'


@router.api_route(ASSETS_PATH + "/{path:path}", methods=["GET", "HEAD"])
async def asset(path: str, request: Request) -> Response:
    """A file of the docs UI (StaticFiles refuses paths that leave the folder: 404)."""
    if path == REDOC_JS:
        bundle, etag = _redoc_bundle()
        headers = {**STATIC_HEADERS, "ETag": etag}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(bundle, media_type="text/javascript", headers=headers)
    response = await _assets.get_response(path, request.scope)
    response.headers.update(STATIC_HEADERS)
    return response
