"""The application factory: ``create_app(settings)``; the model loads in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import __version__
from service.batching import MicroBatcher
from service.errors import install_error_handlers
from service.metrics import Metrics
from service.middleware import BodyLimit, Observability
from service.model import DigitClassifier
from service.predictor import Predictor
from service.routes import health, metrics, model_info, page, predict
from service.settings import Settings
from service.v2 import router as v2_router

logger = logging.getLogger("service.app")


def load_classifier(settings: Settings) -> DigitClassifier:
    """The configured model, contract-checked (raises ModelLoadError with one line)."""
    return DigitClassifier(
        settings.resolved_model_path,
        provider=settings.provider,
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        card_path=settings.resolved_model_card_path,
    )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    app_metrics: Metrics = app.state.metrics
    classifier = load_classifier(settings)
    classifier.warm_up((1, settings.batch_max_size))
    app_metrics.set_model(classifier.info)
    batcher = MicroBatcher(
        classifier.predict,
        max_batch_size=settings.batch_max_size,
        max_delay_us=settings.batch_max_delay_us,
        max_queue_images=settings.batch_max_queue_images,
        retry_after_seconds=settings.retry_after_seconds,
        metrics=app_metrics,
    )
    batcher.start()
    app.state.classifier = classifier
    app.state.batcher = batcher
    predictor = Predictor(settings, classifier.info, batcher, app_metrics)
    await predictor.start()
    app.state.predictor = predictor
    app.state.ready = True
    app_metrics.model_ready.set(1)
    info = classifier.info
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
        app.state.ready = False
        app_metrics.model_ready.set(0)
        await batcher.stop()
        predictor.close()  # after the batcher: images decoded by now still got their answer


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new, independent app (own metrics registry); ``None`` reads DIGITS_* from the env."""
    settings = settings or Settings()
    app = FastAPI(
        title="Digits",
        version=__version__,
        summary="Reads handwritten digits from images (LeNet-5 on ONNX Runtime).",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.ready = False
    install_error_handlers(app)
    app.include_router(predict.router)
    app.include_router(health.router)
    app.include_router(model_info.router)
    app.include_router(metrics.router)
    app.include_router(v2_router)
    app.include_router(page.router)
    # Added last = outermost: the request id, timing and metrics cover the 413 too.
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(Observability, metrics=app.state.metrics, access_log=settings.access_log)
    return app
