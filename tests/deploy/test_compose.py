"""docker-compose.yml: valid against the current Compose Spec and wired as operators expect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.deploy.tools import COMPOSE_FILE, load_yaml


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
