"""The shadow model: exact counts on a known set, answers untouched, first to go under load."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.__main__ import model_problem
from service.app import create_app
from service.model import DigitClassifier
from service.repository.gate import load_check_digits
from service.settings import Settings
from service.workers import protocol as wire
from service.workers.shadow import Shadow
from tests.repository.conftest import Files
from tests.service.images import mnist_like
from tests.service.test_metrics import scrape, value

CHECK_DIGITS = Settings().resolved_check_digits_path


def settings(model: Path, shadow: Path | None, rate: float = 1.0) -> Settings:
    return Settings(
        model_path=model, shadow_model_path=shadow, shadow_sample_rate=rate, preprocess_workers=1
    )


@pytest.fixture
def shadowed(shipped_model: Path, files: Files) -> Iterator[TestClient]:
    """The shipped model serving, the untrained one as its shadow, every input sampled."""
    with TestClient(create_app(settings(shipped_model, files.guessing))) as client:
        yield client


def shadow_counts(client: TestClient, expected_total: int) -> dict[str, float]:
    """The shadow metrics once ``expected_total`` inputs were compared or dropped (reports
    arrive after the answers)."""
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(client)
        counts = {
            "true": value(samples, "digits_shadow_agreement_total", agree="true"),
            "false": value(samples, "digits_shadow_agreement_total", agree="false"),
            "dropped": value(samples, "digits_shadow_dropped_total"),
            "confidences": value(samples, "digits_shadow_confidence_count"),
            "calls": value(samples, "digits_shadow_inference_duration_seconds_count"),
        }
        if counts["true"] + counts["false"] + counts["dropped"] >= expected_total:
            return counts
        assert time.monotonic() < deadline, counts
        time.sleep(0.05)


def test_agreement_counts_exactly_on_a_known_set(
    shadowed: TestClient, shipped_model: Path, files: Files
) -> None:
    inputs, _ = load_check_digits(CHECK_DIGITS)
    live = DigitClassifier(shipped_model).predict(inputs).argmax(axis=1)
    guesses = DigitClassifier(files.guessing).predict(inputs).argmax(axis=1)
    agree = int((live == guesses).sum())
    assert 0 < agree < len(inputs)  # the set tells agreement from disagreement
    tensor = {"name": "image", "datatype": "FP32", "shape": list(inputs.shape)}
    response = shadowed.post(
        "/v2/models/lenet5/infer", json={"inputs": [{**tensor, "data": inputs.ravel().tolist()}]}
    )
    assert response.status_code == 200
    counts = shadow_counts(shadowed, len(inputs))
    assert counts == {
        "true": agree,
        "false": len(inputs) - agree,
        "dropped": 0,
        "confidences": len(inputs),
        "calls": 1,  # one request, one batch, one shadow call after its answer
    }


def test_answers_are_the_same_with_the_shadow_on(shadowed: TestClient, shipped_model: Path) -> None:
    inputs, _ = load_check_digits(CHECK_DIGITS)
    images = [mnist_like(np.rint(image[0] * 255)) for image in inputs[:12]]

    def answers(client: TestClient, shadow: bool) -> list[bytes]:
        answered = []
        for count, data in enumerate(images, 1):
            headers = {"Content-Type": "image/png"}
            answered.append(client.post("/predict", content=data, headers=headers).content)
            if shadow:  # the next input, waiting in the worker, would make the shadow yield
                shadow_counts(client, count)
        return answered

    with TestClient(create_app(settings(shipped_model, None))) as plain:
        expected = answers(plain, shadow=False)
    assert answers(shadowed, shadow=True) == expected  # byte for byte
    assert shadow_counts(shadowed, len(images))["dropped"] == 0


def test_the_sample_rate_is_an_even_stride(files: Files) -> None:
    model = DigitClassifier(files.guessing)
    shadow = Shadow(model, 0.3)
    inputs, _ = load_check_digits(CHECK_DIGITS)
    flat = inputs.reshape(len(inputs), -1)
    probabilities = model.predict(inputs)
    seen = 0
    for start, stop in ((0, 3), (3, 6), (6, 10), (10, 100)):
        shadow.offer(flat[start:stop], probabilities[start:stop])
        frame = shadow.report(busy=False)
        if frame is not None:
            head = wire.ReplyHead.unpack_from(frame)
            report = wire.decode_shadow(head, frame[wire.REPLY_SIZE :])
            seen += len(report.agree)
            assert report.agree.all()  # the model agrees with itself
    assert seen == 30  # 30 % of 100, spread over batches of any size


def test_a_busy_worker_drops_the_shadow_first(files: Files) -> None:
    model = DigitClassifier(files.guessing)
    shadow = Shadow(model, 1.0)
    inputs, _ = load_check_digits(CHECK_DIGITS)
    shadow.offer(inputs[:5].reshape(5, -1), model.predict(inputs[:5]))
    frame = shadow.report(busy=True)
    assert frame is not None
    report = wire.decode_shadow(wire.ReplyHead.unpack_from(frame), frame[wire.REPLY_SIZE :])
    assert (len(report.agree), report.dropped) == (0, 5)
    assert shadow.report(busy=False) is None  # nothing left over for the next batch


def test_a_shadow_that_cannot_load_stops_start_up(shipped_model: Path, files: Files) -> None:
    problem = model_problem(settings(shipped_model, files.junk))
    assert problem is not None and problem.startswith("shadow model: ")
    assert "not a loadable ONNX model" in problem
    assert model_problem(settings(shipped_model, files.v2)) is None


def test_with_work_waiting_the_shadow_is_skipped_not_the_answers(shadowed: TestClient) -> None:
    """64 images at once to one worker that batches 32: after the first batch's answers the
    other 32 are waiting, so that batch's shadow run is skipped; the last one's is not."""
    inputs, labels = load_check_digits(CHECK_DIGITS)
    images = [mnist_like(np.rint(image[0] * 255)) for image in inputs[:64]]
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    response = shadowed.post("/predict/batch", files=files)
    assert response.status_code == 200
    digits = [entry["digit"] for entry in response.json()["predictions"]]
    assert np.mean(np.array(digits) == labels[:64]) > 0.95  # every answer there, and right
    counts = shadow_counts(shadowed, 64)
    assert counts["true"] + counts["false"] + counts["dropped"] == 64
    assert counts["dropped"] >= 1 and counts["calls"] >= 1
