"""The data that calibrates the model and chooses its "not a digit" threshold; never the test set.

- MNIST validation digits: the split carved out of the training images (train.py), as is.
- Digits in other styles: the same digits through the training augmentation (thicker,
  thinner, slanted, wobbly, low resolution), and the fonts' printed digits augmented alike:
  people write and print digits that MNIST's writers did not.
- Non-digits of kinds training never showed (nondigits.validation_nondigits).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.augment import AugmentConfig, augment
from training.batches import to_tensor
from training.config import TrainConfig
from training.data import MnistSplit, carve_validation, load_split
from training.fonts import find_fonts, render_font_digits
from training.nondigits import validation_nondigits

# Seeds the styled copies' augmentation and the held-out non-digits apart from training's.
STYLED_SEED_OFFSET = 1000


@dataclass(frozen=True)
class ValidationSets:
    digits: MnistSplit  # MNIST validation split, untouched
    styled: MnistSplit  # augmented copies and printed digits
    nondigits: np.ndarray  # (K, 28, 28) uint8


def validation_split(training_config: dict[str, Any], data_dir: Path) -> MnistSplit:
    """The exact validation split ``fit`` held out for this configuration."""
    return carve_validation(
        load_split(data_dir, train=True),
        limit=training_config.get("limit_train"),
        val_size=int(training_config.get("val_size", TrainConfig.val_size)),
        seed=int(training_config["seed"]),
    )[1]


def _as_uint8(x: torch.Tensor) -> np.ndarray:
    return (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def styled_digits(digits: MnistSplit, seed: int) -> MnistSplit:
    """Augmented copies of ``digits`` plus the installed fonts' digits, augmented twice."""
    generator = torch.Generator().manual_seed(seed + STYLED_SEED_OFFSET)
    config = AugmentConfig()
    printed = render_font_digits(find_fonts())
    images = [_as_uint8(augment(to_tensor(digits.images), config, generator))]
    labels = [digits.labels]
    if len(printed.labels):
        for _ in range(2):
            images.append(_as_uint8(augment(to_tensor(printed.images), config, generator)))
            labels.append(printed.labels)
    return MnistSplit(np.concatenate(images), np.concatenate(labels))


def validation_sets(training_config: dict[str, Any], data_dir: Path) -> ValidationSets:
    digits = validation_split(training_config, data_dir)
    seed = int(training_config["seed"])
    held_out = validation_nondigits(find_fonts(), seed + STYLED_SEED_OFFSET)
    return ValidationSets(
        digits=digits,
        styled=styled_digits(digits, seed),
        nondigits=held_out.images,
    )
