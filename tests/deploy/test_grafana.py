"""The provisioned Grafana dashboard: valid JSON, complete, and on the documented metric names."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.deploy.tools import DASHBOARD, GRAFANA_DIR, load_yaml

# docs/design.md section 3: the names dashboards may use.
DESIGN_METRICS = {
    "digits_http_requests_total",
    "digits_http_request_duration_seconds",
    "digits_http_requests_in_flight",
    "digits_preprocess_duration_seconds",
    "digits_inference_duration_seconds",
    "digits_queue_wait_seconds",
    "digits_batch_size",
    "digits_rejected_total",
    "digits_predictions_total",
    "digits_prediction_confidence",
    "digits_model_info",
    "digits_model_ready",
    "digits_corrections_total",
    "digits_model_loads_total",
    "digits_worker_restarts_total",
    "digits_shadow_agreement_total",
    "digits_shadow_dropped_total",
    "digits_shadow_confidence",
    "digits_shadow_inference_duration_seconds",
}
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panel_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b(digits_[a-z_]+)", expr))
    return {
        HISTOGRAM_SUFFIX.sub("", name) if not name.endswith("_total") else name for name in names
    }


def test_dashboard_is_identified_and_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "digits-service" and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def test_every_panel_queries_prometheus(dashboard: dict[str, Any]) -> None:
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len(panels) >= 15
    for panel in panels:
        assert panel["datasource"]["type"] == "prometheus", panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


def test_dashboard_uses_only_documented_metrics(dashboard: dict[str, Any]) -> None:
    used = set().union(*(metric_names(expr) for expr in panel_exprs(dashboard)))
    assert used <= DESIGN_METRICS, f"undocumented metric names: {sorted(used - DESIGN_METRICS)}"
    assert used == DESIGN_METRICS, f"metrics without a panel: {sorted(DESIGN_METRICS - used)}"


@pytest.mark.parametrize(
    ("title_part", "metric"),
    [
        ("Request rate", "digits_http_requests_total"),
        ("Error rate", "digits_http_requests_total"),
        ("latency percentiles", "digits_http_request_duration_seconds_bucket"),
        ("Batch size", "digits_batch_size"),
        ("Predictions per digit", "digits_predictions_total"),
        ("Confidence distribution", "digits_prediction_confidence_bucket"),
        ("Model info", "digits_model_info"),
        ("Corrections by answer and correction", "digits_corrections_total"),
        ("Model loads", "digits_model_loads_total"),
        (
            "Shadow agreement rate",
            'digits_shadow_agreement_total{job="digits", instance=~"$instance", agree="true"}',
        ),
    ],
)
def test_required_panels_exist(dashboard: dict[str, Any], title_part: str, metric: str) -> None:
    matching = [panel for panel in dashboard["panels"] if title_part in panel["title"]]
    assert matching, f"no panel titled '{title_part}'"
    assert any(metric in target["expr"] for panel in matching for target in panel["targets"])


def test_refusals_are_never_a_share_of_requests(dashboard: dict[str, Any]) -> None:
    """digits_rejected_total counts images for overloaded and not_a_digit and connections
    that never became requests for others: divided by requests, a burst of refused batches
    drew a "share" past 100 %. Refusals are shown per second, or as a share of image answers
    (not_a_digit against digits_predictions_total, which counts images too)."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if "digits_rejected_total" in target["expr"]:
                assert "digits_http_requests_total" not in target["expr"], panel["title"]
    (panel,) = [p for p in dashboard["panels"] if p["title"] == "Refusals / s by reason"]
    (target,) = panel["targets"]
    assert "sum by (reason) (rate(digits_rejected_total" in target["expr"]


def test_image_rates_are_not_labelled_as_requests(dashboard: dict[str, Any]) -> None:
    """digits_predictions_total and digits_rejected_total count images (a batch of 64 is 64),
    so Grafana's "reqps" unit (requests/s) misnamed them; requests are only
    digits_http_requests_total's."""
    for panel in dashboard["panels"]:
        exprs = [target["expr"] for target in panel.get("targets", [])]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if unit == "reqps":
            assert all("digits_http_requests_total" in expr for expr in exprs), panel["title"]
        elif any("rate(digits_predictions_total" in expr for expr in exprs):
            assert unit in ("ops", "percentunit"), panel["title"]


def test_error_and_latency_panels_measure_the_predictions(dashboard: dict[str, Any]) -> None:
    """Over every route, a scanner's 404s (route "<unmatched>") made 80 % of the requests:
    the error ratio and the latency percentiles described the scanner, not the predictions.
    Each selector of those panels names the prediction routes; latency, answered ones."""
    scoped = 'route=~"/predict(/batch)?|/v2/models/.+/infer"'
    panels = [p for p in dashboard["panels"] if p["id"] in (5, 10, 12)]
    assert [p["title"] for p in panels] == [
        "Error ratio of predictions (5xx)",
        "Error rate of predictions",
        "Prediction latency percentiles (answered)",
    ]
    for panel in panels:
        for target in panel["targets"]:
            selectors = re.findall(r"\{[^}]*\}", target["expr"])
            assert selectors and all(scoped in selector for selector in selectors), target["expr"]
            if panel["id"] == 12:
                assert all('status=~"2.."' in selector for selector in selectors)


def test_provisioned_datasource_is_the_default_prometheus(dashboard: dict[str, Any]) -> None:
    datasource = load_yaml(GRAFANA_DIR / "provisioning/datasources/prometheus.yml")
    (source,) = datasource["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["allValue"] == ".+"


def test_legends_name_labels_the_query_keeps(dashboard: dict[str, Any]) -> None:
    """Grafana replaces ``{{label}}`` in a legend with the series' label; anything else is shown
    as written (``{{{{corrected}}}}`` showed "{{corrected}}" for every series)."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            legend = target.get("legendFormat", "")
            names = re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", legend)
            rest = re.sub(r"\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\}", "", legend)
            assert "{" not in rest and "}" not in rest, (panel["title"], legend)
            kept = re.findall(r"\bby\s*\(([^)]*)\)", target["expr"])
            labels = {label.strip() for group in kept for label in group.split(",")}
            assert set(names) <= labels, (panel["title"], legend, target["expr"])
