"""Apps with the model repository routes on, and the model files the load tests use."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.repository.models import guessing, no_softmax, variant

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOAD = "/v2/repository/models/lenet5/load"


@dataclass(frozen=True)
class Files:
    v2: Path  # the shipped model, logits scaled: a good model with another version
    v3: Path
    logits: Path  # fails the contract: no softmax
    guessing: Path  # fails the accuracy floor
    junk: Path  # not ONNX at all


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory, shipped_model: Path) -> Files:
    folder = tmp_path_factory.mktemp("load-files")
    junk = folder / "junk.onnx"
    junk.write_bytes(b"this is not an ONNX file")
    return Files(
        v2=variant(folder / "v2.onnx", "2.0.0", 0.8, shipped_model),
        v3=variant(folder / "v3.onnx", "3.0.0", 0.9, shipped_model),
        logits=no_softmax(folder / "logits.onnx"),
        guessing=guessing(folder / "guessing.onnx"),
        junk=junk,
    )


def file_version(path: Path) -> str:
    """The V2 version a file's metadata gives it ("2.0.0" -> "2"; "1" for a file that has
    none or is not ONNX): what ``file:<version>/model.onnx`` must name to load it."""
    import onnx

    try:
        metadata = {entry.key: entry.value for entry in onnx.load(path).metadata_props}
    except Exception:  # noqa: BLE001 - junk files are loaded too, to be refused
        return "1"
    return metadata.get("version", "1").split(".")[0]


def upload_body(path: Path, version: str | None = None) -> dict[str, dict[str, str]]:
    """A load request carrying ``path`` as Triton's file parameter, named by ``version`` (by
    default the file's own)."""
    parameter = f"file:{version or file_version(path)}/model.onnx"
    return {"parameters": {parameter: base64.b64encode(path.read_bytes()).decode()}}


@pytest.fixture
def admin(model_path: Path) -> Iterator[TestClient]:
    """An app on the shipped model (one worker) with the repository routes on."""
    settings = Settings(
        model_path=model_path, admin_token=TOKEN, preprocess_workers=1, max_model_bytes=300_000
    )
    with TestClient(create_app(settings)) as client:
        yield client
