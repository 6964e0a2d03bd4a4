"""Client behaviour the real service cannot be made to show on demand (503 then success), or
that never reaches it (a file too large to read)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from client.api import DigitsClient, ServiceUnavailable

PREDICTION = {
    "digit": 3,
    "confidence": 0.9,
    "probabilities": [0.0, 0.0, 0.05, 0.9, 0.0, 0.0, 0.0, 0.0, 0.05, 0.0],
    "model": {"name": "m", "version": "1"},
}


def test_overloaded_answers_are_retried_after_retry_after(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"png bytes")
    answers = [
        httpx.Response(
            503,
            headers={"Retry-After": "2"},
            json={"error": {"code": "overloaded", "message": "queue full"}},
        ),
        httpx.Response(200, json={"predictions": [{**PREDICTION, "filename": "a.png"}]}),
    ]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    slept: list[float] = []
    with DigitsClient(
        "http://digits.test/", transport=httpx.MockTransport(handler), sleep=slept.append
    ) as client:
        (result,) = client.predict([image])
    assert slept == [2.0]
    assert [request.url.path for request in seen] == ["/predict/batch"] * 2
    assert result.ok and result.digit == 3


def test_still_overloaded_after_the_retries_stops_the_run(tmp_path: Path) -> None:
    """Each file failed 'overloaded' as if it were unreadable, and every further chunk
    waited out the same retries."""
    image = tmp_path / "a.png"
    image.write_bytes(b"png bytes")
    busy = {"error": {"code": "overloaded", "message": "queue full"}}
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(503, json=busy)

    transport = httpx.MockTransport(handler)
    with DigitsClient(
        "http://digits.test", transport=transport, retries=2, sleep=lambda _: None
    ) as client:
        with pytest.raises(ServiceUnavailable) as stopped:
            client.predict([image])
    assert str(stopped.value) == (
        "the service stayed busy (HTTP 503 overloaded: queue full) through 3 tries; try again later"
    )
    assert len(sent) == 3


def test_a_file_over_the_read_limit_fails_alone_and_is_not_sent(tmp_path: Path) -> None:
    """A path may be a device that never ends (/dev/zero): the client reads at most
    ``max_file_bytes`` of it, then fails that file; the others are sent."""
    small, large = tmp_path / "a.png", tmp_path / "b.png"
    small.write_bytes(b"png bytes")
    large.write_bytes(b"x" * 1001)
    sent: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.read())
        return httpx.Response(200, json={"predictions": [{**PREDICTION, "filename": "a.png"}]})

    transport = httpx.MockTransport(handler)
    with DigitsClient("http://digits.test", transport=transport, max_file_bytes=1000) as client:
        first, second = client.predict([small, large])
    assert first.ok and first.digit == 3
    assert second.error_code == "file_too_large" and "1000 bytes" in str(second.error_message)
    assert len(sent) == 1 and b"png bytes" in sent[0] and b"x" * 1001 not in sent[0]


def test_a_retry_is_said_and_a_proxys_error_page_is_named(tmp_path: Path) -> None:
    """A busy service meant silent waits of up to 10 s a try; a proxy's HTML 503 was taken
    for a wrong URL ("does not look like a digits service (check --url)")."""
    image = tmp_path / "a.png"
    image.write_bytes(b"png bytes")
    busy = {"error": {"code": "overloaded", "message": "queue full"}}
    answers = [
        httpx.Response(503, headers={"Retry-After": "2"}, json=busy),
        httpx.Response(503, text="<html>Service Unavailable</html>"),
    ]
    said: list[str] = []
    with DigitsClient(
        "http://digits.test",
        transport=httpx.MockTransport(lambda request: answers.pop(0)),
        retries=1,
        sleep=lambda _: None,
        on_retry=said.append,
    ) as client:
        with pytest.raises(ServiceUnavailable, match="HTTP 503 .*a proxy in front of it"):
            client.predict([image])
    assert said == ["the service is busy (HTTP 503); sending 1 file again in 2 s (1 of 1)"]
