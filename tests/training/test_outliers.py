"""Outlier exposure, calibration and the reject rule: the parts, on small data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.batches import BatchMaker, standardise
from training.calibrate import expected_calibration_error, fit_temperature, reliability
from training.config import DIGIT_BOX, TrainConfig
from training.data import MnistSplit
from training.export import DeployableLeNet
from training.extra_data import OUTLIER
from training.fonts import find_fonts, to_mnist_box
from training.model import LeNet5
from training.nondigits import (
    TRAIN_CHARACTERS,
    VALIDATION_CHARACTERS,
    NonDigitSource,
    build_pool,
    pairs,
    pieces,
    validation_nondigits,
)
from training.pen import DRAWINGS_PER_GLYPH, TRAIN_FACES, pen_glyphs
from training.rejection import choose_rule, score, threshold_for
from training.train import fit, outlier_loss
from training.validation_drawings import KINDS as DRAWING_KINDS
from training.validation_drawings import PER_KIND, validation_drawings

# Characters people also write as digits: never taught as non-digits.
DIGIT_LIKE = set("OoQDIl|i!Zz2Ss5Gb6B8gq9" + "0123456789")
FONTS = find_fonts()
needs_fonts = pytest.mark.usefixtures("training_fonts")  # skips locally, fails under CI


def _box_and_centre(image: np.ndarray) -> tuple[int, float, float]:
    rows, cols = np.nonzero(image >= 32)
    longest = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    mass = image.astype(np.float64)
    cy = (mass.sum(axis=1) * np.arange(28)).sum() / mass.sum()
    cx = (mass.sum(axis=0) * np.arange(28)).sum() / mass.sum()
    return int(longest), float(cy), float(cx)


def _assert_fitted_as_served(image: np.ndarray) -> None:
    longest, cy, cx = _box_and_centre(image)
    assert DIGIT_BOX - 2 <= longest <= DIGIT_BOX + 1  # the 20-pixel box
    assert abs(cy - 14) < 2 and abs(cx - 14) < 2  # centred by mass


def test_character_sets_are_disjoint_and_never_digit_like() -> None:
    assert not set(TRAIN_CHARACTERS) & set(VALIDATION_CHARACTERS)
    assert not (set(TRAIN_CHARACTERS) | set(VALIDATION_CHARACTERS)) & DIGIT_LIKE


@needs_fonts
def test_pool_is_normalised_like_served_images() -> None:
    pool = build_pool(FONTS[:2], seed=0)
    assert pool.images.dtype == np.uint8 and pool.images.shape[1:] == (28, 28)
    assert set(pool.kinds) == {"glyph", "shape", "scribble", "pen"}
    for image in pool.images[:: max(1, len(pool.images) // 200)]:
        _assert_fitted_as_served(image)


def test_pen_glyphs_are_seeded_fitted_and_differ_by_hand() -> None:
    """Each face's letter several times, each drawing another hand (pen, slant, tremor);
    characters the stroke faces lack (Greek, arrows) are skipped, not drawn blank."""
    first = pen_glyphs("Ak→", np.random.default_rng(0))
    assert len(first) == 2 * len(TRAIN_FACES) * DRAWINGS_PER_GLYPH
    assert np.array_equal(np.stack(first), np.stack(pen_glyphs("Ak→", np.random.default_rng(0))))
    drawings = np.stack(first[:DRAWINGS_PER_GLYPH]).astype(np.int16)  # one face's A
    assert all(np.abs(drawings[0] - other).sum() > 0 for other in drawings[1:])
    ink = (drawings >= 128).sum(axis=(1, 2))
    assert ink.max() > 1.3 * ink.min()  # pens of different widths
    for image in first:
        _assert_fitted_as_served(image)


def test_fit_keeps_the_aspect_of_wide_ink() -> None:
    dash = np.zeros((10, 400), np.uint8)
    dash[4:6, 100:300] = 255
    fitted = to_mnist_box(dash)
    assert fitted is not None
    rows, cols = np.nonzero(fitted >= 32)
    assert cols.max() - cols.min() + 1 == DIGIT_BOX and rows.max() - rows.min() + 1 <= 2
    assert to_mnist_box(np.zeros((5, 5), np.uint8)) is None


def test_pairs_and_pieces() -> None:
    generator = torch.Generator().manual_seed(0)
    digits = torch.zeros(4, 1, 28, 28)
    digits[:, :, 4:24, 12:16] = 1.0  # four 1s
    pair = pairs(digits, generator)
    ink = pair[0, 0] > 0.1
    rows, cols = ink.any(dim=1).nonzero(), ink.any(dim=0).nonzero()
    assert int(cols.max() - cols.min()) > 2 * int(rows.max() - rows.min()) / 3  # side by side
    labels = torch.tensor([1, 1, 7, 7])
    cut = pieces(digits, labels, generator)
    assert float(cut[:2].sum()) == 0  # every piece of a 1 is a 1: never a non-digit
    kept = cut[2:].sum(dim=(1, 2, 3)) / digits[2:].sum(dim=(1, 2, 3))
    assert bool(((kept == 0) | ((kept >= 0.15) & (kept <= 0.6))).all())


@needs_fonts
def test_source_batches_are_seeded_and_inked() -> None:
    source = NonDigitSource(build_pool(FONTS[:1], seed=0))
    digits, labels = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    a = source.batch(16, digits, labels, torch.Generator().manual_seed(5))
    b = source.batch(16, digits, labels, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and 0 < len(a) <= 16
    assert bool((a.amax(dim=(1, 2, 3)) > 0.1).all())


@needs_fonts
def test_validation_nondigits_are_other_kinds() -> None:
    held_out = validation_nondigits(FONTS[:2], seed=1)
    assert set(held_out.kinds) == {"glyph", "word", "drawing"} and len(held_out.images) > 20


def test_validation_drawings_are_seeded_and_fitted_as_digits_are() -> None:
    drawings = np.stack(validation_drawings(seed=3))
    assert len(drawings) == len(DRAWING_KINDS) * PER_KIND
    assert np.array_equal(drawings, np.stack(validation_drawings(seed=3)))
    assert not np.array_equal(drawings, np.stack(validation_drawings(seed=4)))
    for image in drawings[:: PER_KIND // 4]:
        longest, cy, cx = _box_and_centre(image)
        assert longest == DIGIT_BOX and abs(cy - 14) < 1.5 and abs(cx - 14) < 1.5


def test_outlier_loss_is_lowest_for_a_uniform_answer() -> None:
    uniform = torch.zeros(3, 10)
    confident = torch.zeros(3, 10)
    confident[:, 4] = 8.0
    assert float(outlier_loss(uniform)) == pytest.approx(np.log(10))
    assert float(outlier_loss(confident)) > float(outlier_loss(uniform)) + 1
    assert float(outlier_loss(torch.zeros(0, 10))) == 0.0


def test_temperature_recovers_a_known_one() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20_000, 10, generator=generator) * 3
    labels = torch.multinomial(F.softmax(logits / 0.5, dim=1), 1, generator=generator).squeeze(1)
    assert fit_temperature(logits, labels) == pytest.approx(0.5, rel=0.05)


def test_ece_of_calibrated_and_overconfident_answers() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 50_000)
    right = rng.random(50_000) < confidence
    probabilities = np.zeros((50_000, 10))
    labels = np.where(right, 0, 1)
    probabilities[:, 0] = confidence
    probabilities[:, 1:] = ((1 - confidence) / 9)[:, None]
    assert expected_calibration_error(probabilities, labels) < 0.01
    labels_over = np.where(rng.random(50_000) < confidence - 0.2, 0, 1)
    assert expected_calibration_error(probabilities, labels_over) == pytest.approx(0.2, abs=0.02)
    table = reliability(probabilities, labels)
    assert table.counts.sum() == 50_000 and len(table.confidence) == 15


def test_temperature_is_folded_into_the_graph_softmax() -> None:
    model = LeNet5().eval()
    x = torch.rand(4, 1, 28, 28)
    hot, cold = DeployableLeNet(model, 1.0), DeployableLeNet(model, 0.25)
    with torch.no_grad():
        logits = model((x - 0.1307) / 0.3081)
        assert torch.allclose(cold(x), F.softmax(logits / 0.25, dim=1), atol=1e-6)
        assert torch.equal(hot(x).argmax(1), cold(x).argmax(1))  # answers unchanged


def test_threshold_spends_exactly_the_budget() -> None:
    scores = np.linspace(0.0, 1.0, 1000)
    correct = np.ones(1000, bool)
    threshold = threshold_for(scores, correct, budget=0.01)
    assert int((scores < threshold).sum()) == 10  # 1 % of 1000 refused, no more
    correct[:5] = False  # wrong answers cost no accuracy when refused
    assert int(((scores < threshold_for(scores, correct, 0.01)) & correct).sum()) == 10


def test_the_rule_that_separates_best_wins() -> None:
    rng = np.random.default_rng(0)
    digits = rng.dirichlet(np.full(10, 0.05), 2000)
    labels = digits.argmax(axis=1)
    nondigits = rng.dirichlet(np.full(10, 1.0), 500)
    choice = choose_rule(digits, labels, nondigits, budget=0.005)
    assert choice.digit_false_rejection <= 0.005
    assert choice.nondigit_rejection > 0.9
    assert set(choice.candidates) == {"max_probability", "margin", "certainty"}
    best = max(choice.candidates.values(), key=lambda c: c["nondigit_rejection"])
    assert choice.nondigit_rejection == best["nondigit_rejection"]
    assert score(np.full((1, 10), 0.1), "certainty")[0] == pytest.approx(0.0, abs=1e-9)


def test_not_a_digit_corrections_join_the_non_digits_of_their_batch() -> None:
    """--extra-data's "not a digit" images (label OUTLIER) are trained towards uniform with
    the generated non-digits, never as a digit: the batch puts them after its digits."""
    x = torch.rand(8, 1, 28, 28)
    y = torch.tensor([3, OUTLIER, 1, 4, OUTLIER, 5, 9, 2])
    maker = BatchMaker(x, y, batch_size=8, generator=torch.Generator().manual_seed(0))
    batch = maker.make(torch.arange(8), 0)
    assert batch.digits == 6 and batch.y.tolist() == [3, 1, 4, 5, 9, 2]
    assert len(batch.x) == 8
    assert torch.allclose(batch.x[6:], standardise(x[[1, 4]]))


@needs_fonts
def test_late_outlier_exposure_ships_an_exposed_epoch(
    train_split: MnistSplit, tmp_path: Path
) -> None:
    """With non-digits from epoch 2 on, the checkpoint comes from an epoch that saw them,
    even when an earlier, digits-only epoch scored higher on validation."""
    # A heavy non-digit loss from epoch 2 on costs the digits validation accuracy.
    config = TrainConfig(
        epochs=2,
        batch_size=64,
        limit_train=600,
        val_size=100,
        seed=5,
        outlier_from_epoch=2,
        outlier_weight=200.0,
    )
    result = fit(config, train_split, tmp_path, progress=False)
    first, second = result.history.val_accuracy
    assert first > second  # the digits-only epoch scored higher...
    assert result.best_epoch == 2 and result.val_accuracy == second  # ...and is not shipped
    assert result.nondigits


def test_outlier_weight_zero_draws_no_nondigits(train_split: MnistSplit, tmp_path: Path) -> None:
    """Weight 0 turns outlier exposure off (--help says so): its non-digits were still drawn
    into every batch for a loss multiplied by 0, and the card listed their pool."""
    config = TrainConfig(
        epochs=1, batch_size=64, limit_train=600, val_size=100, seed=5, outlier_weight=0.0
    )
    assert fit(config, train_split, tmp_path, progress=False).nondigits == {}
