"""GET /model: what is being served, for humans, dashboards and clients."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter

from service.http.schemas import ErrorBody, ModelDescription, Signature
from service.http.state import ModelDep

router = APIRouter(tags=["model"])


@router.get(
    "/model",
    response_model=ModelDescription,
    responses={503: {"model": ErrorBody}},
    summary="Metadata of the served model",
)
async def model_info(info: ModelDep) -> ModelDescription:
    return ModelDescription(
        name=info.name,
        version=info.version,
        sha256=info.sha256,
        provider=info.provider,
        created_at=info.created_at,
        input=Signature(name=info.input_name, shape=list(info.input_shape)),
        output=Signature(name=info.output_name, shape=list(info.output_shape)),
        labels=list(info.labels),
        val_accuracy=info.val_accuracy,
        test_accuracy=info.test_accuracy,
        metadata=structured(info.metadata),
        card=info.card,
        not_a_digit=info.not_a_digit,
    )


def structured(metadata: dict[str, str]) -> dict[str, Any]:
    """ONNX metadata values are strings, the structured ones (labels, normalization, fonts,
    training_config, data_sha256) JSON: those come back as JSON objects and lists rather than
    as JSON text inside JSON. Scalars stay the strings they are ("1.0.0" is not a number)."""
    return {key: _decoded(value) for key, value in metadata.items()}


def _decoded(value: str) -> Any:
    if not value.lstrip().startswith(("{", "[")):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value
