"""The application factory: ``create_app(settings)``; the workers start in the lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import __version__
from service.contract import ModelInfo, ModelLoadError
from service.http.errors import install_error_handlers
from service.http.middleware import BodyLimit, Observability
from service.http.routes import health, metrics, model_info, page, predict
from service.http.state import ServiceState, app_state, attach_state
from service.http.v2 import repository, statistics
from service.http.v2.metadata import served_model
from service.http.v2.routes import router as v2_router
from service.metrics import Metrics
from service.predictor import Predictor, model_spec
from service.repository.loader import ModelLoader
from service.repository.staging import Staging
from service.settings import Settings

logger = logging.getLogger("service.app")


def _freeze_startup_objects() -> None:
    """Keep the objects of start-up (modules, FastAPI's routes and models) out of every later
    garbage collection: a full collection walking them all paused every request in flight
    (docs/performance.md)."""
    gc.collect()
    gc.freeze()


def _serve(state: ServiceState, info: ModelInfo) -> None:
    """``info`` is the model new requests go to: /model, the V2 metadata, the metrics."""
    state.model = info
    state.v2_model = served_model(info, state.settings)
    state.metrics.set_model(info)
    if state.predictor is not None:
        state.predictor.model = info


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app_state(app)
    settings, loop = state.settings, asyncio.get_running_loop()
    source = model_spec(settings)
    staging: Staging | None = None
    predictor: Predictor | None = None
    try:
        try:
            # The workers open a private copy (a respawned worker must open the same bytes);
            # a file they cannot serve stops start-up here, before uvicorn binds its port.
            staging = Staging()
            predictor = Predictor.from_settings(settings, state.metrics, staging.pin(source))
            state.predictor = predictor
            info = await predictor.start()
        except ModelLoadError as exc:
            logger.error("cannot serve the model: %s", exc)
            raise
        state.loader = ModelLoader(
            predictor.pool,
            source,
            staging,
            settings.resolved_check_digits_path,
            settings.model_min_accuracy,
            on_switch=lambda served: _serve(state, served),
            on_outcome=lambda outcome: state.metrics.model_loads.labels(outcome).inc(),
        )
        state.loader.current = info
        _serve(state, info)
        _freeze_startup_objects()
        state.ready = True
        state.metrics.model_ready.set(1)
        reloads_on_sighup = state.loader.install_signal(loop)
        logger.info(
            "model %s %s ready on %s (sha256 %s)",
            info.name,
            info.version,
            info.provider,
            info.sha256[:12],
            extra={"model_path": source.path, "reload_on_sighup": reloads_on_sighup},
        )
        yield
    finally:
        state.ready = False
        state.metrics.model_ready.set(0)
        if state.loader is not None:
            state.loader.remove_signal(loop)
        # uvicorn runs this after the requests in flight were answered (or the graceful
        # shutdown timeout passed): the workers have nothing left that anyone waits for.
        if predictor is not None:
            predictor.close()
        if staging is not None:
            staging.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new, independent app (own metrics registry); ``None`` reads DIGITS_* from the env."""
    settings = settings or Settings()
    app = FastAPI(
        title="Digits",
        version=__version__,
        summary="Reads handwritten digits from images (LeNet-5 on ONNX Runtime).",
        lifespan=_lifespan,
    )
    attach_state(app, ServiceState(settings, Metrics()))
    install_error_handlers(app)
    app.include_router(predict.router)
    app.include_router(health.router)
    app.include_router(model_info.router)
    app.include_router(metrics.router)
    app.include_router(statistics.router)  # before v2_router: /v2/models/stats is no model
    app.include_router(repository.router)
    app.include_router(v2_router)
    app.include_router(page.router)
    # Added last = outermost: the request id, timing and metrics cover the 413 too.
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        Observability, metrics=app_state(app).metrics, access_log=settings.access_log
    )
    return app
