"""Which requests the direct lane answers (service/http/lane.py): only those nothing of the
ASGI path is needed for. What it answers: tests/integration/test_direct_lane.py."""

from __future__ import annotations

from typing import Any

import httptools
import pytest

from service.app import create_app
from service.http.lane import DirectLane, Exchange

MAX_BODY = 1000


class _Head:
    """The parser callbacks uvicorn's protocol keeps: the URL and the lower-cased headers."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))


@pytest.fixture
def lane(service_settings: Any) -> DirectLane:
    app = create_app(service_settings.model_copy(update={"max_body_bytes": MAX_BODY}))
    return DirectLane(app.fast_routes)


def _exchange(lane: DirectLane, request_line: str, *headers: str) -> Exchange | None:
    head = _Head()
    parser = httptools.HttpRequestParser(head)
    parser.feed_data(("\r\n".join([request_line, "Host: x", *headers]) + "\r\n\r\n").encode())
    return lane.exchange(parser, head.url, head.headers, ("127.0.0.1", 5000))


def test_a_plain_prediction_request_takes_the_lane(lane: DirectLane) -> None:
    exchange = _exchange(lane, "POST /predict?include_image=1 HTTP/1.1", "Content-Length: 10")
    assert exchange is not None and exchange.keep_alive
    assert exchange.scope["path"] == "/predict"
    assert exchange.scope["query_string"] == b"include_image=1"
    assert exchange.scope["client"] == ("127.0.0.1", 5000)
    batch = _exchange(lane, "POST /predict/batch HTTP/1.1", f"Content-Length: {MAX_BODY}")
    assert batch is not None


def test_connection_close_and_http_1_0_are_kept(lane: DirectLane) -> None:
    closing = _exchange(lane, "POST /predict HTTP/1.1", "Content-Length: 1", "Connection: close")
    old = _exchange(lane, "POST /predict HTTP/1.0", "Content-Length: 1")
    assert closing is not None and not closing.keep_alive
    assert old is not None and not old.keep_alive


@pytest.mark.parametrize(
    ("request_line", "headers"),
    [
        ("GET /predict HTTP/1.1", ()),
        ("POST /healthz HTTP/1.1", ("Content-Length: 1",)),
        ("POST /predic%74 HTTP/1.1", ("Content-Length: 1",)),
        ("POST /predict HTTP/1.1", ()),
        ("POST /predict HTTP/1.1", ("Transfer-Encoding: chunked",)),
        ("POST /predict HTTP/1.1", (f"Content-Length: {MAX_BODY + 1}",)),
        ("POST /predict HTTP/1.1", ("Content-Length: 1", "Expect: 100-continue")),
        ("POST /predict HTTP/1.1", ("Content-Length: 1", "X-Forwarded-For: 10.0.0.1")),
        ("POST /predict HTTP/1.1", ("Content-Length: 1", "Forwarded: for=10.0.0.1")),
    ],
    ids=[
        "another method",
        "another route",
        "an escaped path",
        "no length",
        "a chunked body",
        "a body over the limit",
        "100-continue",
        "a proxy's address",
        "a proxy's address, RFC 7239",
    ],
)
def test_what_needs_the_asgi_path_does_not_take_the_lane(
    lane: DirectLane, request_line: str, headers: tuple[str, ...]
) -> None:
    assert _exchange(lane, request_line, *headers) is None
