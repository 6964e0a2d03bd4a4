"""Liveness and readiness probes (never counted in the request metrics)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from service.errors import NotReady
from service.http.schemas import ErrorBody, Health, Readiness
from service.http.state import state_of

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": ErrorBody, "description": "Model not loaded or not warmed up"}},
    summary="Readiness: the model is loaded and warmed up",
)
async def readyz(request: Request) -> JSONResponse:
    state = state_of(request)
    if not state.ready:
        raise NotReady("the model is not loaded and warmed up yet")
    if not state.serving():
        raise NotReady("no worker has the model open: they fail to start (see the log)")
    return JSONResponse({"status": "ready"})
