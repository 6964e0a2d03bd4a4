"""Triton's own V2 client against the repository and statistics extensions of a real server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from bench.server import RunningService, running_service
from tests.repository.conftest import AUTH, TOKEN, Files

pytestmark = pytest.mark.slow


@pytest.fixture
def server(model_path: Path) -> Iterator[RunningService]:
    env = {
        "DIGITS_MODEL_PATH": str(model_path),
        "DIGITS_ADMIN_TOKEN": TOKEN,
        "DIGITS_PREPROCESS_WORKERS": "1",
        "DIGITS_ACCESS_LOG": "false",
    }
    with running_service(env) as running:
        yield running


def test_tritonclient_loads_indexes_and_reads_statistics(
    server: RunningService, files: Files, model_path: Path
) -> None:
    client = triton.InferenceServerClient(server.address)
    assert "model_repository" in client.get_server_metadata()["extensions"]
    (entry,) = client.get_model_repository_index(headers=AUTH)
    assert (entry["name"], entry["state"]) == ("lenet5", "READY")

    images = np.zeros((3, 1, 28, 28), np.float32)
    tensor = triton.InferInput("image", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    for _ in range(4):
        client.infer("lenet5", [tensor])
    (stats,) = client.get_inference_statistics("lenet5")["model_stats"]
    assert stats["inference_stats"]["success"]["count"] == 4
    assert stats["inference_count"] == 12

    shutil.copyfile(files.v2, model_path)
    client.load_model("lenet5", headers=AUTH)  # body-less: reread DIGITS_MODEL_PATH
    assert client.get_model_metadata("lenet5")["versions"][0].split(".")[0] == "2"
    client.load_model("lenet5", headers=AUTH, files={"file:3/model.onnx": files.v3.read_bytes()})
    assert client.get_model_metadata("lenet5")["versions"][0].split(".")[0] == "3"
    with pytest.raises(InferenceServerException, match="below the floor"):
        client.load_model(
            "lenet5", headers=AUTH, files={"file:1/model.onnx": files.guessing.read_bytes()}
        )

    with pytest.raises(InferenceServerException, match="admin token is not valid"):
        client.load_model("lenet5", headers={"Authorization": "Bearer not-the-admin-token"})
    with pytest.raises(InferenceServerException, match="never unloads"):
        client.unload_model("lenet5", headers=AUTH)
