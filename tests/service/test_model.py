"""Model loading: the contract check, provider choice and one-line errors for wrong files."""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service.contract import ModelLoadError
from service.model import DigitClassifier, choose_providers
from tests.conftest import REPO_ROOT, build_onnx_model


def test_loads_and_predicts_probabilities(tiny_onnx: Path) -> None:
    classifier = DigitClassifier(tiny_onnx)
    images = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    probabilities = classifier.predict(images)
    assert probabilities.shape == (5, 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert classifier.info.input_name == "image" and classifier.info.output_name == "probabilities"
    assert classifier.info.name == "tiny" and len(classifier.info.sha256) == 64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_name": "input"}, "model inputs are ['input'], expected ['image']"),
        ({"output_name": "scores"}, "model outputs are ['scores'], expected 'probabilities'"),
        ({"input_dims": (3, 32, 32)}, "expected [N, 1, 28, 28]"),
        ({"classes": 7}, "expected [N, 10]"),
        ({"batch": 1}, "fixed batch size of 1"),  # it failed at a batch of 2, reason lost
    ],
)
def test_wrong_signature_is_refused_naming_the_problem(
    tmp_path: Path, kwargs: dict, message: str
) -> None:
    path = build_onnx_model(tmp_path / "wrong.onnx", **kwargs)
    with pytest.raises(ModelLoadError) as caught:
        DigitClassifier(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_model_failing_its_warm_up_says_onnx_runtimes_reason(tmp_path: Path) -> None:
    """The load gate kept only the last line of ONNX Runtime's error ("Please fix either
    the inputs/outputs or the model."), not what was wrong."""
    path = build_onnx_model(tmp_path / "one.onnx", reshape_to=(1, 784))
    classifier = DigitClassifier(path)
    with pytest.raises(ModelLoadError) as caught:
        classifier.warm_up((1, 2))
    message = str(caught.value)
    assert "a warm-up batch of 2 failed" in message and "requested shape" in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found: .*absent.onnx"):
        DigitClassifier(tmp_path / "absent.onnx")


def test_not_an_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "fake.onnx"
    path.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelLoadError) as caught:
        DigitClassifier(path)
    assert "fake.onnx is not a loadable ONNX model" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_cuda_falls_back_to_cpu_with_a_warning(
    tiny_onnx: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.model"):
        providers = choose_providers("cuda", ["CPUExecutionProvider"])
        classifier = DigitClassifier(tiny_onnx, provider="cuda")
    assert providers == ["CPUExecutionProvider"]
    assert classifier.info.provider == "CPUExecutionProvider"
    assert any("falling back to CPU" in record.getMessage() for record in caplog.records)


def test_provider_choice() -> None:
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("cuda", both) == both
    assert choose_providers("auto", both) == both
    assert choose_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers("cpu", both) == ["CPUExecutionProvider"]


def test_server_start_with_a_wrong_model_exits_with_one_line(tmp_path: Path) -> None:
    path = build_onnx_model(tmp_path / "wrong.onnx", input_name="pixels")
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        env={"DIGITS_MODEL_PATH": str(path), "DIGITS_PORT": "1", "PATH": ""},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "expected ['image']" in lines[0], result.stderr


def test_help_prints_the_usage_and_arguments_are_refused() -> None:
    """--help started a server on port 8000 before: arguments were ignored."""
    run = functools.partial(
        subprocess.run, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    shown = run([sys.executable, "-m", "service", "--help"])
    assert shown.returncode == 0 and "DIGITS_* environment variables" in shown.stdout
    refused = run([sys.executable, "-m", "service", "--port", "9000"])
    assert refused.returncode == 2
    assert "unexpected arguments: --port 9000" in refused.stderr


def test_invalid_setting_exits_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        env={"DIGITS_PROVIDER": "tpu", "PATH": ""},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "DIGITS_PROVIDER" in result.stderr and len(result.stderr.strip().splitlines()) == 1
