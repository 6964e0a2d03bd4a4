"""The prediction routes' JSON response: orjson instead of the standard library's encoder.

A /predict/batch answer holds hundreds of floats, and orjson writes them many times faster
than ``json.dumps`` (docs/performance.md), byte for byte the same text (both print the
shortest repr of each float). A NaN, which the standard encoder would refuse with a 500,
becomes ``null``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
