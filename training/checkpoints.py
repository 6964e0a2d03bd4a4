"""The weights a run chose, saved with everything needed to ship them again later.

``python -m training train`` writes ``best.pt`` into its run folder; ``export`` reads it back
and ships it as a fresh run does (training/artifact.py). The training loop's own checkpoint,
to continue a run, is train.py's.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from training.augment import AugmentConfig
from training.config import TrainConfig
from training.model import LeNet5
from training.run import History, TrainResult, first_lines

BEST_NAME = "best.pt"


class CheckpointError(Exception):
    """A checkpoint file is missing or unusable; str() is one line naming it."""


def training_config(
    config: TrainConfig, aug: AugmentConfig, extra_sources: list[dict[str, object]] | None = None
) -> dict[str, Any]:
    """What the card records as the recipe: the run's settings, its augmentation and any
    corrections folders mixed in. One function, so a fresh run and a re-export say the same."""
    record: dict[str, Any] = {**config.to_dict(), "augment": asdict(aug)}
    if extra_sources:
        record["extra_data"] = list(extra_sources)
    return record


def save_best(run_dir: Path, result: TrainResult, recipe: dict[str, Any]) -> Path:
    """The chosen weights with everything needed to export them again later; ``recipe`` is
    ``training_config``'s record."""
    path = run_dir / BEST_NAME
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "model": result.model.state_dict(),
            "training_config": recipe,
            "history": result.history.__dict__,
            "best_epoch": result.best_epoch,
            "val_accuracy": result.val_accuracy,
            "train_seconds": result.seconds,
            "fonts": result.fonts,
            "nondigits": result.nondigits,
        },
        path,
    )
    return path


def load_best(path: Path) -> tuple[TrainResult, dict[str, Any]]:
    """(result, training config incl. augmentation) from a file written by save_best."""
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; name the checkpoint in it ({BEST_NAME})")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found (run `python -m training train`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        model = LeNet5()
        model.load_state_dict(state["model"])
    except Exception as error:  # torch raises many types for damaged files
        raise CheckpointError(f"{path}: not a usable checkpoint ({first_lines(error)})") from None
    if "optimizer" in state:  # the training loop's own checkpoint (train.CHECKPOINT_NAME)
        raise CheckpointError(
            f"{path}: a training run's checkpoint, to continue with `train --resume`; export "
            f"takes the weights a run chose ({BEST_NAME} in the same folder)"
        )
    model.eval()
    try:
        result = TrainResult(
            model=model,
            best_epoch=state["best_epoch"],
            val_accuracy=state["val_accuracy"],
            history=History(**state["history"]),
            seconds=state["train_seconds"],
            fonts=state.get("fonts", {}),
            nondigits=state.get("nondigits", {}),
        )
        if "training_config" in state:
            return result, state["training_config"]
        # Written before the record held the corrections folders: settings and augmentation.
        return result, {**state["config"], "augment": state["augment"]}
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: not a checkpoint `train` wrote ({error!r})") from None
