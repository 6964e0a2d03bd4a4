"""A real Prometheus scrapes the service and its query API returns the request counter."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bench.server import RunningService, free_port
from tests.conftest import require_binary
from tests.service.images import draw_digit, png

pytestmark = pytest.mark.slow
SCRAPE_DEADLINE_SECONDS = 30.0


def test_prometheus_scrapes_the_request_counter(server: RunningService, tmp_path: Path) -> None:
    prometheus = require_binary("prometheus")
    for _ in range(3):
        response = httpx.post(
            f"{server.url}/predict",
            content=png(draw_digit()),
            headers={"Content-Type": "image/png"},
        )
        assert response.status_code == 200
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: digits\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{server.port}']\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    query = 'digits_http_requests_total{route="/predict",method="POST",status="200"}'
    try:
        deadline = time.monotonic() + SCRAPE_DEADLINE_SECONDS
        result: list = []
        while time.monotonic() < deadline and not result:
            time.sleep(0.5)
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=2
                ).json()
            except (httpx.TransportError, ValueError):
                continue
            result = answer.get("data", {}).get("result", [])
        assert result, f"no sample for {query} within {SCRAPE_DEADLINE_SECONDS} s"
        assert float(result[0]["value"][1]) == 3
        assert result[0]["metric"]["job"] == "digits"
        up = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": "up"}).json()
        assert up["data"]["result"][0]["value"][1] == "1"
    finally:
        process.terminate()
        process.wait(timeout=15)
