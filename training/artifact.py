"""From trained weights to the shipped artifact: ONNX + parity, ORT test accuracy, reports, card.

`train` and `export` both end here, so a re-export from a checkpoint produces exactly the same
kind of artifact as a fresh training run.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from training.batches import standardise, to_tensor
from training.calibrate import ECE_BINS, Reliability, fit_temperature, reliability
from training.config import (
    CARD_SUFFIX,
    IMAGE_SIDE,
    LABELS,
    MNIST_MEAN,
    MNIST_STD,
    MODEL_NAME,
    MODEL_VERSION,
    OPSET,
    REPORT_SUFFIXES,
)
from training.data import data_checksums, load_split
from training.evaluate import (
    Evaluation,
    evaluation_of,
    open_session,
    per_class_table,
    probabilities,
)
from training.export import INPUT_NAME, OUTPUT_NAME, export_onnx, write_metadata
from training.model import LeNet5, count_parameters
from training.rejection import DEFAULT_BUDGET, choose_rule, curve
from training.report import (
    confusion_png,
    curves_png,
    rejection_png,
    reliability_png,
)
from training.run import TrainResult
from training.validation import ValidationSets, validation_sets

logger = logging.getLogger("training")

INPUT_CONVENTION = "mnist: float32 0..1, white on black, 20x20 box centred by mass in 28x28"


@torch.no_grad()
def calibrated_temperature(model: LeNet5, sets: ValidationSets) -> float:
    """Temperature fitted on the MNIST validation digits (training/calibrate.py)."""
    model.eval()
    logits = model(standardise(to_tensor(sets.digits.images)))
    return fit_temperature(logits, torch.from_numpy(sets.digits.labels))


def _reject_rule(
    session: ort.InferenceSession, digits: np.ndarray, out: Path, sets: ValidationSets
) -> tuple[dict[str, Any], Path]:
    """Choose the score rule and threshold on validation data with the exported file (what
    the service runs), and draw the trade-off. ``digits``: the validation digits'
    probabilities, which the reliability table reads too."""
    styled = probabilities(session, sets.styled.images)
    nondigits = probabilities(session, sets.nondigits)
    every = np.concatenate([digits, styled])
    labels = np.concatenate([sets.digits.labels, sets.styled.labels])
    choice = choose_rule(every, labels, nondigits, DEFAULT_BUDGET)
    curves = {}
    for name, (probs, truth) in {
        "MNIST validation digits": (digits, sets.digits.labels),
        "digits in other styles": (styled, sets.styled.labels),
    }.items():
        _, lost, caught = curve(choice.rule, probs, truth, nondigits)
        curves[f"{name} vs held-out non-digits"] = (lost, caught)
    path = out.with_suffix(REPORT_SUFFIXES["rejection"])
    rejection_png(
        curves,
        (choice.digit_false_rejection, choice.nondigit_rejection),
        choice.rule,
        choice.threshold,
        path,
    )
    summary = {
        "rule": choice.rule,
        "threshold": round(choice.threshold, 6),
        "refused_when": f"{choice.rule}(probabilities) < threshold",
        "budget": choice.budget,
        "validation": {
            "digits": int(len(labels)),
            "nondigits": int(len(nondigits)),
            "digit_false_rejection": round(choice.digit_false_rejection, 6),
            "nondigit_rejection": round(choice.nondigit_rejection, 6),
            "candidates": choice.candidates,
        },
    }
    return summary, path


def _reports(
    out: Path, evaluation: Evaluation, result: TrainResult, tables: dict[str, Reliability]
) -> dict[str, Path]:
    """The confusion matrix, learning curves and reliability diagram beside ``out``."""
    paths = {
        name: out.with_suffix(suffix)
        for name, suffix in REPORT_SUFFIXES.items()
        if name != "rejection"  # _reject_rule draws it
    }
    confusion_png(evaluation.confusion, evaluation.accuracy, paths["confusion"])
    curves_png(result.history, result.best_epoch, paths["curves"])
    reliability_png(tables, paths["reliability"])
    return paths


def _metadata(
    result: TrainResult,
    training_config: dict[str, Any],
    evaluation: Evaluation,
    calibration: dict[str, Any],
    reject: dict[str, Any],
) -> dict[str, Any]:
    """What the ONNX file carries about itself: the service reads its contract (labels,
    normalisation, the not-a-digit rule) from here, and shows the rest."""
    return {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "labels": LABELS,
        "input_convention": INPUT_CONVENTION,
        "normalization": {"mean": MNIST_MEAN, "std": MNIST_STD, "in_graph": True},
        "val_accuracy": f"{result.val_accuracy:.4f}",
        "test_accuracy": f"{evaluation.accuracy:.4f}",
        "param_count": str(count_parameters(result.model)),
        "training_config": training_config,
        "seed": str(training_config["seed"]),
        "data_sha256": data_checksums(),
        "fonts": result.fonts,
        "calibration": calibration,
        "not_a_digit": reject,
    }


def ship(
    result: TrainResult,
    training_config: dict[str, Any],
    data_dir: Path,
    out: Path,
    started: float,
) -> dict[str, Any]:
    """Calibrate, export, verify, choose the reject rule, measure on the test set with ONNX
    Runtime, report; return the card."""
    test = load_split(data_dir, train=False)
    sets = validation_sets(training_config, data_dir)
    temperature = calibrated_temperature(result.model, sets)
    parity = export_onnx(result.model, out, test.images.astype("float32") / 255.0, temperature)
    session = open_session(out)  # the exported file, as the service will run it
    val_probs = probabilities(session, sets.digits.images)
    reject, rejection_path = _reject_rule(session, val_probs, out, sets)
    test_probs = probabilities(session, test.images)
    evaluation = evaluation_of(test_probs.argmax(axis=1), test.labels)
    tables = {
        "MNIST test": reliability(test_probs, test.labels),
        "MNIST validation": reliability(val_probs, sets.digits.labels),
    }
    reports = {**_reports(out, evaluation, result, tables), "rejection": rejection_path}
    calibration = {
        "temperature": round(temperature, 6),
        "fitted_on": "MNIST validation split (negative log-likelihood)",
        "ece_bins": ECE_BINS,
        "ece_test": round(tables["MNIST test"].ece, 6),
        "ece_validation": round(tables["MNIST validation"].ece, 6),
    }
    metadata = _metadata(result, training_config, evaluation, calibration, reject)
    sha256 = write_metadata(out, metadata)
    card: dict[str, Any] = {
        **metadata,
        "val_accuracy": round(result.val_accuracy, 6),
        "test_accuracy": round(evaluation.accuracy, 6),
        "param_count": count_parameters(result.model),
        "seed": training_config["seed"],
        "sha256": sha256,
        "file": out.name,
        "opset": OPSET,
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "shape": ["N", 1, IMAGE_SIDE, IMAGE_SIDE],
        },
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["N", len(LABELS)]},
        "best_epoch": result.best_epoch,
        "val_images": int(len(sets.digits.labels)),  # val_size is the most it may hold
        "test_images": evaluation.images,
        "test_errors": int(evaluation.confusion.sum() - evaluation.confusion.trace()),
        "per_class_accuracy": per_class_table(evaluation.confusion),
        "confusion_matrix": evaluation.confusion.tolist(),
        "reliability_test": {
            "confidence": tables["MNIST test"].confidence.round(6).tolist(),
            "accuracy": tables["MNIST test"].accuracy.round(6).tolist(),
            "counts": tables["MNIST test"].counts.tolist(),
        },
        "nondigit_pool": result.nondigits,
        "parity": parity.to_dict(),
        "history": result.history.__dict__,
        "train_seconds": round(result.seconds, 1),
        "wall_time_seconds": round(time.monotonic() - started, 1),
        "reports": {name: path.name for name, path in reports.items()},
    }
    card_path = out.with_suffix(CARD_SUFFIX)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    logger.info("wrote %s, %s and %d reports", out, card_path, len(card["reports"]))
    return card
