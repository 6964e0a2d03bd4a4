"""The application factory: ``create_app(settings)``; the workers start in the lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from service import __version__
from service.contract import ModelInfo, ModelLoadError
from service.errors import ShuttingDown
from service.feedback import Feedback, FeedbackStoreError
from service.http.documented_headers import document_headers
from service.http.errors import install_error_handlers
from service.http.fast_routes import FastRoutes
from service.http.guard import GUARD, ConnectionGuard, ConnectionLimits
from service.http.lane import LANE, DirectLane
from service.http.middleware import BodyLimit, HeadAsGet, Observability
from service.http.observability import Recorder
from service.http.routes import docs, feedback, health, metrics, model_info, page
from service.http.routes.predict import prediction_router
from service.http.state import ServiceState, app_state, attach_state, ready_predictor
from service.http.v2 import openapi as v2_openapi
from service.http.v2 import repository, statistics
from service.http.v2.metadata import served_model
from service.http.v2.routes import INFER_ROUTES
from service.http.v2.routes import router as v2_router
from service.logs import AccessLog
from service.metrics import Metrics
from service.predictor import Predictor, model_spec
from service.repository.loader import ModelLoader
from service.repository.staging import Staging
from service.settings import Settings
from service.tracing import start_tracing

if TYPE_CHECKING:
    from service.tracing.exporter import Tracing

logger = logging.getLogger("service.app")


class DigitsApp(FastAPI):
    """FastAPI, with the prediction routes answered before its routing and middleware
    (service/http/fast_routes.py says why)."""

    def __init__(
        self, fast_routes: FastRoutes, tracing: Tracing | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.fast_routes = fast_routes
        self.tracing = tracing  # None: tracing off, and the request path knows nothing of it

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, completed for the V2 routes (service/http/v2/openapi.py) and
        with the response headers (service/http/documented_headers.py)."""
        if self.openapi_schema is None:
            self.openapi_schema = document_headers(v2_openapi.complete(super().openapi()))
        return self.openapi_schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
        elif self.tracing is not None:
            await self.tracing.requests(scope, receive, send, self._dispatch)
        else:
            await self._dispatch(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An HTTP request (inside its span when traced): the direct handlers, else FastAPI."""
        handler = self.fast_routes.match(scope)
        if handler is not None:
            await self.fast_routes.serve(scope, receive, send, handler)
            return
        await super().__call__(scope, receive, send)


def _freeze_startup_objects() -> None:
    """Keep the objects of start-up (modules, FastAPI's routes and models) out of every later
    garbage collection: a full collection walking them all paused every request in flight
    (docs/performance.md)."""
    gc.collect()
    gc.freeze()


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        max_head_bytes=settings.max_header_bytes,
        head_timeout_s=settings.header_timeout_seconds,
        body_grace_s=settings.body_timeout_seconds,
        min_body_rate=settings.body_min_bytes_per_second,
        keep_alive_s=settings.keep_alive_seconds,
        max_connections=settings.max_connections,
        retry_after_s=settings.retry_after_seconds,
        max_body_bytes_in_flight=settings.max_body_bytes_in_flight,
    )


def _serve(state: ServiceState, info: ModelInfo) -> None:
    """``info`` is the model new requests go to: /model, the V2 metadata, the metrics."""
    state.model = info
    state.v2_model = served_model(info, state.settings)
    state.metrics.set_model(info)
    if state.predictor is not None:
        state.predictor.model = info


@asynccontextmanager
async def _lifespan(app: DigitsApp) -> AsyncIterator[dict[str, Any]]:
    state = app_state(app)
    with ExitStack() as cleanup:  # undone in reverse, from as far as start-up got
        if app.tracing is not None:
            cleanup.callback(app.tracing.shutdown)
        cleanup.callback(state.metrics.close)
        try:
            state.feedback = Feedback.from_settings(state.settings, state.metrics)
        except FeedbackStoreError as exc:
            logger.error("cannot record corrections: %s", exc)
            raise
        info = await _start_workers(state, app.tracing, cleanup)
        _go_ready(state, info, cleanup)
        # The server's connections find their limits in the lifespan state
        # (service/http/connections.py).
        guard = ConnectionGuard(connection_limits(state.settings), state.metrics)
        guard.start()
        cleanup.callback(guard.stop)
        # Traced requests need their span around the whole ASGI call: no direct lane then.
        lane = {LANE: DirectLane(app.fast_routes)} if app.tracing is None else {}
        yield {GUARD: guard, **lane}
        # uvicorn ends the lifespan after the requests in flight were answered (or the
        # graceful shutdown timeout passed). What is still arriving is refused, then the
        # workers have nothing anyone waits for.
        await guard.shut(ShuttingDown())


async def _start_workers(
    state: ServiceState, tracing: Tracing | None, cleanup: ExitStack
) -> ModelInfo:
    """The workers on a private copy of the model (a respawned worker must open the same
    bytes), and the loader that replaces it; a file they cannot serve stops start-up here,
    before uvicorn binds its port."""
    settings, source = state.settings, model_spec(state.settings)
    recent = state.feedback.recent if state.feedback is not None else None
    frames = tracing.frames if tracing is not None else None
    try:
        staging = Staging()
        cleanup.callback(staging.close)
        predictor = Predictor.from_settings(
            settings, state.metrics, staging.pin(source), recent, frames
        )
        cleanup.callback(predictor.close)
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
    return info


def _go_ready(state: ServiceState, info: ModelInfo, cleanup: ExitStack) -> None:
    """Serve ``info``, say so (readiness, the log), and reload on SIGHUP from now on."""
    assert state.loader is not None
    _serve(state, info)
    _freeze_startup_objects()
    state.ready = True
    state.metrics.model_ready.set(1)
    cleanup.callback(_not_ready, state)
    loop = asyncio.get_running_loop()
    reloads_on_sighup = state.loader.install_signal(loop)
    cleanup.callback(state.loader.remove_signal, loop)
    logger.info(
        "model %s %s ready on %s (sha256 %s)",
        info.name,
        info.version,
        info.provider,
        info.sha256[:12],
        extra={
            "model_path": model_spec(state.settings).path,
            "reload_on_sighup": reloads_on_sighup,
        },
    )


def _not_ready(state: ServiceState) -> None:
    state.ready = False
    state.metrics.model_ready.set(0)


def create_app(settings: Settings | None = None) -> DigitsApp:
    """A new, independent app (own metrics registry); ``None`` reads DIGITS_* from the env."""
    settings = settings or Settings()
    shared = str(settings.metrics_dir) if settings.front_ends > 1 and settings.metrics_dir else None
    state = ServiceState(settings, Metrics(shared))
    tracing = start_tracing()  # the standard OTEL_* variables say whether and where
    recorder = Recorder(
        state.metrics,
        AccessLog() if settings.access_log else None,
        tracing.trace_id if tracing is not None else None,
    )
    fast_routes = FastRoutes(recorder, settings.max_body_bytes)
    app = DigitsApp(
        fast_routes,
        tracing,
        title="Digits",
        version=__version__,
        summary="Reads handwritten digits from images (LeNet-5 on ONNX Runtime).",
        lifespan=_lifespan,
        # Served by service.http.routes.docs from the package: no CDN, so offline too.
        docs_url=None,
        redoc_url=None,
        # /healthz/ is not /healthz: no redirect built from the client's Host header.
        redirect_slashes=False,
    )
    attach_state(app, state)
    install_error_handlers(app)
    app.include_router(
        prediction_router(fast_routes, lambda: ready_predictor(state), settings.max_batch_files)
    )
    app.include_router(health.router)
    app.include_router(model_info.router)
    app.include_router(feedback.router)
    app.include_router(metrics.router)
    app.include_router(statistics.router)  # before v2_router: /v2/models/stats is no model
    app.include_router(repository.router)
    app.include_router(v2_router)
    app.include_router(page.router)
    app.include_router(docs.router)
    state.metrics.expect_errors([*fast_routes.paths, *INFER_ROUTES])
    app.add_middleware(HeadAsGet)  # innermost: the access line and metrics still say HEAD
    # Added last = outermost: the request id, timing and metrics cover the 413 too.
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(Observability, recorder=recorder)
    return app
