"""Whether and where traces go, by the OpenTelemetry specification's variables."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from service.tracing import start_tracing, traces_endpoint
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize(
    ("environ", "endpoint"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, None),  # compose passes it empty: off
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, "http://jaeger:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "http://c:4318/v1/traces"),
        # A signal's own endpoint is used as it is, and wins over the base one.
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t.example/otlp/traces",
            },
            "https://t.example/otlp/traces",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, None),
    ],
)
def test_the_standard_variables_decide(environ: dict[str, str], endpoint: str | None) -> None:
    assert traces_endpoint(environ) == endpoint


def test_off_loads_no_opentelemetry_sdk() -> None:
    assert start_tracing({}) is None
    code = (
        "import sys; from fastapi.testclient import TestClient; from service.app import create_app;"
        "create_app(); print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"
