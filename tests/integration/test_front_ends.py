"""Several front-end processes on one port (DIGITS_FRONT_ENDS=2): each starts its own
workers, every scrape adds up all of them, and SIGTERM drains every one."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.cpu import WORKER_MARK
from bench.server import RunningService, running_service
from tests.conftest import tiny_model_env
from tests.integration.processes import descendants, predict_on_new_connection, wait_for
from tests.service.images import draw_digit, png

pytestmark = pytest.mark.slow
SEVEN = png(draw_digit())
REQUESTS = 40
READY_LINE = '"model tiny 0.0.1 ready'  # one per front end, logged when its workers serve
READY_TIMEOUT_S = 60.0


@pytest.fixture
def server(tiny_onnx: Path) -> Iterator[RunningService]:
    env = {
        **tiny_model_env(tiny_onnx),
        "DIGITS_FRONT_ENDS": "2",
        "DIGITS_PREPROCESS_WORKERS": "2",
    }
    with running_service(env) as running:
        wait_for(lambda: running.log().count(READY_LINE) == 2, running, READY_TIMEOUT_S)
        yield running


def _predict_total(scrape: str) -> float:
    pattern = r'^digits_http_requests_total\{method="POST",route="/predict",status="200"\} (\S+)'
    match = re.search(pattern, scrape, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_front_ends_share_the_port_and_their_metrics_add_up(server: RunningService) -> None:
    commands = descendants(server.process.pid).values()
    front_ends = [command for command in commands if b"multiprocessing.spawn" in command]
    workers = [command for command in commands if WORKER_MARK in command]
    assert len(front_ends) == 2 and len(workers) == 2  # one worker each
    for _ in range(REQUESTS):  # a new connection each: either front end may take it
        answer = predict_on_new_connection(server.url, SEVEN)
        assert answer.status_code == 200, answer.text
    totals = {_predict_total(httpx.get(f"{server.url}/metrics", timeout=5).text) for _ in range(6)}
    assert totals == {float(REQUESTS)}  # every scrape, whichever front end answers it
    assert server.log().count(READY_LINE) == 2


def test_sigterm_drains_every_front_end(server: RunningService) -> None:
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(SEVEN)}\r\n\r\n"
    ).encode()
    uploads = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(4)]
    for sock in uploads:
        sock.sendall(head + SEVEN[: len(SEVEN) // 2])  # in flight, on whichever front end
    time.sleep(0.3)
    server.process.terminate()
    time.sleep(0.5)
    assert server.process.poll() is None  # still draining
    answers = []
    for sock in uploads:
        sock.sendall(SEVEN[len(SEVEN) // 2 :])
        answer = b""
        while not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        answers.append(answer)
        sock.close()
    assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers), answers
    server.process.wait(timeout=15)
    assert descendants(server.process.pid) == {}
