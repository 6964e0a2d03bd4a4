"""The examples /docs shows (service/http/schemas.py) are the shipped model's real answers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bench.server import RunningService
from tests.docs.examples import REPO_ROOT, dumps, mismatches, render


@pytest.fixture(scope="module")
def schemas(live: RunningService) -> dict[str, Any]:
    spec = httpx.get(f"{live.url}/openapi.json", timeout=10).json()
    return spec["components"]["schemas"]


def _assert_shown(example: Any, live: Any, name: str) -> None:
    problems = mismatches(example, live, name)
    assert not problems, "\n".join(
        [*problems, f"service/http/schemas.py should show: {dumps(render(live, example))}"]
    )


@pytest.mark.slow
def test_the_prediction_example_is_the_answer_for_examples_digit_png(
    live: RunningService, schemas: dict[str, Any]
) -> None:
    (example,) = schemas["Prediction"]["examples"]
    image = (REPO_ROOT / "examples" / "digit.png").read_bytes()
    answer = httpx.post(f"{live.url}/predict", files={"file": ("digit.png", image)}, timeout=30)
    assert answer.status_code == 200
    _assert_shown(example, answer.json(), "Prediction example")


@pytest.mark.slow
def test_the_model_example_is_the_shipped_models_description(
    live: RunningService, schemas: dict[str, Any]
) -> None:
    (example,) = schemas["ModelDescription"]["examples"]
    answer = httpx.get(f"{live.url}/model", timeout=10)
    assert answer.status_code == 200
    assert set(example) == set(answer.json()), "the example shows every field"
    _assert_shown(example, answer.json(), "ModelDescription example")


@pytest.mark.slow
def test_the_error_example_is_what_twelve_bytes_get(
    live: RunningService, schemas: dict[str, Any]
) -> None:
    fields = schemas["ErrorDetail"]["properties"]
    answer = httpx.post(f"{live.url}/predict", files={"file": ("x.png", b"hello world!")})
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "code": fields["code"]["examples"][0],
        "message": fields["message"]["examples"][0],
    }
