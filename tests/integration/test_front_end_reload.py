"""Swapping the model with several front ends (DIGITS_FRONT_ENDS=2): SIGHUP to the main
process reaches every front end as the checked reload (uvicorn alone would restart them all,
unchecked), digits_model_info names the new model once they all serve it, and a load through
HTTP, which would reach only the front end that answers it, is refused with what to do."""

from __future__ import annotations

import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.server import RunningService, running_service
from tests.integration.processes import (
    descendants,
    parent_of,
    predict_on_new_connection,
    wait_for,
)
from tests.repository.conftest import AUTH, LOAD, TOKEN, upload_body
from tests.repository.models import variant
from tests.service.images import draw_digit, png

pytestmark = pytest.mark.slow
SEVEN = png(draw_digit())
SWITCH_TIMEOUT_S = 90.0
REQUESTS = 30


@pytest.fixture
def server(model_path: Path) -> Iterator[RunningService]:
    env = {
        "DIGITS_MODEL_PATH": str(model_path),
        "DIGITS_FRONT_ENDS": "2",
        "DIGITS_PREPROCESS_WORKERS": "2",
        "DIGITS_ADMIN_TOKEN": TOKEN,
        "DIGITS_ACCESS_LOG": "false",
    }
    with running_service(env) as running:
        ready = '"model lenet5 1.0.0 ready'
        wait_for(lambda: running.log().count(ready) == 2, running, SWITCH_TIMEOUT_S)
        yield running


def _front_ends(server: RunningService) -> set[int]:
    return {
        pid
        for pid, command in descendants(server.process.pid).items()
        if b"multiprocessing.spawn" in command and parent_of(pid) == server.process.pid
    }


def _versions(server: RunningService) -> list[str]:
    """The model version of answers on fresh connections (either front end may take each)."""
    versions = []
    for _ in range(REQUESTS):
        answer = predict_on_new_connection(server.url, SEVEN)
        assert answer.status_code == 200, answer.text
        versions.append(answer.json()["model"]["version"])
    return versions


def _series(server: RunningService, name: str) -> dict[str, float]:
    """The labels -> value of a metric's series, as a scrape (any front end) adds them up."""
    scrape = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {
        labels: float(value)
        for labels, value in re.findall(rf"^{name}\{{(.*)\}} (\S+)$", scrape, re.MULTILINE)
    }


def test_sighup_reloads_every_front_end_through_the_checks(
    server: RunningService, model_path: Path, tmp_path: Path, shipped_model: Path
) -> None:
    front_ends = _front_ends(server)
    assert len(front_ends) == 2
    assert set(_versions(server)) == {"1.0.0"}

    shutil.copyfile(variant(tmp_path / "v2.onnx", "2.0.0", 0.8, shipped_model), model_path)
    server.process.send_signal(signal.SIGHUP)
    switched = '"model lenet5 2.0.0 now serves'
    wait_for(lambda: server.log().count(switched) == 2, server, SWITCH_TIMEOUT_S)

    assert set(_versions(server)) == {"2.0.0"}  # every front end answers with the new model
    assert _front_ends(server) == front_ends  # reloaded in place, not restarted by uvicorn
    log = server.log()
    assert "SIGHUP: front ends" in log and "restarting processes" not in log
    info = {
        re.search(r'version="([^"]+)"', labels).group(1): value  # type: ignore[union-attr]
        for labels, value in _series(server, "digits_model_info").items()
    }
    assert info == {"1.0.0": 0.0, "2.0.0": 1.0}  # the replaced model's series is 0
    loads = _series(server, "digits_model_loads_total")
    assert loads['outcome="loaded"'] == 2.0  # one checked load per front end


def test_an_http_load_is_refused_with_the_way_that_reaches_every_front_end(
    server: RunningService, tmp_path: Path, shipped_model: Path
) -> None:
    new = variant(tmp_path / "v2.onnx", "2.0.0", 0.8, shipped_model)
    for body in (upload_body(new), None):
        response = httpx.post(f"{server.url}{LOAD}", headers=AUTH, json=body, timeout=30)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert "2 front-end processes" in error and "SIGHUP" in error, error
    assert httpx.post(f"{server.url}{LOAD}", timeout=30).status_code == 401  # auth comes first
    assert set(_versions(server)) == {"1.0.0"}
