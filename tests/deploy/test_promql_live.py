"""Every PromQL expression we ship runs on a real Prometheus scraping the real service.

`python -m service` and `prometheus` both run on 127.0.0.1 (free ports, 1 s scrape and rule
evaluation, temporary storage). Each dashboard and alert expression goes through
/api/v1/query and must succeed; the basic series must also carry data.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.server import free_port, start_service
from tests.conftest import require_binary, tiny_model_env
from tests.deploy.tools import DASHBOARD, PROMETHEUS_DIR, load_yaml
from tests.service.images import ONE, draw_digit, png

pytestmark = pytest.mark.slow
DEADLINE_SECONDS = 30.0
# What Grafana would put in place of its variables, for a short test window.
GRAFANA_VARIABLES = {
    "$__rate_interval": "15s",
    "$__interval": "5s",
    "$__range": "5m",
    "$instance": ".+",
}


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def dashboard_queries() -> list[Any]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        pytest.param(grafana_to_promql(target["expr"]), id=f"{panel['title']}-{target['refId']}")
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def rule_queries() -> list[Any]:
    rules = load_yaml(PROMETHEUS_DIR / "alerts.yml")
    return [
        pytest.param(rule["expr"], id=rule["alert"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def query(prometheus: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5)
    body: dict[str, Any] = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return body


def wait_for(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """The result of `expr` once it is non-empty (a bounded wait for scrapes)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        try:
            result: list[dict[str, Any]] = query(prometheus, expr)["data"]["result"]
        except (httpx.TransportError, ValueError):
            result = []
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"no data for {expr} within {DEADLINE_SECONDS} s")


def send_traffic(url: str) -> None:
    """Successes on both predict routes, a client error and an unknown path."""
    for stroke in (None, ONE):
        image = png(draw_digit() if stroke is None else draw_digit(stroke=stroke))
        files = {"file": ("digit.png", image, "image/png")}
        assert httpx.post(f"{url}/predict", files=files, timeout=10).status_code == 200
    batch = [("files", (f"{i}.png", png(draw_digit()), "image/png")) for i in range(3)]
    assert httpx.post(f"{url}/predict/batch", files=batch, timeout=10).status_code == 200
    bad = {"file": ("x.png", b"not an image", "image/png")}
    assert httpx.post(f"{url}/predict", files=bad, timeout=10).status_code == 400
    assert httpx.get(f"{url}/no-such-route", timeout=10).status_code == 404


@pytest.fixture(scope="module")
def prometheus(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_binary("prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    server = start_service(tiny_model_env(tiny_onnx))
    config = work / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(PROMETHEUS_DIR / "alerts.yml")],
                "scrape_configs": [
                    {
                        "job_name": "digits",
                        "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}],
                    }
                ],
            }
        )
    )
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url, 'up{job="digits"} == 1')
        # Labelled series appear on their first increment, so one round would show no rate:
        # a second round after they were scraped makes every counter move.
        send_traffic(server.url)
        wait_for(url, 'digits_http_requests_total{job="digits", status="404"}')
        send_traffic(server.url)
        wait_for(url, 'sum(rate(digits_http_requests_total{job="digits"}[15s])) > 0')
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)
        server.stop()


@pytest.mark.parametrize("expr", dashboard_queries())
def test_dashboard_expression_is_accepted(prometheus: str, expr: str) -> None:
    query(prometheus, expr)


# The metrics of panels this server does not feed: corrections need DIGITS_FEEDBACK_DIR.
UNFED = ("digits_corrections_total",)


@pytest.mark.parametrize(
    "expr", [query for query in dashboard_queries() if not any(m in query.values[0] for m in UNFED)]
)
def test_dashboard_expression_has_data(prometheus: str, expr: str) -> None:
    """Every panel shows something for a server with traffic, if only 0 or NaN: a query that
    matches no series ("Error rate"'s rejected share divided a by (reason) vector by one with
    no labels; a 5xx share before any 5xx) leaves its panel at "No data"."""
    wait_for(prometheus, expr)


@pytest.mark.parametrize("expr", rule_queries())
def test_alert_expression_is_accepted(prometheus: str, expr: str) -> None:
    query(prometheus, expr)


@pytest.mark.parametrize(
    "expr",
    [
        'up{job="digits"} == 1',
        'sum by (route, status) (rate(digits_http_requests_total{job="digits"}[15s])) > 0',
        'digits_http_requests_total{route="/predict", status="400"} == 2',
        'digits_http_requests_total{route="<unmatched>", status="404"} == 2',
        "sum(digits_predictions_total) == 10",
        "digits_prediction_confidence_count == 10",
        "digits_batch_size_count > 0",
        "digits_model_info == 1",
        "digits_model_ready == 1",
    ],
)
def test_basic_series_carry_data(prometheus: str, expr: str) -> None:
    assert query(prometheus, expr)["data"]["result"], f"no data for {expr}"


def test_prometheus_evaluates_every_alert_rule_without_error(prometheus: str) -> None:
    expected = {param.id for param in rule_queries()}
    deadline = time.monotonic() + DEADLINE_SECONDS
    evaluated: dict[str, str] = {}
    while time.monotonic() < deadline:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
        evaluated = {
            rule["name"]: rule["health"]
            for group in groups
            for rule in group["rules"]
            if rule["health"] != "unknown"
        }
        if set(evaluated) == expected:
            break
        time.sleep(0.5)
    assert set(evaluated) == expected
    assert all(health == "ok" for health in evaluated.values()), evaluated
