"""``python -m service`` / ``digits-serve``: JSON logs, check the model, run uvicorn.

Configuration is the environment (DIGITS_*, see service/settings.py and the README).
One process per container: scale with replicas, not workers (see the README).
"""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from service.app import load_classifier
from service.logs import configure_logging
from service.model import ModelLoadError
from service.server import run_server
from service.settings import Settings

logger = logging.getLogger("service")
EXIT_BAD_CONFIG = 2


def main() -> None:
    """Start the server; a bad setting or model file exits 2 with one line saying what."""
    configure_logging()
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"DIGITS_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        logger.error("invalid configuration: %s", problems)
        sys.exit(EXIT_BAD_CONFIG)
    configure_logging(settings.log_level)
    try:
        # Fail before binding the port, with one line instead of a lifespan traceback.
        load_classifier(settings)
    except ModelLoadError as exc:
        logger.error("cannot serve the model: %s", exc)
        sys.exit(EXIT_BAD_CONFIG)
    run_server(settings)


if __name__ == "__main__":
    main()
