"""Triton's statistics extension: ``GET /v2/models[/{name}[/versions/{version}]]/stats``.

Counts and cumulative times per model version since the process started (their meaning:
service/repository/statistics.py). perf_analyzer reads them, when ``GET /v2`` lists
``statistics``, to split its latency report into queue, input, inference and output.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service.errors import quoted
from service.http.state import state_of
from service.http.v2.errors import V2Error, documented

router = APIRouter(prefix="/v2/models", tags=["KServe V2"])


def _stats(request: Request, name: str | None, version: str | None) -> Response:
    entries = state_of(request).metrics.statistics.report(name, version)
    if name is not None and not entries:
        which = (
            f"version {quoted(version)} of model {quoted(name)}"
            if version
            else f"model {quoted(name)}"
        )
        return V2Error(f"no statistics for {which}: it has not served here", 404).response()
    return JSONResponse({"model_stats": entries})


@router.get("/stats", summary="Inference statistics of every model version served")
async def all_stats(request: Request) -> Response:
    return _stats(request, None, None)


@router.get(
    "/{model_name}/stats",
    summary="Inference statistics of a model's versions",
    responses=documented(404),
)
async def model_stats(request: Request, model_name: str) -> Response:
    return _stats(request, model_name, None)


@router.get(
    "/{model_name}/versions/{model_version}/stats",
    summary="Inference statistics of one model version",
    responses=documented(404),
)
async def version_stats(request: Request, model_name: str, model_version: str) -> Response:
    return _stats(request, model_name, model_version)
