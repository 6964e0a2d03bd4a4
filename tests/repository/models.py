"""Model files for load tests: variants of the shipped model, and files a load must refuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import SHIPPED_MODEL, build_onnx_model

LAST_LAYER = ("model.classifier.5.weight", "model.classifier.5.bias")


def variant(path: Path, version: str, scale: float, source: Path = SHIPPED_MODEL) -> Path:
    """The shipped model with its logits scaled by ``scale`` (a temperature): the same digit
    for every image, different probabilities, another version in its metadata."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(source)
    for initializer in model.graph.initializer:
        if initializer.name in LAST_LAYER:
            scaled = (numpy_helper.to_array(initializer) * scale).astype(np.float32)
            initializer.CopyFrom(numpy_helper.from_array(scaled, initializer.name))
    for entry in model.metadata_props:
        if entry.key == "version":
            entry.value = version
    onnx.save(model, path)
    return path


def with_rule(path: Path, version: str, rule: dict[str, Any] | None, source: Path) -> Path:
    """``source`` with another version and another not-a-digit rule in its metadata (None:
    no rule at all, as a model trained without one)."""
    import json

    import onnx

    model = onnx.load(source)
    kept = [entry for entry in model.metadata_props if entry.key not in ("version", "not_a_digit")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    extra = {"version": version} | ({"not_a_digit": json.dumps(rule)} if rule else {})
    for key, value in extra.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)
    return path


def renamed(path: Path, name: str, source: Path = SHIPPED_MODEL) -> Path:
    """``source`` with another model name in its metadata (its V2 routes would move)."""
    import onnx

    model = onnx.load(source)
    for entry in model.metadata_props:
        if entry.key == "name":
            entry.value = name
    onnx.save(model, path)
    return path


def contract_graph(path: Path, name: str, nodes: list[Any], seed: int) -> Path:
    """A model with the contract's names, dtypes and shapes: ``nodes`` from input ``image``
    to output ``probabilities`` over a fixed random (784, 10) initializer ``weights``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(seed).normal(0.0, 0.5, (784, 10)).astype(np.float32)
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "name", "lenet5"
    onnx.save(model, path)
    return path


def no_softmax(path: Path) -> Path:
    """Names, dtypes and shapes of the contract, but logits instead of probabilities."""
    from onnx import helper

    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weights"], ["probabilities"]),
    ]
    return contract_graph(path, "logits", nodes, seed=1)


def batch_dependent(path: Path) -> Path:
    """Softmax rows that sum to 1, but each row's logits are centred on the batch's mean: an
    image's answer depends on its neighbours (what batch norm in training mode does)."""
    from onnx import helper

    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
        helper.make_node("ReduceMean", ["logits"], ["mean"], axes=[0], keepdims=1),
        helper.make_node("Sub", ["logits", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "centred"], ["spread"]),
        helper.make_node("Softmax", ["spread"], ["probabilities"], axis=1),
    ]
    return contract_graph(path, "batch_dependent", nodes, seed=2)


def guessing(path: Path) -> Path:
    """A valid model that has learnt nothing: the accuracy floor must refuse it."""
    return build_onnx_model(path, metadata={"name": "lenet5", "version": "0.0.0-untrained"})


def with_metadata(path: Path, changes: dict[str, str | None], source: Path = SHIPPED_MODEL) -> Path:
    """``source`` with metadata entries replaced (a value) or removed (None)."""
    import onnx

    model = onnx.load(source)
    kept = [entry for entry in model.metadata_props if entry.key not in changes]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in changes.items():
        if value is not None:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, path)
    return path
