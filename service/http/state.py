"""Typed access to what the app holds: its settings and metrics from the start, the model and
the predictor once the lifespan has started the workers (503 not_ready until then).

Every route reaches the app's state through these functions and nothing else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from service.contract import ModelInfo
from service.errors import NotReady
from service.feedback import Feedback
from service.http.v2.metadata import ServedModel
from service.metrics import Metrics
from service.predictor import Predictor
from service.repository.loader import ModelLoader
from service.settings import Settings

_NOT_READY = "the model is not loaded yet; retry when GET /readyz answers 200"
# A worker replaced after a crash opens its model within a second or two: readiness does not
# drop for that, only when no worker has had it open for this long.
WORKERS_DOWN_S = 5.0


@dataclass
class ServiceState:
    """The one object on ``app.state``: what the lifespan built, and whether it is ready."""

    settings: Settings
    metrics: Metrics
    predictor: Predictor | None = None
    loader: ModelLoader | None = None  # load / reload (the V2 model repository routes)
    model: ModelInfo | None = None  # the model new requests go to
    v2_model: ServedModel | None = None
    ready: bool = False
    feedback: Feedback | None = None  # with DIGITS_FEEDBACK_DIR set, from the lifespan on
    workers_down_since: float | None = None  # when a probe first found no worker serving

    def serving(self) -> bool:
        """Ready, and a worker has the model open or had it WORKERS_DOWN_S ago: when every
        worker fails to start (a broken install, a model file gone), /predict can only
        answer 503, and readiness says so rather than 200, as digits_model_ready does (the
        probes and the scrapes that ask keep it current)."""
        if not self.ready or self.predictor is None:
            return False
        if self.predictor.pool.serving():
            self.workers_down_since = None
        elif self.workers_down_since is None:
            self.workers_down_since = time.monotonic()
        down = self.workers_down_since
        serving = down is None or time.monotonic() - down < WORKERS_DOWN_S
        self.metrics.model_ready.set(1 if serving else 0)
        return serving


def attach_state(app: FastAPI, state: ServiceState) -> None:
    app.state.service = state


def app_state(app: FastAPI) -> ServiceState:
    state: ServiceState = app.state.service
    return state


def state_of(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def ready_predictor(state: ServiceState) -> Predictor:
    """The running Predictor; NotReady (503) until the lifespan has started it."""
    if state.predictor is None or not state.ready:
        raise NotReady(_NOT_READY)
    return state.predictor


async def model_of(request: Request) -> ModelInfo:
    """The served model's description; NotReady (503) until the workers have opened it.
    ``async``: FastAPI runs a plain ``def`` dependency in a worker thread."""
    model = state_of(request).model
    if model is None:
        raise NotReady(_NOT_READY)
    return model


ModelDep = Annotated[ModelInfo, Depends(model_of)]
