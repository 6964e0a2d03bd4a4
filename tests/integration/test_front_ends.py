"""Several front-end processes on one port (DIGITS_FRONT_ENDS=2): each starts its own
workers, every scrape adds up all of them, and SIGTERM drains every one."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

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


def _in_flight_by_front_end(folder: Path) -> dict[int, float]:
    """Each front end's own digits_http_requests_in_flight, read from its multiprocess file."""
    values = {}
    for path in folder.glob("gauge_livesum_*.db"):
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            if '"digits_http_requests_in_flight"' in key:
                values[int(path.stem.rsplit("_", 1)[1])] = value
    return values


def _in_flight(server: RunningService) -> float:
    scrape = httpx.get(f"{server.url}/metrics", timeout=5).text
    match = re.search(r"^digits_http_requests_in_flight (\S+)", scrape, re.MULTILINE)
    assert match, scrape
    return float(match.group(1))


def test_a_front_end_that_dies_leaves_nothing_in_flight(tiny_onnx: Path, tmp_path: Path) -> None:
    """A front end killed with a request in flight (out of memory, kill -9) has no shutdown to
    mark its live gauges dead: its file kept digits_http_requests_in_flight at 1 for good.
    The parent marks it dead when it starts the front end's replacement."""
    folder = tmp_path / "metrics"
    env = {
        **tiny_model_env(tiny_onnx),
        "DIGITS_FRONT_ENDS": "2",
        "DIGITS_PREPROCESS_WORKERS": "2",
        "DIGITS_METRICS_DIR": str(folder),
    }
    with running_service(env) as server:
        wait_for(lambda: server.log().count(READY_LINE) == 2, server, READY_TIMEOUT_S)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as upload:
            upload.sendall(  # a chunked body (the ASGI path): in flight while it arrives
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n4\r\n\x89PNG\r\n"
            )
            wait_for(lambda: 1.0 in _in_flight_by_front_end(folder).values(), server, 10.0)
            victim = next(pid for pid, n in _in_flight_by_front_end(folder).items() if n == 1)
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: server.log().count(READY_LINE) == 3, server, READY_TIMEOUT_S)
        wait_for(lambda: _in_flight(server) == 0, server, 5.0)
        assert "Traceback" not in server.log()


def test_a_front_end_that_dies_is_a_warning(server: RunningService) -> None:
    """uvicorn logs a front end that died (killed, crashed; it starts another) at INFO, so
    one crashing again and again went unseen beside the workers' WARNINGs."""
    commands = descendants(server.process.pid)
    front_end = next(
        pid for pid, command in commands.items() if b"multiprocessing.spawn" in command
    )
    os.kill(front_end, signal.SIGKILL)
    line = f"Child process [{front_end}] died"
    wait_for(lambda: line in server.log(), server, READY_TIMEOUT_S)
    records = [json.loads(row) for row in server.log().splitlines() if line in row]
    assert [record["level"] for record in records] == ["WARNING"]
