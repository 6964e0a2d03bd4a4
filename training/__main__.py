"""`python -m training {train,export,evaluate}` (also installed as `digits-train`).

    $ python -m training train --data-dir ../shared/data/mnist    # train, export, report
    $ python -m training export --checkpoint runs/lenet5/best.pt  # re-export a checkpoint
    $ python -m training evaluate --model models/lenet5.onnx      # ORT accuracy on MNIST test

Known failures (missing or corrupt data, a corrections folder that cannot be read, missing
model or checkpoint or one of other shapes, a run that cannot be resumed or that diverged,
failed parity, an output that cannot be written, a device the machine lacks) end with one
line on stderr naming the file and the problem, and exit status 1; no traceback. A value no
run could use (0 epochs, a NaN rate) is argparse's usage error, status 2, before anything is
loaded.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.config import (
    CARD_SUFFIX,
    DEFAULT_OUT,
    DEFAULT_RUN_DIR,
    REPORT_SUFFIXES,
    TrainConfig,
    default_data_dir,
)
from training.data import DataError

logger = logging.getLogger("training")
DEFAULTS = TrainConfig()


class OutputError(Exception):
    """An output path cannot be written; found before training, not after its minutes."""


class DeviceError(Exception):
    """The device asked for is not on this machine."""


def _number(kind: type[int] | type[float], low: float, high: float, what: str) -> Any:
    """An argparse type: a finite ``kind`` within [low, high], or a usage error saying so."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


POSITIVE_INT = _number(int, 1, math.inf, "a whole number of at least 1")
# A fifth is held out for validation, which its accuracy is a share of: at least one image.
TRAIN_LIMIT = _number(int, 10, math.inf, "a whole number of at least 10")
POSITIVE = _number(float, math.ulp(0.0), math.inf, "a number above 0")
NON_NEGATIVE = _number(float, 0.0, math.inf, "a number of at least 0")
FRACTION = _number(float, 0.0, 1.0, "a fraction from 0 to 1")
SEED = _number(int, 0, 2**32 - 1, "a seed from 0 to 2**32 - 1")  # numpy's legacy seeding range


def check_out(path: Path) -> None:
    """``--out`` names an ONNX file in a folder that can be written: checked before minutes
    of training, not when the export finds a folder there or picks a format by the suffix."""
    if path.suffix != ".onnx":
        raise OutputError(f"--out {path}: the model file's name must end in .onnx")
    if path.is_dir():
        raise OutputError(f"--out {path}: is a folder; name the .onnx file to write")
    for suffix in (CARD_SUFFIX, *REPORT_SUFFIXES.values()):  # written beside it, at the end
        if (beside := path.with_suffix(suffix)).is_dir():
            raise OutputError(
                f"--out {path}: {beside} is a folder, where its card or a report goes"
            )
    check_writable(path.parent, "--out")


def check_writable(folder: Path, option: str) -> None:
    """Write a scratch file in ``folder``, or in its nearest existing parent when it is yet to
    be made (the run makes it): OutputError naming ``option`` if that fails. No folder is
    made here, so a run that another check stops leaves none behind."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OutputError(f"{option} {folder}: cannot write there ({reason})") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train LeNet-5 on MNIST, export it to ONNX, evaluate ONNX files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    formatter = argparse.ArgumentDefaultsHelpFormatter

    def data_arguments(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--data-dir",
            type=Path,
            default=default_data_dir(),
            help="folder with the four MNIST IDX files, .gz or raw ($DIGITS_DATA_DIR when set)",
        )

    train = commands.add_parser(
        "train", help="train, then export + verify + report", formatter_class=formatter
    )
    data_arguments(train)
    train.add_argument(
        "--download", action="store_true", help="fetch missing data files from public mirrors"
    )
    train.add_argument("--epochs", type=POSITIVE_INT, default=DEFAULTS.epochs, help="passes")
    train.add_argument(
        "--batch-size", type=POSITIVE_INT, default=DEFAULTS.batch_size, help="digits per step"
    )
    train.add_argument("--lr", type=POSITIVE, default=DEFAULTS.lr, help="peak one-cycle LR")
    train.add_argument("--seed", type=SEED, default=DEFAULTS.seed, help="every random draw's")
    train.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to train")
    train.add_argument("--threads", type=POSITIVE_INT, default=DEFAULTS.threads, help="CPU threads")
    train.add_argument("--out", type=Path, default=DEFAULT_OUT, help="ONNX file to write")
    train.add_argument(
        "--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="checkpoints (last.pt, best.pt)"
    )
    train.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    train.add_argument(
        "--limit-train",
        type=TRAIN_LIMIT,
        default=None,
        help="use only the first N training images",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument(
        "--extra-data",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a corrections folder (the service's DIGITS_FEEDBACK_DIR) to mix into training: "
        "digits as labelled examples, 'not a digit' as outliers; repeatable",
    )
    train.add_argument(
        "--extra-repeat",
        type=POSITIVE_INT,
        default=DEFAULTS.extra_repeat,
        help="times each extra example appears per epoch (a few corrections among 55 000 "
        "MNIST images teach nothing once)",
    )
    train.add_argument(
        "--outlier-weight",
        type=NON_NEGATIVE,
        default=DEFAULTS.outlier_weight,
        help="weight of the loss that pulls 'not a digit' examples (generated non-digits, "
        "corrections) towards a uniform answer (outlier exposure); 0 turns it off",
    )
    train.add_argument(
        "--flagged-ones",
        type=FRACTION,
        default=DEFAULTS.flagged_ones,
        help="share of MNIST's bare 1s given a flag, a third of them a base, as most of the "
        "world writes and prints a 1 (training/ones.py)",
    )
    train.add_argument(
        "--printed-ones-weight",
        type=POSITIVE,
        default=DEFAULTS.printed_ones_weight,
        help="how many times as often a printed 1 is drawn as another printed digit: a 1 "
        "printed as a flag and a stem is otherwise read as 7",
    )
    train.add_argument(
        "--keep",
        choices=["best", "last"],
        default=DEFAULTS.keep,
        help="ship the epoch with the best validation accuracy, or the last epoch",
    )

    export = commands.add_parser(
        "export", help="export a checkpoint to ONNX + card + reports", formatter_class=formatter
    )
    data_arguments(export)
    export.add_argument(
        "--checkpoint",
        type=Path,
        default=DEFAULT_RUN_DIR / "best.pt",
        help="the weights a training run chose, in its run folder",
    )
    export.add_argument("--out", type=Path, default=DEFAULT_OUT, help="ONNX file to write")

    evaluate = commands.add_parser(
        "evaluate", help="MNIST test accuracy of an ONNX file", formatter_class=formatter
    )
    data_arguments(evaluate)
    evaluate.add_argument("--model", type=Path, default=DEFAULT_OUT, help="ONNX file to score")
    evaluate.add_argument(
        "--data",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="also score the model on a corrections folder (DIGITS_FEEDBACK_DIR); repeatable",
    )
    evaluate.add_argument(
        "--min-accuracy",
        type=FRACTION,
        default=None,
        help="exit with status 1 when the accuracy (fraction) is below this",
    )
    return parser


def _train(args: argparse.Namespace, started: float) -> int:
    import torch

    from training.artifact import ship
    from training.augment import AugmentConfig
    from training.checkpoints import save_best, training_config
    from training.data import download, load_split
    from training.extra_data import load_extra
    from training.train import fit

    if args.device == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: CUDA is not available on this machine")
    check_out(args.out)
    check_writable(args.run_dir, "--run-dir")
    if args.download:
        download(args.data_dir)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        limit_train=args.limit_train,
        extra_repeat=args.extra_repeat,
        outlier_weight=args.outlier_weight,
        flagged_ones=args.flagged_ones,
        printed_ones_weight=args.printed_ones_weight,
        keep=args.keep,
    )
    augment_config = AugmentConfig()
    extra = load_extra(args.extra_data) if args.extra_data else None
    if extra is not None:
        left_out = " (left out: --outlier-weight 0)" if config.outlier_weight <= 0 else ""
        logger.info(
            "extra data: %d digits and %d outliers%s from %s",
            extra.digits,
            extra.outliers,
            left_out,
            ", ".join(str(folder) for folder in args.extra_data),
        )
    train_split = load_split(args.data_dir, train=True)
    load_split(args.data_dir, train=False)  # fail now, not after minutes of training
    result = fit(
        config,
        train_split,
        args.run_dir,
        device=args.device,
        resume=args.resume,
        progress=not args.no_progress,
        augment_config=augment_config,
        extra=extra,
    )
    recipe = training_config(config, augment_config, extra.sources if extra else None)
    save_best(args.run_dir, result, recipe)
    card = ship(result, recipe, args.data_dir, args.out, started)
    _summary(card)
    return 0


def _export(args: argparse.Namespace, started: float) -> int:
    from training.artifact import ship
    from training.checkpoints import load_best

    check_out(args.out)
    result, training_config = load_best(args.checkpoint)
    card = ship(result, training_config, args.data_dir, args.out, started - result.seconds)
    _summary(card)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import (
        evaluate_corrections,
        evaluate_file,
        format_table,
        per_class_table,
    )

    evaluation = evaluate_file(args.model, args.data_dir)
    sys.stdout.write(
        f"{args.model}: MNIST test accuracy {evaluation.accuracy:.2%} "
        f"({evaluation.images} images, ONNX Runtime)\n"
        f"{format_table(per_class_table(evaluation.confusion))}\n"
    )
    for folder in args.data:
        _report_corrections(evaluate_corrections(args.model, folder))
    if args.min_accuracy is not None and evaluation.accuracy < args.min_accuracy:
        sys.stderr.write(
            f"error: {args.model}: accuracy {evaluation.accuracy:.4f} is below "
            f"--min-accuracy {args.min_accuracy}\n"
        )
        return 1
    return 0


def _report_corrections(score: Any) -> None:
    """One paragraph: how the model reads what users corrected."""
    digits = f"{score.digits} corrected digit{'' if score.digits == 1 else 's'}"
    lines = [f"{score.folder}: {digits}, {score.outliers} 'not a digit'"]
    if score.digits:
        lines.append(
            f"  digits read as corrected: {score.correct} of {score.digits} "
            f"({score.accuracy:.2%}); the service had answered {score.served_correct} right"
        )
    if score.outliers:
        lines.append(
            f"  'not a digit': median top-class probability {score.outlier_top_median:.3f}, "
            f"{score.outliers_unsure} of {score.outliers} below 0.5"
        )
    sys.stdout.write("\n".join(lines) + "\n")


def _summary(card: dict[str, Any]) -> None:
    sys.stdout.write(
        f"{card['file']}: validation accuracy {card['val_accuracy']:.2%} "
        f"(epoch {card['best_epoch']}), test accuracy {card['test_accuracy']:.2%} "
        f"(ONNX Runtime), {card['param_count']} parameters, wall time "
        f"{card['wall_time_seconds']:.0f} s, sha256 {card['sha256']}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from training.evaluate import ModelFileError

    handled: tuple[type[Exception], ...] = (DataError, ModelFileError)
    try:
        if args.command == "evaluate":
            return _evaluate(args)
        from training.checkpoints import CheckpointError
        from training.export import ExportError
        from training.run import ResumeError
        from training.train import Diverged

        handled = (
            DataError,
            ModelFileError,
            ExportError,
            CheckpointError,
            ResumeError,
            OutputError,
            DeviceError,
            Diverged,
        )
        if args.command == "train":
            return _train(args, started)
        return _export(args, started)
    except handled as error:
        sys.stderr.write(f"error: {error}\n")
        return 1
    except KeyboardInterrupt:
        hint = " (resume with --resume)" if args.command == "train" else ""
        sys.stderr.write(f"error: interrupted{hint}\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
