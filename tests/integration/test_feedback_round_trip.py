"""Corrections flow back into training: predict -> feedback -> a file on disk -> training
with --extra-data reads it -> evaluate --data scores a model on it."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.server import running_service
from tests.client.conftest import mnist_test_images
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _png(pixels: np.ndarray) -> bytes:
    """An MNIST digit as people send it: dark ink on light paper, 112 px."""
    image = Image.fromarray(255 - pixels).resize((112, 112), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _training(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_corrections_reach_training_and_evaluation(
    shipped_model: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "corrections"
    samples = mnist_test_images(mnist_dir, 3)
    env = {
        "DIGITS_MODEL_PATH": str(shipped_model),
        "DIGITS_FEEDBACK_DIR": str(folder),
        "DIGITS_PREPROCESS_WORKERS": "1",
    }
    with running_service(env) as server:
        single = httpx.post(
            f"{server.url}/predict",
            content=_png(samples[0][0]),
            headers={"Content-Type": "image/png", "X-Request-ID": "round-trip-1"},
        )
        assert single.status_code == 200 and single.headers["x-request-id"] == "round-trip-1"
        files = [("files", (f"{i}.png", _png(p), "image/png")) for i, (p, _) in enumerate(samples)]
        batch = httpx.post(f"{server.url}/predict/batch", files=files)
        assert batch.status_code == 200
        batch_id = batch.headers["x-request-id"]
        wrong_label = (samples[1][1] + 1) % 10  # a user may be wrong too: stored as said
        for body in (
            {"request_id": "round-trip-1", "digit": samples[0][1]},
            {"request_id": batch_id, "index": 1, "digit": wrong_label},
            {"request_id": batch_id, "index": 2, "digit": None},
        ):
            recorded = httpx.post(f"{server.url}/feedback", json=body)
            assert recorded.status_code == 201, recorded.text
        assert "digits_corrections_total" in httpx.get(f"{server.url}/metrics").text

    records = [json.loads(line) for line in (folder / "index.jsonl").read_text().splitlines()]
    assert [r["label"] for r in records] == [samples[0][1], wrong_label, None]
    assert [r["predicted"] for r in records] == [
        single.json()["digit"],
        *(entry["digit"] for entry in batch.json()["predictions"][1:]),
    ]
    sha256 = hashlib.sha256(shipped_model.read_bytes()).hexdigest()
    for record in records:
        assert record["model"]["name"] == "lenet5" and record["answered_at"].endswith("Z")
        assert record["model"]["sha256"] == sha256  # which file answered, whatever its version
        with Image.open(folder / record["image"]) as image:
            assert image.size == (28, 28)

    model = tmp_path / "retrained.onnx"
    trained = _training(
        "train",
        "--data-dir",
        str(mnist_dir),
        "--extra-data",
        str(folder),
        "--epochs",
        "1",
        "--limit-train",
        "1000",
        "--out",
        str(model),
        "--run-dir",
        str(tmp_path / "run"),
        "--no-progress",
    )
    assert trained.returncode == 0, trained.stderr
    assert f"extra data: 2 digits and 1 outliers from {folder}" in trained.stderr
    card = json.loads(model.with_suffix(".json").read_text())
    (source,) = card["training_config"]["extra_data"]
    assert (source["folder"], source["digits"], source["outliers"]) == (str(folder), 2, 1)

    evaluated = _training(
        "evaluate", "--data-dir", str(mnist_dir), "--model", str(model), "--data", str(folder)
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"{folder}: 2 corrected digits, 1 'not a digit'" in evaluated.stdout
    assert "digits read as corrected:" in evaluated.stdout
    assert "'not a digit': median top-class probability" in evaluated.stdout
