"""Where the deployment checks find their tools and files."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO_ROOT, require_binary

DEPLOY = REPO_ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"
K8S_DIR = DEPLOY / "k8s"
DASHBOARD = GRAFANA_DIR / "dashboards" / "digits.json"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"


def venv_tool(name: str) -> str:
    """A console script installed by the dev extra (beside this Python), else one on PATH.

    `make test` runs `.venv/bin/python -m pytest` without activating the venv, so PATH alone
    would miss hadolint and friends; CI must still fail loudly when a tool is absent.
    """
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    if shutil.which(name):
        return str(shutil.which(name))
    return require_binary(name)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_all(text: str) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


# README, "Memory": a worker at idle, the front end, and a worker's peak decoding one image at
# the 40-megapixel limit (a WebP; docs/performance.md, "A worker's memory on large images").
WORKER_IDLE_MIB, FRONT_END_MIB, IMAGE_PEAK_MIB = 95, 65, 614


def room_for_workers(limit_mib: int, workers: int) -> bool:
    """Whether a memory limit holds the front end and ``workers`` workers each at the peak."""
    return limit_mib >= FRONT_END_MIB + workers * (WORKER_IDLE_MIB + IMAGE_PEAK_MIB)
