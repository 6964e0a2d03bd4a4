"""Typed access to what the lifespan put on ``app.state`` (503 not_ready until it did).

The dependency getters are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in
a worker thread, a thread hop per request for two attribute reads. The prediction routes call
``predictor_of`` directly instead: solving even an async dependency cost 18 us of event-loop
time per request (a bare ASGI call of a route: 51 us without it, 70 us with it), and the event
loop's time per request is what bounds /predict.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.errors import NotReady
from service.model import DigitClassifier
from service.predictor import Predictor


def predictor_of(request: Request) -> Predictor:
    """The running Predictor; NotReady (503) until the lifespan has started it."""
    predictor: Predictor | None = getattr(request.app.state, "predictor", None)
    if predictor is None or not getattr(request.app.state, "ready", False):
        raise NotReady("the model is not loaded yet; retry when GET /readyz answers 200")
    return predictor


async def get_classifier(request: Request) -> DigitClassifier:
    classifier: DigitClassifier | None = getattr(request.app.state, "classifier", None)
    if classifier is None:
        raise NotReady("the model is not loaded yet; retry when GET /readyz answers 200")
    return classifier


ClassifierDep = Annotated[DigitClassifier, Depends(get_classifier)]
