"""``python -m service`` / ``digits-serve``: JSON logs, settings, then uvicorn.

Configuration is the environment (DIGITS_*, see service/settings/ and the README). This
process serves the port itself, or starts ``DIGITS_FRONT_ENDS`` front ends on it
(service/server.py); past one machine's cores, scale with replicas (the README's capacity
model).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import asdict

from pydantic import ValidationError
from pydantic_settings import SettingsError

from service.contract import ModelLoadError
from service.feedback.corrections import open_store
from service.logs import configure_logging
from service.predictor import model_spec, shadow_spec
from service.repository import gate
from service.repository.gate import GateRequest
from service.repository.staging import Staging
from service.server import (
    EXIT_INTERRUPTED,
    exit_zero_on_sigterm,
    ignore_sighup_until_serving,
    listening_problem,
    run_server,
)
from service.settings import Settings
from service.settings.messages import ConfigurationError, describe

logger = logging.getLogger("service")
EXIT_BAD_CONFIG = 2
USAGE = """usage: digits-serve  (or: python -m service)

Serves the digit classifier on DIGITS_HOST:DIGITS_PORT (127.0.0.1:8000 by default).
It takes no arguments: it is configured by DIGITS_* environment variables, listed in
the README's Configuration table; a bad value stops it with exit status 2, naming it."""


def model_problem(settings: Settings) -> str | None:
    """Why the configured model (or shadow model) cannot be served, in one line, or None.

    The served model passes what a load passes (service/repository/gate.py): a file a load
    would refuse must not serve after a restart either, and a rolling update to it must
    never go ready. The shadow is there to be judged, so it need only open."""
    request = GateRequest(
        model_spec(settings), str(settings.resolved_check_digits_path), settings.model_min_accuracy
    )
    problem = _problem("service.repository.gate", request.to_json())
    shadow = shadow_spec(settings)
    if problem is None and shadow is not None:
        if (problem := _problem("service.model", json.dumps(asdict(shadow)))) is not None:
            return f"shadow model: {problem}"
    return problem


def _problem(module: str, request: str) -> str | None:
    """A check in a child process (service/repository/gate.py's ``child``), the server
    process never loading ONNX Runtime: its one-line refusal, or None."""
    try:
        done = subprocess.run(
            gate.child(module, request), capture_output=True, timeout=gate.TIMEOUT_S, check=False
        )
        gate.outcome(done.returncode, done.stdout, done.stderr)
    except subprocess.TimeoutExpired:
        return gate.TIMED_OUT
    except ModelLoadError as exc:
        return str(exc)
    return None


def no_arguments(args: list[str], usage: str) -> None:
    """``--help`` prints ``usage`` and exits 0; any other argument exits 2: a server here is
    configured by its environment alone, and an ignored ``--help`` would start one."""
    if args in (["-h"], ["--help"]):
        sys.stdout.write(usage + "\n")
        sys.exit(0)
    if args:
        sys.stderr.write(f"{usage}\n\nerror: unexpected arguments: {' '.join(args)}\n")
        sys.exit(EXIT_BAD_CONFIG)


def main(argv: list[str] | None = None) -> None:
    """Start the server; a bad setting or a model that cannot be served exits 2, the log
    saying what. ``--help`` prints the usage; any other argument is a usage error (it was
    ignored, and ``--help`` started a server)."""
    no_arguments(sys.argv[1:] if argv is None else argv, USAGE)
    exit_zero_on_sigterm()  # a stop while it starts is a stop, not a failure (exit 143)
    ignore_sighup_until_serving()
    try:
        _start()
    except KeyboardInterrupt:  # Ctrl-C while it starts: no traceback
        sys.exit(EXIT_INTERRUPTED)


def _start() -> None:
    configure_logging()
    try:
        settings = Settings()
    except ValidationError as exc:
        logger.error("invalid configuration: %s", describe(exc))
        sys.exit(EXIT_BAD_CONFIG)
    except SettingsError as exc:  # a value its field's type cannot even be parsed from
        logger.error("invalid configuration: %s", exc)
        sys.exit(EXIT_BAD_CONFIG)
    configure_logging(settings.log_level)
    # Fail before binding the port, with one line instead of a lifespan traceback.
    problem = model_problem(settings)
    if problem is not None:
        logger.error("cannot serve the model: %s", problem)
        sys.exit(EXIT_BAD_CONFIG)
    try:
        Staging().close()  # the served model's private copy: a read-only /tmp refuses it
        open_store(settings)
        if (problem := listening_problem(settings)) is not None:
            raise ConfigurationError(problem)
        run_server(settings)  # its folder for several front ends' metrics may be refused
    except (ConfigurationError, ModelLoadError) as exc:
        logger.error("cannot start: %s", exc)
        sys.exit(EXIT_BAD_CONFIG)


if __name__ == "__main__":
    main()
