"""Printed digits mixed into training: MNIST-shaped glyphs, the requested share, seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.batches import mix_printed
from training.config import DIGIT_BOX
from training.fonts import find_fonts, render_font_digits

FONTS = find_fonts()
needs_fonts = pytest.mark.usefixtures("training_fonts")  # skips locally, fails under CI


@needs_fonts
def test_glyphs_are_mnist_shaped() -> None:
    digits = render_font_digits(FONTS[:3])
    assert digits.images.shape == (30, 28, 28) and digits.images.dtype == np.uint8
    assert list(digits.labels) == list(range(10)) * 3
    assert len(digits.fonts) == 3 and all(len(sha) == 64 for sha in digits.fonts.values())
    for image in digits.images:
        rows, cols = np.nonzero(image >= 32)
        longest = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
        assert DIGIT_BOX - 2 <= longest <= DIGIT_BOX + 1  # MNIST's 20-pixel box
        mass = image.astype(np.float64)
        centre_y = (mass.sum(axis=1) * np.arange(28)).sum() / mass.sum()
        centre_x = (mass.sum(axis=0) * np.arange(28)).sum() / mass.sum()
        assert abs(centre_y - 14) < 1.5 and abs(centre_x - 14) < 1.5  # centred by mass


def test_unreadable_font_is_skipped(tmp_path: Path) -> None:
    bogus = tmp_path / "Broken.ttf"
    bogus.write_bytes(b"not a font")
    digits = render_font_digits([bogus])
    assert digits.images.shape == (0, 28, 28) and digits.fonts == {}


@needs_fonts
def test_mix_replaces_requested_share_deterministically() -> None:
    digits = render_font_digits(FONTS[:2])
    xb, yb = torch.zeros(100, 1, 28, 28), torch.full((100,), -1)

    def mix(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return mix_printed(xb, yb, digits, 0.1, torch.Generator().manual_seed(seed))

    x1, y1 = mix(3)
    x2, y2 = mix(3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert int((y1 >= 0).sum()) == 10  # exactly the share asked for carries glyph labels
    assert bool((x1[:10].amax(dim=(1, 2, 3)) > 0.5).all()) and float(x1[10:].abs().sum()) == 0
    assert float(xb.abs().sum()) == 0 and bool((yb == -1).all())  # the caller's batch untouched


@needs_fonts
def test_printed_ones_are_drawn_as_often_as_their_weight_says() -> None:
    digits = render_font_digits(FONTS[:2])
    xb, yb = torch.zeros(4000, 1, 28, 28), torch.full((4000,), -1)

    def ones(weight: float) -> float:
        _, mixed = mix_printed(xb, yb, digits, 1.0, torch.Generator().manual_seed(5), weight)
        return float((mixed == 1).float().mean())

    assert 0.07 < ones(1.0) < 0.13  # one glyph in ten
    assert 0.21 < ones(3.0) < 0.29  # three in twelve
