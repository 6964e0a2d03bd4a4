"""deploy/kserve: the InferenceService passes KServe's v1beta1 API and Kubernetes' schemas
offline, and matches what KServe and Knative need of a custom V2 predictor container.

No package ships KServe's CRD YAML; kserve_v1beta1_fields.json holds the fields and types
of KServe's own generated API models (scripts/kserve_fields.py, from the kserve wheel). The
KServe objects are checked against it field by field; everything that is Kubernetes inside
them (metadata, the pod spec of the predictor: containers, probes, resources, volumes) goes
through kubernetes-validate in strict mode.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import schema_contents

from service.workers.supervisor import SHUTDOWN_GRACE_S
from tests.deploy.tools import DEPLOY, load_yaml, room_for_workers

MANIFEST = DEPLOY / "kserve" / "inferenceservice.yaml"
FIELDS = json.loads((Path(__file__).parent / "kserve_v1beta1_fields.json").read_text())["classes"]
KUBERNETES = "1.33.0"
# KServe docs, ComponentExtensionSpec.scaleMetric; concurrency and rps need Knative's autoscaler.
SCALE_METRICS = {"cpu", "memory", "concurrency", "rps"}
# Knative's queue-proxy sidecar (8012 HTTP, 8013 HTTP/2, 8022 admin, 9090 autoscaler metrics,
# 9091 its Prometheus metrics) and KServe's metrics aggregation (9088).
RESERVED_PORTS = {8012, 8013, 8022, 9088, 9090, 9091}
SATURATING_CONCURRENCY = 16  # README, "Benchmark": /predict at c=16 is one pod's throughput
SWAP_PEAK_MIB = 409  # docs/performance.md: server + 2 workers while a second generation starts
_PRIMITIVES = {"int": int, "str": str, "bool": bool}


def kserve_problems(value: Any, kind: str, where: str) -> list[str]:
    """Fields of the KServe object ``value`` (type ``kind``) that the API does not have or
    whose values have the wrong type; Kubernetes types inside are left to kubernetes-validate."""
    if kind in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[kind]) and not (kind == "int" and value is True)
        return [] if ok else [f"{where}: {value!r} is not {kind}"]
    if kind.startswith("list["):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [
            p
            for i, item in enumerate(value)
            for p in kserve_problems(item, kind[5:-1], f"{where}[{i}]")
        ]
    if kind.startswith("dict("):
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        return [] if ok else [f"{where}: expected a map of strings"]
    if kind not in FIELDS:  # a Kubernetes type (V1Container, V1ObjectMeta, ...)
        return []
    if not isinstance(value, dict):
        return [f"{where}: expected an object ({kind})"]
    problems = []
    for key, item in value.items():
        if key not in FIELDS[kind]:
            problems.append(f"{where}.{key}: {kind} has no such field")
        else:
            problems += kserve_problems(item, FIELDS[kind][key], f"{where}.{key}")
    return problems


def validate(document: dict[str, Any]) -> None:
    """Raises AssertionError or kubernetes_validate.ValidationError naming the bad field."""
    assert document["apiVersion"] == "serving.kserve.io/v1beta1"
    assert document["kind"] == "InferenceService"
    problems = kserve_problems(document, "V1beta1InferenceService", "$")
    assert problems == [], problems
    metadata = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": document["metadata"]}
    kubernetes_validate.validate(metadata, KUBERNETES, strict=True)
    schema = f"kubernetes-json-schema/v{KUBERNETES}-local-strict/podspec-v1.json"
    pod_fields = schema_contents(schema, KUBERNETES)["properties"]
    predictor = document["spec"]["predictor"]
    extension = sorted(set(predictor) - set(pod_fields))
    assert predictor["scaleMetric"] in SCALE_METRICS, predictor["scaleMetric"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": document["metadata"]["name"]},
        "spec": {key: value for key, value in predictor.items() if key not in extension},
    }
    kubernetes_validate.validate(pod, KUBERNETES, strict=True)


@pytest.fixture
def service() -> dict[str, Any]:
    return load_yaml(MANIFEST)


def predictor_container(service: dict[str, Any]) -> dict[str, Any]:
    (container,) = service["spec"]["predictor"]["containers"]
    return container


def test_the_inference_service_passes_both_schemas(service: dict[str, Any]) -> None:
    validate(service)


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        (("spec", "predictor", "minReplica"), 2, "V1beta1PredictorSpec has no such field"),
        (("spec", "predictor", "scaleTarget"), "12", "is not int"),
        (("spec", "predicter"), {}, "V1beta1InferenceServiceSpec has no such field"),
        (("spec", "predictor", "containers", 0, "readinessProbe", "httpGet", "paht"), "/", "paht"),
        (("spec", "predictor", "scaleMetric"), "gpu", "gpu"),
        (("metadata", "annotation"), {}, "annotation"),
    ],
)
def test_the_check_refuses_a_wrong_field(
    service: dict[str, Any], path: tuple[Any, ...], value: Any, error: str
) -> None:
    """Proves the check can fail, on KServe's fields and on Kubernetes' alike."""
    broken = copy.deepcopy(service)
    target = broken
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(
        (AssertionError, kubernetes_validate.ValidationError), match=re.escape(error)
    ):
        validate(broken)


def test_one_v2_container_on_knatives_port(service: dict[str, Any]) -> None:
    container = predictor_container(service)
    assert container["name"] == "kserve-container"
    (port,) = container["ports"]  # Knative allows exactly one
    assert port["containerPort"] == 8080
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["PROTOCOL"] == "v2"
    # Knative injects PORT=8080; the service listens on it unless DIGITS_PORT says otherwise.
    assert env.get("DIGITS_PORT", "8080") == "8080"
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.kserve.io/port"] == "8080"
    assert annotations["prometheus.kserve.io/path"] == "/metrics"
    used = {int(annotations["prometheus.kserve.io/port"]), port["containerPort"]}
    assert used.isdisjoint(RESERVED_PORTS)


def test_resources_and_scaling_follow_the_capacity_figures(service: dict[str, Any]) -> None:
    predictor = service["spec"]["predictor"]
    resources = predictor_container(service)["resources"]
    # Whole CPUs, request = limit: the service starts one worker per CPU of its quota.
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == "2"
    limit_mib = int(resources["limits"]["memory"].removesuffix("Mi"))
    assert limit_mib >= 1.5 * SWAP_PEAK_MIB  # a model swap runs two generations at once
    assert room_for_workers(limit_mib, 2)  # both workers decoding an image at the limit
    assert predictor["scaleMetric"] == "concurrency"
    assert 0 < predictor["scaleTarget"] < SATURATING_CONCURRENCY
    assert (
        service["metadata"]["annotations"]["autoscaling.knative.dev/target-utilization-percentage"]
        == "100"
    )
    assert 2 <= predictor["minReplicas"] < predictor["maxReplicas"]


def test_the_grace_period_outlasts_the_drain(service: dict[str, Any]) -> None:
    predictor = service["spec"]["predictor"]
    env = {item["name"]: item.get("value") for item in predictor_container(service)["env"]}
    drain = float(env["DIGITS_GRACEFUL_SHUTDOWN_SECONDS"])
    assert predictor["terminationGracePeriodSeconds"] > drain + SHUTDOWN_GRACE_S
