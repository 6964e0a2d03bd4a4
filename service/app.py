"""The application factory: ``create_app(settings)``; the workers start in the lifespan."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import __version__
from service.contract import ModelLoadError
from service.http.errors import install_error_handlers
from service.http.middleware import BodyLimit, Observability
from service.http.routes import docs, health, metrics, model_info, page, predict
from service.http.state import ServiceState, app_state, attach_state
from service.http.v2.metadata import served_model
from service.http.v2.routes import router as v2_router
from service.metrics import Metrics
from service.predictor import Predictor
from service.settings import Settings

logger = logging.getLogger("service.app")


def _freeze_startup_objects() -> None:
    """Keep the objects of start-up (modules, FastAPI's routes and models) out of every later
    garbage collection: a full collection walking them all paused every request in flight
    (docs/performance.md)."""
    gc.collect()
    gc.freeze()


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app_state(app)
    predictor = Predictor.from_settings(state.settings, state.metrics)
    try:
        # The workers open the model; a file they cannot serve stops start-up here, before
        # uvicorn binds its port.
        info = await predictor.start()
    except ModelLoadError as exc:
        logger.error("cannot serve the model: %s", exc)
        raise
    state.metrics.set_model(info)
    state.model, state.predictor = info, predictor
    state.v2_model = served_model(info, state.settings)
    _freeze_startup_objects()
    state.ready = True
    state.metrics.model_ready.set(1)
    logger.info(
        "model %s %s ready on %s (sha256 %s)",
        info.name,
        info.version,
        info.provider,
        info.sha256[:12],
        extra={"model_path": info.path},
    )
    try:
        yield
    finally:
        state.ready = False
        state.metrics.model_ready.set(0)
        # uvicorn runs this after the requests in flight were answered (or the graceful
        # shutdown timeout passed): the workers have nothing left that anyone waits for.
        predictor.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new, independent app (own metrics registry); ``None`` reads DIGITS_* from the env."""
    settings = settings or Settings()
    app = FastAPI(
        title="Digits",
        version=__version__,
        summary="Reads handwritten digits from images (LeNet-5 on ONNX Runtime).",
        lifespan=_lifespan,
        # Served by service.http.routes.docs from the package: no CDN, so offline too.
        docs_url=None,
        redoc_url=None,
    )
    attach_state(app, ServiceState(settings, Metrics()))
    install_error_handlers(app)
    app.include_router(predict.router)
    app.include_router(health.router)
    app.include_router(model_info.router)
    app.include_router(metrics.router)
    app.include_router(v2_router)
    app.include_router(page.router)
    app.include_router(docs.router)
    # Added last = outermost: the request id, timing and metrics cover the 413 too.
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        Observability, metrics=app_state(app).metrics, access_log=settings.access_log
    )
    return app
