"""The command line: one-line errors with a non-zero status, never a traceback."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, build_onnx_model
from training.__main__ import main


def _run(*args: str, env_data_dir: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DIGITS_DATA_DIR"}
    if env_data_dir is not None:
        env["DIGITS_DATA_DIR"] = env_data_dir
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _only_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_train_with_missing_data_subprocess(tmp_path: Path) -> None:
    result = _run("train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "m.onnx"))
    assert result.returncode == 1
    line = _only_error_line(result.stderr)
    assert line.startswith(f"error: {tmp_path / 'train-images-idx3-ubyte.gz'}: missing")
    assert not (tmp_path / "m.onnx").exists()


def test_evaluate_reads_data_dir_from_environment(tmp_path: Path) -> None:
    result = _run("evaluate", env_data_dir=str(tmp_path))
    assert result.returncode == 1
    line = _only_error_line(result.stderr)
    assert line.startswith(f"error: {tmp_path / 't10k-images-idx3-ubyte.gz'}: missing")
    # It said "or use --download", which only train takes: evaluate refused it (exit 2).
    assert line.endswith("`train --download` fetches them)"), line


def test_corrupt_data_file(
    tmp_path: Path, mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_dir / name, tmp_path / name)
    damaged = tmp_path / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(damaged.read_bytes()))
    content[100] ^= 0xFF  # one flipped label byte
    damaged.write_bytes(gzip.compress(bytes(content)))
    assert main(["evaluate", "--data-dir", str(tmp_path)]) == 1
    line = _only_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {damaged}: checksum mismatch")


def test_missing_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.onnx"
    assert main(["evaluate", "--model", str(missing), "--data-dir", str(tmp_path)]) == 1
    assert _only_error_line(capsys.readouterr().err) == f"error: {missing}: model file not found"


def test_garbage_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf")
    assert main(["evaluate", "--model", str(garbage), "--data-dir", str(tmp_path)]) == 1
    line = _only_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {garbage}: not a loadable ONNX model")


@pytest.mark.parametrize(
    ("shape", "says"),
    [
        ({"input_dims": (784,)}, "not one [N, 1, 28, 28] image tensor"),
        ({"classes": 12}, "not [N, 10] probabilities"),
        ({"classes": 5}, "not [N, 10] probabilities"),
    ],
)
def test_evaluating_a_model_of_other_shapes_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], shape: dict[str, Any], says: str
) -> None:
    """A flat input or 12 outputs ended in ONNX Runtime's or numpy's traceback, and 5
    outputs were scored (7.82 %) as if the model were a digit model."""
    model = build_onnx_model(tmp_path / "other.onnx", **shape)
    assert main(["evaluate", "--model", str(model), "--data-dir", str(tmp_path)]) == 1
    assert says in _only_error_line(capsys.readouterr().err)


def test_a_folder_given_for_a_file_is_named_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder given as the checkpoint or the model was "not found"."""
    assert main(["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "x.onnx")]) == 1
    assert "is a folder; name the checkpoint in it" in _only_error_line(capsys.readouterr().err)
    assert main(["evaluate", "--model", str(tmp_path), "--data-dir", str(tmp_path)]) == 1
    assert "is a folder; name the .onnx file in it" in _only_error_line(capsys.readouterr().err)


def test_export_without_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "best.pt"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.onnx")]) == 1
    assert _only_error_line(capsys.readouterr().err).startswith(
        f"error: {checkpoint}: checkpoint not found"
    )


def test_download_offline_is_one_line(tmp_path: Path) -> None:
    # No internet on CI machines: every mirror fails, and the user gets one clear line.
    result = _run("train", "--download", "--data-dir", str(tmp_path / "mnist"))
    assert result.returncode == 1
    line = _only_error_line(result.stderr)
    assert "train-images-idx3-ubyte.gz: download failed from every mirror" in line


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("train", ["--epochs", "--batch-size", "--seed", "--device", "--data-dir", "--out"]),
        ("export", ["--checkpoint", "--out", "--data-dir"]),
        ("evaluate", ["--model", "--data-dir"]),
    ],
)
def test_help_shows_every_default(command: str, options: list[str]) -> None:
    """argparse adds a default only to an option with help: --epochs showed none, and
    --data-dir said "(default: None)"."""
    result = _run(command, "--help", env_data_dir="/srv/mnist")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines where it likes
    for option in options:
        described = text.split(f" {option} ", 1)[1].split(" --", 1)[0]
        assert "(default: " in described and "(default: None)" not in described, described
    assert "(default: /srv/mnist)" in text


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--epochs", "0", "a whole number of at least 1"),
        ("--batch-size", "0", "a whole number of at least 1"),
        ("--limit-train", "-5", "a whole number of at least 10"),
        ("--limit-train", "4", "a whole number of at least 10"),  # no validation image
        ("--lr", "nan", "a number above 0"),
        ("--seed", "-1", "a seed from 0 to 2**32 - 1"),
        ("--outlier-weight", "-1", "a number of at least 0"),
        ("--flagged-ones", "1.5", "a fraction from 0 to 1"),
        ("--printed-ones-weight", "0", "a number above 0"),
    ],
)
def test_a_value_training_cannot_use_is_a_usage_error(
    option: str, value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each was a traceback (ZeroDivisionError, ValueError) or, for a NaN rate, 28 epochs of
    NaN losses before this check."""
    with pytest.raises(SystemExit) as exited:
        main(["train", option, value])
    assert exited.value.code == 2
    assert f"argument {option}: '{value}' is not {says}" in capsys.readouterr().err


def test_an_unwritable_output_is_refused_before_training(tmp_path: Path) -> None:
    """The ONNX file was written after the whole run: a bad --out threw its minutes away."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _run("train", "--data-dir", str(tmp_path), "--out", str(blocker / "m.onnx"))
    assert result.returncode == 1
    assert _only_error_line(result.stderr).startswith(f"error: --out {blocker}: cannot write")


@pytest.mark.parametrize("name", ["m.json", "folder"])
def test_an_out_that_is_no_onnx_file_is_refused_before_training(tmp_path: Path, name: str) -> None:
    """A folder ended the run in an IsADirectoryError traceback, and another suffix made the
    exporter pick another format, after all the training."""
    (tmp_path / "folder").mkdir()
    out = tmp_path / name
    for command in (["train", "--data-dir", str(tmp_path)], ["export"]):
        result = _run(*command, "--out", str(out))
        assert result.returncode == 1
        assert _only_error_line(result.stderr).startswith(f"error: --out {out}: ")


@pytest.mark.parametrize("beside", [".json", ".curves.png"])
def test_a_folder_where_the_card_or_a_report_goes_is_refused_before_training(
    tmp_path: Path, beside: str
) -> None:
    """m.json made a folder: the run trained and exported, then ended in an
    IsADirectoryError traceback, leaving an ONNX file without its card."""
    out = tmp_path / "m.onnx"
    out.with_suffix(beside).mkdir()
    for command in (["train", "--data-dir", str(tmp_path)], ["export"]):
        result = _run(*command, "--out", str(out))
        assert result.returncode == 1
        line = _only_error_line(result.stderr)
        assert line.startswith(f"error: --out {out}: {out.with_suffix(beside)} is a folder"), line


def test_a_run_without_its_data_leaves_no_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --data-dir failed after the output and run folders were made."""
    out, run_dir = tmp_path / "new" / "m.onnx", tmp_path / "run"
    args = ["train", "--data-dir", str(tmp_path / "no-data"), "--out", str(out)]
    assert main([*args, "--run-dir", str(run_dir), "--no-progress"]) == 1
    assert "missing" in _only_error_line(capsys.readouterr().err)
    assert not out.parent.exists() and not run_dir.exists()


def test_resuming_a_run_that_is_not_there_is_one_line(
    mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --run-dir with --resume started afresh without a word."""
    run_dir = tmp_path / "no-such-run"
    args = ["train", "--resume", "--run-dir", str(run_dir), "--data-dir", str(mnist_dir)]
    args += ["--limit-train", "300", "--epochs", "1", "--out", str(tmp_path / "m.onnx")]
    assert main([*args, "--no-progress"]) == 1
    line = _only_error_line(capsys.readouterr().err)
    assert line == f"error: --resume: {run_dir / 'last.pt'} does not exist"


def test_a_run_that_diverges_stops_with_one_line(
    mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At --lr 1e6 the loss is NaN: the run exported a model of NaN weights (parity passed,
    since NaN > tolerance is false) and a card of bare NaNs, exit 0."""
    out = tmp_path / "m.onnx"
    args = ["train", "--run-dir", str(tmp_path / "run"), "--data-dir", str(mnist_dir)]
    args += ["--limit-train", "300", "--epochs", "1", "--lr", "1e6", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 1
    line = _only_error_line(capsys.readouterr().err)
    assert line.startswith("error: epoch 1: the ") and "loss is nan: the run diverged" in line
    assert not out.exists()


def test_a_checkpoint_of_another_shape_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from torch import nn

    checkpoint = tmp_path / "best.pt"
    torch.save({"model": nn.Linear(3, 2).state_dict()}, checkpoint)
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.onnx")]) == 1
    line = _only_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {checkpoint}: not a usable checkpoint")


def test_exporting_the_training_loops_checkpoint_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """last.pt holds the weights, the optimiser and the schedule but not the chosen epoch:
    its export was a KeyError traceback."""
    import torch

    from training.model import LeNet5

    checkpoint = tmp_path / "last.pt"
    torch.save({"model": LeNet5().state_dict(), "optimizer": {}, "epoch": 3}, checkpoint)
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.onnx")]) == 1
    line = _only_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {checkpoint}: a training run's checkpoint")
    assert "best.pt" in line


def test_bare_weights_are_no_checkpoint_to_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """LeNet-5's weights alone load, but the card needs the run's history and config."""
    import torch

    from training.model import LeNet5

    checkpoint = tmp_path / "weights.pt"
    torch.save({"model": LeNet5().state_dict()}, checkpoint)
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.onnx")]) == 1
    line = _only_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {checkpoint}: not a checkpoint `train` wrote (KeyError(")


def test_a_run_that_cannot_be_resumed_is_one_line(
    mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A damaged last.pt, or one from other flags, ended in a ValueError traceback."""
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    args = ["train", "--resume", "--run-dir", str(tmp_path), "--data-dir", str(mnist_dir)]
    args += ["--limit-train", "300", "--epochs", "1", "--out", str(tmp_path / "m.onnx")]
    assert main([*args, "--no-progress"]) == 1
    line = _only_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {tmp_path / 'last.pt'}: not a checkpoint to resume (")


def test_evaluate_needs_no_torch(mnist_dir: Path) -> None:
    """The score is ONNX Runtime's, as the service runs the model; `evaluate` loaded torch
    (and matplotlib) through the report module for its per-digit table."""
    code = (
        "import sys; from training.__main__ import main; "
        f"status = main(['evaluate', '--data-dir', {str(mnist_dir)!r}]); "
        "print(status, 'torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert "MNIST test accuracy" in result.stdout, result.stderr
    assert result.stdout.splitlines()[-1] == "0 False False"
