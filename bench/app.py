"""The app under benchmark: the real service plus a no-op route, the HTTP ceiling.

The no-op route lives in the same app, behind the same middleware (request id, metrics,
access log, body limit), and reads the upload with the same function ``/predict`` uses; it
answers a constant prediction-shaped JSON instead of decoding and running the model. So
"/predict vs no-op" isolates exactly the work of decoding, preprocessing and inference.
It exists only in this benchmark app, never in the shipped service.

``python -m bench.app`` runs it the way ``python -m service`` runs the service.
"""

from __future__ import annotations

from fastapi import FastAPI, Request

from service.app import create_app
from service.http.responses import FastJSONResponse
from service.http.uploads import single_upload
from service.logs import configure_logging
from service.server import run_server
from service.settings import Settings

NOOP_PATH = "/bench/noop"
_CONSTANT_ANSWER = {
    "digit": 7,
    "confidence": 0.998,
    "probabilities": [0.0002] * 9 + [0.998],
    "model": {"name": "noop", "version": "0"},
}


async def noop(request: Request) -> FastJSONResponse:
    """Read the image exactly as /predict does, then answer without looking at it."""
    await single_upload(request)
    return FastJSONResponse(_CONSTANT_ANSWER)


def create_bench_app() -> FastAPI:
    app = create_app()
    app.add_api_route(NOOP_PATH, noop, methods=["POST"], include_in_schema=False)
    return app


def main() -> None:
    """The shipped server options (``service.server``) around the bench app."""
    settings = Settings()
    configure_logging(settings.log_level)
    run_server(settings, "bench.app:create_bench_app")


if __name__ == "__main__":
    main()
