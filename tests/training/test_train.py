"""Training on a small real subset: learns, is deterministic, resumes exactly."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.conftest import SMALL
from training.augment import AugmentConfig, augment
from training.config import TrainConfig
from training.data import MnistSplit
from training.extra_data import ExtraData
from training.model import LeNet5, count_parameters
from training.run import History, ResumeError, TrainResult
from training.train import evaluate_model, fit, to_tensor


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [value.clone() for value in model.state_dict().values()]


def _stopped_then_resumed(
    config: TrainConfig, split: MnistSplit, run_dir: Path, after_epoch: int
) -> TrainResult:
    """A run interrupted after ``after_epoch``, then resumed from its checkpoint."""

    def stop(epoch: int, history: History) -> None:
        if epoch == after_epoch:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, split, run_dir, progress=False, on_epoch=stop)
    return fit(config, split, run_dir, resume=True, progress=False)


def test_lenet5_is_paper_sized() -> None:
    model = LeNet5()
    # 61 706 weights of the paper's LeNet-5 (full C3 table) + 44 batch-norm scales and shifts.
    assert count_parameters(model) == 61_706 + 44
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_augment_keeps_shape_range_and_ink() -> None:
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0  # a "1"
    out = augment(x, AugmentConfig(), torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert bool((out.amax(dim=(1, 2, 3)) > 0.99).all())  # every digit still has full ink
    assert not torch.equal(out[0], out[1])  # per-image randomness


def test_short_run_beats_chance_widely(tiny_result: TrainResult, test_split: MnistSplit) -> None:
    result = tiny_result
    assert result.val_accuracy > 0.8  # chance is 0.1
    _, test_accuracy = evaluate_model(
        result.model,
        to_tensor(test_split.images[:1000]),
        torch.from_numpy(test_split.labels[:1000]),
    )
    assert test_accuracy > 0.8
    assert len(result.history.val_accuracy) == SMALL.epochs
    assert result.history.val_accuracy[result.best_epoch - 1] == result.val_accuracy


def test_same_seed_same_weights(train_split: MnistSplit, tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, batch_size=64, limit_train=600, val_size=100, seed=7)
    first = fit(config, train_split, tmp_path / "a", progress=False)
    second = fit(config, train_split, tmp_path / "b", progress=False)
    for a, b in zip(_weights(first.model), _weights(second.model), strict=True):
        assert torch.equal(a, b)


def test_resume_continues_exactly(train_split: MnistSplit, tmp_path: Path) -> None:
    config = TrainConfig(epochs=2, batch_size=64, limit_train=600, val_size=100, seed=5)
    straight = fit(config, train_split, tmp_path / "straight", progress=False)
    resumed = _stopped_then_resumed(config, train_split, tmp_path / "resumed", after_epoch=1)
    assert resumed.history.val_accuracy == straight.history.val_accuracy
    for a, b in zip(_weights(straight.model), _weights(resumed.model), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_resumed_run_counts_the_time_before_it(train_split: MnistSplit, tmp_path: Path) -> None:
    """The model card's training time counted only the resumed part of a run."""
    config = TrainConfig(epochs=3, batch_size=64, limit_train=600, val_size=100, seed=5)
    pause_s = 3.0

    def slow_then_stop(epoch: int, history: History) -> None:
        if epoch == 1:
            time.sleep(pause_s)  # inside the first session's second epoch's time
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, train_split, tmp_path, progress=False, on_epoch=slow_then_stop)
    resumed = fit(config, train_split, tmp_path, resume=True, progress=False)
    assert resumed.seconds >= pause_s  # the first session's time is in it
    assert resumed.seconds > resumed.earlier_seconds >= pause_s


def test_keep_chooses_the_best_or_the_last_epoch(train_split: MnistSplit, tmp_path: Path) -> None:
    # A last epoch at a rate far too high: its weights are worse than the epoch before.
    config = TrainConfig(
        epochs=3, limit_train=600, val_size=100, seed=3, finetune_epochs=1, finetune_lr=1.0
    )
    best = fit(config, train_split, tmp_path / "best", progress=False)
    last = fit(replace(config, keep="last"), train_split, tmp_path / "last", progress=False)
    history = best.history.val_accuracy
    assert last.history.val_accuracy == history  # the same run, only the choice differs
    assert history[2] < history[1] and best.best_epoch == 2
    assert last.best_epoch == 3 and last.val_accuracy == history[-1]
    final_ema = torch.load(tmp_path / "last" / "last.pt", weights_only=False)["ema"]["module"]
    for name, value in last.model.state_dict().items():
        assert torch.equal(value, final_ema[name])


def test_keep_refuses_what_it_does_not_know(train_split: MnistSplit, tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, limit_train=300, val_size=60, keep="lats")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'best' or 'last'"):
        fit(config, train_split, tmp_path, progress=False)


def test_resume_refuses_other_config(train_split: MnistSplit, tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, batch_size=64, limit_train=300, val_size=60, seed=5)
    fit(config, train_split, tmp_path, progress=False)
    assert (tmp_path / "last.pt").is_file()
    with pytest.raises(ResumeError, match=r"different config \(batch_size 64 -> 32\)"):
        fit(
            TrainConfig(epochs=1, batch_size=32, limit_train=300, val_size=60, seed=5),
            train_split,
            tmp_path,
            resume=True,
            progress=False,
        )


def test_resume_refuses_other_corrections(train_split: MnistSplit, tmp_path: Path) -> None:
    """A run trained with --extra-data and resumed without it finished on other data, and
    its model card then named no corrections."""
    config = TrainConfig(epochs=1, batch_size=32, limit_train=300, val_size=60, seed=5)
    source = {"folder": "fb", "index_sha256": "ab" * 32, "digits": 4, "outliers": 0}
    extra = ExtraData(train_split.images[:4], train_split.labels[:4].astype(np.int64), [source])
    fit(config, train_split, tmp_path, progress=False, extra=extra)
    with pytest.raises(ResumeError, match=r"other --extra-data \(fb -> none\)"):
        fit(config, train_split, tmp_path, resume=True, progress=False)


def test_finetune_phase_restarts_the_rate_and_resumes_exactly(
    train_split: MnistSplit, tmp_path: Path
) -> None:
    """The last epochs' cosine from finetune_lr follows the one-cycle's end, and a run
    stopped inside that phase resumes to the same weights."""
    config = TrainConfig(
        epochs=3,
        finetune_epochs=2,
        finetune_lr=0.02,
        batch_size=64,
        limit_train=600,
        val_size=100,
        seed=5,
    )
    straight = fit(config, train_split, tmp_path / "straight", progress=False)
    one_cycle_end, finetune_middle, finetune_end = straight.history.lr
    assert one_cycle_end < 0.1 * config.lr  # the one-cycle ran down (8 steps: not to 0)
    assert 0.01 < finetune_middle < 0.02  # just before half way down the cosine from 0.02
    assert finetune_end < 0.001
    resumed = _stopped_then_resumed(config, train_split, tmp_path / "resumed", after_epoch=2)
    assert resumed.history.lr == straight.history.lr
    for a, b in zip(_weights(straight.model), _weights(resumed.model), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_finetune_phase_needs_a_main_phase(train_split: MnistSplit, tmp_path: Path) -> None:
    config = TrainConfig(epochs=2, finetune_epochs=2, limit_train=300, val_size=60)
    with pytest.raises(ValueError, match="finetune_epochs"):
        fit(config, train_split, tmp_path, progress=False)
