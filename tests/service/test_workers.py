"""The worker pool: same answers as in-process, batching, admission, and it survives its workers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Collection, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service import logs
from service.app import create_app
from service.contract import ModelLoadError
from service.errors import NotReady, Overloaded, ServiceError
from service.http import state as http_state
from service.http.state import app_state
from service.imaging import encode_png, preprocess_image, preprocess_steps
from service.imaging.pipeline import Steps
from service.logs import JsonFormatter
from service.metrics import Metrics
from service.model import DigitClassifier
from service.predictor import pool_options
from service.settings import Settings
from service.workers import protocol as wire
from service.workers.pool import WorkerPool
from service.workers.protocol import ImageResults
from service.workers.results import Chunk
from tests.service.images import draw_digit, encode, png

FORMATS = frozenset({"PNG", "JPEG"})
MAX_PIXELS = 10_000_000
SLEEP = b"SLEEP"  # images starting with this make the test worker sleep...
SPIN = b"SPIN"  # ...or spin forever
CRAWL = b"CRAWL"  # ...or, for SLEEP_S, work a tenth of the time: a worker starved of CPU
SLEEP_S = 1.0
STARTED = b"@"  # SLEEP + STARTED + a path: the worker writes its pid there as it starts to sleep
START_TIMEOUT_S = 30.0
T = TypeVar("T")


def slow_or_real(data: bytes, *, allowed_formats: Collection[str], max_pixels: int) -> Steps:
    """A stand-in for preprocess_steps that can keep a worker busy (runs in the worker), in
    its second stage: after the other images of its batch have run their first."""
    yield
    if data.startswith(SLEEP):
        if data.startswith(SLEEP + STARTED):
            marker = Path(os.fsdecode(data[len(SLEEP + STARTED) :]))
            marker.with_suffix(".part").write_text(str(os.getpid()))
            marker.with_suffix(".part").replace(marker)  # never seen empty
        time.sleep(SLEEP_S)
    elif data.startswith(SPIN):
        while True:
            pass
    elif data.startswith(CRAWL):
        end = time.monotonic() + SLEEP_S
        while time.monotonic() < end:
            busy_until = time.thread_time() + 0.005
            while time.thread_time() < busy_until:
                pass
            time.sleep(0.045)
    else:
        steps = preprocess_steps(data, allowed_formats=allowed_formats, max_pixels=max_pixels)
        return (yield from steps)
    return np.zeros((28, 28), np.float32)


def sleeping(marker: Path) -> bytes:
    """An image that keeps its worker busy for SLEEP_S and says when it has begun."""
    return SLEEP + STARTED + os.fsencode(marker)


async def begun(*markers: Path) -> None:
    """Until the workers have begun those sleeps: a fixed pause assumed it on a busy machine."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not all(marker.exists() for marker in markers):
        assert time.monotonic() < deadline, "the worker never began its sleep"
        await asyncio.sleep(0.01)


async def kill_under(marker: Path) -> None:
    """SIGKILL the worker once it sleeps on ``marker``'s image, as an operator or the OOM
    killer would; the marker goes, so the image's next start is seen."""
    await begun(marker)
    pid = int(marker.read_text())
    marker.unlink()
    os.kill(pid, signal.SIGKILL)


def _levels(*values: int) -> np.ndarray:
    """An image whose first pixels carry ``values`` (0..255 each) through the PNG reply."""
    image = np.zeros((28, 28), np.float32)
    image[0, : len(values)] = np.array(values, np.float32) / 255
    return image


def _read_levels(png: bytes | None, count: int) -> list[int]:
    assert png is not None
    return np.asarray(Image.open(io.BytesIO(png)))[0, :count].tolist()


def thread_settings(data: bytes, *, allowed_formats: Collection[str], max_pixels: int) -> Steps:
    """A stand-in that reports the worker's BLAS and OpenCV thread counts in pixels 0 and 1."""
    import cv2

    yield
    return _levels(int(os.environ.get("OPENBLAS_NUM_THREADS", "0")), cv2.getNumThreads())


def worker_pid(data: bytes, *, allowed_formats: Collection[str], max_pixels: int) -> Steps:
    """A stand-in that says which worker process read the image (pixels 0 to 3)."""
    yield
    return _levels(*os.getpid().to_bytes(4, "big"))


@pytest.fixture
def make_pool(tiny_onnx: Path) -> Any:
    def make(metrics: Metrics | None = None, **options: Any) -> WorkerPool:
        defaults: dict[str, Any] = {
            "workers": 2,
            "allowed_formats": FORMATS,
            "max_pixels": MAX_PIXELS,
            "timeout_seconds": 5.0,
            "overflow_backlog_images": 0,  # every worker takes work alike unless a test asks
            "steps": f"{__name__}:slow_or_real",
        }
        settings = pool_options(Settings(model_path=tiny_onnx))
        return WorkerPool(replace(settings, **{**defaults, **options}), metrics)

    return make


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


Answer = tuple[np.ndarray, bytes | None]  # an image's probabilities (10,) and PNG


async def _each_image(chunks: list[Chunk]) -> list[Answer | ServiceError]:
    """Per image, in order: its answer or its error, whichever frames carried them."""
    answers: list[Answer | ServiceError] = []
    for count, future in chunks:
        try:
            results = await future
        except ServiceError as exc:
            answers += [exc] * count
            continue
        for index in range(count):
            error = results.errors.get(index)
            png = results.pngs[index] if results.pngs is not None else None
            answers.append(error if error else (results.probabilities[index], png))
    return answers


async def _one(future: asyncio.Future[ImageResults]) -> Answer:
    """The answer of a one-image frame; raises its error."""
    results = await future
    if 0 in results.errors:
        raise results.errors[0]
    return results.probabilities[0], results.pngs[0] if results.pngs is not None else None


def _in_process(data: bytes) -> np.ndarray | ServiceError:
    try:
        return preprocess_image(data, allowed_formats=FORMATS, max_pixels=MAX_PIXELS)
    except ServiceError as exc:
        return exc


def test_results_match_preprocessing_and_the_model_in_process(
    make_pool: Any, tiny_onnx: Path
) -> None:
    async def scenario() -> list[Any]:
        pool = make_pool(steps=f"{preprocess_steps.__module__}:preprocess_steps")
        await pool.start()
        try:
            return await _each_image(pool.classify_many(GOOD + BAD, flags=wire.WITH_IMAGE))
        finally:
            pool.close()

    model = DigitClassifier(tiny_onnx)
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
            probabilities, png = got
            assert png == encode_png(expected)
            np.testing.assert_allclose(
                probabilities, model.predict(expected[None, None])[0], rtol=1e-6, atol=1e-7
            )


def test_tensors_and_images_sent_together_share_one_model_call(
    make_pool: Any, tmp_path: Path
) -> None:
    """One worker, inputs sent while it is busy: the next batch takes them all at once."""
    metrics = Metrics()

    async def scenario() -> list[Any]:
        pool = make_pool(metrics, workers=1)
        await pool.start()
        try:
            await pool.classify(GOOD[0])  # the worker is up
            busy = pool.classify(sleeping(tmp_path / "busy"))
            await begun(tmp_path / "busy")
            (images,) = pool.classify_many(GOOD)  # one worker: one frame of three
            tensor = pool.classify_tensor(np.zeros((5, 1, 28, 28)))
            return await asyncio.gather(busy, images.future, tensor)
        finally:
            pool.close()

    _, images, tensor = _run(scenario())
    assert images.probabilities.shape == (3, 10) and tensor.probabilities.shape == (5, 10)
    sizes = _histogram_values(metrics.batch_size)
    assert sizes["count"] == 3 and sizes["sum"] == 1 + 1 + 3 + 5  # warm-up, busy, together


def _histogram_values(histogram: Any) -> dict[str, float]:
    values = {}
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith(("_count", "_sum")):
                values[sample.name.rsplit("_", 1)[1]] = sample.value
    return values


@pytest.mark.parametrize(("images", "backlog", "workers_used"), [(3, 4, 1), (9, 4, 2), (2, 0, 2)])
def test_the_overflow_worker_takes_images_only_behind_a_backlog(
    make_pool: Any, images: int, backlog: int, workers_used: int
) -> None:
    async def scenario() -> set[int]:
        pool = make_pool(steps=f"{__name__}:worker_pid", overflow_backlog_images=backlog)
        await pool.start()
        try:
            answers = await _each_image(pool.classify_many([b"x"] * images, True))
            return {bytes(_read_levels(png, 4)) for _, png in answers}  # type: ignore[misc]
        finally:
            pool.close()

    assert len(_run(scenario())) == workers_used


@pytest.mark.parametrize(("size", "workers_used"), [(1, 1), (320_000, 2)])
def test_large_uploads_arriving_together_reach_the_overflow_worker(
    make_pool: Any, size: int, workers_used: int
) -> None:
    """Three 40-megapixel PNGs (320 KB each) sent together all went to the first worker,
    counted as three images under the backlog of 32, while the overflow worker stood idle:
    the last one waited 9 s. A frame's bytes count as work too."""

    async def scenario() -> set[int]:
        pool = make_pool(
            steps=f"{__name__}:worker_pid", overflow_backlog_images=32, overflow_wait_seconds=60
        )
        await pool.start()
        try:
            futures = [pool.classify(b"x" * size, True) for _ in range(3)]
            answers = [await _one(future) for future in futures]
            return {bytes(_read_levels(png, 4)) for _, png in answers}  # type: ignore[misc]
        finally:
            pool.close()

    assert len(_run(scenario())) == workers_used


@pytest.mark.parametrize(("wait_s", "overflow_first"), [(0.05, True), (60.0, False)])
def test_the_overflow_worker_takes_images_behind_a_frame_that_waited(
    make_pool: Any, tmp_path: Path, wait_s: float, overflow_first: bool
) -> None:
    """One large image held the first worker for seconds while the overflow worker, behind
    a backlog of images it would never see, sat idle: small images waited behind it."""

    async def scenario() -> bool:
        pool = make_pool(overflow_backlog_images=32, overflow_wait_seconds=wait_s)
        await pool.start()
        try:
            marker = tmp_path / "slow"
            slow = pool.classify(sleeping(marker))  # the first worker's
            await begun(marker)
            await asyncio.sleep(0.1)  # its frame has waited past the shorter limit
            small = pool.classify(GOOD[0])
            answered: list[asyncio.Future[Any]] = []  # in the order their replies came
            for future in (slow, small):
                future.add_done_callback(answered.append)
            await asyncio.gather(slow, small)
            return answered[0] is small
        finally:
            pool.close()

    assert _run(scenario()) is overflow_first


def test_a_full_queue_refuses_at_once_and_sends_nothing(make_pool: Any) -> None:
    async def scenario() -> tuple[ServiceError, list[Any], int]:
        pool = make_pool(workers=1, max_queue_images=3, retry_after_seconds=2)
        await pool.start()
        try:
            admitted = [pool.classify(SLEEP + b"a"), pool.classify_many(GOOD[:2])[0].future]
            with pytest.raises(Overloaded) as caught:
                pool.classify_many(GOOD[:1])
            results = await asyncio.gather(*admitted)
            return caught.value, results, pool.queued_images
        finally:
            pool.close()

    error, results, left = _run(scenario())
    assert error.status_code == 503 and error.headers["Retry-After"] == "2"
    assert "3 of 3 images" in error.message
    assert [len(r.probabilities) for r in results] == [1, 2] and left == 0


def test_workers_run_single_threaded(make_pool: Any) -> None:
    """Per-core BLAS/OpenCV thread pools in every worker made two workers 5x slower on photos."""

    async def scenario() -> bytes | None:
        pool = make_pool(steps=f"{__name__}:thread_settings")
        await pool.start()
        try:
            return (await _one(pool.classify(b"any", flags=wire.WITH_IMAGE)))[1]
        finally:
            pool.close()

    assert _read_levels(_run(scenario()), 2) == [1, 1]


@pytest.mark.parametrize(
    ("how", "blamed"), [(signal.SIGSEGV, True), (signal.SIGKILL, False)], ids=["crash", "kill"]
)
def test_a_dead_worker_is_replaced_and_only_a_crash_blames_its_image(
    make_pool: Any, tmp_path: Path, how: signal.Signals, blamed: bool
) -> None:
    """A worker killed from outside (an operator, the OOM killer) made the valid image it was
    reading a 400 invalid_image: the client was told not to send it again. A crash of the
    worker's own (a decoder's segfault) still fails that image alone."""

    metrics = Metrics()

    async def scenario() -> tuple[list[Any], list[int], list[int], bytes | None]:
        pool = make_pool(metrics)
        await pool.start()
        try:
            await _each_image(pool.classify_many(GOOD[:2]))  # both workers are up
            before = pool.pids
            markers = [tmp_path / "a", tmp_path / "b"]
            chunks = pool.classify_many([sleeping(marker) for marker in markers])  # one each
            await begun(*markers)
            os.kill(int(markers[0].read_text()), how)
            results = await _each_image(chunks)
            after = pool.pids
            image = (await _one(pool.classify(GOOD[0], flags=wire.WITH_IMAGE)))[1]
            return results, before, after, image
        finally:
            pool.close()

    results, before, after, image = _run(scenario())
    failed = [item for item in results if isinstance(item, ServiceError)]
    assert len(failed) == int(blamed), results
    if blamed:
        assert (failed[0].status_code, failed[0].code) == (400, "invalid_image")
        assert "crashed" in failed[0].message
    assert sum(isinstance(item, tuple) for item in results) == 2 - int(blamed)
    killed = set(before) - set(after)
    assert len(killed) == 1 and len(after) == len(before)
    # Operators see why (digits_worker_restarts_total; there was no metric of it at all).
    restarts = {
        reason: metrics.registry.get_sample_value(
            "digits_worker_restarts_total", {"reason": reason}
        )
        for reason in ("crashed", "killed", "hung", "failed_to_start")
    }
    assert restarts == {
        "crashed": float(blamed),
        "killed": float(not blamed),
        "hung": 0.0,
        "failed_to_start": 0.0,
    }
    assert image == encode_png(_in_process(GOOD[0]))


def test_an_image_that_takes_two_workers_with_it_is_blamed(make_pool: Any, tmp_path: Path) -> None:
    """Sent again after its worker was killed, an image under which a second worker dies
    fails as invalid_image: a poison image is not passed round the pool for ever."""

    async def scenario() -> list[Any]:
        pool = make_pool()
        await pool.start()
        try:
            await _each_image(pool.classify_many(GOOD[:2]))
            marker = tmp_path / "a"
            chunks = pool.classify_many([sleeping(marker)])
            for _ in range(2):
                await kill_under(marker)
            return await _each_image(chunks)
        finally:
            pool.close()

    (result,) = _run(scenario())
    assert isinstance(result, ServiceError), result
    assert (result.status_code, result.code) == (400, "invalid_image")


def test_kills_under_two_images_of_a_frame_blame_neither(make_pool: Any, tmp_path: Path) -> None:
    """A frame sent again after a kill under its first image was taken as killed under once
    already: a kill under its second image then blamed that one (a review of bc7bfae)."""

    async def scenario() -> list[Any]:
        pool = make_pool(workers=1)
        await pool.start()
        try:
            await _each_image(pool.classify_many(GOOD[:1]))
            first, second = tmp_path / "a", tmp_path / "b"
            chunks = pool.classify_many([sleeping(first), sleeping(second)])  # one frame
            for marker in (first, second):  # the second sleeps after the first, each time
                await kill_under(marker)
            return await _each_image(chunks)
        finally:
            pool.close()

    results = _run(scenario())
    assert len(results) == 2 and all(isinstance(item, tuple) for item in results), results


REAP_WAIT_S = 5.0  # the watchdog looks at least once a second


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but was never waited for (Linux's /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" in status


def test_a_spinning_worker_hits_the_timeout_and_the_pool_keeps_serving(make_pool: Any) -> None:
    timeout = 0.5

    async def scenario() -> tuple[BaseException | None, float, bytes | None, list[int], bool]:
        pool = make_pool(workers=1, timeout_seconds=timeout)
        await pool.start()
        try:
            await pool.classify(GOOD[0])  # started: the timeout is about images only
            stuck = pool.pids[0]
            started = time.monotonic()
            # In one batch, the stuck image is not first: the progress slot names it anyway.
            queued = pool.classify(GOOD[1], flags=wire.WITH_IMAGE)
            spin = pool.classify(SPIN)
            # Bounded here too: a broken watchdog fails in seconds, not at pytest's timeout.
            answer = asyncio.wait_for(_one(spin), 30 * timeout)
            error = (await asyncio.gather(answer, return_exceptions=True))[0]
            waited = time.monotonic() - started
            image = (await _one(queued))[1]
            # Killed alive, it stayed a zombie until the next kill: reaped while serving now.
            deadline = time.monotonic() + REAP_WAIT_S
            while _zombie(stuck) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return error, waited, image, [stuck, *pool.pids], not _zombie(stuck)
        finally:
            pool.close()

    error, waited, queued_image, (stuck, *now), reaped = _run(scenario())
    assert reaped
    assert isinstance(error, ServiceError) and error.code == "invalid_image"
    assert "longer than 0.5 s" in error.message
    assert timeout <= waited < timeout * 4
    assert queued_image == encode_png(_in_process(GOOD[1]))  # resent, not failed
    assert stuck not in now
    deadline = time.monotonic() + 2
    while not _gone(stuck) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _gone(stuck)


def _as_request(request_id: str, send: Any) -> Any:
    """``send()`` as a request with that X-Request-ID would call it (the id in its context)."""
    token = logs.request_id.set(request_id)
    try:
        return send()
    finally:
        logs.request_id.reset(token)


def _lines_saying(caplog: pytest.LogCaptureFixture, words: str) -> list[dict[str, Any]]:
    """The JSON log lines whose message has ``words``, as an operator reads them."""
    records = [record for record in caplog.records if words in record.getMessage()]
    return [json.loads(JsonFormatter().format(record)) for record in records]


@pytest.mark.parametrize("how", ["timeout", "crash"])
def test_the_line_of_a_worker_replaced_under_an_image_names_its_request(
    make_pool: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """ "worker 123 timed out on an image" (or died under one) named no request, so an
    operator could not tell which client's image it was: the line carries the X-Request-ID
    of the request whose image it was, the one its access line has."""
    caplog.set_level(logging.WARNING, logger="service.workers")

    async def scenario() -> None:
        pool = make_pool(workers=1, timeout_seconds=0.5)
        await pool.start()
        try:
            await pool.classify(GOOD[0])
            pool.classify(GOOD[1])  # made outside any request: no id to carry
            marker = tmp_path / "a"
            image = SPIN if how == "timeout" else sleeping(marker)
            answer = _as_request("the-culprit", lambda: pool.classify(image))
            if how == "crash":
                await begun(marker)
                os.kill(int(marker.read_text()), signal.SIGSEGV)
            await asyncio.gather(asyncio.wait_for(answer, 15), return_exceptions=True)
        finally:
            pool.close()

    _run(scenario())
    words = "timed out on an image" if how == "timeout" else "died"
    (line,) = _lines_saying(caplog, words)
    assert line["request_id"] == "the-culprit", line


def test_an_image_starved_of_cpu_is_not_taken_for_one_that_hangs(make_pool: Any) -> None:
    """On a machine short of CPU a valid 40-megapixel image took its worker past the timeout
    by the clock while using far less CPU: answered 400 invalid_image, its worker killed. A
    worker past the timeout by the clock but not by its CPU, its CPU time still moving, is
    left to finish (here working a tenth of the time for twice the timeout)."""
    timeout = SLEEP_S / 2

    async def scenario() -> tuple[wire.ImageResults, list[int], list[int]]:
        pool = make_pool(workers=1, timeout_seconds=timeout)
        await pool.start()
        try:
            before = pool.pids
            results = await asyncio.wait_for(pool.classify(CRAWL), 30 * timeout)
            return results, before, pool.pids
        finally:
            pool.close()

    results, before, after = _run(scenario())
    assert not results.errors, results.errors  # answered, not "longer than ... to decode"
    assert before == after  # and its worker kept


def test_a_worker_whose_cpu_stands_still_past_the_timeout_is_replaced(make_pool: Any) -> None:
    """Stopped or blocked (here asleep), a worker uses no CPU: judged by its CPU alone it
    would never reach the timeout, so a whole timeout without CPU replaces it."""
    timeout = SLEEP_S / 4

    async def scenario() -> tuple[BaseException | None, list[int], list[int]]:
        pool = make_pool(workers=1, timeout_seconds=timeout)
        await pool.start()
        try:
            before = pool.pids
            answer = asyncio.wait_for(_one(pool.classify(SLEEP + b"x")), 30 * timeout)
            error = (await asyncio.gather(answer, return_exceptions=True))[0]
            return error, before, pool.pids
        finally:
            pool.close()

    error, before, after = _run(scenario())
    assert isinstance(error, ServiceError) and error.code == "invalid_image", error
    assert before != after


def test_a_worker_stopped_while_idle_is_replaced_and_its_images_answered(
    make_pool: Any,
) -> None:
    """A worker stopped between images (SIGSTOP) never began the ones sent to it, so none was
    ever past the timeout: they waited for ever while readiness said ready (a probe)."""
    timeout = 0.5

    async def scenario() -> tuple[Answer, int, list[int]]:
        pool = make_pool(workers=1, timeout_seconds=timeout)
        await pool.start()
        try:
            await _one(pool.classify(GOOD[0]))
            (stopped,) = pool.pids
            os.kill(stopped, signal.SIGSTOP)
            answer = await asyncio.wait_for(_one(pool.classify(GOOD[1])), 30 * timeout)
            return answer, stopped, pool.pids
        finally:
            pool.close()

    answer, stopped, now = _run(scenario())
    assert answer[0].shape == (10,) and stopped not in now  # sent again to its successor


def test_an_image_that_hangs_its_worker_fails_alone_in_its_frame(make_pool: Any) -> None:
    """A frame of a batch request holds several images: the one named by the progress slot
    fails, and the rest of the frame is answered by the replacement worker."""

    async def scenario() -> list[Answer | ServiceError]:
        pool = make_pool(workers=1, timeout_seconds=0.5)
        await pool.start()
        try:
            return await _each_image(pool.classify_many([GOOD[0], SPIN, GOOD[1]], True))
        finally:
            pool.close()

    first, spin, last = _run(scenario())
    assert isinstance(spin, ServiceError) and "longer than 0.5 s" in spin.message
    for answer, data in ((first, GOOD[0]), (last, GOOD[1])):
        assert isinstance(answer, tuple) and answer[1] == encode_png(_in_process(data))


def test_a_request_refused_while_every_worker_restarts_leaves_no_unread_error(
    make_pool: Any,
) -> None:
    """While every worker waits out its restart backoff, a request is refused with 503. Its
    frames' futures were given that error too, and nobody ever read them: asyncio logged
    "Future exception was never retrieved" for every such request."""

    async def scenario() -> tuple[str, list[str], int]:
        pool = make_pool(workers=1)
        await pool.start()
        logged: list[str] = []
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: logged.append(context["message"]))
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            # A ready worker that dies is replaced at once; one that dies before it is ready
            # is replaced only after a backoff, and meanwhile no worker takes anything.
            while pool.pids:
                assert time.monotonic() < deadline, "a worker was never caught starting"
                for pid in pool.pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                await asyncio.sleep(0.01)
            message = ""
            try:
                pool.classify(GOOD[0])
            except NotReady as exc:  # not pytest.raises: its traceback would keep the futures
                message = exc.message
            gc.collect()  # asyncio reports an unread exception when its future is collected
            await asyncio.sleep(0)
            return message, logged, pool.queued_images
        finally:
            pool.close()

    message, logged, queued = _run(scenario())
    assert "restarting" in message
    assert not [line for line in logged if "never retrieved" in line], logged
    assert queued == 0  # the refused images no longer count against admission


def _failing_spawns(monkeypatch: pytest.MonkeyPatch, failing: set[int]) -> list[int]:
    """Make the supervisor's spawns numbered in ``failing`` (from 1) raise EMFILE, as with
    no file descriptor left for the worker's socket pair; the pids of those that ran."""
    from service.workers import supervisor

    real, calls, pids = supervisor.spawn, [0], []

    def spawn(*args: Any) -> Any:
        calls[0] += 1
        if calls[0] in failing:
            raise OSError(24, "Too many open files")
        worker = real(*args)
        pids.append(worker.process.pid)
        return worker

    monkeypatch.setattr(supervisor, "spawn", spawn)
    return pids


def test_a_spawn_failing_at_start_stops_the_workers_already_started(
    make_pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first worker was left running when the second could not be spawned."""
    pids = _failing_spawns(monkeypatch, {2})

    async def scenario() -> None:
        with pytest.raises(OSError, match="Too many open files"):
            await make_pool().start()

    _run(scenario())
    assert len(pids) == 1 and _gone(pids[0])


def test_a_worker_that_cannot_be_respawned_is_tried_again(
    make_pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead worker whose successor could not be spawned (no descriptor left) stayed dead
    for good, the exception lost in asyncio's callback, and the inputs it held were never
    sent again: their callers waited forever."""
    pids = _failing_spawns(monkeypatch, {3})

    async def scenario() -> tuple[list[int], list[Any]]:
        pool = make_pool()
        await pool.start()
        try:
            os.kill(pool.pids[0], signal.SIGKILL)
            answers = []
            deadline = time.monotonic() + 10
            while len(pids) < 3 and time.monotonic() < deadline:  # the retry, after a second
                # Bounded: the killed worker's inputs were never sent again, and waited forever.
                answers += await asyncio.wait_for(_each_image(pool.classify_many(GOOD[:1])), 10)
                await asyncio.sleep(0.1)
            await asyncio.wait_for(_each_image(pool.classify_many(GOOD[:2])), 10)
            return pool.pids, answers
        finally:
            pool.close()

    serving, answers = _run(scenario())
    assert len(pids) == 3 and serving == [pids[2], pids[1]]  # the third spawn failed
    assert answers and all(isinstance(answer, tuple) for answer in answers), answers


def test_close_leaves_no_child_processes(make_pool: Any) -> None:
    async def scenario() -> list[int]:
        pool = make_pool()
        await pool.start()
        await pool.classify(GOOD[0])
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
        predictor = app_state(client.app).predictor  # type: ignore[arg-type]
        assert predictor is not None
        pool = predictor.pool
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


def test_a_worker_started_after_a_tmp_cleaner_removed_the_model_still_opens_it(
    tiny_onnx: Path,
) -> None:
    """The served model is a private copy in a temporary folder; with that folder removed (a
    cleaner of /tmp) every worker started later found no model, and the service answered
    503 until restarted. The supervisor writes the copy again before a worker starts."""
    settings = Settings(model_path=tiny_onnx, batch_max_delay_us=0, preprocess_workers=1)
    with TestClient(create_app(settings)) as client:
        predictor = app_state(client.app).predictor  # type: ignore[arg-type]
        assert predictor is not None
        pool = predictor.pool
        private = Path(pool.model.path)
        shutil.rmtree(private.parent)
        (first,) = pool.pids
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            response = client.post("/predict", files={"file": ("d.png", GOOD[0])})
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert response.status_code == 200, response.text
        assert private.is_file()


def test_readiness_drops_while_no_worker_can_open_the_model(
    tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every respawned worker failed to start and /predict answered 503, while /readyz and
    V2's readiness said 200 and ready: an orchestrator kept sending traffic there."""
    monkeypatch.setattr(http_state, "WORKERS_DOWN_S", 0.5)
    settings = Settings(model_path=tiny_onnx, batch_max_delay_us=0, preprocess_workers=1)
    with TestClient(create_app(settings)) as client:
        predictor = app_state(client.app).predictor  # type: ignore[arg-type]
        assert predictor is not None
        private = Path(predictor.pool.model.path)
        shutil.rmtree(private.parent)
        private.parent.write_bytes(b"")  # a file where the folder was: no copy can be written
        assert client.get("/readyz").status_code == 200
        assert "\ndigits_model_ready 1.0\n" in client.get("/metrics").text
        os.kill(predictor.pool.pids[0], signal.SIGKILL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while client.get("/readyz").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        ready = client.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert "no worker has the model open" in ready.json()["error"]["message"]
        assert client.get("/v2/health/ready").json() == {"ready": False}
        assert "\ndigits_model_ready 0.0\n" in client.get("/metrics").text  # the alert's
        assert client.get("/healthz").status_code == 200  # alive: the process answers
        private.parent.unlink()  # once a copy can be written again, a worker serves again
        deadline = time.monotonic() + START_TIMEOUT_S
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get("/readyz").status_code == 200
        assert "\ndigits_model_ready 1.0\n" in client.get("/metrics").text


def test_a_load_whose_workers_cannot_open_its_model_restarts_nothing(
    make_pool: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A new generation's worker that fails to start fails the load; it was logged
    "restarting in 1 s" and counted as a worker restart, though nothing was restarted."""
    metrics = Metrics()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")

    async def scenario() -> Any:
        pool = make_pool(metrics, workers=1)
        await pool.start()
        try:
            with pytest.raises(ModelLoadError):
                await pool.reload(replace(pool.model, path=str(garbage)))
            return await _one(pool.classify(GOOD[0]))  # the old generation serves on
        finally:
            pool.close()

    caplog.set_level(logging.WARNING, logger="service.workers")
    probabilities, _ = _run(scenario())
    assert len(probabilities) == 10
    said = [record.getMessage() for record in caplog.records]  # "failed to start", or
    assert not any("restarting" in line for line in said), said  # nothing: closed first
    restarts = metrics.registry.get_sample_value(
        "digits_worker_restarts_total", {"reason": "failed_to_start"}
    )
    assert restarts == 0


def test_a_retiring_workers_inputs_fail_when_no_serving_worker_can_take_them(
    make_pool: Any,
) -> None:
    """A worker of a generation that a reload retired died: its other inputs go to the
    serving generation again. With every serving worker waiting out its restart backoff,
    that raised NotReady out of the loop, and those inputs were never answered: their
    requests hung and kept their places in the queue for good."""

    async def scenario() -> tuple[list[Any], int]:
        pool = make_pool(workers=1, timeout_seconds=120.0)
        await pool.start()
        try:
            stuck = pool.classify(SPIN)  # the retiring worker's first input never finishes
            behind = [pool.classify(GOOD[0]) for _ in range(3)]  # sent again when it dies
            [old] = pool.pids
            await pool.reload(pool.model)  # a new generation serves; the old one retires
            deadline = time.monotonic() + START_TIMEOUT_S
            while pool.pids:  # caught starting, the new workers wait out a backoff
                assert time.monotonic() < deadline, "a worker was never caught starting"
                for pid in pool.pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                await asyncio.sleep(0.01)
            os.kill(old, signal.SIGKILL)
            answers = asyncio.gather(stuck, *behind, return_exceptions=True)
            return await asyncio.wait_for(answers, START_TIMEOUT_S), pool.queued_images
        finally:
            pool.close()

    answers, queued = _run(scenario())
    assert all(isinstance(answer, ServiceError) for answer in answers), answers
    assert [answer.code for answer in answers[1:]] == ["not_ready"] * 3
    assert queued == 0
