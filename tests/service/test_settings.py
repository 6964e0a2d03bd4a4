"""Settings: environment prefix, defaults, validation that fails fast."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.resources import available_cpus
from service.settings import Settings
from service.settings.messages import describe
from tests.conftest import REPO_ROOT


def test_defaults_suit_a_small_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("DIGITS_") or name == "PORT":
            monkeypatch.delenv(name)
    settings = Settings()
    assert settings.host == "127.0.0.1" and settings.port == 8000
    assert settings.intra_op_threads == 1 and settings.inter_op_threads == 1
    assert settings.provider == "cpu"
    assert settings.event_loop == "asyncio"  # uvloop starved new connections under load
    assert settings.resolved_model_path == REPO_ROOT / "models" / "lenet5.onnx"
    assert settings.resolved_model_card_path == REPO_ROOT / "models" / "lenet5.json"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DIGITS_PORT", "9001")
    monkeypatch.setenv("DIGITS_PROVIDER", "auto")
    monkeypatch.setenv("DIGITS_ALLOWED_IMAGE_FORMATS", '["png", "jpeg"]')
    monkeypatch.setenv("DIGITS_MODEL_PATH", str(tmp_path / "m.onnx"))
    monkeypatch.setenv("DIGITS_LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.port == 9001 and settings.provider == "auto"
    assert settings.allowed_image_formats == frozenset({"PNG", "JPEG"})
    assert settings.resolved_model_card_path == tmp_path / "m.json"
    assert settings.log_level == "DEBUG"


def test_port_is_digits_port_then_knatives_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGITS_PORT", raising=False)
    monkeypatch.setenv("PORT", "8080")  # Knative and KServe inject it
    assert Settings().port == 8080
    monkeypatch.setenv("DIGITS_PORT", "9001")
    assert Settings().port == 9001
    assert Settings(port=9002).port == 9002


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("provider", "tpu", "'cpu', 'cuda' or 'auto'"),
        ("event_loop", "tokio", "'asyncio' or 'uvloop'"),
        ("allowed_image_formats", ["PNG", "PSD"], "unknown image format(s) ['PSD']"),
        ("port", 0, "greater than or equal to 1"),
        ("max_batch_files", 5000, "must not exceed DIGITS_BATCH_MAX_QUEUE_IMAGES"),
        ("v2_max_batch_size", 5000, "DIGITS_V2_MAX_BATCH_SIZE (5000) must not exceed"),
    ],
)
def test_invalid_values_name_the_problem(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**{field: value})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("variables", "described"),
    [
        ({"DIGITS_PORT": "abc"}, "DIGITS_PORT: Input should be a valid integer"),
        ({"DIGITS_MAX_BODY_BYTES": "-1"}, "DIGITS_MAX_BODY_BYTES: Input should be greater"),
        ({"DIGITS_MAX_BATCH_FILES": "5000"}, "DIGITS_MAX_BATCH_FILES (5000) must not exceed"),
        (
            {"DIGITS_FEEDBACK_DIR": "/tmp", "DIGITS_FRONT_ENDS": "2"},
            "DIGITS_FEEDBACK_DIR needs DIGITS_FRONT_ENDS=1",
        ),
    ],
)
def test_a_bad_environment_is_described_by_its_variables(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], described: str
) -> None:
    """Start-up logs this line and exits: it names the variable as the operator set it (a
    field's alias once, not DIGITS_DIGITS_PORT), and a check across fields by its message."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    text = describe(caught.value)
    assert text.startswith(described), text
    assert "DIGITS_DIGITS" not in text and "DIGITS_:" not in text and "Value error" not in text


def test_every_field_is_documented() -> None:
    undocumented = [name for name, f in Settings.model_fields.items() if not f.description]
    assert undocumented == []


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000\n", None), ("100000 100000\n", 1), ("150000 100000\n", 2), ("1000 100000", 1)],
)
def test_worker_count_respects_a_container_cpu_quota(
    tmp_path: Path, cpu_max: str, expected: int | None
) -> None:
    cores = len(os.sched_getaffinity(0))
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    no_v1 = (tmp_path / "no-v1",)
    assert available_cpus(path, no_v1) == (cores if expected is None else min(cores, expected))
    assert available_cpus(tmp_path / "missing", no_v1) == cores  # no cgroup: the affinity mask


@pytest.mark.parametrize(
    ("quota", "expected"), [("-1", None), ("100000", 1), ("150000", 2), ("50000", 1)]
)
def test_a_cgroup_v1_cpu_quota_counts_too(tmp_path: Path, quota: str, expected: int | None) -> None:
    """Only cgroup v2's cpu.max was read: on a cgroup v1 host `--cpus=1` (or `--cpus=0.5`) on
    two cores started two workers, and a 1-CPU pod on a large node one per node core."""
    cores = len(os.sched_getaffinity(0))
    v1 = tmp_path / "cpu,cpuacct"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text(quota + "\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    found = available_cpus(tmp_path / "no-cpu.max", (tmp_path / "cpu", v1))
    assert found == (cores if expected is None else min(cores, expected))


def test_explicit_worker_count_wins() -> None:
    assert Settings(preprocess_workers=3).resolved_preprocess_workers == 3
    assert Settings().resolved_preprocess_workers == available_cpus()
