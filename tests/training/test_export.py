"""Export of a tiny-trained model: contract, dynamic batch, parity, metadata, model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from training import export as export_module
from training.artifact import ship
from training.augment import AugmentConfig
from training.checkpoints import load_best, save_best, training_config
from training.config import TrainConfig
from training.data import MnistSplit
from training.export import ExportError, export_onnx, file_sha256
from training.run import TrainResult

DESIGN_METADATA_KEYS = {
    "name",
    "version",
    "created_at",
    "labels",
    "input_convention",
    "normalization",
    "val_accuracy",
    "test_accuracy",
    "param_count",
    "training_config",
    "seed",
    "data_sha256",
}


def _images(split: MnistSplit, count: int) -> np.ndarray:
    return split.images[:count].astype(np.float32) / 255.0


def test_export_contract_and_parity(
    tiny_result: TrainResult, test_split: MnistSplit, tmp_path: Path
) -> None:
    path = tmp_path / "tiny.onnx"
    parity = export_onnx(tiny_result.model, path, _images(test_split, 1000))
    assert parity.images == 1000 and parity.argmax_identical
    assert parity.max_abs_diff <= 1e-5

    graph = onnx.load(str(path))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, out.name, out.type) == (
        "image",
        "tensor(float)",
        "probabilities",
        "tensor(float)",
    )
    assert inp.shape[1:] == [1, 28, 28] and isinstance(inp.shape[0], str)  # dynamic N
    for batch in (1, 7, 64):
        probs = session.run(None, {"image": _images(test_split, batch).reshape(-1, 1, 28, 28)})[0]
        assert probs.shape == (batch, 10)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)  # softmax is in the graph


def test_parity_failure_is_loud_and_leaves_no_file(
    tiny_result: TrainResult,
    test_split: MnistSplit,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(export_module, "PARITY_TOLERANCE", -1.0)  # nothing can pass
    path = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="ONNX Runtime disagrees with PyTorch on 1000 images"):
        export_onnx(tiny_result.model, path, _images(test_split, 1000))
    assert not path.exists()


def test_parity_needs_enough_images(
    tiny_result: TrainResult, test_split: MnistSplit, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match="at least 1000 images"):
        export_onnx(tiny_result.model, tmp_path / "x.onnx", _images(test_split, 999))


def test_ship_writes_metadata_card_and_reports(
    tiny_result: TrainResult, mnist_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "models" / "tiny.onnx"
    config = {"seed": 3, "epochs": 3, "augment": {"rotate_deg": 12.0}}
    card = ship(tiny_result, config, mnist_dir, out, started=0.0)

    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert DESIGN_METADATA_KEYS <= metadata.keys()
    assert json.loads(metadata["labels"]) == [str(d) for d in range(10)]
    assert json.loads(metadata["normalization"]) == {
        "mean": 0.1307,
        "std": 0.3081,
        "in_graph": True,
    }
    assert json.loads(metadata["training_config"]) == config
    assert len(json.loads(metadata["data_sha256"])) == 4
    assert float(metadata["test_accuracy"]) == pytest.approx(card["test_accuracy"], abs=1e-4)

    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert on_disk["sha256"] == file_sha256(out)  # the card describes this exact file
    assert on_disk["param_count"] == 61_750
    assert len(on_disk["per_class_accuracy"]) == 10
    matrix = np.array(on_disk["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 10_000
    assert np.trace(matrix) / 10_000 == pytest.approx(on_disk["test_accuracy"], abs=1e-6)
    assert on_disk["test_accuracy"] > 0.8
    assert on_disk["parity"]["images"] == 10_000
    assert on_disk["val_images"] == 5_000  # the split measured; val_size says at most
    assert set(on_disk["reports"]) == {"confusion", "curves", "reliability", "rejection"}
    for name in on_disk["reports"].values():
        assert (out.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Calibration and the reject rule: in the file, for the service and V2 clients.
    calibration = json.loads(metadata["calibration"])
    assert calibration["temperature"] > 0 and 0 <= calibration["ece_test"] <= 1
    rule = json.loads(metadata["not_a_digit"])
    assert rule["rule"] in {"max_probability", "margin", "certainty"}
    assert rule["refused_when"] == f"{rule['rule']}(probabilities) < threshold"
    assert 0 <= rule["threshold"] <= 1
    assert rule["validation"]["digit_false_rejection"] <= rule["budget"]


def test_a_checkpoint_keeps_the_whole_recipe(tiny_result: TrainResult, tmp_path: Path) -> None:
    """`export --checkpoint` writes the card from the checkpoint's record: the corrections
    folders a run mixed in were missing from a re-exported model's card."""
    sources: list[dict[str, object]] = [{"folder": "/feedback", "sha256": "ab12", "digits": 3}]
    recipe = training_config(TrainConfig(epochs=2, seed=5), AugmentConfig(), sources)
    path = save_best(tmp_path, tiny_result, recipe)
    result, loaded = load_best(path)
    assert loaded["extra_data"] == sources
    assert (loaded["epochs"], loaded["seed"]) == (2, 5)
    assert loaded["augment"]["rotate_deg"] == AugmentConfig().rotate_deg
    # The optimiser's and the augmentation's strengths are part of the record, not constants
    # in the code that a card cannot show.
    assert (loaded["momentum"], loaded["warmup_share"]) == (0.9, 0.2)
    assert loaded["augment"]["blur_sigma"] == (0.5, 1.2)
    assert result.best_epoch == tiny_result.best_epoch
