"""The direct lane (service/http/lane.py) against a real server: what it answers is what the
ASGI path answers, and HTTP's connection rules hold on it (keep-alive, pipelining, HTTP/1.0,
Connection: close). Which requests take the lane: tests/service/test_direct_lane.py."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.server import RunningService, running_service
from tests.conftest import tiny_model_env
from tests.service.images import draw_digit, png

pytestmark = pytest.mark.slow
SEVEN = png(draw_digit())


@pytest.fixture(scope="module")
def server(tiny_onnx: Path) -> Iterator[RunningService]:
    with running_service(tiny_model_env(tiny_onnx)) as running:
        yield running


def _exchange(server: RunningService, request: bytes) -> bytes:
    """Send ``request`` (one or several requests) and read until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _post(
    path: str, body: bytes, *extra: str, version: str = "1.1", chunked: bool = False
) -> bytes:
    head = [f"POST {path} HTTP/{version}", "Host: 127.0.0.1", "Content-Type: image/png", *extra]
    if chunked:  # a streamed body: the ASGI path
        head.append("Transfer-Encoding: chunked")
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    else:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _responses(answer: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Every response in ``answer``, in order: (status, headers, body)."""
    responses = []
    while answer:
        head, _, rest = answer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers["content-length"])
        responses.append((int(status_line.split()[1]), headers, rest[:length]))
        answer = rest[length:]
    return responses


@pytest.mark.parametrize(
    "body",
    [SEVEN, b"not an image", b""],
    ids=["a digit", "undecodable bytes", "an empty body"],
)
def test_the_lane_answers_as_the_asgi_path_does(server: RunningService, body: bytes) -> None:
    same_id, close = "X-Request-ID: lane-1", "Connection: close"
    lane = _responses(_exchange(server, _post("/predict", body, same_id, close)))
    asgi = _responses(_exchange(server, _post("/predict", body, same_id, close, chunked=True)))
    assert len(lane) == len(asgi) == 1
    (status, headers, answer), (asgi_status, asgi_headers, asgi_answer) = lane[0], asgi[0]
    headers.pop("date"), asgi_headers.pop("date")
    assert (status, headers, answer) == (asgi_status, asgi_headers, asgi_answer)
    assert headers["x-request-id"] == "lane-1" and headers["connection"] == "close"
    if body == SEVEN:
        assert status == 200 and 0 <= json.loads(answer)["digit"] <= 9
    else:
        assert 400 <= status < 500 and "error" in json.loads(answer)


def test_keep_alive_and_pipelined_requests_are_answered_in_order(
    server: RunningService,
) -> None:
    health = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    batch = _post("/predict/batch", b"")  # not multipart: a 415 from the lane
    last = _post("/predict", SEVEN, "X-Request-ID: last", "Connection: close")
    answer = _exchange(server, _post("/predict", SEVEN) + health + batch + last)
    responses = _responses(answer)
    assert [status for status, _, _ in responses] == [200, 200, 415, 200]
    assert json.loads(responses[1][2]) == {"status": "ok"}
    assert "connection" not in responses[0][1]
    assert responses[3][1]["x-request-id"] == "last"
    assert responses[3][1]["connection"] == "close"  # and the server closed: _exchange ended


def test_an_http_1_0_request_is_answered_and_closed(server: RunningService) -> None:
    responses = _responses(_exchange(server, _post("/predict", SEVEN, version="1.0")))
    assert len(responses) == 1
    status, headers, answer = responses[0]
    assert status == 200 and headers["connection"] == "close"
    assert 0 <= json.loads(answer)["digit"] <= 9


def test_clients_that_leave_before_their_answer_do_not_stop_the_server(
    server: RunningService,
) -> None:
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(_post("/predict", SEVEN))
    answer = _responses(_exchange(server, _post("/predict", SEVEN, "Connection: close")))
    assert answer[0][0] == 200


def test_a_request_is_timed_from_its_head_not_from_its_last_body_byte(
    server: RunningService,
) -> None:
    request = _post("/predict", SEVEN, "X-Request-ID: timed-upload", "Connection: close")
    split = request.index(b"\r\n\r\n") + 4 + len(SEVEN) // 2
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request[:split])
        time.sleep(0.4)  # within the body deadline's grace period
        sock.sendall(request[split:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert _responses(answer)[0][0] == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the access line is written after the answer
        lines = [json.loads(line) for line in server.log().splitlines() if "timed-upload" in line]
        if lines:
            break
        time.sleep(0.05)
    # Timed from the last body byte it would be a few ms; from the head, the 0.4 s pause,
    # less however late a busy server read the head.
    assert lines and lines[0]["duration_ms"] >= 200


def test_many_pipelined_requests_in_one_write_are_all_answered(server: RunningService) -> None:
    count = 2000  # ~200 KiB of heads in one write: each head is capped alone, not their sum
    requests = _post("/predict", SEVEN) * (count - 1) + _post(
        "/predict", SEVEN, "Connection: close"
    )
    responses = _responses(_exchange(server, requests))
    assert [status for status, _, _ in responses] == [200] * count


def test_a_client_that_waits_for_100_continue_gets_it_and_then_its_answer(
    server: RunningService,
) -> None:
    """curl sends ``Expect: 100-continue`` before a body over 1 MB and waits for the interim
    answer; a lane that kept silent would stall every such upload by curl's wait."""
    request = _post("/predict", SEVEN, "Expect: 100-continue", "Connection: close")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request[: -len(SEVEN)])  # the head alone, as curl sends it first
        interim = sock.recv(65536)
        sock.sendall(SEVEN)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    ((status, _, payload),) = _responses(answer)
    assert status == 200 and 0 <= json.loads(payload)["digit"] <= 9
