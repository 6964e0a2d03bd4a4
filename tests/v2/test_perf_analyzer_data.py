"""The perf_analyzer input file of real digits is what the V2 route accepts, sent the way
perf_analyzer sends it (binary tensors, batch 1 each, application/octet-stream)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np

from bench.perf_analyzer_data import digits_file
from tests.v2.conftest import MODEL_NAME, LiveServer


def _binary_request(values: list[float]) -> tuple[bytes, dict[str, str]]:
    raw = np.asarray(values, "<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "FP32",
                    "shape": [1, 1, 28, 28],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + raw, headers


def test_every_entry_is_an_accepted_request(v2_server: LiveServer, mnist_dir: Path) -> None:
    document = digits_file(mnist_dir, 8)
    assert len(document["data"]) == 8
    url = f"{v2_server.base_url}/v2/models/{MODEL_NAME}/infer"
    for entry in document["data"]:
        values = entry["image"]
        assert len(values) == 784 and 0.0 <= min(values) and max(values) <= 1.0
        body, headers = _binary_request(values)
        response = httpx.post(url, content=body, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        length = int(response.headers["inference-header-content-length"])
        assert len(response.content) - length == 10 * 4  # ten FP32 probabilities


def test_perf_analyzers_default_random_bytes_are_refused_clearly(v2_server: LiveServer) -> None:
    noise = np.random.default_rng(0).integers(0, 2**32, 784, dtype=np.uint32)
    body, headers = _binary_request(noise.view("<f4").tolist())
    response = httpx.post(
        f"{v2_server.base_url}/v2/models/{MODEL_NAME}/infer",
        content=body,
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 400
    assert "values must lie in 0..1" in response.json()["error"]
