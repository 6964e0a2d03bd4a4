"""Wire format of the KServe V2 / Open Inference Protocol inference request.

Transport-free: bytes and headers in, numpy out. The routes only move bytes.
Both encodings of the protocol are read: JSON tensors (``data``) and the binary tensor data
extension (a JSON header of ``Inference-Header-Content-Length`` bytes followed by the raw
little-endian tensors, each sized by its ``binary_data_size`` parameter), and its raw binary
request (``Inference-Header-Content-Length: 0``: the body is one image's tensor and nothing
else). Every mistake a
client can make is a :class:`V2Error` naming the bad value, so nothing reaches a 500.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.errors import quoted, shortened
from service.http.json_body import InvalidJSON, json_type, parse_json
from service.http.uploads import media_type
from service.http.v2.errors import V2Error
from service.http.v2.tensor_data import WIRE_FP32, binary_values, check_range, json_values

FP32 = "FP32"
# Triton's shared-memory extensions (tensors in regions registered beforehand) are not served
# (GET /v2 lists none): a tensor naming a region is refused, not answered in the body, where
# a client reading its region would never look.
SHARED_MEMORY = "shared_memory_region"

# The binary tensor data extension's header: where the JSON ends and the tensors begin.
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class TensorSignature:
    """Name and shape of one model tensor; the batch dimension is -1 and is not stored."""

    name: str
    item_shape: tuple[int, ...]

    @property
    def shape(self) -> list[int]:
        return [-1, *self.item_shape]

    @property
    def item_size(self) -> int:
        return math.prod(self.item_shape)


@dataclass(frozen=True)
class RequestedOutput:
    """One output the client asked for, and how it wants it back."""

    name: str
    binary: bool
    class_count: int = 0


@dataclass
class InferRequest:
    """A decoded, validated inference request: the images and what to answer."""

    images: np.ndarray
    outputs: list[RequestedOutput]
    request_id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def parse_infer_request(
    body: bytes,
    *,
    header_length: str | None,
    content_type: str | None,
    model_input: TensorSignature,
    model_outputs: list[TensorSignature],
    max_batch_size: int,
) -> InferRequest:
    """Read one infer request; JSON unless ``Inference-Header-Content-Length`` is present.

    The header, not the media type, decides the layout, as in Triton: tritonclient.http
    sends no Content-Type at all, and tritonclient.http.aio (aiohttp's default for bytes)
    sends ``application/octet-stream`` with a plain JSON request.
    """
    if header_length is None:
        octet_stream = media_type(content_type or "") == "application/octet-stream"
        hint = f" (binary tensors need {HEADER_LENGTH})" if octet_stream else ""
        header, binary = _load_json(body, hint), memoryview(b"")
    else:
        size = _parse_header_length(header_length, len(body))
        if size == 0:
            return _raw_request(body, model_input, model_outputs)
        header, binary = _load_json(body[:size]), memoryview(body)[size:]
    return _read_request(header, binary, model_input, model_outputs, max_batch_size)


def _parse_header_length(value: str, body_length: int) -> int:
    # Digits only, as for Content-Length: int() also takes "1_0" and "+2".
    if not (value.isascii() and value.isdigit()):
        raise V2Error(f"{HEADER_LENGTH} must be an integer, got {quoted(value)}")
    digits = value.lstrip("0") or "0"  # int() refuses past 4,300 digits: a 500 it was
    if len(digits) > len(str(body_length)) or int(digits) > body_length:
        raise V2Error(
            f"{HEADER_LENGTH} {shortened(value)} is outside the body of {body_length} bytes"
        )
    return int(digits)


def _raw_request(
    body: bytes, model_input: TensorSignature, model_outputs: list[TensorSignature]
) -> InferRequest:
    """Triton's raw binary request: no JSON header, so a batch of one (the only shape the
    byte count can tell) and every output answered as binary data, as Triton does."""
    expected = model_input.item_size * WIRE_FP32.itemsize
    if len(body) != expected:
        shape = ", ".join(map(str, (1, *model_input.item_shape)))
        raise V2Error(
            f"a raw binary request ({HEADER_LENGTH} 0) is one FP32 tensor "
            f"'{model_input.name}' of shape [{shape}]: {expected} bytes, got {len(body)}"
        )
    flat = np.frombuffer(body, dtype=WIRE_FP32).astype(np.float32, copy=False)
    images = flat.reshape(1, *model_input.item_shape)
    check_range(images, model_input.name)
    return InferRequest(images, [RequestedOutput(output.name, True) for output in model_outputs])


def _load_json(raw: bytes | memoryview, hint: str = "") -> dict[str, Any]:
    try:
        document = parse_json(raw)
    except InvalidJSON as exc:
        raise V2Error(f"request is not valid JSON{hint}: {exc}") from None
    if not isinstance(document, dict):
        raise V2Error(f"request must be a JSON object, got {json_type(document)}")
    return document


def _read_request(
    header: dict[str, Any],
    binary: memoryview,
    model_input: TensorSignature,
    model_outputs: list[TensorSignature],
    max_batch_size: int,
) -> InferRequest:
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Error(f"'id' must be a string, got {json_type(request_id)}")
    parameters = _parameters(header, "request 'parameters'")
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise V2Error(f"'inputs' must be a list with exactly one tensor, '{model_input.name}'")
    images, consumed = _read_input(inputs[0], binary, model_input, max_batch_size)
    if consumed != len(binary):
        raise V2Error(
            f"body carries {len(binary)} bytes of binary tensor data but the inputs "
            f"declare {consumed} (binary_data_size)"
        )
    binary_default = _given(parameters, "binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise V2Error("parameter 'binary_data_output' must be a boolean")
    outputs = _read_outputs(header.get("outputs"), model_outputs, binary_default)
    return InferRequest(images, outputs, request_id, parameters)


def _parameters(holder: dict[str, Any], what: str) -> dict[str, Any]:
    """A ``parameters`` object; null is none at all, as for ``outputs`` and ``id``. Its values
    are the protocol's: a string, a number or a boolean (null: not given), as Triton checks;
    an object or a list was taken in silence, where Triton answers 400."""
    given = holder.get("parameters")
    parameters = {} if given is None else _object(given, what)
    for name, value in parameters.items():
        if isinstance(value, dict | list):
            raise V2Error(
                f"{what}: {quoted(name)} must be a string, number or boolean, "
                f"got {json_type(value)}"
            )
    return parameters


def _given(parameters: dict[str, Any], name: str, default: Any) -> Any:
    """A parameter's value; null is not given, as ``binary_data_size`` has always read it."""
    value = parameters.get(name)
    return default if value is None else value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise V2Error(f"{what} must be a JSON object, got {json_type(value)}")
    return value


def _read_input(
    tensor: Any, binary: memoryview, spec: TensorSignature, max_batch_size: int
) -> tuple[np.ndarray, int]:
    tensor = _object(tensor, "an input tensor")
    name = tensor.get("name")
    if name != spec.name:
        raise V2Error(f"unknown input {quoted(name)}; the model's input is '{spec.name}'")
    datatype = tensor.get("datatype")
    if datatype != FP32:
        raise V2Error(f"input '{spec.name}' must have datatype FP32, got {quoted(datatype)}")
    batch = _check_shape(tensor.get("shape"), spec, max_batch_size)
    count = batch * spec.item_size
    parameters = _parameters(tensor, f"parameters of input '{spec.name}'")
    _no_shared_memory(parameters, f"input '{spec.name}'")
    size = parameters.get("binary_data_size")
    if size is not None:
        if "data" in tensor:
            raise V2Error(f"input '{spec.name}' has both 'data' and binary_data_size")
        flat = binary_values(size, count, binary, spec.name)
        consumed = size
    else:
        flat = json_values(tensor.get("data"), count, spec.name)
        consumed = 0
    images = flat.reshape(batch, *spec.item_shape)
    check_range(images, spec.name)
    return images, consumed


def _no_shared_memory(parameters: dict[str, Any], what: str) -> None:
    if parameters.get(SHARED_MEMORY) is not None:  # null: not given
        raise V2Error(
            f"{what} names shared memory region {quoted(parameters[SHARED_MEMORY])}, but this "
            "server has no shared memory extension: send the tensor in the body instead"
        )


def _check_shape(shape: Any, spec: TensorSignature, max_batch_size: int) -> int:
    expected = f"[N, {', '.join(map(str, spec.item_shape))}]"
    if (
        not isinstance(shape, list)
        or not all(type(dim) is int for dim in shape)
        or tuple(shape[1:]) != spec.item_shape
        or len(shape) != len(spec.item_shape) + 1
    ):
        raise V2Error(f"input '{spec.name}' must have shape {expected}, got {quoted(shape)}")
    batch = shape[0]
    if not 1 <= batch <= max_batch_size:
        raise V2Error(
            f"input '{spec.name}' batch size {quoted(batch)} is outside 1..{max_batch_size} "
            "(max_batch_size in the model config)"
        )
    return batch


def _read_outputs(
    requested: Any, model_outputs: list[TensorSignature], binary_default: bool
) -> list[RequestedOutput]:
    known = {output.name for output in model_outputs}
    if requested is None or requested == []:  # none named: all of them, as Triton answers
        return [RequestedOutput(output.name, binary_default) for output in model_outputs]
    if not isinstance(requested, list):
        raise V2Error("'outputs' must be a list when present")
    outputs: list[RequestedOutput] = []
    for entry in requested:
        entry = _object(entry, "a requested output")
        name = entry.get("name")
        if not isinstance(name, str) or name not in known:
            raise V2Error(f"unknown output {quoted(name)}; the model's outputs are {sorted(known)}")
        if any(output.name == name for output in outputs):
            # Two tensors of one name: tritonclient's as_numpy would read one's bytes as the other.
            raise V2Error(f"output '{name}' is requested more than once")
        parameters = _parameters(entry, f"parameters of output '{name}'")
        _no_shared_memory(parameters, f"output '{name}'")
        binary = _given(parameters, "binary_data", binary_default)
        class_count = _given(parameters, "classification", 0)
        if not isinstance(binary, bool):
            raise V2Error(f"binary_data of output '{name}' must be a boolean")
        if type(class_count) is not int or class_count < 0:
            raise V2Error(f"classification of output '{name}' must be a non-negative integer")
        outputs.append(RequestedOutput(name, binary, class_count))
    return outputs
