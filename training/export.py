"""Export a trained LeNet-5 to ONNX that defines its own contract (docs/design.md section 1).

The graph takes `image` float32 [N, 1, 28, 28] in 0..1 (white on black) and returns
`probabilities` float32 [N, 10]: normalisation and softmax are inside, so the service needs no
constants from training. Export fails loudly unless the checker passes and ONNX Runtime agrees
with PyTorch on real test images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from training.config import IMAGE_SIDE, MNIST_MEAN, MNIST_STD, NUM_CLASSES, OPSET

logger = logging.getLogger("training")

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
PARITY_MIN_IMAGES = 1000
PARITY_TOLERANCE = 1e-5


class ExportError(Exception):
    """The exported file is not trustworthy; str() says what failed."""


class DeployableLeNet(nn.Module):
    """0..1 images in, probabilities out: the training-time standardisation, then a softmax
    at the calibrated temperature (training/calibrate.py)."""

    mean: torch.Tensor  # buffers, registered below (nn.Module types them as Tensor | Module)
    std: torch.Tensor
    temperature: torch.Tensor

    def __init__(self, model: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.model = model.eval()
        self.register_buffer("mean", torch.tensor(MNIST_MEAN, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(MNIST_STD, dtype=torch.float32))
        self.register_buffer("temperature", torch.tensor(temperature, dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.model((image - self.mean) / self.std)
        return torch.softmax(logits / self.temperature, dim=1)


@dataclass(frozen=True)
class Parity:
    images: int
    max_abs_diff: float
    argmax_identical: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "images": self.images,
            "max_abs_diff": self.max_abs_diff,
            "argmax_identical": self.argmax_identical,
            "tolerance": PARITY_TOLERANCE,
        }


def export_onnx(
    model: nn.Module, path: Path, parity_images: np.ndarray, temperature: float = 1.0
) -> Parity:
    """Write the ONNX file, check it, and prove ORT == torch on `parity_images` (N, 28, 28) 0..1.

    Raises ExportError when the checker or the parity check fails (the file is then removed).
    """
    if len(parity_images) < PARITY_MIN_IMAGES:
        raise ExportError(
            f"parity needs at least {PARITY_MIN_IMAGES} images, got {len(parity_images)}"
        )
    wrapper = DeployableLeNet(model, temperature).cpu().eval()
    example = torch.zeros(2, 1, IMAGE_SIDE, IMAGE_SIDE)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("N", min=1)
    with warnings.catch_warnings():
        # The exporter reports its internal passes as warnings; they are not about our graph.
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            wrapper,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"image": {0: batch}},
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
            external_data=False,
        )
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    program.save(str(path), external_data=False)
    try:
        onnx.checker.check_model(str(path), full_check=True)
        _check_signature(onnx.load(str(path)))
        return check_parity(wrapper, path, parity_images)
    except Exception:
        path.unlink(missing_ok=True)
        raise


def _check_signature(graph_model: onnx.ModelProto) -> None:
    inputs = [i.name for i in graph_model.graph.input]
    outputs = [o.name for o in graph_model.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ExportError(
            f"signature is {inputs} -> {outputs}, expected {INPUT_NAME} -> {OUTPUT_NAME}"
        )
    opset = max(o.version for o in graph_model.opset_import if o.domain in ("", "ai.onnx"))
    if opset != OPSET:
        raise ExportError(f"opset {opset}, expected the {OPSET} the export asked for")


@torch.no_grad()
def check_parity(wrapper: nn.Module, path: Path, images: np.ndarray) -> Parity:
    """ONNX Runtime vs PyTorch on the same images: max |diff| <= 1e-5 and identical argmax."""
    x = images.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_probs = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    torch_probs = wrapper(torch.from_numpy(x)).numpy()
    if onnx_probs.shape != (len(x), NUM_CLASSES):
        raise ExportError(f"ONNX output shape {onnx_probs.shape}, expected {(len(x), NUM_CLASSES)}")
    parity = Parity(
        images=len(x),
        max_abs_diff=float(np.abs(onnx_probs - torch_probs).max()),
        argmax_identical=bool((onnx_probs.argmax(1) == torch_probs.argmax(1)).all()),
    )
    # Written so that a NaN difference (a diverged model) fails too.
    if not parity.max_abs_diff <= PARITY_TOLERANCE or not parity.argmax_identical:
        raise ExportError(
            f"ONNX Runtime disagrees with PyTorch on {parity.images} images: max abs diff "
            f"{parity.max_abs_diff:.3g} (limit {PARITY_TOLERANCE}), identical argmax "
            f"{parity.argmax_identical}"
        )
    logger.info(
        "parity: %d images, max abs diff %.3g, identical argmax",
        parity.images,
        parity.max_abs_diff,
    )
    return parity


def write_metadata(path: Path, metadata: dict[str, object]) -> str:
    """Store metadata_props (strings; JSON for structured values); return the file's sha256."""
    graph_model = onnx.load(str(path))
    del graph_model.metadata_props[:]
    for key, value in metadata.items():
        entry = graph_model.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(graph_model, full_check=True)
    onnx.save(graph_model, str(path))
    return file_sha256(path)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
