"""The checks a file passes before it may serve (service/repository/gate.py), run directly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service.contract import ModelLoadError, ModelSpec
from service.repository.gate import GateRequest, inspect, load_check_digits, outcome
from service.settings import Settings
from tests.conftest import REPO_ROOT
from tests.repository.conftest import Files
from tests.repository.models import batch_dependent, with_metadata

CHECK_DIGITS = Settings().resolved_check_digits_path


def request(path: Path, floor: float = 0.95, digits: Path = CHECK_DIGITS) -> GateRequest:
    return GateRequest(ModelSpec(str(path)), str(digits), floor)


def test_the_check_digits_are_real_labelled_mnist_digits() -> None:
    inputs, labels = load_check_digits(CHECK_DIGITS)
    assert inputs.shape == (100, 1, 28, 28) and inputs.dtype == np.float32
    assert 0.0 <= inputs.min() and inputs.max() <= 1.0
    assert np.bincount(labels, minlength=10).tolist() == [10] * 10  # ten of each digit
    assert (inputs.reshape(100, -1) > 0.5).mean(axis=1).min() > 0.03  # every one has ink


def test_the_shipped_model_passes(shipped_model: Path) -> None:
    report = inspect(request(shipped_model))
    assert report["accuracy"] >= 0.99 and report["digits"] == 100
    assert report["info"]["name"] == "lenet5"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("logits", "softmax missing from the graph?"),
        ("guessing", "below the floor of 95.0%"),
        ("junk", "is not a loadable ONNX model"),
    ],
)
def test_bad_files_are_refused_with_the_reason(files: Files, name: str, reason: str) -> None:
    with pytest.raises(ModelLoadError, match=reason.replace("?", r"\?")):
        inspect(request(getattr(files, name)))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"name": None, "version": None}, "its metadata has no 'name'"),
        ({"version": ""}, "its metadata has no 'version'"),
        ({"name": "digits/v2"}, "its 'name' metadata is not a URL path segment"),
        ({"name": ".."}, "its 'name' metadata is not a URL path segment"),
        ({"name": "lenet5 "}, "its 'name' metadata is not a URL path segment"),
        ({"not_a_digit": "[1,2"}, "its 'not_a_digit' metadata is not a JSON object"),
        ({"not_a_digit": '{"rule": "vibes", "threshold": 0.5}'}, "'not_a_digit' metadata"),
        ({"not_a_digit": '{"rule": "certainty", "threshold": 7}'}, "'not_a_digit' metadata"),
        ({"labels": "not json"}, "its 'labels' metadata is not a JSON list of 10 labels"),
        ({"normalization": "{"}, "its 'normalization' metadata is not a JSON object"),
    ],
    ids=[
        "a plain export",
        "no version",
        "a name with a slash",
        "a name of dots",
        "a name with a space",
        "rule unreadable",
        "no such rule",
        "threshold 7",
        "labels",
        "normalization",
    ],
)
def test_metadata_the_service_would_misread_is_refused(
    shipped_model: Path, tmp_path: Path, changes: dict[str, str | None], reason: str
) -> None:
    """A plain export (no metadata) was served as "main_graph", version 9223372036854775807,
    its V2 routes moved while readiness said 200; a name with a slash was served under
    routes no URL reaches; a broken not-a-digit rule served as none, every refusal off. A
    load (and start-up) refuses them, saying which entry is wrong."""
    path = with_metadata(tmp_path / "edited.onnx", changes, shipped_model)
    with pytest.raises(ModelLoadError, match=re.escape(reason)):
        inspect(request(path))


def test_any_version_text_and_a_name_a_url_carries_are_served(
    shipped_model: Path, tmp_path: Path
) -> None:
    """The V2 routes name a version by its major number, and a name by its percent-encoded
    text: a date or a note in the version, a colon or an accent in the name, are served."""
    changes: dict[str, str | None] = {"name": "chiffres:é", "version": "2026-12-08 (retrained)"}
    report = inspect(request(with_metadata(tmp_path / "named.onnx", changes, shipped_model)))
    assert (report["info"]["name"], report["info"]["version"]) == tuple(changes.values())


def test_metadata_left_out_is_served_as_the_defaults(shipped_model: Path, tmp_path: Path) -> None:
    """No rule (every image answered), no labels (0-9), no normalisation said: still served."""
    changes: dict[str, str | None] = {"not_a_digit": None, "labels": None, "normalization": None}
    report = inspect(request(with_metadata(tmp_path / "plain.onnx", changes, shipped_model)))
    assert report["info"]["labels"] == [str(digit) for digit in range(10)]


def test_a_batch_dependent_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="changes with the other images of its batch"):
        inspect(request(batch_dependent(tmp_path / "batchy.onnx"), floor=0.0))


def test_the_floor_is_a_setting(files: Files) -> None:
    assert inspect(request(files.guessing, floor=0.0))["accuracy"] < 0.5


def test_unreadable_check_digits_refuse_the_load(shipped_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="check digits .* are unreadable"):
        inspect(request(shipped_model, digits=tmp_path / "missing.npz"))


def test_the_command_line_reports_in_one_line(shipped_model: Path, files: Files) -> None:
    def run(path: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "service.repository.gate", request(path).to_json()]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)

    good = run(shipped_model)
    assert good.returncode == 0 and json.loads(good.stdout)["accuracy"] >= 0.99
    bad = run(files.guessing)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1


def test_the_report_is_read_past_what_a_library_printed_first() -> None:
    """A library the model runs may print on stdout before the gate's report: the load read
    the whole stdout as JSON, and such a file got a 500 instead of an answer."""
    report = {"accuracy": 0.99, "digits": 100}
    printed = b"custom op: registered\nwarming up" + b"\n" + json.dumps(report).encode() + b"\n"
    assert outcome(0, printed, b"") == report


@pytest.mark.parametrize("stdout", [b"", b"Segmentation fault?", b"[1, 2]"])
def test_a_check_without_a_report_is_a_refusal(stdout: bytes) -> None:
    with pytest.raises(ModelLoadError, match="wrote no report"):
        outcome(0, stdout, b"")


def test_a_failed_check_gives_its_last_line() -> None:
    with pytest.raises(ModelLoadError, match="^accuracy is 7.0%$"):
        outcome(1, b"", b"warning: something\naccuracy is 7.0%\n")
    with pytest.raises(ModelLoadError, match="exited with -11"):
        outcome(-11, b"", b"")
