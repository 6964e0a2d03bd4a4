"""Files served whole: the drawing page, its static files and the docs pages' assets.

Starlette's FileResponse answers a ``Range`` header it cannot serve (a malformed range, a unit
other than bytes, a start past the end) with a plain-text 400 or an empty 416: the only
refusals of the service that were not JSON. These files are small and nothing resumes their
download, so every range is ignored (RFC 9110 section 14.2 allows a server to) and every GET
gets the whole file, without ``Accept-Ranges``.
"""

from __future__ import annotations

import os

from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.staticfiles import NotModifiedResponse, PathLike, StaticFiles
from starlette.types import Receive, Scope, Send

# The page's and the docs' files are revalidated on each use (a cheap 304 via ETag), so an
# upgraded service never pairs a new page or API with an old cached script, and never
# sniffed as another type.
STATIC_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


class WholeFileResponse(FileResponse):
    """A FileResponse that never answers a part of its file."""

    def set_stat_headers(self, stat_result: os.stat_result) -> None:
        super().set_stat_headers(stat_result)
        del self.headers["accept-ranges"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(name, value) for name, value in scope["headers"] if name != b"range"]
        await super().__call__({**scope, "headers": headers}, receive, send)


class WholeFiles(StaticFiles):
    """StaticFiles answering with WholeFileResponse (cache validation as StaticFiles does)."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = WholeFileResponse(full_path, status_code=status_code, stat_result=stat_result)
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            return NotModifiedResponse(response.headers)
        return response
