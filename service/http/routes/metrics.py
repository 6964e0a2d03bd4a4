"""GET /metrics: the Prometheus exposition of this app's own registry."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.http.state import state_of
from service.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}},
    summary="Prometheus metrics",
)
async def metrics(request: Request) -> Response:
    state = state_of(request)
    state.serving()  # digits_model_ready as of this scrape
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)
