"""What the V2 protocol says about the server and its model: the server metadata, the model
metadata and Triton's model configuration, built once from the served model."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from service.contract import ModelInfo, v2_version
from service.http.v2.infer_request import FP32, TensorSignature
from service.settings import Settings

SERVER_NAME = "digits"
# Extensions a client may rely on (names as Triton reports them in GET /v2); the model
# repository's routes are listed only where DIGITS_ADMIN_TOKEN turns them on.
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration", "statistics"]
REPOSITORY_EXTENSION = "model_repository"
PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"


def _package_version() -> str:
    try:
        return version("digits")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


SERVER_VERSION = _package_version()


@dataclass(frozen=True)
class ServedModel:
    """The V2 view of the loaded model (``served_model`` builds it in the lifespan)."""

    name: str
    version: str  # the V2 (integer) version, in every V2 answer
    model_version: str  # the model's own version (metadata), also accepted in V2 paths
    sha256: str  # of the model file
    input: TensorSignature
    output: TensorSignature
    labels: list[str]
    max_batch_size: int
    max_queue_delay_us: int
    not_a_digit: dict[str, Any] | None = None  # the reject rule in force, None when off


def served_model(info: ModelInfo, settings: Settings) -> ServedModel:
    return ServedModel(
        name=info.name,
        version=v2_version(info.version),
        model_version=info.version,
        sha256=info.sha256,
        input=TensorSignature(info.input_name, tuple(int(d) for d in info.input_shape[1:])),
        output=TensorSignature(info.output_name, tuple(int(d) for d in info.output_shape[1:])),
        labels=list(info.labels),
        max_batch_size=settings.resolved_v2_max_batch_size,
        max_queue_delay_us=settings.batch_max_delay_us,
        not_a_digit=info.not_a_digit,
    )


def names_version(model: ServedModel, requested: str) -> bool:
    """A V2 path may name the served version by its integer or by the model's own version."""
    return requested in (model.version, model.model_version)


def server_metadata(repository: bool) -> dict[str, Any]:
    extensions = [*EXTENSIONS, REPOSITORY_EXTENSION] if repository else EXTENSIONS
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": extensions}


def _tensor_metadata(tensor: TensorSignature) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": FP32, "shape": tensor.shape}


def model_metadata(model: ServedModel) -> dict[str, Any]:
    """The protocol's model metadata; ``parameters`` (optional in the Open Inference
    Protocol) publishes the not-a-digit rule, so a tensor client can apply what /predict
    applies: refuse when ``rule`` of the probabilities is below ``threshold``."""
    answer: dict[str, Any] = {
        "name": model.name,
        "versions": [model.version],
        "platform": PLATFORM,
        "inputs": [_tensor_metadata(model.input)],
        "outputs": [_tensor_metadata(model.output)],
    }
    # The model's own version and file: "versions" names only the major (V2's integer).
    parameters: dict[str, Any] = {"model_version": model.model_version, "sha256": model.sha256}
    if model.not_a_digit is not None:
        rule = model.not_a_digit
        parameters |= {
            "not_a_digit_rule": rule["rule"],
            "not_a_digit_threshold": rule["threshold"],
            "not_a_digit_refused_when": rule["refused_when"],
        }
    answer["parameters"] = parameters
    return answer


def model_config(model: ServedModel) -> dict[str, Any]:
    """Triton's model-config JSON: perf_analyzer stops without it."""
    return {
        "name": model.name,
        "platform": PLATFORM,
        "backend": BACKEND,
        "max_batch_size": model.max_batch_size,
        "input": [
            {
                "name": model.input.name,
                "data_type": f"TYPE_{FP32}",
                "format": "FORMAT_NONE",
                "dims": list(model.input.item_shape),
            }
        ],
        "output": [
            {
                "name": model.output.name,
                "data_type": f"TYPE_{FP32}",
                "dims": list(model.output.item_shape),
            }
        ],
        "dynamic_batching": {"max_queue_delay_microseconds": model.max_queue_delay_us},
        # int64 in Triton's ModelConfig, so a number here.
        "version_policy": {"specific": {"versions": [int(model.version)]}},
    }
