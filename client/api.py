"""HTTP side of the client: POST /predict/batch for a chunk of files, one result per file.

A file fails alone (the service's per-entry error); a whole request that fails gives its error
to every file it carried, except where retrying or splitting can still save them: 503 answers
are retried after Retry-After (said through ``on_retry``), a chunk over the body limit (413)
or over the service's files per request (DIGITS_MAX_BATCH_FILES, a 400) is split in halves,
and an image refused only because the images before it in its request used up the pixels a
request may decode (DIGITS_MAX_BATCH_PIXELS) is sent again alone.
Anything that shows the service cannot be reached, stays busy through the retries or is not a
digits service at all raises ServiceUnavailable, because every further chunk would fail the
same way.
"""

from __future__ import annotations

import base64
import binascii
import errno
import math
import mimetypes
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BATCH_ROUTE = "/predict/batch"
MAX_RETRY_AFTER_SECONDS = 10.0
DEFAULT_RETRIES = 3
TOO_MANY_FILES = "too many files"  # how the service's 400 for a batch over its limit begins
# In the service's image_too_large for an image that fits alone but not after the others.
BATCH_PIXELS = "the images of this request before this one"
# Far above what the service takes in one request (DIGITS_MAX_BODY_BYTES, 10 MiB by default):
# a bound on the client's memory, as a path may be a device that never ends (/dev/zero).
MAX_FILE_BYTES = 64 * 1024 * 1024
DIGITS = 10  # an answer's digit is 0..9, with one probability each


class ServiceUnavailable(Exception):
    """The service cannot be used at all (unreachable, timed out, not a digits service)."""


class InvalidURL(ValueError):
    """The --url value is not an http(s) URL with a host."""


@dataclass(frozen=True)
class FileResult:
    """What the service said about one file: a digit, or an error code and message."""

    path: Path
    digit: int | None = None
    confidence: float | None = None
    probabilities: tuple[float, ...] | None = None
    error_code: str | None = None
    error_message: str | None = None
    # With explain: the heat map over what the model saw (PNG), answered or refused.
    overlay: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None

    @classmethod
    def failed(
        cls, path: Path, code: str, message: str, overlay: bytes | None = None
    ) -> FileResult:
        return cls(path, error_code=code, error_message=message, overlay=overlay)


def normalise_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash; raises InvalidURL."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise InvalidURL(f"invalid --url {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidURL(
            f"invalid --url {url!r}: expected http://HOST[:PORT], e.g. http://127.0.0.1:8000"
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise InvalidURL(f"invalid --url {url!r}: port {parsed.port} is not 1..65535")
    return str(parsed.copy_with(query=None, fragment=None)).rstrip("/")


def _reason(exc: Exception) -> str:
    """'[Errno 111] Connection refused' -> 'connection refused': short, for one line."""
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(exc).strip()).rstrip(".")
    text = text or type(exc).__name__
    return text[0].lower() + text[1:]


def _read_at_most(path: Path, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``path``, never waiting for them: a device with nothing to
    read yet (a terminal) raises BlockingIOError, an OSError, instead of blocking the run."""
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
        data = file.read(limit)
    if data is None:  # a non-blocking read that found nothing to read
        raise BlockingIOError(errno.EAGAIN, "a device with nothing to read")
    return data


def _unlisted(folder: Path) -> str:
    """Why ``folder``'s files were not searched, for its row."""
    try:
        os.scandir(folder).close()
    except OSError as exc:
        return f"its files cannot be listed: {_reason(exc)}"
    return "its files could not be listed when it was searched"


def wire_name(path: Path) -> str:
    """The file name as the request carries it: a name that is not UTF-8 (bytes a POSIX file
    system allows) has its undecodable bytes replaced, where httpx would raise."""
    return path.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _file_field(path: Path, data: bytes) -> tuple[str, bytes, str]:
    """(name, bytes, content type) of one file in the multipart request."""
    name = wire_name(path)
    return name, data, mimetypes.guess_type(name)[0] or "application/octet-stream"


def _error_of(body: Any) -> tuple[str, str] | None:
    """(code, message) of the service's error body, None when the body is not one."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return str(error.get("code", "error")), str(error.get("message", ""))
    return None


def _json(response: httpx.Response) -> Any:
    """The answer's JSON, None when it is none this client can read (nested thousands deep:
    a RecursionError, from a server that is no digits service)."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


class DigitsClient:
    """A connection to one service; use as a context manager."""

    def __init__(
        self,
        url: str,
        timeout: float = 30.0,
        retries: int = DEFAULT_RETRIES,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        explain: bool = False,
        max_file_bytes: int = MAX_FILE_BYTES,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.url = normalise_url(url)
        self.max_file_bytes = max_file_bytes
        self.explain = explain
        self.timeout = timeout
        self.retries = retries
        self._sleep = sleep
        self._on_retry = on_retry
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def __enter__(self) -> DigitsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    def predict(self, paths: list[Path]) -> list[FileResult]:
        """One result per path, in order (the chunk is sent as one batch request)."""
        results: dict[int, FileResult] = {}
        payloads: list[tuple[int, Path, bytes]] = []
        for index, path in enumerate(paths):
            try:
                mode = path.stat().st_mode
                if stat.S_ISDIR(mode):  # a folder the scan could not list (client.files)
                    results[index] = FileResult.failed(path, "unreadable_folder", _unlisted(path))
                    continue
                if stat.S_ISFIFO(mode):  # reading it would wait for a writer
                    results[index] = FileResult.failed(path, "unreadable_file", "a named pipe")
                    continue
                data = _read_at_most(path, self.max_file_bytes + 1)
            except OSError as exc:
                results[index] = FileResult.failed(path, "unreadable_file", _reason(exc))
                continue
            if len(data) > self.max_file_bytes:
                message = f"more than {self.max_file_bytes} bytes: not sent"
                results[index] = FileResult.failed(path, "file_too_large", message)
                continue
            payloads.append((index, path, data))
        if payloads:
            sent = self._send(payloads)
            results.update(zip((index for index, _, _ in payloads), sent, strict=True))
        return [results[index] for index in range(len(paths))]

    def _post(self, payloads: list[tuple[int, Path, bytes]]) -> httpx.Response:
        files = [("files", _file_field(path, data)) for _, path, data in payloads]
        endpoint = self.url + BATCH_ROUTE
        params = {"explain": "true"} if self.explain else None
        try:
            with self._http.stream("POST", endpoint, files=files, params=params) as response:
                return self._read_within(response, endpoint)
        except httpx.TimeoutException as exc:
            raise ServiceUnavailable(
                f"no answer from {endpoint} within {self.timeout:g} s (raise --timeout?)"
            ) from exc
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"cannot connect to {self.url}: {_reason(exc)}; is the service running there? "
                "(set --url)"
            ) from exc

    def _read_within(self, response: httpx.Response, endpoint: str) -> httpx.Response:
        """``response`` read whole within ``timeout`` of its head: httpx's timeout bounds
        each read, so a server sending a byte a second held a run for ever."""
        if response.is_stream_consumed:  # a transport that answered whole (httpx's mock)
            return response
        deadline = time.monotonic() + self.timeout
        raw = bytearray()
        for chunk in response.iter_raw():
            raw += chunk
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"the answer from {endpoint} took more than {self.timeout:g} s to arrive "
                    "(raise --timeout?)"
                )
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=bytes(raw),  # as sent: read() undoes a Content-Encoding, as before
            request=response.request,
        )

    def _send(self, payloads: list[tuple[int, Path, bytes]]) -> list[FileResult]:
        response = self._post(payloads)
        for attempt in range(1, self.retries + 1):
            if response.status_code != 503:
                break
            wait = _retry_after(response)
            if self._on_retry is not None:
                self._on_retry(
                    f"the service is busy (HTTP 503); sending {_files(len(payloads))} again "
                    f"in {wait:g} s ({attempt} of {self.retries})"
                )
            self._sleep(wait)
            response = self._post(payloads)
        body = _json(response)
        paths = [path for _, path, _ in payloads]
        error = _error_of(body)
        if response.status_code == 503 and error is not None:
            # Every further chunk would wait out the same retries: stop the run, as for a
            # service that cannot be reached, rather than fail each file as unreadable.
            raise ServiceUnavailable(
                f"the service stayed busy (HTTP 503 {error[0]}: {error[1]}) through "
                f"{self.retries + 1} tries; try again later"
            )
        if response.status_code == 200 and isinstance(body, dict):
            return self._alone_if_crowded(payloads, _batch_results(paths, body, self.url))
        if error is None and response.status_code >= 500:  # a proxy's page, not the service's
            raise ServiceUnavailable(
                f"POST {self.url}{BATCH_ROUTE} answered HTTP {response.status_code} "
                f"{response.reason_phrase} without the service's JSON (a proxy in front of it?)"
            )
        if error is None or response.status_code in (404, 405):
            raise ServiceUnavailable(
                f"{self.url} does not look like a digits service: POST {BATCH_ROUTE} answered "
                f"HTTP {response.status_code} {response.reason_phrase} (check --url)"
            )
        code, message = error
        too_big = response.status_code == 413 and code == "payload_too_large"
        too_many = response.status_code == 400 and message.startswith(TOO_MANY_FILES)
        if (too_big or too_many) and len(payloads) > 1:
            middle = len(payloads) // 2
            return self._send(payloads[:middle]) + self._send(payloads[middle:])
        return [FileResult.failed(path, code, message) for path in paths]

    def _alone_if_crowded(
        self, payloads: list[tuple[int, Path, bytes]], results: list[FileResult]
    ) -> list[FileResult]:
        """``results`` with each image the pixels of the ones before it crowded out sent
        again alone (within the per-image limit, it fits a request by itself)."""
        if len(payloads) == 1:
            return results
        for position, result in enumerate(results):
            crowded = result.error_code == "image_too_large" and BATCH_PIXELS in (
                result.error_message or ""
            )
            if crowded:
                results[position] = self._send([payloads[position]])[0]
        return results


def _files(count: int) -> str:
    return f"{count} file{'' if count == 1 else 's'}"


def _retry_after(response: httpx.Response) -> float:
    try:
        seconds = float(response.headers.get("retry-after", "1"))
    except ValueError:
        seconds = 1.0
    if math.isnan(seconds):  # "nan" parses, and time.sleep refuses it
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _overlay(entry: dict[str, Any]) -> bytes | None:
    """The explanation's overlay PNG, when the entry has one."""
    explanation = entry.get("explanation")
    if not isinstance(explanation, dict) or not isinstance(explanation.get("overlay"), str):
        return None
    try:
        return base64.b64decode(explanation["overlay"], validate=True)
    except (binascii.Error, ValueError):
        return None


def _batch_results(paths: list[Path], body: dict[str, Any], url: str) -> list[FileResult]:
    entries = body.get("predictions")
    if not isinstance(entries, list) or len(entries) != len(paths):
        raise ServiceUnavailable(
            f"{url} answered POST {BATCH_ROUTE} with an unexpected body (not one prediction "
            f"per file); is it a digits service?"
        )
    results = []
    for path, entry in zip(paths, entries, strict=True):
        error = _error_of(entry)
        if error is not None:
            # A refusal after the model ran (not_a_digit) carries its map: why it was refused.
            results.append(FileResult.failed(path, *error, overlay=_overlay(entry)))
            continue
        try:
            result = FileResult(
                path,
                digit=_digit(entry["digit"]),
                confidence=_probability(entry["confidence"]),
                probabilities=tuple(map(_probability, entry["probabilities"])),
                overlay=_overlay(entry),
            )
            if len(result.probabilities or ()) != DIGITS:
                raise ValueError(f"{len(result.probabilities or ())} probabilities, not {DIGITS}")
        except (KeyError, TypeError, ValueError) as exc:
            raise ServiceUnavailable(
                f"{url} answered POST {BATCH_ROUTE} with a malformed entry for {path} ({exc!r})"
            ) from exc
        results.append(result)
    return results


def _digit(value: Any) -> int:
    """An answer's digit: a whole number 0..9 (3.7 or true is a broken answer, not a 3 or 1)."""
    if type(value) is not int or not 0 <= value < DIGITS:
        raise ValueError(f"digit {value!r} is not 0..9")
    return value


def _probability(value: Any) -> float:
    """A confidence or probability: a number in 0..1 (NaN and "0.5" are broken answers)."""
    if type(value) not in (int, float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{value!r} is not a number in 0..1")
    return float(value)
