"""deploy/k8s: the kustomize base renders, passes strict kubernetes-validate, hangs together."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest

from service.workers.supervisor import SHUTDOWN_GRACE_S
from tests.deploy.tools import (
    DEPLOY,
    DOCKERFILE,
    K8S_DIR,
    load_yaml,
    load_yaml_all,
    room_for_workers,
)

KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")


def kustomization() -> dict[str, Any]:
    return load_yaml(K8S_DIR / "kustomization.yaml")


def render() -> list[dict[str, Any]]:
    """`kubectl kustomize` or `kustomize build` when present; else the listed files as they are.

    The fallback skips only kustomize's own edits (common labels, image name), which the
    tests below do not depend on; every resource still goes through the schema check.
    """
    for command in (["kubectl", "kustomize"], ["kustomize", "build"]):
        if shutil.which(command[0]):
            result = subprocess.run(
                [*command, str(K8S_DIR)], capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 0, result.stderr
            return load_yaml_all(result.stdout)
    documents = []
    for name in kustomization()["resources"]:
        documents.extend(load_yaml_all((K8S_DIR / name).read_text()))
    return documents


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, Any]]:
    return {document["kind"]: document for document in render()}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_base_is_valid_kubernetes(version: str) -> None:
    documents = render()
    assert len(documents) == len(kustomization()["resources"]) == 4
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_each_listed_file_is_valid_on_its_own() -> None:
    for name in kustomization()["resources"]:
        for document in load_yaml_all((K8S_DIR / name).read_text()):
            kubernetes_validate.validate(document, KUBERNETES_VERSIONS[0], strict=True)


def test_validation_rejects_a_misspelt_field(resources: dict[str, dict[str, Any]]) -> None:
    """Proves the check can fail: strict mode refuses unknown fields."""
    deployment = resources["Deployment"]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def pod_labels(resources: dict[str, dict[str, Any]]) -> dict[str, str]:
    return resources["Deployment"]["spec"]["template"]["metadata"]["labels"]


def container(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = resources["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def test_selectors_match_the_pods(resources: dict[str, dict[str, Any]]) -> None:
    labels = pod_labels(resources).items()
    for kind in ("Deployment", "PodDisruptionBudget"):
        assert resources[kind]["spec"]["selector"]["matchLabels"].items() <= labels, kind
    assert resources["Service"]["spec"]["selector"].items() <= labels
    target = resources["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    deployment = resources["Deployment"]["metadata"]["name"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment)


def test_probes_ports_and_scrape_annotations_agree(resources: dict[str, dict[str, Any]]) -> None:
    api = container(resources)
    (port,) = api["ports"]
    assert resources["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    annotations = resources["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
    env = {item["name"]: item.get("value") for item in api["env"]}
    assert env["DIGITS_PORT"] == str(port["containerPort"])


def test_pods_are_non_root_read_only_and_bounded(resources: dict[str, dict[str, Any]]) -> None:
    pod = resources["Deployment"]["spec"]["template"]["spec"]
    api = container(resources)
    assert pod["securityContext"]["runAsNonRoot"] is True
    image_uid = re.search(r"ARG UID=(\d+)", DOCKERFILE.read_text())
    assert image_uid and pod["securityContext"]["runAsUser"] == int(image_uid.group(1))
    assert api["securityContext"]["readOnlyRootFilesystem"] is True
    assert api["securityContext"]["allowPrivilegeEscalation"] is False
    assert {mount["mountPath"] for mount in api["volumeMounts"]} == {"/tmp"}
    assert api["resources"]["requests"]["cpu"] and api["resources"]["limits"]["memory"]
    # One CPU, one worker: 512Mi was less than one large image's decode takes.
    assert api["resources"]["limits"]["cpu"] == "1"
    assert room_for_workers(int(api["resources"]["limits"]["memory"].removesuffix("Gi")) * 1024, 1)


def test_scaling_keeps_capacity(resources: dict[str, dict[str, Any]]) -> None:
    hpa = resources["HorizontalPodAutoscaler"]["spec"]
    pdb = resources["PodDisruptionBudget"]["spec"]
    assert 1 <= pdb["minAvailable"] < hpa["minReplicas"] < hpa["maxReplicas"]
    assert resources["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_a_rolling_update_never_drops_below_the_disruption_budget(
    resources: dict[str, dict[str, Any]],
) -> None:
    """Ready pods during an update >= replicas - maxUnavailable, for the smallest replica
    count the HPA allows; that must not be below what the PDB protects."""
    update = resources["Deployment"]["spec"]["strategy"]
    assert update["type"] == "RollingUpdate"
    unavailable, surge = (
        update["rollingUpdate"]["maxUnavailable"],
        update["rollingUpdate"]["maxSurge"],
    )
    smallest = resources["HorizontalPodAutoscaler"]["spec"]["minReplicas"]
    assert smallest - unavailable >= resources["PodDisruptionBudget"]["spec"]["minAvailable"]
    assert unavailable == 0 and surge >= 1  # a new pod is ready before an old one goes


def test_the_grace_period_outlasts_the_pause_and_the_drain(
    resources: dict[str, dict[str, Any]],
) -> None:
    pod = resources["Deployment"]["spec"]["template"]["spec"]
    api = container(resources)
    command = api["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] in image_tools(), "the preStop command must exist in the image"
    pause = float(command[-1])
    env = {item["name"]: item.get("value") for item in api["env"]}
    drain = float(env["DIGITS_GRACEFUL_SHUTDOWN_SECONDS"])
    assert pause >= 2  # endpoints and load balancers need a moment to drop the pod
    assert pod["terminationGracePeriodSeconds"] > pause + drain + SHUTDOWN_GRACE_S


def test_the_admin_token_comes_from_an_optional_secret(
    resources: dict[str, dict[str, Any]],
) -> None:
    (token,) = [
        item for item in container(resources)["env"] if item["name"] == "DIGITS_ADMIN_TOKEN"
    ]
    reference = token["valueFrom"]["secretKeyRef"]
    assert reference["optional"] is True and "value" not in token  # never in the manifest


def image_tools() -> tuple[str, ...]:
    """The tools deploy/image/rootfs.py puts in the image (it has no other binaries)."""
    source = (DEPLOY / "image" / "rootfs.py").read_text()
    match = re.search(r"^TOOLS = (\(.*?\))$", source, flags=re.MULTILINE)
    assert match, "rootfs.py lists its TOOLS"
    tools: tuple[str, ...] = ast.literal_eval(match.group(1))
    return tools
