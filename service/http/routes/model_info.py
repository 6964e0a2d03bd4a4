"""GET /model: what is being served, for humans, dashboards and clients."""

from __future__ import annotations

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
        metadata=info.metadata,
        card=info.card,
        not_a_digit=info.not_a_digit,
    )
