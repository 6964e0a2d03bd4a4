"""A model loaded while serving brings its own not-a-digit rule (issue 16 on issue 18): the
threshold in force is the new model's metadata's from its first answer, never the old one's."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.repository.conftest import AUTH, LOAD, upload_body
from tests.repository.models import with_rule
from tests.service.images import draw_digit, png

SEVEN = png(draw_digit())
REFUSE_ALL = {"rule": "max_probability", "threshold": 1.0}  # no softmax row reaches 1.0


def _predict(client: TestClient) -> tuple[int, dict[str, object]]:
    response = client.post("/predict", content=SEVEN, headers={"Content-Type": "image/png"})
    return response.status_code, response.json()


def _load(client: TestClient, path: Path) -> None:
    response = client.post(LOAD, headers=AUTH, json=upload_body(path))
    assert response.status_code == 200, response.text


def test_a_swapped_model_brings_its_own_rule(
    admin: TestClient, shipped_model: Path, tmp_path: Path
) -> None:
    status, answer = _predict(admin)
    assert status == 200 and answer["digit"] == 7  # the shipped model's rule lets it through
    shipped_rule = admin.get("/model").json()["not_a_digit"]
    assert shipped_rule["source"] == "model" and shipped_rule["threshold"] < 1.0

    _load(admin, with_rule(tmp_path / "strict.onnx", "2.0.0", REFUSE_ALL, shipped_model))
    status, answer = _predict(admin)
    assert status == 422 and answer["error"]["code"] == "not_a_digit", answer
    assert re.search(
        r"max probability [0-9.]+, under the 1\.0+ a digit needs", answer["error"]["message"]
    )
    rule = admin.get("/model").json()["not_a_digit"]
    assert (rule["rule"], rule["threshold"]) == ("max_probability", 1.0)
    parameters = admin.get("/v2/models/lenet5").json()["parameters"]
    assert parameters["not_a_digit_threshold"] == 1.0

    _load(admin, with_rule(tmp_path / "none.onnx", "3.0.0", None, shipped_model))
    status, answer = _predict(admin)
    assert status == 200 and answer["model"]["version"] == "3.0.0"
    assert admin.get("/model").json()["not_a_digit"] is None
    parameters = admin.get("/v2/models/lenet5").json()["parameters"]
    assert parameters["model_version"] == "3.0.0" and "not_a_digit_rule" not in parameters
