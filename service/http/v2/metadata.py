"""What the V2 protocol says about the server and its model: the server metadata, the model
metadata and Triton's model configuration, built once from the served model."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from service.contract import ModelInfo
from service.http.v2.infer_request import FP32, TensorSignature
from service.settings import Settings

SERVER_NAME = "digits"
# Extensions a client may rely on (names as Triton reports them in GET /v2).
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration"]
PLATFORM = "onnxruntime_onnx"
# A model version that does not start with a number ("beta", "") is V2 version 1.
_DEFAULT_V2_VERSION = "1"
_MAJOR = re.compile(r"^v?(\d+)(?:[.+-]|$)")


def _package_version() -> str:
    try:
        return version("digits")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


SERVER_VERSION = _package_version()


def v2_version(model_version: str) -> str:
    """The model's version as the V2 routes name it: an integer, as Triton and its clients
    (tritonclient, perf_analyzer) expect. It is the major number of the model's semantic
    version ("1.0.0" -> "1"): a retrained model with the same contract keeps its V2 version,
    an incompatible one (a new major) gets a new one."""
    match = _MAJOR.match(model_version.strip())
    return str(int(match.group(1))) if match else _DEFAULT_V2_VERSION


@dataclass(frozen=True)
class ServedModel:
    """The V2 view of the loaded model (``served_model`` builds it in the lifespan)."""

    name: str
    version: str  # the V2 (integer) version, in every V2 answer
    model_version: str  # the model's own version (metadata), also accepted in V2 paths
    input: TensorSignature
    output: TensorSignature
    labels: list[str]
    max_batch_size: int
    max_queue_delay_us: int


def served_model(info: ModelInfo, settings: Settings) -> ServedModel:
    return ServedModel(
        name=info.name,
        version=v2_version(info.version),
        model_version=info.version,
        input=TensorSignature(info.input_name, tuple(int(d) for d in info.input_shape[1:])),
        output=TensorSignature(info.output_name, tuple(int(d) for d in info.output_shape[1:])),
        labels=list(info.labels),
        # A request bigger than the whole inference queue could never be admitted.
        max_batch_size=settings.batch_max_queue_images,
        max_queue_delay_us=settings.batch_max_delay_us,
    )


def names_version(model: ServedModel, requested: str) -> bool:
    """A V2 path may name the served version by its integer or by the model's own version."""
    return requested in (model.version, model.model_version)


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}


def _tensor_metadata(tensor: TensorSignature) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": FP32, "shape": tensor.shape}


def model_metadata(model: ServedModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": PLATFORM,
        "inputs": [_tensor_metadata(model.input)],
        "outputs": [_tensor_metadata(model.output)],
    }


def model_config(model: ServedModel) -> dict[str, Any]:
    """Triton's model-config JSON: perf_analyzer stops without it."""
    return {
        "name": model.name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
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
