"""Hostile and careless clients against a real server (python -m service on loopback): an
oversized head, a stalled or trickling head or body, idle and surplus connections. Each is
answered or cut within its limit, and a normal client is served throughout."""

from __future__ import annotations

import contextlib
import json
import random
import re
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bench.server import RunningService, running_service
from service.http.body_budget import STALLED_S
from service.http.guard import REFUSAL_LINES_PER_S, ROOM_AGE_S
from service.http.unread import Unread
from service.settings import Settings
from tests.conftest import tiny_model_env
from tests.service.images import draw_digit, encode, png

pytestmark = pytest.mark.slow
SEVEN = png(draw_digit())
LIMITS = {
    "DIGITS_HEADER_TIMEOUT_SECONDS": "1",
    "DIGITS_BODY_TIMEOUT_SECONDS": "1",
    "DIGITS_BODY_MIN_BYTES_PER_SECOND": "1000",
    "DIGITS_KEEP_ALIVE_SECONDS": "1",
    "DIGITS_MAX_CONNECTIONS": "12",
    "DIGITS_ACCESS_LOG": "false",
}
# The deadlines are checked once a second, and a busy machine runs a sweep late; a deadline
# that never fires is still caught (the sockets time out at 5 s and more).
SWEEP_SLACK_S = 3.0


@pytest.fixture(scope="module")
def server(tiny_onnx: Path) -> Iterator[RunningService]:
    with running_service({**tiny_model_env(tiny_onnx), **LIMITS}) as running:
        yield running


def _connect(server: RunningService) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (bounded by the socket timeout)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _status_and_body(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def _predict_works(server: RunningService) -> None:
    """The server still answers a real request after a hostile client. A 503 is retried for
    a moment: the connection cap may still count a socket the test closed just before."""
    deadline = time.monotonic() + 5
    while True:
        response = httpx.post(
            f"{server.url}/predict", content=SEVEN, headers={"Content-Type": "image/png"}, timeout=5
        )
        if response.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert response.status_code == 200, response.text


def _request_head(length: int) -> bytes:
    return (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_a_1_mb_header_block_gets_431_and_a_closed_connection(server: RunningService) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
        )
        status, body = _status_and_body(_read_all(sock))
    assert status == 431
    assert body["error"]["code"] == "headers_too_large"
    assert "32768 bytes" in body["error"]["message"]
    _predict_works(server)


def test_bytes_that_are_not_http_get_400_and_a_closed_connection(
    server: RunningService,
) -> None:
    """...and are counted: refused before any route, they were in no metric at all, so a
    client speaking TLS or garbage to the port went unseen."""
    before = _rejected(server, "bad_request")
    with _connect(server) as sock:
        sock.sendall(b"\x16\x03\x01 this is not HTTP\r\n\r\n")  # e.g. TLS to a plain port
        answer = _read_all(sock)
    status, body = _status_and_body(answer)
    assert status == 400 and body["error"]["code"] == "bad_request"
    assert "Invalid HTTP request" in body["error"]["message"]
    assert _rejected(server, "bad_request") == before + 1
    _predict_works(server)


def _rejected(server: RunningService, reason: str) -> float:
    scrape = httpx.get(f"{server.url}/metrics", timeout=5).text
    line = f'digits_rejected_total{{reason="{reason}"}} '
    return sum(float(row.rsplit(" ", 1)[1]) for row in scrape.splitlines() if row.startswith(line))


def _answers(stream: bytes) -> list[tuple[int, dict]]:
    """The answers one after another on a connection (each with a Content-Length)."""
    answers = []
    while stream:
        head, _, rest = stream.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        answers.append(_status_and_body(head + b"\r\n\r\n" + rest[:length]))
        stream = rest[length:]
    return answers


@pytest.mark.parametrize(
    "requests",
    [
        _request_head(len(SEVEN)) + SEVEN,  # the direct lane
        b"GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n",  # a FastAPI route
        _request_head(len(SEVEN)) + SEVEN + b"GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["a prediction", "a metadata request", "two pipelined"],
)
def test_garbage_behind_requests_in_flight_is_refused_after_their_answers(
    server: RunningService, requests: bytes
) -> None:
    """Requests sent with bad bytes behind them in one write were answered with the
    refusal alone (the log said 200 for an answer never sent): each whole request is
    answered first, in order, then the refusal, then the connection closes."""
    for _ in range(10):
        with _connect(server) as sock:
            sock.sendall(requests + b"\x16 not HTTP\r\n\r\n")
            answers = _answers(_read_all(sock))
        assert [status for status, _ in answers] == [200] * requests.count(b" HTTP/1.1") + [400]
        assert answers[-1][1]["error"]["code"] == "bad_request"
    assert "failed" not in server.log() and "Traceback" not in server.log()
    _predict_works(server)


@pytest.mark.parametrize(
    "head",
    [
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n",
        b"POST /pr\xc3\xa9dict HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 5\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-ID: a\x01b\r\nContent-Length: 1\r\n",
        # Both framings at once is how requests are smuggled past a proxy that reads the other.
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n",
        # Each of these was answered as HTTP/1.1, or read one way where a proxy may read another.
        b"GET /healthz\r\n",
        b"GET /healthz HTTP/2.0\r\nHost: x\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Type: image/png\r\nContent-Length: 1\r\n",
    ],
    ids=[
        "an overflowing length",
        "a non-ASCII path",
        "two lengths",
        "a control byte",
        "a length and chunks",
        "a coding that is not chunked",
        "no HTTP version",
        "HTTP/2.0",
        "two hosts",
        "two content types",
    ],
)
def test_malformed_requests_get_a_json_400(server: RunningService, head: bytes) -> None:
    with _connect(server) as sock:
        sock.sendall(head + b"\r\nx")
        status, body = _status_and_body(_read_all(sock))
    assert status == 400 and body["error"]["code"] == "bad_request"
    _predict_works(server)


# What Java's HttpClient and Spring's RestClient send with every POST to an http:// URL.
H2C_OFFER = (
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
)


def _offering_h2c(framing: bytes) -> bytes:
    return b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n" + H2C_OFFER + framing


@pytest.mark.parametrize("codings", [b"gzip, chunked", b"foo, chunked", b"chunked, chunked"])
def test_a_transfer_coding_other_than_chunked_is_refused(
    server: RunningService, codings: bytes
) -> None:
    """llhttp accepts codings before a final chunked and drops them: a gzip-coded body
    reached the route as if plain (400 "cannot identify an image"). Refused, naming it."""
    with _connect(server) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Transfer-Encoding: %s\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (codings, len(SEVEN), SEVEN)
        )
        status, body = _status_and_body(_read_all(sock))
    if codings == b"chunked, chunked":  # chunked twice is llhttp's own 400
        assert status == 400
        return
    assert status == 400 and codings.split(b",")[0].decode() in body["error"]["message"]
    _predict_works(server)


@pytest.mark.parametrize("together", [True, False], ids=["head and body at once", "body later"])
@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_a_request_offering_h2c_is_answered_from_its_body(
    server: RunningService, together: bool, chunked: bool
) -> None:
    """The offer is ignored, as a server may: the request is answered as HTTP/1.1 from its
    body (httptools ended the message at its head: an empty body, 400), and a request after it
    on the same connection is answered too."""
    if chunked:
        head, body = (
            _offering_h2c(b"Transfer-Encoding: chunked\r\n\r\n"),
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(SEVEN), SEVEN),
        )
    else:
        head, body = _offering_h2c(b"Content-Length: %d\r\n\r\n" % len(SEVEN)), SEVEN
    with _connect(server) as sock:
        if together:
            sock.sendall(head + body)
        else:
            sock.sendall(head)
            time.sleep(0.2)
            sock.sendall(body)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = _read_all(sock)
    first, _, second = answer.partition(b"HTTP/1.1 200 OK\r\n")[2].partition(b"HTTP/1.1 ")
    assert answer.startswith(b"HTTP/1.1 200 OK") and b'"digit":' in first
    assert second.startswith(b"200 OK") and b'"status":"ok"' in second


def test_a_body_after_an_h2c_offer_is_never_read_as_a_request(server: RunningService) -> None:
    """A body that is itself a request must not be answered as one: that is how a request is
    smuggled past a proxy that reads the body as a body."""
    inner = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    head = (
        b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + H2C_OFFER
        + b"Content-Length: %d\r\n\r\n" % len(inner)
    )
    with _connect(server) as sock:
        sock.sendall(head)
        time.sleep(0.2)
        sock.sendall(inner)
        time.sleep(0.5)  # a second answer, if any, is written by then (keep-alive: no close)
        sock.shutdown(socket.SHUT_WR)
        answer = _read_all(sock)
    assert answer.count(b"HTTP/1.1 ") == 1 and b'"status":"ok"' not in answer
    assert answer.startswith(b"HTTP/1.1 400")


def test_connect_gets_a_json_400(server: RunningService) -> None:
    with _connect(server) as sock:
        sock.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        status, body = _status_and_body(_read_all(sock))
    assert status == 400 and body["error"]["code"] == "bad_request"
    _predict_works(server)


def test_many_header_lines_over_the_cap_get_431(server: RunningService) -> None:
    lines = b"".join(b"X-Line-%d: %s\r\n" % (n, b"b" * 100) for n in range(400))
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
        status, _ = _status_and_body(_read_all(sock))
    assert status == 431


@pytest.mark.parametrize("method", ["GET", "OPTIONS"])
def test_the_head_limit_counts_every_byte_of_the_head(server: RunningService, method: str) -> None:
    """DIGITS_MAX_HEADER_BYTES is the head's size in bytes, request line and blank line
    included: the count left out the method, the version and the line ends, so a head of
    the limit plus 17 bytes was answered (plus 21 for OPTIONS), and the same head got 431
    when it came in two reads, where every byte is counted."""
    limit = Settings().max_header_bytes
    start = f"{method} /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: ".encode()
    statuses = []
    for size in (limit, limit + 1):
        head = start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"
        assert len(head) == size
        with _connect(server) as sock:
            sock.sendall(head)
            statuses.append(int(_read_all(sock).split(b" ")[1]))
    assert statuses[0] != 431 and statuses[1] == 431, statuses


def test_a_stalled_request_head_is_closed_within_its_deadline(server: RunningService) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        _predict_works(server)  # a normal client is served meanwhile
        status, body = _status_and_body(_read_all(sock))
        waited = time.monotonic() - started
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert 1.0 <= waited < 1.0 + SWEEP_SLACK_S


def test_a_head_begun_behind_an_answer_keeps_its_deadline(server: RunningService) -> None:
    """A head begun in the same write as the request before it was taken for an idle
    connection once that request was answered: closed without a word at the keep-alive's end
    (and taken for one waiting for nothing when the cap made room)."""
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nX: ")
        answers = _read_all(sock)
    first = answers.index(b"}") + 1  # the first request's answer, then the refusal
    assert answers.startswith(b"HTTP/1.1 200")
    status, body = _status_and_body(answers[first:])
    assert status == 408 and body["error"]["code"] == "request_timeout"


def test_a_header_line_a_second_does_not_dodge_the_head_deadline(server: RunningService) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        answer = b""
        for n in range(6):  # bounded: at most 6 lines, 0.4 s apart
            try:
                sock.sendall(b"X-Slow-%d: yes\r\n" % n)
            except OSError:  # the server closed it: the deadline worked
                break
            time.sleep(0.4)
        answer = _read_all(sock)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408")
    assert waited < 1.0 + SWEEP_SLACK_S + 0.4


def test_a_trickling_body_is_cut_within_its_deadline(server: RunningService) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(_request_head(len(SEVEN)))
        answer = b""
        for byte in SEVEN[:40]:  # one byte per 100 ms: bounded to 4 s
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
            sock.setblocking(False)
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            if answer:
                break
        sock.settimeout(5)
        answer += _read_all(sock)
        waited = time.monotonic() - started
    status, body = _status_and_body(answer)
    assert status == 408 and "bytes/s" in body["error"]["message"]
    assert waited < 1.0 + SWEEP_SLACK_S + 0.2
    _predict_works(server)


def test_a_body_that_stops_is_cut_however_fast_it_began(server: RunningService) -> None:
    """Most of a large body at once, then nothing: its average rate alone would keep the
    connection (and the buffered body) for minutes."""
    with _connect(server) as sock:
        sock.sendall(_request_head(400_000) + b"\0" * 300_000)
        started = time.monotonic()
        sock.settimeout(5)
        status, body = _status_and_body(_read_all(sock))
        waited = time.monotonic() - started
    assert status == 408
    assert "no more of the request body arrived for 1 s" in body["error"]["message"]
    assert waited < 1.0 + SWEEP_SLACK_S + 0.2
    _predict_works(server)


def _requests_counted(server: RunningService, status: str) -> float:
    pattern = f'digits_http_requests_total{{method="POST",route="/predict",status="{status}"}} '
    scrape = httpx.get(f"{server.url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in scrape.splitlines() if line.startswith(pattern)
    )


def test_a_request_cut_for_its_body_is_counted_with_the_status_it_got(
    server: RunningService,
) -> None:
    """A chunked body (the ASGI path: the app is already handling the request) that stops is
    cut with 408; the request metrics and the access line say 408, not 499 (a client that
    left), beside digits_rejected_total{reason="slow_request"}."""
    before = {status: _requests_counted(server, status) for status in ("408", "499")}
    with _connect(server) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n4\r\n\x89PNG\r\n"
        )
        sock.settimeout(10)
        status, body = _status_and_body(_read_all(sock))
    assert status == 408 and "no more of the request body arrived" in body["error"]["message"]
    deadline = time.monotonic() + 5  # the app records the request once it has unwound
    while _requests_counted(server, "408") == before["408"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _requests_counted(server, "408") == before["408"] + 1
    assert _requests_counted(server, "499") == before["499"]
    _predict_works(server)


def _counted_within(server: RunningService, status: str, expected: float) -> float:
    """The /predict requests counted with ``status`` once they reach ``expected`` (or 5 s)."""
    deadline = time.monotonic() + 5
    while (counted := _requests_counted(server, status)) < expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return counted


def test_requests_ended_mid_body_on_the_direct_lane_are_counted(server: RunningService) -> None:
    """A body with a Content-Length is collected by the protocol itself (the direct lane) and
    only then handed to the route: a client that left half way, or a body cut as too slow,
    reached no metric and no access line. Now 499 and 408, as on the ASGI path."""
    before = {status: _requests_counted(server, status) for status in ("408", "499")}
    with _connect(server) as sock:  # leaves
        sock.sendall(_request_head(1000) + SEVEN[:100])
    with _connect(server) as sock:  # stops
        sock.sendall(_request_head(1000) + SEVEN[:100])
        status, _ = _status_and_body(_read_all(sock))
    assert status == 408
    assert _counted_within(server, "499", before["499"] + 1) == before["499"] + 1
    assert _counted_within(server, "408", before["408"] + 1) == before["408"] + 1
    _predict_works(server)


def _counted(server: RunningService, method: str, route: str) -> float:
    """Requests counted for ``method`` on ``route``, whatever their status."""
    pattern = f'digits_http_requests_total{{method="{method}",route="{route}",'
    scrape = httpx.get(f"{server.url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in scrape.splitlines() if line.startswith(pattern)
    )


def test_requests_queued_when_the_client_resets_are_counted(server: RunningService) -> None:
    """Whole requests pipelined behind the one being answered never reached the app when the
    client reset the connection: they were in no metric and no access line (of four, one was
    counted). Every request read is counted now, 499 unless it was answered."""
    predicts = 10
    before = (_counted(server, "POST", "/predict"), _counted(server, "GET", "/model"))
    with _connect(server) as sock:
        sock.sendall(
            (_request_head(len(SEVEN)) + SEVEN) * predicts
            + b"GET /model HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert sock.recv(1) == b"H"  # the server has read them all: the first answer begins
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset
    expected = (before[0] + predicts, before[1] + 1)
    deadline = time.monotonic() + 5
    while (
        counted := (_counted(server, "POST", "/predict"), _counted(server, "GET", "/model"))
    ) != expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert counted == expected
    _predict_works(server)


def _send_until_answered(sock: socket.socket, piece: bytes) -> int:
    """Send ``piece`` again and again until the server's answer is there to read (64 MiB at
    most; the server reads and drops what follows a refusal for a while); the bytes sent."""
    sent = 0
    while sent < 64 * 1024 * 1024 and not select.select([sock], [], [], 0)[0]:
        sock.sendall(piece)
        sent += len(piece)
    return sent


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])


def test_a_64_mb_chunked_upload_is_cut_with_413_and_little_memory(server: RunningService) -> None:
    """The 10 MiB body limit holds for a body of undeclared size, counted while it arrives."""
    before = _rss_kib(server.process.pid)
    chunk = b"\0" * 65536
    with _connect(server) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        sent = _send_until_answered(sock, b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, body = _status_and_body(_read_all(sock))
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    assert sent < 40 * 1024 * 1024  # cut well before 64 MiB
    assert _rss_kib(server.process.pid) - before < 30 * 1024
    # What still arrives after the 413 is dropped, not parsed as a new request's head.
    assert "Traceback" not in server.log()
    _predict_works(server)


def test_a_trailer_section_over_the_head_cap_is_refused(server: RunningService) -> None:
    """The trailer fields after a chunked body were appended to the request's headers with
    no limit: 10 MB of them cost the front end about 200 MB. They count against the head's
    cap instead (431, then close), and are never added to the request's headers."""
    with _connect(server) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n" % (len(SEVEN), SEVEN)
        )
        for _ in range(64):  # 1 MB of trailer fields at most
            try:
                sock.sendall(b"X-Trailer: t\r\n" * 1200)
            except OSError:  # the server answered and stopped reading
                break
        try:
            sock.sendall(b"\r\n")
        except OSError:
            pass
        status, body = _status_and_body(_read_all(sock))
    assert status == 431 and body["error"]["code"] == "headers_too_large"
    assert "trailer" in body["error"]["message"]
    _predict_works(server)


def test_an_endless_chunk_extension_is_refused_early(server: RunningService) -> None:
    """The bytes of a chunk's extension (``5;name=value``) were parsed and dropped, counted
    nowhere: one connection sending an extension that never ends kept the front end parsing
    gigabytes until the body's deadline. They count against the head's cap (413, close)."""
    with _connect(server) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n1;"
        )
        sent = _send_until_answered(sock, b"a" * 65536)
        status, body = _status_and_body(_read_all(sock))
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    assert "extensions" in body["error"]["message"]
    assert sent < 8 * 1024 * 1024
    _predict_works(server)


def test_a_long_chunk_extension_in_the_bodys_last_read_is_refused(
    server: RunningService,
) -> None:
    """The read that completed the body was not counted: a 40 KB extension arriving with the
    end of the body was answered 200, the same bytes in smaller writes 413."""
    with _connect(server) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n%x;a=" % len(SEVEN)
        )
        time.sleep(0.2)  # the head is read on its own
        sock.sendall(b"x" * 40_000 + b"\r\n" + SEVEN + b"\r\n0\r\n\r\n")
        status, body = _status_and_body(_read_all(sock))
    assert status == 413 and "extensions" in body["error"]["message"]
    _predict_works(server)


def test_a_body_in_many_small_chunks_is_read(server: RunningService) -> None:
    """The framing of ordinary chunks is no extension: an uncompressed 40 KB image sent 2
    bytes a chunk, each with a short extension (framing five times the head's cap), is read."""
    image = encode(draw_digit(), "BMP")
    framed = b"".join(
        b"%x;n=v\r\n%s\r\n" % (len(image[i : i + 2]), image[i : i + 2])
        for i in range(0, len(image), 2)
    )
    with _connect(server) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/bmp\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%s0\r\n\r\n" % framed
        )
        status, body = _status_and_body(_read_all(sock))
    assert len(framed) - len(image) > 5 * 32 * 1024
    assert status == 200 and "digit" in body


def test_a_few_trailer_fields_are_read_and_dropped(server: RunningService) -> None:
    trailers = b"X-Checksum: 1\r\nContent-Type: text/plain\r\n"
    with _connect(server) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n%s\r\n0\r\n%s\r\n"
            % (len(SEVEN), SEVEN, trailers)
        )
        status, body = _status_and_body(_read_all(sock))
    assert status == 200 and "digit" in body


# Each answer is as large as Swagger UI's bundle (about 1.5 MB): a few of them fill the kernel's
# buffers of a client that reads nothing, and the rest waits in the server.
UNREAD = b"GET /docs/assets/swagger-ui-bundle.js HTTP/1.1\r\nHost: x\r\n\r\n" * 16


def test_clients_that_never_read_their_answers_are_dropped(server: RunningService) -> None:
    """A client that asks for large answers and reads none of them held its connection for
    as long as it liked: uvicorn waits for the socket to drain without a limit. As many of
    them as the connection cap kept every other client out with 503. An answer that leaves
    nothing for the body timeout is dropped with its connection, as a body that stops
    arriving is."""
    held = []
    try:
        for _ in range(int(LIMITS["DIGITS_MAX_CONNECTIONS"])):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(UNREAD)
            held.append(sock)
        deadline = time.monotonic() + 1.0 + SWEEP_SLACK_S + 10
        while True:
            status = httpx.get(f"{server.url}/healthz", timeout=5).status_code
            if status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 200
    finally:
        for sock in held:
            sock.close()
    assert "read nothing of its answer" in server.log()
    _predict_works(server)


class _HeldTransport:
    """What the sweep asks of an asyncio transport whose buffer holds ``buffered`` bytes that
    the kernel has no room for yet."""

    def __init__(self, sock: socket.socket, buffered: int) -> None:
        self.sock, self.buffered = sock, buffered

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str) -> object:
        return self.sock if name == "socket" else None


def test_a_client_reading_slowly_is_not_taken_for_one_that_reads_nothing() -> None:
    """asyncio's buffer only moves once the kernel's is a third empty: a client reading a few
    KB a second from a kernel buffer of megabytes left it unchanged for minutes, and was
    dropped as one that reads nothing. The kernel's own queue shows every read."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(listener.getsockname())
    sender, _ = listener.accept()
    with listener, client, sender:
        sender.setblocking(False)
        try:
            while True:  # fill the kernel's buffers: the client reads nothing yet
                sender.send(b"\0" * 65536)
        except BlockingIOError:
            pass
        transport = _HeldTransport(sender, buffered=100_000)
        unread = Unread()
        assert unread.stalled(0.0, transport) == 0.0
        assert unread.stalled(5.0, transport) == 5.0  # nothing read
        deadline = time.monotonic() + 10
        while True:  # a few KB read: the kernel's queue shrinks once the client's acks arrive
            client.recv(4096)
            if unread.stalled(6.0, transport) == 0.0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert unread.stalled(6.0, transport) == 0.0
        time.sleep(0.5)
        unread.stalled(7.0, transport)  # the last read's acks have arrived by now
        assert unread.stalled(10.0, transport) >= 3.0  # nothing read since


def test_idle_keep_alive_connections_are_closed(server: RunningService) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert _read_all(sock) == b""  # closed by the server, nothing more said
        assert time.monotonic() - started < 1.0 + SWEEP_SLACK_S


def _open_connections(server: RunningService) -> int:
    """The server's established TCP connections on its port (ss), its listener aside."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "all", f"( sport = :{server.port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(1 for line in out.splitlines() if not line.startswith("LISTEN"))


def test_a_request_answered_before_its_body_keeps_its_deadlines(server: RunningService) -> None:
    """A route may answer before reading the body (a 404, a GET with one). The body sent
    after it reset the connection to a new head: no deadline applied any more, a client's
    close was never answered (CLOSE-WAIT for good), and a few such clients held every
    connection slot. A large late body was taken for a head over the cap (a spurious 431).
    Now the rest of the body is read and dropped, and the connection serves on."""
    rejected = _rejected(server, "headers_too_large")
    for target, length in ((b"GET /healthz", 100), (b"POST /predict/", 100_000)):
        with _connect(server) as sock:
            sock.sendall(target + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length)
            first = sock.recv(65536)
            assert first.startswith((b"HTTP/1.1 200", b"HTTP/1.1 404")), first
            sock.sendall(b"a" * length)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            second = b""
            while second.count(b"HTTP/1.1 ") < 1 or not second.endswith(b"}"):
                second += sock.recv(65536)
            assert second.startswith(b"HTTP/1.1 200"), second
    assert _rejected(server, "headers_too_large") == rejected
    before = _open_connections(server)
    for late in (True, False) * 3:  # answered, then the body comes (or not), the client leaves
        with _connect(server) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            if late:
                sock.sendall(b"a" * 100)
    deadline = time.monotonic() + 5
    while _open_connections(server) > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _open_connections(server) <= before
    _predict_works(server)


def test_an_answer_instead_of_100_continue_closes_the_connection(server: RunningService) -> None:
    """A client waiting for "100 Continue" that gets a final answer (a 404) may never send its
    body: had the connection waited for it, the client's next request would be read as that
    body. It closes after the answer instead."""
    with _connect(server) as sock:
        sock.sendall(
            b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n"
        )
        answer = sock.recv(65536)
        try:  # the client's next request on the connection: no answer, the connection closes
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer += _read_all(sock)
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 404") and answer.count(b"HTTP/1.1 ") == 1, answer


def test_the_same_content_type_sent_twice_is_served(server: RunningService) -> None:
    """Java's HttpURLConnection.addRequestProperty called twice sends the header twice:
    the same type twice is no ambiguity, and is served."""
    with _connect(server) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Type: image/png\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(SEVEN), SEVEN)
        )
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_an_http_1_0_client_gets_no_100_continue(server: RunningService) -> None:
    """RFC 9110 section 10.1.1: a server must ignore 100-continue from an HTTP/1.0 client,
    which may not expect an interim answer; it got "HTTP/1.1 100 Continue" first."""
    with _connect(server) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.0\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(SEVEN)
        )
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):  # nothing is said before the body
            sock.recv(65536)
        sock.settimeout(10)
        sock.sendall(SEVEN)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]


@pytest.fixture(scope="module")
def capped(tiny_onnx: Path) -> Iterator[RunningService]:
    """A server whose deadlines outlast a test: what holds a connection is the test's doing."""
    env = {
        **tiny_model_env(tiny_onnx),
        **LIMITS,
        "DIGITS_HEADER_TIMEOUT_SECONDS": "60",
        "DIGITS_BODY_TIMEOUT_SECONDS": "60",
        "DIGITS_BODY_MIN_BYTES_PER_SECOND": "1",
        "DIGITS_KEEP_ALIVE_SECONDS": "60",
    }
    with running_service(env) as running:
        yield running


def _held(server: RunningService, sent: bytes) -> list[socket.socket]:
    """As many connections as the cap, each having sent ``sent``; given a moment to be read
    and to be old enough to make room (ROOM_AGE_S)."""
    held = [_connect(server) for _ in range(int(LIMITS["DIGITS_MAX_CONNECTIONS"]))]
    for sock in held:
        sock.sendall(sent)
    time.sleep(ROOM_AGE_S + 1.0)  # a busy machine may read them, or answer, late
    return held


def test_connections_beyond_the_cap_get_a_clean_503_when_all_have_requests(
    capped: RunningService,
) -> None:
    before = _rejected(capped, "connection_limit")
    held = _held(capped, _request_head(1000) + b"x" * 10)  # each in the middle of its body
    try:
        with _connect(capped) as extra:
            status, body = _status_and_body(_read_all(extra))
        assert status == 503 and body["error"]["code"] == "overloaded"
        assert "too many open connections" in body["error"]["message"]
        held[0].sendall(b"x" * 990)  # the held requests were left alone: this one is answered
        assert held[0].recv(65536).startswith(b"HTTP/1.1 400")
    finally:
        for sock in held:
            sock.close()
    _predict_works(capped)
    assert _rejected(capped, "connection_limit") >= before + 1


def test_a_flood_of_refusals_is_logged_in_a_few_lines(capped: RunningService) -> None:
    """Each refused connection wrote a WARNING line: a flood of 3,000 a second wrote 30 MB of
    log in two minutes. At most REFUSAL_LINES_PER_S a second of each reason now, the rest
    summed in one line a second; the metric still counts every one."""
    held = _held(capped, _request_head(1000) + b"x" * 10)  # each in the middle of its body
    logged, refused = len(capped.log()), 100
    before = _rejected(capped, "connection_limit")
    started = time.monotonic()
    try:
        for _ in range(refused):
            with _connect(capped) as extra:
                assert _read_all(extra).startswith(b"HTTP/1.1 503")
    finally:
        elapsed = time.monotonic() - started
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5  # each second's held refusals are summed once it is over
    while True:
        lines = [json.loads(line) for line in capped.log()[logged:].splitlines() if line]
        one_by_one = [line for line in lines if "too many open connections" in line["message"]]
        summed = sum(line["count"] for line in lines if line.get("reason") == "connection_limit")
        if len(one_by_one) + summed >= refused or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(one_by_one) <= REFUSAL_LINES_PER_S * (elapsed + 2)
    assert summed > 0 and len(one_by_one) + summed >= refused
    assert _rejected(capped, "connection_limit") >= before + refused


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"GET /readyz HTTP/1.1\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nX: ",
    ],
    ids=["never a byte", "a head that never ends", "idle after a request", "then half a head"],
)
def test_connections_without_a_request_make_room_at_the_cap(
    capped: RunningService, sent: bytes
) -> None:
    """A client holding as many sockets as the cap without requests (a slowloris) kept every
    other client out, the orchestrator's health probes included, until the head deadline:
    a 1,030-socket flood made /healthz 503 for 12 s. At the cap the connections longest
    waiting for a request are closed (one that began a head is told why) and the new one is
    served."""
    before = _rejected(capped, "connection_limit")
    held = _held(capped, sent)
    try:
        assert httpx.get(f"{capped.url}/healthz", timeout=5).status_code == 200
        oldest = held[0]
        answer = _read_all(oldest)
        if answer.startswith(b"HTTP/1.1 200") and sent.count(b"GET") == 2:  # its first request
            answer = answer[answer.index(b"}") + 1 :]
        if sent.endswith(b"\r\n\r\n"):  # its own answer first, then a plain close
            assert answer.count(b"HTTP/1.1 ") == 1 and answer.startswith(b"HTTP/1.1 200")
        elif sent:
            status, body = _status_and_body(answer)
            assert status == 503 and "closed to make room" in body["error"]["message"]
        else:
            assert answer == b""
    finally:
        for sock in held:
            sock.close()
    _predict_works(capped)
    assert _rejected(capped, "connection_limit") > before  # each closed one is counted


def test_a_burst_of_new_connections_at_the_cap_is_served(capped: RunningService) -> None:
    """Connections accepted together each saw the ones closed for room still counted (they
    leave on the next pass of the loop), so each closed 32 more: the idle ones, then the
    other new ones, unanswered; and a new connection whose request was on its way was
    closed with the idle ones. The burst is now served and only the idle ones close."""
    held = _held(capped, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    held.pop().close()  # 11 idle, and the server hears of the twelfth's going
    burst = []
    try:
        for _ in range(6):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", capped.port))
            burst.append(sock)
        time.sleep(0.5)
        answers = []
        for sock in burst:
            sock.settimeout(10)
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answers.append(_read_all(sock)[:12])
            except OSError as exc:  # closed before it sent its request
                answers.append(repr(exc).encode())
    finally:
        for sock in held + burst:
            sock.close()
    assert answers == [b"HTTP/1.1 200"] * len(burst)


def test_an_answer_still_leaving_is_not_cut_for_room(capped: RunningService) -> None:
    """A connection whose answer sat in its buffers (a client reading slowly) with the next
    head begun looked idle: closed for room, it lost the rest of the answer."""
    big = socket.socket()
    big.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    big.settimeout(10)
    big.connect(("127.0.0.1", capped.port))
    big.sendall(UNREAD.split(b"\r\n\r\n")[0] + b"\r\n\r\nGET /healthz HTTP/1.1\r\nHo")
    time.sleep(ROOM_AGE_S + 0.5)
    held = [_connect(capped) for _ in range(int(LIMITS["DIGITS_MAX_CONNECTIONS"]))]
    try:
        time.sleep(0.5)
        big.sendall(b"st: x\r\nConnection: close\r\n\r\n")
        answer = _read_all(big)
    finally:
        for sock in [big, *held]:
            sock.close()
    head, _, rest = answer.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    assert len(rest) > length and rest[length:].startswith(b"HTTP/1.1 200"), len(rest)


@pytest.mark.parametrize("route", ["direct lane", "ASGI"])
def test_a_client_half_closing_after_its_request_gets_the_answer(
    server: RunningService, route: str
) -> None:
    """A client may shut its sending side once its request is out (`nc -N`, some proxies):
    the answer still comes, then the server closes the connection."""
    if route == "direct lane":
        request = _request_head(len(SEVEN)) + SEVEN
    else:  # a chunked body takes the ASGI path
        request = (
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(SEVEN), SEVEN)
        )
    with _connect(server) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        status, body = _status_and_body(_read_all(sock))  # ends when the server closes
    assert status == 200 and "digit" in body


@pytest.mark.parametrize(
    "bad",
    [
        b"POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"3\r\nXYZ\r\n0\r\n\r\n",
        b"POST /nope HTTP/1.1\r\nHost: x\r\nX: "
        + b"a" * 40_000
        + b"\r\nContent-Length: 3\r\n\r\nXYZ",
    ],
    ids=["a coding", "a head over the cap"],
)
def test_a_request_refused_behind_another_leaves_it_alone(
    server: RunningService, bad: bytes
) -> None:
    """A request refused in the same write as the one before it went on being parsed: its
    body was appended to the earlier request's (answered 400), its end answered that request
    again, and requests after it were served. Now: the earlier answer, the refusal, close."""
    with _connect(server) as sock:
        sock.sendall(
            _request_head(len(SEVEN)) + SEVEN + bad + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        answers = _answers(_read_all(sock))
    assert [status for status, _ in answers][:1] == [200] and len(answers) == 2, answers
    assert answers[1][0] in (400, 431)
    _predict_works(server)


@pytest.mark.parametrize(
    ("bad", "status"),
    [
        (b"zz\r\nabc\r\n0\r\n\r\n", 400),  # a chunk size that is no number
        (b"1\r\na\r\n0\r\n" + b"X-T: t\r\n" * 4500 + b"\r\n", 431),  # trailers over the cap
    ],
    ids=["bad chunk size", "trailers over the cap"],
)
def test_a_body_refused_behind_a_request_waits_for_its_answer(
    server: RunningService, bad: bytes, status: int
) -> None:
    """A refusal found in the body of a request queued behind one being answered went out
    at once: the earlier answer was lost, though logged 200."""
    with _connect(server) as sock:
        sock.sendall(
            _request_head(len(SEVEN))
            + SEVEN
            + b"POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + bad
        )
        answers = _answers(_read_all(sock))
    assert [answer_status for answer_status, _ in answers] == [200, status]


def test_a_refusal_after_an_early_answer_adds_no_second_answer(server: RunningService) -> None:
    """A request answered before its body (a 404) whose trailers then passed the cap got a
    431 after its 404: a client reusing the connection would take it for its next answer."""
    with _connect(server) as sock:
        sock.sendall(b"POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        first = sock.recv(65536)
        sock.sendall(b"1\r\na\r\n0\r\n" + b"X-T: t\r\n" * 4500 + b"\r\n")
        answer = first + _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 404") and answer.count(b"HTTP/1.1 ") == 1, answer


def test_a_closing_answer_on_the_direct_lane_lingers(server: RunningService) -> None:
    """Connection: close on the direct lane closed at once: what the client still sent was
    answered by a reset (as the ASGI path's lingering close does not)."""
    request = _request_head(len(SEVEN)).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    with _connect(server) as sock:
        sock.sendall(request + SEVEN)
        answer = sock.recv(65536)
        time.sleep(0.2)  # the server has closed its side by now
        for _ in range(20):  # more pipelined requests, in small writes
            sock.sendall(_request_head(len(SEVEN)) + SEVEN)
        answer += _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1 ") == 1


def test_a_closing_early_answer_reads_the_rest_of_a_large_body(server: RunningService) -> None:
    """An answer that closes the connection (Connection: close, a 413) while a large body was
    still coming stopped reading it (uvicorn pauses a buffer over 64 KiB): the unread bytes
    reset the connection, and the client never saw its answer."""
    body = b"z" * (8 << 20)
    with _connect(server) as sock:
        sock.sendall(
            b"POST /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        sock.sendall(body)  # as http.client does: the whole body, then the answer
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 404"), answer[:100]


def test_a_refusal_behind_a_request_carries_no_request_id(server: RunningService) -> None:
    """The refusal of bad bytes behind pipelined requests is logged once the last is answered,
    from its task (the ASGI path's, where the request id is set): the warning carried it."""
    head = _request_head(len(SEVEN)).replace(b"\r\n\r\n", b"\r\nX-Request-ID: d5-asked\r\n\r\n")
    with _connect(server) as sock:
        sock.sendall((head + SEVEN) * 2 + b"GARBAGE\r\n\r\n")
        assert [status for status, _ in _answers(_read_all(sock))] == [200, 200, 400]
    refusals = [line for line in server.log().splitlines() if "refused" in line]
    assert refusals and not [line for line in refusals if "d5-asked" in line]


@pytest.mark.parametrize(
    ("whole", "after", "statuses"),
    [(2, "partial", [200, 200]), (5, "partial", [200] * 5), (1, "garbage", [200, 400])],
)
def test_a_client_half_closing_behind_more_requests_gets_every_answer(
    server: RunningService, whole: int, after: str, statuses: list[int]
) -> None:
    """Whole requests, then part of one (or bad bytes), then the client shuts its sending
    side: every whole request was logged 200 but at most one answer came. Each is answered
    (then the refusal, if any), then the connection closes."""
    request = _request_head(len(SEVEN)) + SEVEN
    rest = request[:50] if after == "partial" else b"xx\r\n\r\n"
    with _connect(server) as sock:
        sock.sendall(request * whole + rest)
        sock.shutdown(socket.SHUT_WR)
        answers = _answers(_read_all(sock))
    assert [status for status, _ in answers] == statuses


def test_a_client_half_closing_while_idle_is_closed_at_once(tiny_onnx: Path) -> None:
    """Closed at once, not when the keep-alive runs out: that is 60 s here, so a server that
    waited for it would leave the read to time out (10 s) instead of a clock bound on a
    shared machine."""
    env = {**tiny_model_env(tiny_onnx), "DIGITS_KEEP_ALIVE_SECONDS": "60"}
    with running_service(env) as idle, _connect(idle) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        sock.shutdown(socket.SHUT_WR)
        assert _read_all(sock) == b""
    assert first.startswith(b"HTTP/1.1 200")


def test_refusals_are_counted(server: RunningService) -> None:
    counts = {reason: _rejected(server, reason) for reason in ("headers_too_large", "slow_request")}
    assert counts["headers_too_large"] >= 2
    assert counts["slow_request"] >= 3


def _mutated(rng: random.Random, requests: list[bytes]) -> bytes:
    """One to three good requests in one write, with a few random bytes changed, cut or
    added."""
    data = bytearray(b"".join(rng.choice(requests) for _ in range(rng.randint(1, 3))))
    for _ in range(rng.randint(1, 6)):
        at, roll = rng.randrange(len(data)), rng.random()
        if roll < 0.5:
            data[at] = rng.randrange(256)
        elif roll < 0.75:
            del data[at : at + rng.randint(1, 20)]
        else:
            data[at:at] = rng.randbytes(rng.randint(1, 20))
    return bytes(data)


def _first_status(server: RunningService, data: bytes) -> int | None:
    with _connect(server) as sock:
        sock.settimeout(1.0 + SWEEP_SLACK_S + 2)
        try:
            sock.sendall(data)
            answer = sock.recv(65536)
        except OSError:  # reset or timed out: no answer, never a 5xx
            return None
    return int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/1.1 ") else None


def test_mutated_prediction_requests_never_get_a_5xx(tiny_onnx: Path) -> None:
    """Fuzzing in small: 150 mutated requests (fixed seed), 10 at a time, on a server of its
    own whose connection cap leaves room for the refused connections' lingering. Each gets
    a 2xx or 4xx or a closed connection, the server logs no traceback, and still serves."""
    requests = [
        _request_head(len(SEVEN)) + SEVEN,
        b"POST /predict/batch?include_image=1 HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=b0\r\nContent-Length: %d\r\n\r\n%s"
        % (
            len(
                batch := b'--b0\r\nContent-Disposition: form-data; name="files"; '
                b'filename="a.png"\r\nContent-Type: image/png\r\n\r\n' + SEVEN + b"\r\n--b0--\r\n"
            ),
            batch,
        ),
    ]
    rng = random.Random(20261204)
    bodies = [_mutated(rng, requests) for _ in range(150)]
    env = {**tiny_model_env(tiny_onnx), **LIMITS, "DIGITS_MAX_CONNECTIONS": "500"}
    with running_service(env) as fuzzed, ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda data: _first_status(fuzzed, data), bodies))
        assert not [status for status in statuses if status is not None and status >= 500]
        assert sum(status is not None for status in statuses) > 100  # most were answered
        assert "Traceback" not in fuzzed.log()
        _predict_works(fuzzed)


def test_a_client_leaving_mid_body_on_a_fastapi_route_is_no_server_error(
    server: RunningService,
) -> None:
    """The V2 route reads its body through Starlette: a client that leaves half way is
    counted as 499 (as on /predict), not as a 500 with a traceback in the log."""
    name = httpx.get(f"{server.url}/model").json()["name"]
    head = (
        f"POST /v2/models/{name}/infer HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    for _ in range(3):
        with _connect(server) as sock:
            sock.sendall(head + b'{"inputs": [')
            time.sleep(0.2)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        scrape = httpx.get(f"{server.url}/metrics").text
        if 'route="/v2/models/{model_name}/infer",status="499"' in scrape:
            break
        time.sleep(0.1)
    assert 'route="/v2/models/{model_name}/infer",status="499"' in scrape
    # The prediction routes' 5xx series exist from the start, at 0 (service/metrics.py).
    errors = [
        line for line in scrape.splitlines() if 'status="500"' in line and "_created" not in line
    ]
    assert all(line.endswith(" 0.0") for line in errors), errors
    tracebacks = [line for line in server.log().splitlines() if "Traceback" in line]
    assert not tracebacks, tracebacks[0][:3000]
    _predict_works(server)


def test_a_refused_request_is_logged_with_the_bytes_of_its_answer(tiny_onnx: Path) -> None:
    """A 408 for a stalled body reached its client with a 124-byte body, but its access line
    said bytes_sent 0 (the route's count: it never answered)."""
    env = {**tiny_model_env(tiny_onnx), **LIMITS, "DIGITS_ACCESS_LOG": "true"}
    with running_service(env) as running, _connect(running) as sock:
        sock.sendall(_request_head(len(SEVEN)) + SEVEN[:10])  # and the rest never comes
        answer = _read_all(sock)
        status, body = _status_and_body(answer)
        assert status == 408
        deadline = time.monotonic() + 5
        while not (lines := _access_lines(running, 408)) and time.monotonic() < deadline:
            time.sleep(0.1)
    (line,) = lines
    assert line["bytes_sent"] == len(answer.partition(b"\r\n\r\n")[2]) > 0


def _access_lines(server: RunningService, status: int) -> list[dict]:
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    return [
        line
        for line in lines
        if line.get("logger") == "service.access" and line.get("status") == status
    ]


def test_bodies_past_the_processs_budget_are_refused_while_others_are_held(
    tiny_onnx: Path,
) -> None:
    """A hundred clients sending 10 MB each took a front end past 4 GB: each body is held
    three or four times over until it is answered, and only one request's size was capped
    (service/http/body_budget.py). Past DIGITS_MAX_BODY_BYTES_IN_FLIGHT a body is refused as
    it arrives; held alone, one of any allowed size is served."""
    budget = 1_000_000
    env = {**tiny_model_env(tiny_onnx), "DIGITS_MAX_BODY_BYTES_IN_FLIGHT": str(budget)}
    with running_service(env) as server, _connect(server) as holder:
        head = _request_head(900_000).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
        holder.sendall(head + b"x" * 800_000)  # on the direct lane
        time.sleep(0.5)  # read by the server before the next one comes
        moving = threading.Event()
        trickle = threading.Thread(target=_keep_moving, args=(holder, moving, 50_000))
        trickle.start()  # still arriving: it keeps its place (a stalled one would give it up)
        try:
            answer = _chunked_upload(server, 50_000)  # chunked: the ASGI path
        finally:
            moving.set()
            trickle.join()
        status, body = _status_and_body(answer)
        assert status == 503 and body["error"]["code"] == "overloaded", body
        assert f"past its limit of {budget}" in body["error"]["message"]
        assert b"\r\nretry-after: " in answer.lower()
        assert _rejected(server, "bodies_in_flight") == 1
        holder.sendall(b"x" * (100_000 - _TRICKLED[0]))  # whole: answered, not refused
        assert _status_and_body(_read_all(holder))[0] == 400
        alone = httpx.post(
            f"{server.url}/predict",
            content=SEVEN + b"\0" * 1_500_000,  # over the budget, but the only body held
            headers={"Content-Type": "image/png"},
            timeout=10,
        )
        assert alone.status_code != 503, alone.text
        _predict_works(server)


_TRICKLED = [0]  # bytes _keep_moving sent


def _keep_moving(sock: socket.socket, stop: threading.Event, most: int) -> None:
    """A body still arriving: 1 KB every 0.1 s until ``stop`` (at most ``most`` bytes)."""
    _TRICKLED[0] = 0
    while not stop.wait(0.1) and _TRICKLED[0] + 1000 <= most:
        sock.sendall(b"x" * 1000)
        _TRICKLED[0] += 1000


def _chunked_upload(server: RunningService, chunk: int) -> bytes:
    """A chunked upload to /predict, chunks of ``chunk`` bytes until the server answers."""
    with _connect(server) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        _send_until_answered(sock, b"%x\r\n%s\r\n" % (chunk, b"y" * chunk))
        return _read_all(sock)


def _upload_until_let_in(server: RunningService) -> int:
    """A chunked upload, again while it is refused for room (the server may read the other
    body late on a busy machine, and so see it stalled late): its final status."""
    deadline = time.monotonic() + 10 * STALLED_S
    while True:
        status, _ = _status_and_body(_chunked_upload(server, 50_000))
        if status != 503 or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


@pytest.mark.parametrize("dripping", [False, True])
def test_a_stalled_body_gives_its_place_in_the_budget_to_one_arriving(
    tiny_onnx: Path, dripping: bool
) -> None:
    """Bodies sent fast to 10 MB, then a byte every few seconds, kept their average rate up
    for minutes and held the budget: every other upload was refused. A body that has had
    less than DIGITS_BODY_MIN_BYTES_PER_SECOND's worth for a second is cut (408) when another
    needs its room: stopped, or dripping a byte at a time (a review's first fix let any
    byte count as moving)."""
    env = {**tiny_model_env(tiny_onnx), "DIGITS_MAX_BODY_BYTES_IN_FLIGHT": "1000000"}
    with running_service(env) as server, _connect(server) as holder:
        holder.sendall(_request_head(900_000) + b"x" * 800_000)
        drip = threading.Event()
        dripper = threading.Thread(target=_drip, args=(holder, drip)) if dripping else None
        if dripper is not None:
            dripper.start()
        time.sleep(STALLED_S + 0.5)
        before = _rejected(server, "slow_request")
        try:
            status = _upload_until_let_in(server)
        finally:
            drip.set()
            if dripper is not None:
                dripper.join()
        assert status == 413  # served: over the 10 MiB body limit, not refused for room
        stalled, body = _status_and_body(_read_all(holder))
        assert stalled == 408 and body["error"]["code"] == "request_timeout", body
        assert "bytes a second for over 1 s" in body["error"]["message"]
        assert _rejected(server, "slow_request") == before + 1
        _predict_works(server)


def _drip(sock: socket.socket, stop: threading.Event) -> None:
    """A byte every 0.2 s until ``stop`` or the server closes."""
    with contextlib.suppress(OSError):
        while not stop.wait(0.2):
            sock.sendall(b"x")


def test_a_body_queued_behind_answers_is_never_cut_for_room(tiny_onnx: Path) -> None:
    """A body behind pipelined requests stops because the server stops reading, not the
    client: cut for room, the request was dropped with no answer at all (a review)."""
    env = {**tiny_model_env(tiny_onnx), "DIGITS_MAX_BODY_BYTES_IN_FLIGHT": "1000000"}
    asset = b"GET /docs/assets/swagger-ui-bundle.js HTTP/1.1\r\nHost: x\r\n\r\n"
    head = _request_head(900_000).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    with running_service(env) as server, _connect(server) as pipelined:
        pipelined.sendall(asset * 6 + head + b"x" * 100_000)  # its answers left unread
        time.sleep(STALLED_S + 0.5)
        status, _ = _status_and_body(_chunked_upload(server, 50_000))
        assert status == 503  # no room: the queued body keeps its place
        pipelined.sendall(b"x" * 800_000)
        statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", _read_all(pipelined))]
        assert statuses == [200] * 6 + [400], statuses  # the POST answered, as itself
        _predict_works(server)


@pytest.mark.parametrize("path", ["/healthz", "/no-such-path", "/v2/models/lenet5/infer"])
def test_a_body_declared_over_the_limit_closes_the_connection_whatever_answers(
    server: RunningService, path: str
) -> None:
    """Refused when its route reads it, such a body went unrefused on a route that never does
    (a 405, a 404): the answer kept the connection open, and the server read and dropped the
    declared 50 MB (a review)."""
    with _connect(server) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 50000000\r\n\r\n".encode()
            + b"0" * 1000
        )
        started = time.monotonic()
        answer = _read_all(sock)  # until the server closes
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert b"\r\nconnection: close" in head, answer[:300]
    assert time.monotonic() - started < 5
    _predict_works(server)
