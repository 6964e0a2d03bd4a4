"""The committed models/lenet5.onnx: what the service loads by default."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from tests.conftest import SHIPPED_MODEL
from training.__main__ import main
from training.evaluate import evaluate_file
from training.export import file_sha256

TARGET = 0.995


def test_shipped_model_reaches_target_with_onnx_runtime(mnist_dir: Path) -> None:
    evaluation = evaluate_file(SHIPPED_MODEL, mnist_dir)
    assert evaluation.images == 10_000
    assert evaluation.accuracy >= TARGET
    card = json.loads(SHIPPED_MODEL.with_suffix(".json").read_text())
    assert card["test_accuracy"] == pytest.approx(evaluation.accuracy, abs=1e-6)
    assert card["confusion_matrix"] == evaluation.confusion.tolist()


def test_evaluate_command_on_shipped_model(
    mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", "--model", str(SHIPPED_MODEL), "--data-dir", str(mnist_dir)]
    assert main([*argv, "--min-accuracy", str(TARGET)]) == 0
    output = capsys.readouterr().out
    assert "MNIST test accuracy" in output and "10000 images, ONNX Runtime" in output
    assert main([*argv, "--min-accuracy", "1.01"]) == 1  # the threshold is really applied


def test_card_matches_shipped_file() -> None:
    card = json.loads(SHIPPED_MODEL.with_suffix(".json").read_text())
    assert card["sha256"] == file_sha256(SHIPPED_MODEL)
    metadata = {p.key: p.value for p in onnx.load(str(SHIPPED_MODEL)).metadata_props}
    assert metadata["name"] == card["name"] == "lenet5"
    assert float(metadata["val_accuracy"]) == pytest.approx(card["val_accuracy"], abs=1e-4)
    assert 60_000 < card["param_count"] < 63_000  # LeNet-5 sized
    assert card["parity"]["max_abs_diff"] <= 1e-5 and card["parity"]["argmax_identical"]
    for name in card["reports"].values():
        assert (SHIPPED_MODEL.parent / name).is_file()
