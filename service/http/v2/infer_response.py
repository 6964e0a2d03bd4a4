"""Wire format of the KServe V2 / Open Inference Protocol inference response: JSON tensors,
or a JSON header followed by the binary tensors, as the request asked; and the
classification extension's "score:index:label" strings."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from service.http.v2.infer_request import FP32, InferRequest, RequestedOutput
from service.http.v2.tensor_data import WIRE_FP32

BYTES = "BYTES"


def encode_infer_response(
    *,
    model_name: str,
    model_version: str,
    release: str,
    request: InferRequest,
    results: dict[str, np.ndarray],
    labels: list[str],
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary tensors follow it.
    ``model_version`` is the V2 (integer) version, a major; ``release`` the model's own
    version, in the response's ``parameters`` (the protocol's place for what it does not
    name): V2 answers of 1.0.0 and of 1.1.0 were otherwise alike."""
    tensors: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for output in request.outputs:
        values = results[output.name]
        if output.class_count:
            tensor, raw = _classification(output, values, labels)
        else:
            tensor, raw = _fp32_tensor(output, values)
        if raw is not None:
            chunks.append(raw)
        tensors.append(tensor)
    document: dict[str, Any] = {
        "model_name": model_name,
        "model_version": model_version,
        "parameters": {"model_version": release},
        "outputs": tensors,
    }
    if request.request_id is not None:
        document["id"] = request.request_id
    header = json.dumps(document, separators=(",", ":")).encode()
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _fp32_tensor(
    output: RequestedOutput, values: np.ndarray
) -> tuple[dict[str, Any], bytes | None]:
    tensor: dict[str, Any] = {"name": output.name, "datatype": FP32, "shape": list(values.shape)}
    if output.binary:
        raw = np.ascontiguousarray(values, dtype=WIRE_FP32).tobytes()
        tensor["parameters"] = {"binary_data_size": len(raw)}
        return tensor, raw
    tensor["data"] = values.astype(np.float32, copy=False).ravel().tolist()
    return tensor, None


def _classification(
    output: RequestedOutput, values: np.ndarray, labels: list[str]
) -> tuple[dict[str, Any], bytes | None]:
    """The classification extension: the top ``class_count`` as "score:index:label" strings."""
    count = min(output.class_count, values.shape[1])
    top = np.argsort(-values, axis=1, kind="stable")[:, :count]
    rows = [
        [_class_entry(float(row[index]), int(index), labels) for index in order]
        for row, order in zip(values, top, strict=True)
    ]
    tensor: dict[str, Any] = {"name": output.name, "datatype": BYTES, "shape": [len(rows), count]}
    if not output.binary:
        tensor["data"] = [entry for row in rows for entry in row]
        return tensor, None
    encoded = [entry.encode() for row in rows for entry in row]
    raw = b"".join(len(item).to_bytes(4, "little") + item for item in encoded)
    tensor["parameters"] = {"binary_data_size": len(raw)}
    return tensor, raw


def _class_entry(score: float, index: int, labels: list[str]) -> str:
    label = labels[index] if index < len(labels) else ""
    return f"{score:f}:{index}:{label}" if label else f"{score:f}:{index}"
