"""A training run's state: what a checkpoint saves and what resuming restores, so that a
resumed run continues exactly as if it had not stopped; and what a finished run hands on.

The loop that advances it is train.py's.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.config import TrainConfig
from training.model import LeNet5

logger = logging.getLogger("training")

CHECKPOINT_NAME = "last.pt"


def first_lines(error: Exception) -> str:
    """torch's message on loading a checkpoint, on one line: a state dict of another shape
    lists every tensor, and some errors say nothing (their type, then)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    more = f" (and {len(lines) - 2} more)" if len(lines) > 2 else ""
    return " ".join(lines[:2]) + more if lines else type(error).__name__


@dataclass
class History:
    """Per-epoch figures, for the curves report and the model card."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)


@dataclass
class TrainResult:
    model: LeNet5  # the chosen epoch's weights (config.keep: best or last), in eval mode
    best_epoch: int
    val_accuracy: float
    history: History
    seconds: float  # training time, of every session of a resumed run
    fonts: dict[str, str] = field(default_factory=dict)  # printed digits' fonts: name -> sha256
    earlier_seconds: float = 0.0  # of ``seconds``, the sessions before a resume
    nondigits: dict[str, int] = field(default_factory=dict)  # outlier pool: kind -> images


class WeightAverage:
    """Exponential moving average of the weights (and batch-norm statistics).

    The decay warms up as (1 + n) / (10 + n) so that short runs are not dominated by the random
    initial weights; it then settles at `decay`.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        averaged = self.module.state_dict()
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                averaged[name].mul_(decay).add_(value.detach(), alpha=1 - decay)
            else:
                averaged[name].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]


class ResumeError(Exception):
    """RUN_DIR/last.pt cannot be continued; str() is one line naming it and why."""


@dataclass
class Run:
    """Everything a checkpoint saves, so that a resumed run continues exactly: the model, its
    weight average, the optimiser and its schedule, the generator the batches draw from, and
    the epochs so far."""

    model: LeNet5
    ema: WeightAverage
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    history: History = field(default_factory=History)
    best: dict[str, Any] = field(
        default_factory=lambda: {"epoch": 0, "val_accuracy": -1.0, "state": None}
    )
    epoch: int = 0  # the last epoch done
    # The corrections folders (--extra-data) it trains on, by index sha256: part of what a
    # resume must continue with, as the config is, though not a hyperparameter.
    extra_sources: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0  # training time up to the last epoch done, all sessions together

    def state_dict(self, config: TrainConfig) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),  # for any layer drawing from the global generator
            "history": self.history.__dict__,
            "best": self.best,
            "config": config.to_dict(),
            "extra": self.extra_sources,
            "seconds": self.seconds,
        }

    def load(self, path: Path, config: TrainConfig, device: str) -> None:
        """Continue from the checkpoint at ``path``, which must come from the same config."""
        try:
            state = torch.load(path, map_location=device, weights_only=False)
            saved = dict(state["config"])
        except Exception as error:  # torch raises many types for damaged files
            why = first_lines(error)
            raise ResumeError(f"{path}: not a checkpoint to resume ({why})") from None
        wanted = config.to_dict()
        if saved != wanted:
            changed = ", ".join(
                f"{key} {saved.get(key)!r} -> {wanted.get(key)!r}"
                for key in sorted(saved.keys() | wanted.keys())
                if saved.get(key) != wanted.get(key)
            )
            raise ResumeError(
                f"{path}: was trained with a different config ({changed}); resume needs the "
                "same flags (or start afresh without --resume)"
            )
        if state.get("extra", []) != self.extra_sources:
            raise ResumeError(
                f"{path}: was trained with other --extra-data ({_folders(state.get('extra', []))}"
                f" -> {_folders(self.extra_sources)}); resume needs the same folders, unchanged"
            )
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history = History(**state["history"])
        self.best = state["best"]
        self.epoch = state["epoch"]
        self.seconds = state.get("seconds", 0.0)  # absent from checkpoints before it was kept
        logger.info("resumed from %s after epoch %d", path, self.epoch)

    def save(self, path: Path, config: TrainConfig) -> None:
        """Written aside and renamed: a run stopped mid-write keeps the previous checkpoint."""
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(config), path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)


def _folders(sources: list[dict[str, object]]) -> str:
    return ", ".join(f"{source['folder']}" for source in sources) or "none"


def start_run(config: TrainConfig, steps_per_epoch: int, device: str) -> Run:
    """A fresh model (from the global generator, seeded), its optimiser and the one-cycle
    schedule over the main epochs; the fine-tuning phase sets its own rate
    (``set_finetune_rate``)."""
    model = LeNet5().to(device)
    ema = WeightAverage(model, config.ema_decay)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=True,
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=config.lr,
        epochs=config.epochs - config.finetune_epochs,
        steps_per_epoch=steps_per_epoch,
        pct_start=config.warmup_share,
    )
    generator = torch.Generator().manual_seed(config.seed)
    return Run(model, ema, optimizer, scheduler, generator)
