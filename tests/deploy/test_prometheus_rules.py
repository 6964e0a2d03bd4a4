"""promtool on the shipped Prometheus config and alert rules, including the rules' unit tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import require_binary
from tests.deploy.tools import PROMETHEUS_DIR, load_yaml


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args], capture_output=True, text=True, timeout=120
    )


def test_config_is_valid() -> None:
    result = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_fire_exactly_as_their_unit_tests_say() -> None:
    """alerts.test.yml: healthy traffic fires nothing; each failure mode fires its alert."""
    result = promtool("test", "rules", str(PROMETHEUS_DIR / "alerts.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_rule_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "alerts.yml"
    bad.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: X\n"
        "        expr: sum(rate(digits_http_requests_total[5m])\n"
    )
    assert promtool("check", "rules", str(bad)).returncode != 0


def test_required_alerts_exist_and_are_unit_tested() -> None:
    rules = load_yaml(PROMETHEUS_DIR / "alerts.yml")
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    required = {
        "DigitsServiceDown",
        "DigitsHighErrorRatio",
        "DigitsHighLatencyP99",
        "DigitsConfidenceDrop",
    }
    assert required <= alerts
    tests = load_yaml(PROMETHEUS_DIR / "alerts.test.yml")["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == alerts, f"alerts never shown to fire: {sorted(alerts - fired)}"
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
