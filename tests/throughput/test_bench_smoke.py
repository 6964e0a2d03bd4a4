"""``python -m bench`` end to end with tiny durations: every row and every target is printed.

No figure is asserted (speed is checked by running the benchmark, not by tests); this only
proves the shipped command works: service start, wrk scripts, metrics scrape, table, verdicts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import main as bench_main
from tests.conftest import REPO_ROOT, require_binary, tiny_model_env

ROWS = [
    "no-op route, multipart 28x28 PNG",
    "/predict 28x28 PNG",
    "peer: plain FastAPI no-op (UploadFile), 1 process",
    "peer: tutorial FastAPI+Pillow+ORT, 1 process",
    "peer: tutorial FastAPI+Pillow+ORT, 2 processes",
    "/predict 600x600 JPEG photo",
    "/predict/batch 64 PNGs",
    "V2 binary infer, batch 256",
    "V2 JSON infer, batch 256",
    "overload: /predict PNG",
    "ONNX Runtime in-process, batch 1",
    "ONNX Runtime in-process, batch 256",
]


@pytest.mark.slow
def test_bench_prints_every_scenario_and_verdict(tiny_onnx: Path) -> None:
    require_binary("wrk")
    env = {**os.environ, **tiny_model_env(tiny_onnx), "DIGITS_ACCESS_LOG": "false"}
    quick = ["--duration", "1", "--overload-duration", "1", "--ort-duration", "0.2"]
    quick += ["--rounds", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *quick, "--warmup", "1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr  # 1 = a target missed, not a crash
    lines = done.stdout.splitlines()
    for row in ROWS:
        assert any(line.startswith(f"| {row}") for line in lines), (row, done.stdout)
    assert sum(line.startswith("| /predict 28x28 PNG ") for line in lines) == 3
    verdicts = [line for line in lines if line.startswith(("PASS", "FAIL"))]
    assert len(verdicts) == 8, done.stdout
    assert sum(line.startswith("/predict c=16 vs ") for line in lines) == 4
    assert any(line.startswith("CPU per /predict at c=16") for line in lines)
    capacity = [line for line in lines if line.endswith("per core")]
    for scenario in (
        "/predict 28x28 PNG",
        "/predict/batch 64 PNGs",
        "V2 binary infer",
        "V2 JSON infer",
    ):
        assert any(line.strip().startswith(scenario) for line in capacity), done.stdout
    # The overload run must never fail with anything but 503, whatever the machine's speed.
    assert any(line.startswith("PASS") and "other than 503" in line for line in verdicts)


@pytest.mark.parametrize(
    "arguments",
    [["--rounds", "0"], ["--duration", "0"], ["--concurrency", "-1"], ["--warmup", "nan"]],
)
def test_bench_refuses_empty_runs_before_starting(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        bench_main(arguments)
    assert exited.value.code == 2
    assert arguments[0] in capsys.readouterr().err


def test_the_http_path_comparison_runs_both_paths_and_prints_their_ratio(
    tiny_onnx: Path,
) -> None:
    env = {**os.environ, **tiny_model_env(tiny_onnx)}
    command = [sys.executable, "-m", "bench.http_path", "--requests", "200", "--rounds", "2"]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["round 1", "round 2", "best round"]
    assert all("ASGI path" in line and "direct lane" in line for line in lines)
    assert "median lane/ASGI" in lines[-1]


@pytest.mark.parametrize(("argv", "status"), [(["--help"], 0), (["--port", "9"], 2)])
def test_the_bench_app_takes_no_arguments_and_says_so(argv: list[str], status: int) -> None:
    """``python -m bench.app --help`` ignored its argument and served on port 8000."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.app", *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DIGITS_MODEL_PATH": "/nonexistent.onnx"},
    )
    assert done.returncode == status, done.stderr
    assert "usage: python -m bench.app" in (done.stdout if status == 0 else done.stderr)
