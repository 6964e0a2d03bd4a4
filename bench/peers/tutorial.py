"""The obvious FastAPI + Pillow + ONNX Runtime /predict: an ``UploadFile``, ``convert("L")``
and a resize to 28x28, one session per process with one intra-op thread, batch 1, a dict
answer. It reads real photos wrongly (no normalisation), but a user comparing speed sees its
number. The model comes from DIGITS_MODEL_PATH."""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, File, UploadFile
from PIL import Image

options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(os.environ["DIGITS_MODEL_PATH"], options)
app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
async def predict(file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008 (FastAPI's idiom)
    image = Image.open(io.BytesIO(await file.read())).convert("L").resize((28, 28))
    pixels = np.asarray(image, dtype=np.float32).reshape(1, 1, 28, 28) / 255.0
    (probabilities,) = session.run(["probabilities"], {"image": pixels})
    digit = int(probabilities[0].argmax())
    return {
        "digit": digit,
        "confidence": float(probabilities[0][digit]),
        "probabilities": probabilities[0].tolist(),
    }
