"""Fixtures every test package may use: where the real MNIST data lies, and external tools."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = REPO_ROOT / "models" / "lenet5.onnx"


def default_mnist_dir() -> Path:
    """$DIGITS_DATA_DIR, else ../shared/data/mnist beside the clone (where CI puts it)."""
    return Path(os.environ.get("DIGITS_DATA_DIR", REPO_ROOT.parent / "shared" / "data" / "mnist"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST IDX files; CI always has them in ../shared, so absence is a failure."""
    path = default_mnist_dir()
    if (
        not (path / "t10k-images-idx3-ubyte.gz").exists()
        and not (path / "t10k-images-idx3-ubyte").exists()
    ):
        pytest.fail(f"MNIST data not found in {path}; set DIGITS_DATA_DIR")
    return path


def require_binary(name: str) -> str:
    """Path of an external tool a test needs (prometheus, chromium, podman...).

    Locally a missing tool skips the test; under CI (CI=true) it fails, because `.ci/run`
    installs every tool and a silently skipped check must never pass for a green build.
    """
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (.ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_fonts(found: list[Path], wanted: tuple[str, ...]) -> None:
    """Like require_binary, for font files (scripts/test-tools.sh installs their packages)."""
    missing = sorted(set(wanted) - {path.name for path in found})
    if not missing:
        return
    message = f"fonts missing: {', '.join(missing)} (scripts/test-tools.sh installs them)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


# --- Service fixtures (issue 3): a tiny valid model, settings and an in-process client. ---


def build_onnx_model(
    path: Path,
    *,
    input_name: str = "image",
    output_name: str = "probabilities",
    input_dims: tuple[int, ...] = (1, 28, 28),
    classes: int = 10,
    metadata: dict[str, str] | None = None,
    batch: str | int = "N",
    reshape_to: tuple[int, int] | None = None,
) -> Path:
    """A small valid ONNX classifier (flatten -> matmul -> softmax) built without torch.

    The weights are fixed pseudo-random numbers: answers are deterministic but meaningless,
    which is all the HTTP tests need. Accuracy tests use the shipped model. ``batch`` fixes
    the first axis; ``reshape_to`` flattens with a fixed Reshape instead (a graph that only
    runs at that batch size).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    features = int(np.prod(input_dims))
    rng = np.random.default_rng(0)
    weights = rng.normal(0.0, 0.05, (features, classes)).astype(np.float32)
    flatten = (
        helper.make_node("Flatten", [input_name], ["flat"], axis=1)
        if reshape_to is None
        else helper.make_node("Reshape", [input_name, "to"], ["flat"])
    )
    shapes = [] if reshape_to is None else [numpy_helper.from_array(np.array(reshape_to), "to")]
    graph = helper.make_graph(
        [
            flatten,
            helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
            helper.make_node("Softmax", ["logits"], [output_name], axis=1),
        ],
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, *input_dims])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, classes])],
        initializer=[numpy_helper.from_array(weights, "weights"), *shapes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {"name": "tiny", "version": "0.0.1"}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def tiny_model_env(path: Path) -> dict[str, str]:
    """DIGITS_* for a real server on the tiny model. Its answers are meaningless, so the
    accuracy floor that start-up checks (service/__main__.py) is lowered to let it serve."""
    return {"DIGITS_MODEL_PATH": str(path), "DIGITS_MODEL_MIN_ACCURACY": "0"}


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid model with the service contract: image [N,1,28,28] -> probabilities [N,10]."""
    return build_onnx_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    """models/lenet5.onnx; CI must have it (it is committed), locally it may not exist yet."""
    if not SHIPPED_MODEL.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{SHIPPED_MODEL} is missing")
        pytest.skip(f"{SHIPPED_MODEL} not trained yet")
    return SHIPPED_MODEL


@pytest.fixture
def model_path(tmp_path: Path, shipped_model: Path) -> Path:
    """A copy of the shipped model as DIGITS_MODEL_PATH (model-swap tests replace it)."""
    path = tmp_path / "model.onnx"
    shutil.copyfile(shipped_model, path)
    return path


@pytest.fixture
def service_settings(tiny_onnx: Path) -> Any:
    """Settings for an app on the tiny model (no environment read for the model path)."""
    from service.settings import Settings

    return Settings(model_path=tiny_onnx, batch_max_delay_us=0)


@pytest.fixture
def client(service_settings: Any) -> Iterator[Any]:
    """A TestClient whose lifespan ran: model loaded, warmed up, batcher started."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    with TestClient(create_app(service_settings)) as test_client:
        yield test_client
