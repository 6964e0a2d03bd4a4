"""GET / (the drawing page) and /static/* (its script and style sheet), served by the app.

No build step and no CDN: many deployments have no internet, so every byte the page needs
lives in service/http/static/ and ships inside the package.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.http.routes.files import STATIC_HEADERS, WholeFileResponse, WholeFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
INDEX = STATIC_DIR / "index.html"
# Same-origin only: the page talks to this service and nothing else. data:/blob: images are
# the 28x28 input the model saw and the uploaded file's preview.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

router = APIRouter(tags=["page"], include_in_schema=False)
_static = WholeFiles(directory=STATIC_DIR)


@router.api_route("/", methods=["GET", "HEAD"])
async def index() -> WholeFileResponse:
    """The drawing page."""
    return WholeFileResponse(
        INDEX,
        media_type="text/html; charset=utf-8",
        headers={**STATIC_HEADERS, "Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )


@router.api_route("/static/{path:path}", methods=["GET", "HEAD"])
async def static_file(path: str, request: Request) -> Response:
    """A file of service/http/static/ (StaticFiles refuses paths that leave the folder: 404)."""
    response = await _static.get_response(path, request.scope)
    response.headers.update(STATIC_HEADERS)
    return response
