"""A plain FastAPI app: read the uploaded file, answer a constant."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, File, UploadFile

app = FastAPI()
CONSTANT = {"digit": 7, "confidence": 0.998, "probabilities": [0.0002] * 9 + [0.998]}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
async def predict(file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008 (FastAPI's idiom)
    await file.read()
    return CONSTANT
