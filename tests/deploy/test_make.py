"""The Makefile installs torch's CPU build on purpose, not by luck of the machine's pip config.

On Linux, PyPI's torch wheel bundles CUDA (gigabytes). `make -n` shows what `make test` would
run on a stock machine (no pip configuration at all) and with the override.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

from tests.conftest import REPO_ROOT

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _dry_run(venv: Path, *assignments: str, stock_pip: bool = True) -> list[str]:
    """The commands `make` would run to build a fresh dev environment in ``venv``."""
    env = dict(os.environ)
    if stock_pip:  # neither pip.conf files nor PIP_* variables: a stock machine
        env = {key: value for key, value in env.items() if not key.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    done = subprocess.run(
        ["make", "--dry-run", "--always-make", f"VENV={venv}", *assignments]
        + [f"{venv}/.dev-installed"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.splitlines()


def _torch_install(lines: list[str]) -> str:
    (line,) = [line for line in lines if re.search(r"pip install .*torch==", line)]
    return line


def test_a_stock_machine_gets_torch_from_pytorchs_cpu_index(tmp_path: Path) -> None:
    lines = _dry_run(tmp_path / "venv")
    torch = _torch_install(lines)
    assert f"--extra-index-url {CPU_INDEX}" in torch
    project = next(i for i, line in enumerate(lines) if "-e '.[dev]'" in line)
    assert lines.index(torch) < project, "torch must be installed before the dev extra"


def test_the_wheel_source_is_overridable(tmp_path: Path) -> None:
    mirror = "https://pypi.example.internal/whl/cpu"
    torch = _torch_install(_dry_run(tmp_path / "venv", f"TORCH_INDEX_URL={mirror}"))
    assert f"--extra-index-url {mirror}" in torch and CPU_INDEX not in torch
    torch = _torch_install(_dry_run(tmp_path / "venv", "TORCH_INDEX_URL="))
    assert "--extra-index-url" not in torch


def test_the_pinned_torch_is_the_train_extras(tmp_path: Path) -> None:
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    (pin,) = [spec for spec in extras["train"] if spec.startswith("torch")]
    assert pin.startswith("torch==")
    assert f"install -q {pin} " in _torch_install(_dry_run(tmp_path / "venv")) + " "
