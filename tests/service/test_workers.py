"""The preprocessing process pool: same answers as in-process, and it survives its workers."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Collection, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.errors import ServiceError
from service.preprocessing import preprocess_image
from service.settings import Settings
from service.workers import PreprocessPool
from tests.service.images import draw_digit, encode, png

FORMATS = frozenset({"PNG", "JPEG"})
MAX_PIXELS = 10_000_000
SLEEP = b"SLEEP"  # images starting with this make the test worker sleep...
SPIN = b"SPIN"  # ...or spin forever
SLEEP_S = 1.0
T = TypeVar("T")


def slow_or_real(data: bytes, *, allowed_formats: Collection[str], max_pixels: int) -> np.ndarray:
    """A stand-in for preprocess_image that can keep a worker busy (runs in the worker)."""
    if data.startswith(SLEEP):
        time.sleep(SLEEP_S)
    elif data.startswith(SPIN):
        while True:
            pass
    else:
        return preprocess_image(data, allowed_formats=allowed_formats, max_pixels=max_pixels)
    return np.zeros((28, 28), np.float32)


def thread_settings(
    data: bytes, *, allowed_formats: Collection[str], max_pixels: int
) -> np.ndarray:
    """A stand-in that reports the worker's BLAS and OpenCV thread counts in pixels 0 and 1."""
    import cv2

    image = np.zeros((28, 28), np.float32)
    image[0, 0] = float(os.environ.get("OPENBLAS_NUM_THREADS", "0"))
    image[0, 1] = float(cv2.getNumThreads())
    return image


def _pool(**options: Any) -> PreprocessPool:
    defaults: dict[str, Any] = {
        "workers": 2,
        "allowed_formats": FORMATS,
        "max_pixels": MAX_PIXELS,
        "timeout_seconds": 5.0,
        "preprocess": slow_or_real,
    }
    return PreprocessPool(**{**defaults, **options})


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


GOOD = [
    png(draw_digit()),
    encode(draw_digit((300, 120), offset=(40, 0)).convert("RGB"), "JPEG", quality=80),
    png(draw_digit(ink=255, paper=0)),
]
BAD = [b"not an image", png(draw_digit(ink=255, paper=255)), encode(draw_digit(), "BMP")]


def _in_process(data: bytes) -> np.ndarray | ServiceError:
    try:
        return preprocess_image(data, allowed_formats=FORMATS, max_pixels=MAX_PIXELS)
    except ServiceError as exc:
        return exc


def test_results_match_preprocess_image_in_process() -> None:
    async def scenario() -> list[Any]:
        pool = _pool(preprocess=preprocess_image)
        await pool.start()
        try:
            return await asyncio.gather(*pool.preprocess_many(GOOD + BAD), return_exceptions=True)
        finally:
            pool.close()

    for data, got in zip(GOOD + BAD, _run(scenario()), strict=True):
        expected = _in_process(data)
        if isinstance(expected, ServiceError):
            assert type(got) is type(expected)
            assert (got.status_code, got.code, got.message) == (
                expected.status_code,
                expected.code,
                expected.message,
            )
        else:
            assert isinstance(got, np.ndarray) and got.dtype == np.float32
            np.testing.assert_array_equal(got, expected)


def test_workers_run_single_threaded() -> None:
    """Per-core BLAS/OpenCV thread pools in every worker made two workers 5x slower on photos."""

    async def scenario() -> np.ndarray:
        pool = _pool(preprocess=thread_settings)
        await pool.start()
        try:
            return await pool.preprocess(b"any")
        finally:
            pool.close()

    image = _run(scenario())
    assert (image[0, 0], image[0, 1]) == (1.0, 1.0)


def test_a_killed_worker_fails_only_its_request_and_is_replaced() -> None:
    async def scenario() -> tuple[list[Any], list[int], list[int], np.ndarray]:
        pool = _pool()
        await pool.start()
        try:
            await asyncio.gather(*pool.preprocess_many(GOOD[:2]))  # both workers are up
            before = pool.pids
            futures = pool.preprocess_many([SLEEP + b"a", SLEEP + b"b"])  # one per worker
            await asyncio.sleep(SLEEP_S / 4)
            os.kill(before[0], signal.SIGKILL)
            results = await asyncio.gather(*futures, return_exceptions=True)
            after = pool.pids
            image = await pool.preprocess(GOOD[0])
            return results, before, after, image
        finally:
            pool.close()

    results, before, after, image = _run(scenario())
    failed = [item for item in results if isinstance(item, ServiceError)]
    assert len(failed) == 1, results
    assert (failed[0].status_code, failed[0].code) == (400, "invalid_image")
    assert "crashed" in failed[0].message
    assert sum(isinstance(item, np.ndarray) for item in results) == 1
    assert before[0] not in after and before[1] in after and len(after) == len(before)
    np.testing.assert_array_equal(image, _in_process(GOOD[0]))


def test_a_spinning_worker_hits_the_timeout_and_the_pool_keeps_serving() -> None:
    timeout = 0.5

    async def scenario() -> tuple[BaseException | None, float, np.ndarray, list[int]]:
        pool = _pool(workers=1, timeout_seconds=timeout)
        await pool.start()
        try:
            await pool.preprocess(GOOD[0])  # started: the timeout is about images only
            stuck = pool.pids[0]
            started = time.monotonic()
            spin, queued = pool.preprocess(SPIN), pool.preprocess(GOOD[1])
            error = (await asyncio.gather(spin, return_exceptions=True))[0]
            waited = time.monotonic() - started
            return error, waited, await queued, [stuck, *pool.pids]
        finally:
            pool.close()

    error, waited, queued_image, (stuck, *now) = _run(scenario())
    assert isinstance(error, ServiceError) and error.code == "invalid_image"
    assert "longer than 0.5 s" in error.message
    assert timeout <= waited < timeout * 4
    np.testing.assert_array_equal(queued_image, _in_process(GOOD[1]))  # resent, not failed
    assert stuck not in now
    deadline = time.monotonic() + 2
    while not _gone(stuck) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _gone(stuck)


def test_close_leaves_no_child_processes() -> None:
    async def scenario() -> list[int]:
        pool = _pool()
        await pool.start()
        await pool.preprocess(GOOD[0])
        pids = pool.pids
        pool.close()
        return pids

    pids = _run(scenario())
    assert len(pids) == 2
    assert all(_gone(pid) for pid in pids)


@pytest.fixture
def app_client(tiny_onnx: Path) -> Any:
    settings = Settings(
        model_path=tiny_onnx,
        batch_max_delay_us=0,
        preprocess_workers=2,
        allowed_image_formats=frozenset(FORMATS),
        max_image_pixels=MAX_PIXELS,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_app_answers_and_errors_as_in_process(app_client: TestClient) -> None:
    answer = app_client.post(
        "/predict?include_image=true", files={"file": ("d.png", GOOD[0], "image/png")}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["normalized_image"]
    for data in BAD:
        expected = _in_process(data)
        assert isinstance(expected, ServiceError)
        response = app_client.post("/predict", files={"file": ("x", data, "image/png")})
        assert response.status_code == expected.status_code
        assert response.json() == {"error": expected.to_dict()}
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(GOOD + BAD)]
    entries = app_client.post("/predict/batch", files=files).json()["predictions"]
    assert [("error" in entry) for entry in entries] == [False] * len(GOOD) + [True] * len(BAD)
    metrics = app_client.get("/metrics").text
    assert "digits_preprocess_duration_seconds_count" in metrics


def test_app_survives_a_killed_worker_and_stops_its_children(tiny_onnx: Path) -> None:
    settings = Settings(model_path=tiny_onnx, batch_max_delay_us=0, preprocess_workers=1)
    with TestClient(create_app(settings)) as client:
        assert client.post("/predict", files={"file": ("d.png", GOOD[0])}).status_code == 200
        pool = client.app.state.predictor.pool  # type: ignore[attr-defined]
        (first,) = pool.pids
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while first in pool.pids and time.monotonic() < deadline:
            time.sleep(0.01)  # the event loop (in the client's thread) sees the socket close
        response = client.post("/predict", files={"file": ("d.png", GOOD[0])})
        assert response.status_code == 200, response.text
        pids = pool.pids
        assert first not in pids
    assert all(_gone(pid) for pid in [first, *pids])
