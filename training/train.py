"""The training loop: seeded, validated, checkpointed, resumable.

    $ python -m training train --epochs 16 --seed 1

The validation split is carved out of the 60 000 training images (seeded, class-mixed) and is
the only thing that picks the checkpoint; the test set is never looked at here.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from training.augment import AugmentConfig
from training.batches import Batch, BatchMaker, feed, standardise, to_tensor
from training.config import TrainConfig
from training.data import MnistSplit, carve_validation
from training.extra_data import OUTLIER, ExtraData
from training.fonts import FontDigits, find_fonts, render_font_digits
from training.model import LeNet5
from training.nondigits import NonDigitSource, build_pool
from training.run import CHECKPOINT_NAME, History, ResumeError, Run, TrainResult, start_run

logger = logging.getLogger("training")

EVAL_BATCH = 1000
REPORT_EVERY = 20  # steps between the progress bar's loss and accuracy updates


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # Every op this model uses on CPU is deterministic already; this guards future edits.
    torch.use_deterministic_algorithms(True, warn_only=True)


@torch.no_grad()
def evaluate_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean loss, accuracy) of a model on 0..1 images."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), EVAL_BATCH):
        logits = model(standardise(x[start : start + EVAL_BATCH]))
        target = y[start : start + EVAL_BATCH]
        loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(dim=1) == target).sum())
    return loss_sum / len(y), correct / len(y)


def printed_digits(fraction: float) -> FontDigits | None:
    """The installed fonts' digits, or None when not asked for or no font is installed."""
    if fraction <= 0:
        return None
    digits = render_font_digits(find_fonts())
    if not len(digits.labels):
        logger.warning("font_fraction=%s but no usable font found: MNIST only", fraction)
        return None
    logger.info("mixing in %d printed digits from %d fonts", len(digits.labels), len(digits.fonts))
    return digits


def nondigit_source(fraction: float, seed: int) -> NonDigitSource | None:
    """The outlier-exposure pool, or None when not asked for."""
    if fraction <= 0:
        return None
    return NonDigitSource(build_pool(find_fonts(), seed))


def outlier_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from the predicted distribution to the uniform one (Hendrycks et al.):
    zero gradient only when every class is equally likely."""
    if logits.shape[0] == 0:
        return logits.sum()
    return -F.log_softmax(logits, dim=1).mean()


def finetune_rate(config: TrainConfig, progress: float) -> float:
    """The fine-tuning phase's learning rate at ``progress`` (0..1 through it): a cosine
    from ``config.finetune_lr`` down to 0."""
    return config.finetune_lr * 0.5 * (1 + math.cos(math.pi * progress))


def with_extra(
    x: torch.Tensor, y: torch.Tensor, extra: ExtraData | None, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images and labels with the extra examples appended, each repeated;
    "not a digit" ones only when they have a weight."""
    if extra is None or not len(extra.labels):
        return x, y
    keep = extra.labels != OUTLIER if config.outlier_weight <= 0 else slice(None)
    images = np.repeat(extra.images[keep], config.extra_repeat, axis=0)
    labels = np.repeat(extra.labels[keep], config.extra_repeat, axis=0)
    return torch.cat([x, to_tensor(images)]), torch.cat([y, torch.from_numpy(labels)])


def check(config: TrainConfig) -> None:
    """Refuse a config whose schedule or choice of weights cannot work, before any training."""
    if config.epochs - config.finetune_epochs < 1:
        raise ValueError(f"finetune_epochs={config.finetune_epochs} leaves no main epoch")
    if config.keep not in ("best", "last"):
        raise ValueError(f"keep={config.keep!r}: 'best' or 'last'")


def set_finetune_rate(
    run: Run, config: TrainConfig, epoch: int, step: int, steps_per_epoch: int
) -> None:
    """The fine-tuning phase's rate for ``step`` of ``epoch``, set before the step uses it."""
    main_epochs = config.epochs - config.finetune_epochs
    done = (epoch - main_epochs - 1) * steps_per_epoch + step
    rate = finetune_rate(config, done / (config.finetune_epochs * steps_per_epoch))
    for group in run.optimizer.param_groups:
        group["lr"] = rate


def train_epoch(
    run: Run,
    batches: Iterable[Batch],
    config: TrainConfig,
    epoch: int,
    steps_per_epoch: int,
    report: Callable[[float, float], None] | None = None,
) -> tuple[float, float]:
    """One pass over ``batches``; the digits' (mean loss, accuracy), comparable to validation,
    also handed to ``report`` every ``REPORT_EVERY`` steps (the progress bar)."""
    run.model.train()
    finetuning = epoch > config.epochs - config.finetune_epochs
    loss_sum, correct, seen = 0.0, 0, 0
    for step, batch in enumerate(batches):
        all_logits = run.model(batch.x)
        logits = all_logits[: batch.digits]
        digit_loss = F.cross_entropy(logits, batch.y, label_smoothing=config.label_smoothing)
        loss = digit_loss
        if len(batch.x) > batch.digits:  # generated non-digits, "not a digit" corrections
            loss = loss + config.outlier_weight * outlier_loss(all_logits[batch.digits :])
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if finetuning:
            set_finetune_rate(run, config, epoch, step, steps_per_epoch)
        run.optimizer.step()
        if not finetuning:  # the one-cycle schedule advances after the step, as torch expects
            run.scheduler.step()
        run.ema.update(run.model)
        loss_sum += digit_loss.item() * len(batch.y)
        correct += int((logits.argmax(dim=1) == batch.y).sum())
        seen += len(batch.y)
        if report is not None and step % REPORT_EVERY == 0:
            report(loss_sum / seen, correct / seen)
    return loss_sum / seen, correct / seen


def record_epoch(
    run: Run,
    config: TrainConfig,
    figures: tuple[float, float, float, float],
    may_ship: bool,
    started: float,
) -> None:
    """Append the epoch's (train loss, train accuracy, val loss, val accuracy) and keep its
    weights when they are the ones to ship so far."""
    train_loss, train_accuracy, val_loss, val_accuracy = figures
    history = run.history
    history.train_loss.append(train_loss)
    history.train_accuracy.append(train_accuracy)
    history.val_loss.append(val_loss)
    history.val_accuracy.append(val_accuracy)
    history.lr.append(run.optimizer.param_groups[0]["lr"])
    # ">=": on a tie the later, longer-trained (and EMA-smoother) weights win.
    better = config.keep == "last" or val_accuracy >= run.best["val_accuracy"]
    if may_ship and better:
        run.best = {
            "epoch": run.epoch,
            "val_accuracy": val_accuracy,
            "state": copy.deepcopy(run.ema.module.state_dict()),
        }
    logger.info(
        "epoch %d/%d  train loss %.4f acc %.4f  val loss %.4f acc %.4f  best %.4f (epoch %d)"
        "  %.0fs",
        run.epoch,
        config.epochs,
        train_loss,
        train_accuracy,
        val_loss,
        val_accuracy,
        run.best["val_accuracy"],
        run.best["epoch"],
        time.monotonic() - started,
    )


def training_data(
    config: TrainConfig, train_split: MnistSplit, extra: ExtraData | None, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_val, y_val): the seeded validation split carved out of MNIST's
    training images (``config.limit_train`` of them), the extra examples joining the training
    part only."""
    train_part, val_part = carve_validation(
        train_split, limit=config.limit_train, val_size=config.val_size, seed=config.seed
    )
    x_train, y_train = to_tensor(train_part.images), torch.from_numpy(train_part.labels)
    x_train, y_train = with_extra(x_train, y_train, extra, config)
    x_val, y_val = to_tensor(val_part.images).to(device), torch.from_numpy(val_part.labels)
    return x_train, y_train, x_val, y_val.to(device)


def batch_maker(
    config: TrainConfig,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    generator: torch.Generator,
    augment_config: AugmentConfig | None,
) -> BatchMaker:
    """The maker of every step's batch: printed digits and non-digits as the config asks,
    augmented (``augment_config``, else the default strengths) unless it is off."""
    augment = (augment_config or AugmentConfig()) if config.augment else None
    return BatchMaker(
        x_train,
        y_train,
        config.batch_size,
        generator,
        printed=printed_digits(config.font_fraction),
        font_fraction=config.font_fraction,
        printed_ones_weight=config.printed_ones_weight,
        # Weight 0 turns outlier exposure off: no non-digits drawn for a loss that is zero.
        outliers=nondigit_source(config.outlier_fraction, config.seed)
        if config.outlier_weight > 0
        else None,
        outlier_fraction=config.outlier_fraction,
        augment_config=augment,
        flagged_ones=config.flagged_ones if config.augment else 0.0,
    )


class Diverged(Exception):
    """The training loss is no longer a number: the rate is too high for the run."""


def _check_finite(epoch: int, train_loss: float, val_loss: float, lr: float) -> None:
    """Diverged when either loss is no longer a number: NaN weights would be exported, with a
    card of NaNs, and the service would refuse the file only when it is deployed."""
    for name, loss in (("training", train_loss), ("validation", val_loss)):
        if not math.isfinite(loss):
            raise Diverged(
                f"epoch {epoch}: the {name} loss is {loss}: the run diverged (lower --lr than "
                f"{lr:g})"
            )


def fit(
    config: TrainConfig,
    train_split: MnistSplit,
    run_dir: Path,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    augment_config: AugmentConfig | None = None,
    on_epoch: Callable[[int, History], None] | None = None,
    extra: ExtraData | None = None,
) -> TrainResult:
    """Train LeNet-5; keep the weights (EMA) with the best validation accuracy, or the last
    epoch's (``config.keep``). ``extra`` (corrections folders) joins the training part only,
    ``config.extra_repeat`` times: the validation split stays MNIST's, so the checkpoint is
    chosen as before."""
    started = time.monotonic()
    check(config)
    # With two or more threads, batches are made on one of them (training/batches.py).
    ahead = config.threads >= 2
    torch.set_num_threads(max(1, config.threads - 1) if ahead else config.threads)
    seed_everything(config.seed)
    x_train, y_train, x_val, y_val = training_data(config, train_split, extra, device)
    steps_per_epoch = (len(y_train) + config.batch_size - 1) // config.batch_size
    run = start_run(config, steps_per_epoch, device)
    run.extra_sources = extra.sources if extra is not None else []
    checkpoint_path = run_dir / CHECKPOINT_NAME
    if resume:
        if not checkpoint_path.is_file():  # a mistyped --run-dir would start afresh
            raise ResumeError(f"--resume: {checkpoint_path} does not exist")
        run.load(checkpoint_path, config, device)
    earlier = run.seconds  # a resumed run's card counts its whole training time

    maker = batch_maker(config, x_train, y_train, run.generator, augment_config)
    outliers, printed = maker.outliers, maker.printed
    for epoch in range(run.epoch + 1, config.epochs + 1):
        exposed = epoch >= config.outlier_from_epoch
        maker.outliers = outliers if exposed else None
        order = torch.randperm(len(y_train), generator=run.generator)
        batches = feed(functools.partial(maker.make, order), steps_per_epoch, ahead)
        with (
            contextlib.closing(batches),
            tqdm(
                (batch.to(device) for batch in batches),
                total=steps_per_epoch,
                desc=f"epoch {epoch}/{config.epochs}",
                disable=not progress,
                leave=False,
                unit="batch",
            ) as bar,
        ):

            def report(loss: float, accuracy: float) -> None:
                bar.set_postfix(loss=f"{loss:.4f}", acc=f"{accuracy:.4f}")

            train_figures = train_epoch(run, bar, config, epoch, steps_per_epoch, report)
        run.epoch = epoch
        val_figures = evaluate_model(run.ema.module, x_val, y_val)
        _check_finite(epoch, train_figures[0], val_figures[0], config.lr)
        # Only weights that have seen the non-digits may ship.
        record_epoch(
            run, config, (*train_figures, *val_figures), exposed or outliers is None, started
        )
        run.seconds = earlier + time.monotonic() - started
        run.save(checkpoint_path, config)
        if on_epoch is not None:
            on_epoch(epoch, run.history)

    final = LeNet5()
    final.load_state_dict(run.best["state"])
    final.eval()
    return TrainResult(
        model=final,
        best_epoch=run.best["epoch"],
        val_accuracy=run.best["val_accuracy"],
        history=run.history,
        seconds=earlier + time.monotonic() - started,
        fonts=printed.fonts if printed is not None else {},
        nondigits=outliers.counts if outliers is not None else {},
        earlier_seconds=earlier,
    )
