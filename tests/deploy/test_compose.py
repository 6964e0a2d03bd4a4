"""docker-compose.yml: valid against the current Compose Spec, read and turned into podman
commands by a real Compose implementation (podman-compose; `make container-smoke` runs the api
service from it), and wired as operators expect."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.deploy.tools import COMPOSE_FILE, load_yaml, venv_tool


def check_compose_spec(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
        + [str(path)],
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def quiet_podman(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in podman that changes nothing: --dry-run still runs podman-compose's queries
    (containers of the project? does the network exist?), and a real podman would create the
    network. It answers: no containers, and yes, everything exists."""
    stub = tmp_path_factory.mktemp("podman") / "podman"
    stub.write_text('#!/bin/sh\n[ "$1" = ps ] && echo "[]"\nexit 0\n')
    stub.chmod(0o755)
    return stub


def podman_compose(podman: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """podman-compose on the file, --dry-run: it reads, interpolates and translates the file
    into podman commands, which it logs instead of running (no podman needed)."""
    return subprocess.run(
        [venv_tool("podman-compose"), "--dry-run", "--podman-path", str(podman)]
        + ["-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        timeout=60,
    )


def test_podman_compose_reads_and_interpolates_the_file(quiet_podman: Path) -> None:
    result = podman_compose(
        quiet_podman, "config", DIGITS_PUBLISHED_PORT="18123", DIGITS_LOG_LEVEL="DEBUG"
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["name"] == "digits"
    assert set(resolved["services"]) == {"api", "prometheus", "grafana"}
    api = resolved["services"]["api"]
    assert api["ports"] == ["127.0.0.1:18123:8000"]
    assert api["environment"]["DIGITS_LOG_LEVEL"] == "DEBUG"
    assert api["restart"] == "unless-stopped"  # from the x-restart anchor


def test_podman_compose_runs_the_api_service_as_declared(quiet_podman: Path) -> None:
    """The podman command `podman-compose up api` runs: every hardening and limit arrives."""
    result = podman_compose(
        quiet_podman, "--verbose", "-p", "digits-dry", "up", "-d", "--no-build", "api"
    )
    assert result.returncode == 0, result.stderr
    # The log joins the arguments with spaces, unquoted: read it as text.
    creates = [
        line.split(" create ", 1)[1]
        for line in result.stderr.splitlines()
        if line.startswith("INFO:podman_compose:")
        and " create --name=" in line
        and " pod create " not in line
    ]
    assert len(creates) == 1, "only the api service is started"
    flags = creates[0]
    for expected in (
        "--read-only",
        "--tmpfs /tmp:size=64m",
        "--cap-drop ALL",
        "--security-opt no-new-privileges:true",
        "-p 127.0.0.1:8000:8000",
        "--restart unless-stopped",
        "--cpus 2.0",
        "-m 2g",
        "--health-start-period 20s",
    ):
        assert expected in flags, f"{expected!r} missing from: {flags}"
    assert "/readyz" in flags.split("--health-cmd", 1)[1].split("--health-interval", 1)[0]
    # podman 4.3 (Debian 12's) refuses --health-startup-* (what start_interval becomes).
    assert "--health-startup" not in flags
    assert flags.endswith(" localhost/digits:latest")


def test_compose_file_matches_the_compose_spec() -> None:
    result = check_compose_spec(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_spec_check_rejects_a_misspelt_key(tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE_FILE.read_text().replace("read_only: true", "readonly: true"))
    result = check_compose_spec(bad)
    assert result.returncode != 0
    assert "readonly" in result.stdout


def test_api_is_built_here_hardened_and_checked_on_readiness(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert api["build"]["context"] == "."
    assert "BASE_IMAGE" in api["build"]["args"]
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert api["restart"] in {"unless-stopped", "always", "on-failure"}
    assert api["read_only"] is True
    assert any(mount.startswith("/tmp") for mount in api["tmpfs"])
    limits = api["deploy"]["resources"]["limits"]
    assert limits["cpus"] and limits["memory"]
    assert api["cap_drop"] == ["ALL"]


def test_every_published_port_is_bound_to_loopback(compose: dict[str, Any]) -> None:
    ports = [port for service in compose["services"].values() for port in service.get("ports", [])]
    assert len(ports) == 4  # API, Prometheus, Grafana, Jaeger's UI (tracing profile)
    assert all(str(port).startswith("127.0.0.1:") for port in ports), ports


def test_monitoring_images_are_official_and_pinned(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["prometheus"]["image"].startswith("prom/prometheus:v")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    for name in ("prometheus", "grafana"):
        assert not services[name]["image"].endswith(":latest")
        assert "healthcheck" in services[name] and "restart" in services[name]


def test_the_tracing_backend_is_optional_and_wired_to_the_api(compose: dict[str, Any]) -> None:
    services = compose["services"]
    jaeger = services["jaeger"]
    assert jaeger["profiles"] == ["tracing"]  # started only with --profile tracing
    assert jaeger["image"].startswith("jaegertracing/all-in-one:1.")
    assert not any("profiles" in services[name] for name in ("api", "prometheus", "grafana"))
    environment = services["api"]["environment"]
    # Unset by default (tracing off); the compose file's header gives http://jaeger:4318.
    assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318" in COMPOSE_FILE.read_text()


def test_mounted_configuration_exists_in_the_repository(compose: dict[str, Any]) -> None:
    mounts = [
        volume.split(":")
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]
    assert len(mounts) == 3
    for source, *_ in mounts:
        assert (REPO_ROOT / source).is_dir(), source
    targets = {source: target for source, target, *_ in mounts}
    assert targets["./deploy/prometheus"] == "/etc/prometheus"
    provider = load_yaml(REPO_ROOT / "deploy/grafana/provisioning/dashboards/digits.yml")[
        "providers"
    ][0]
    assert provider["options"]["path"] == targets["./deploy/grafana/dashboards"]


def test_prometheus_scrapes_the_api_service_port(compose: dict[str, Any]) -> None:
    config = load_yaml(REPO_ROOT / "deploy/prometheus/prometheus.yml")
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "digits")
    assert job["static_configs"][0]["targets"] == ["api:8000"]
    assert any(port.endswith(":8000") for port in compose["services"]["api"]["ports"])
    datasource = load_yaml(REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml")[
        "datasources"
    ][0]
    assert datasource["url"] == "http://prometheus:9090"
