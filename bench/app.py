"""The app under benchmark: the real service plus a no-op route, the HTTP ceiling.

The no-op route lives in the same app and is answered the same way as ``/predict`` (a direct
handler: request id, metrics, access log, body limit), reading the upload with the same
function; it answers a constant prediction-shaped JSON instead of decoding and running the
model. So "/predict vs no-op" isolates exactly the work of decoding, preprocessing and
inference.
It exists only in this benchmark app, never in the shipped service.

``python -m bench.app`` runs it the way ``python -m service`` runs the service.
"""

from __future__ import annotations

import sys

import orjson

from service.__main__ import no_arguments
from service.app import DigitsApp
from service.http.fast_routes import DirectRequest
from service.http.uploads import single_upload
from service.logs import configure_logging
from service.server import run_server, served_app
from service.settings import Settings

NOOP_PATH = "/bench/noop"
USAGE = """usage: python -m bench.app

The service with the benchmark's no-op route (POST /bench/noop), configured as the service
is, by DIGITS_* environment variables; it takes no arguments."""
_CONSTANT_ANSWER = orjson.dumps(
    {
        "digit": 7,
        "confidence": 0.998,
        "probabilities": [0.0002] * 9 + [0.998],
        "model": {"name": "noop", "version": "0"},
    }
)


async def noop(request: DirectRequest) -> bytes:
    """Read the image exactly as /predict does, then answer without looking at it."""
    single_upload(request.content_type, await request.body())
    return _CONSTANT_ANSWER


def create_bench_app() -> DigitsApp:
    app = served_app()
    app.fast_routes.add("POST", NOOP_PATH, noop)
    return app


def main() -> None:
    """The shipped server options (``service.server``) around the bench app."""
    no_arguments(sys.argv[1:], USAGE)
    settings = Settings()
    configure_logging(settings.log_level)
    run_server(settings, "bench.app:create_bench_app")


if __name__ == "__main__":
    main()
