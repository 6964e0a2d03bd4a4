"""A stand-in for the image stages that reports, from inside a real worker process, which of
the modules a worker must never load it has loaded (as the image's error message)."""

from __future__ import annotations

import sys
from collections.abc import Collection, Generator

from service.errors import InvalidImage

WEB_AND_METRICS = frozenset({"fastapi", "starlette", "uvicorn", "prometheus_client"})


def steps(data: bytes, *, allowed_formats: Collection[str], max_pixels: int) -> Generator[None]:
    yield
    loaded = sorted({name.split(".")[0] for name in sys.modules} & WEB_AND_METRICS)
    raise InvalidImage(f"loaded: {','.join(loaded)}")
