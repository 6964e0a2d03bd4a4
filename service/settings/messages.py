"""What is wrong with a configuration, in the one line start-up logs before it exits 2."""

from __future__ import annotations

from pydantic import ValidationError


class ConfigurationError(Exception):
    """A setting the environment allows but this machine does not (a folder that cannot be
    written, a port already taken): its message names the variable."""


def describe(exc: ValidationError) -> str:
    """What is wrong with the configuration, naming each environment variable as it is set:
    ``DIGITS_<FIELD>``, a field's own alias (``DIGITS_PORT``) as it is, and a check across
    fields by its message alone."""
    problems = []
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if not name:
            problems.append(message)
        else:
            variable = name if name.isupper() else f"DIGITS_{name.upper()}"
            problems.append(f"{variable}: {message}")
    return "; ".join(problems)
