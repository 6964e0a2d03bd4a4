"""Pictures a person reads: confusion matrix, training curves, reliability and rejection plots."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training.calibrate import ECE_BINS, Reliability  # noqa: E402
from training.config import LABELS  # noqa: E402

if TYPE_CHECKING:
    from training.run import History

DPI = 120


def confusion_png(confusion: np.ndarray, accuracy: float, path: Path) -> None:
    """Counts per (true, predicted) cell; the diagonal is muted so the errors stand out."""
    errors = confusion.astype(float).copy()
    np.fill_diagonal(errors, 0.0)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(errors, cmap="Reds", vmin=0, vmax=max(errors.max(), 1.0))
    for (row, col), count in np.ndenumerate(confusion):
        if count:
            ax.text(
                col,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=8,
                color="dimgray" if row == col else "black",
                fontweight="normal" if row == col else "bold",
            )
    ax.set_xticks(range(len(LABELS)), LABELS)
    ax.set_yticks(range(len(LABELS)), LABELS)
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    wrong = int(confusion.sum() - np.trace(confusion))
    ax.set_title(
        f"MNIST test set, ONNX Runtime: accuracy {accuracy:.2%} "
        f"({wrong} errors of {int(confusion.sum())})",
        fontsize=10,
    )
    fig.colorbar(image, ax=ax, label="errors (off-diagonal counts)")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def curves_png(history: History, best_epoch: int, path: Path) -> None:
    """Loss and accuracy per epoch, training (augmented) and validation, best epoch marked."""
    epochs = np.arange(1, len(history.train_loss) + 1)
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    loss_ax.plot(epochs, history.train_loss, "o-", label="train (augmented, smoothed labels)")
    loss_ax.plot(epochs, history.val_loss, "s-", label="validation")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    loss_ax.set_title("loss")
    acc_ax.plot(epochs, np.array(history.train_accuracy) * 100, "o-", label="train (augmented)")
    acc_ax.plot(epochs, np.array(history.val_accuracy) * 100, "s-", label="validation")
    acc_ax.axvline(best_epoch, color="gray", linestyle="--", label=f"chosen: epoch {best_epoch}")
    acc_ax.set_ylim(max(90.0, min(history.val_accuracy + history.train_accuracy) * 100 - 1), 100)
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.set_title("accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_xticks(epochs)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def reliability_png(tables: dict[str, Reliability], path: Path) -> None:
    """Reliability diagram: accuracy against confidence per bin, one line per data set; on
    the diagonal, answers at confidence p are right a share p of the time."""
    fig, (curve_ax, count_ax) = plt.subplots(
        2, 1, figsize=(6.5, 7.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    curve_ax.plot([0, 1], [0, 1], color="gray", linestyle="--", label="perfect calibration")
    width = np.diff(next(iter(tables.values())).edges)[0] / (len(tables) + 1)
    for i, (name, table) in enumerate(tables.items()):
        used = table.counts > 0
        curve_ax.plot(
            table.confidence[used],
            table.accuracy[used],
            "o-",
            label=f"{name}: ECE {table.ece:.2%} ({int(table.counts.sum())} images)",
        )
        count_ax.bar(table.edges[:-1] + (i + 0.5) * width, table.counts, width=width, label=name)
    curve_ax.set_ylabel("accuracy in the bin")
    curve_ax.set_title(f"Reliability ({ECE_BINS} confidence bins, ONNX Runtime)", fontsize=10)
    curve_ax.set_xlim(0, 1)
    curve_ax.set_ylim(0, 1.01)
    curve_ax.grid(alpha=0.3)
    curve_ax.legend(fontsize=8, loc="upper left")
    count_ax.set_yscale("log")
    count_ax.set_xlabel("confidence (top probability)")
    count_ax.set_ylabel("answers")
    count_ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def rejection_png(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    chosen: tuple[float, float],
    rule: str,
    threshold: float,
    path: Path,
) -> None:
    """Non-digits refused against digits refused (right answers lost), one line per
    validation set pairing, with the chosen threshold marked."""
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for name, (lost, caught) in curves.items():
        ax.plot(np.maximum(lost, 1e-5) * 100, caught * 100, "-", label=name)
    ax.plot(
        max(chosen[0], 1e-5) * 100,
        chosen[1] * 100,
        "ko",
        label=f"chosen: {rule} < {threshold:.3f}",
    )
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 100)
    ax.set_ylim(0, 101)
    ax.set_xlabel("digits answered right but refused (% of digits, log scale)")
    ax.set_ylabel("non-digits refused (%)")
    ax.set_title("Refusing non-digits: the trade-off (validation sets, ONNX Runtime)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
