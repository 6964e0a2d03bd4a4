"""The real ``tritonclient[http]`` against the real server: what V2 users will run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException

from tests.v2.conftest import MODEL_NAME, MODEL_VERSION, V2_VERSION, LiveServer


@pytest.fixture
def triton(v2_server: LiveServer) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(v2_server.url, network_timeout=30.0)
    yield client
    client.close()


def _images(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 1, 28, 28), dtype=np.float32)


def _local(model_path: object, images: np.ndarray) -> np.ndarray:
    """The same model file run by ONNX Runtime right here: the reference answer."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(["probabilities"], {"image": images})
    return np.asarray(probabilities)


def _infer(
    client: httpclient.InferenceServerClient,
    images: np.ndarray,
    *,
    binary_in: bool,
    binary_out: bool | None,
    **kwargs: object,
) -> httpclient.InferResult:
    tensor = httpclient.InferInput("image", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images, binary_data=binary_in)
    outputs = (
        None
        if binary_out is None
        else [httpclient.InferRequestedOutput("probabilities", binary_data=binary_out)]
    )
    return client.infer(MODEL_NAME, [tensor], outputs=outputs, **kwargs)  # type: ignore[arg-type]


def _infers_as_local(
    client: httpclient.InferenceServerClient,
    server: LiveServer,
    images: np.ndarray,
    binary_out: bool,
    **kwargs: object,
) -> httpclient.InferResult:
    """A binary request's answer, checked against ONNX Runtime run here on the same file."""
    result = _infer(client, images, binary_in=True, binary_out=binary_out, **kwargs)
    expected = _local(server.model_path, images)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-5)
    return result


def test_server_is_live_ready_and_describes_itself(
    triton: httpclient.InferenceServerClient,
) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    metadata = triton.get_server_metadata()
    assert metadata["name"] == "digits"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_ready_metadata_and_config(triton: httpclient.InferenceServerClient) -> None:
    assert triton.is_model_ready(MODEL_NAME)
    assert not triton.is_model_ready("mnist")
    metadata = triton.get_model_metadata(MODEL_NAME)
    assert metadata["name"] == MODEL_NAME
    assert metadata["versions"] == [V2_VERSION]
    assert metadata["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert metadata["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    config = triton.get_model_config(MODEL_NAME)
    assert config["max_batch_size"] >= 256
    assert config["input"][0] | {"format": None} == {
        "name": "image",
        "data_type": "TYPE_FP32",
        "format": None,
        "dims": [1, 28, 28],
    }
    assert config["output"][0]["dims"] == [10]
    assert config["version_policy"] == {"specific": {"versions": [int(V2_VERSION)]}}


@pytest.mark.parametrize("version", [V2_VERSION, MODEL_VERSION], ids=["integer", "model"])
def test_the_version_is_named_by_its_integer_or_the_models_own(
    triton: httpclient.InferenceServerClient, version: str
) -> None:
    """Triton's clients name versions by integers ("1"); the model's metadata says "1.0.0"."""
    assert triton.is_model_ready(MODEL_NAME, model_version=version)
    assert triton.get_model_metadata(MODEL_NAME, model_version=version)["versions"] == [V2_VERSION]
    assert triton.get_model_config(MODEL_NAME, model_version=version)["name"] == MODEL_NAME


@pytest.mark.parametrize(
    ("binary_in", "binary_out"),
    [(False, False), (True, True), (False, True), (True, False), (True, None)],
    ids=["json", "binary", "json-in-binary-out", "binary-in-json-out", "binary_data_output"],
)
def test_infer_matches_local_onnxruntime(
    triton: httpclient.InferenceServerClient,
    v2_server: LiveServer,
    binary_in: bool,
    binary_out: bool | None,
) -> None:
    images = _images(5, seed=3)
    result = _infer(triton, images, binary_in=binary_in, binary_out=binary_out, request_id="r-42")
    probabilities = result.as_numpy("probabilities")
    assert probabilities is not None and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, _local(v2_server.model_path, images), rtol=1e-5)
    response = result.get_response()
    assert response["id"] == "r-42"
    assert response["model_name"] == MODEL_NAME
    assert response["model_version"] == V2_VERSION


@pytest.mark.parametrize("binary_in", [False, True], ids=["json", "binary"])
def test_asyncio_client_infers(v2_server: LiveServer, binary_in: bool) -> None:
    """tritonclient.http.aio: its JSON requests arrive as application/octet-stream."""
    images = _images(3, seed=6)

    async def infer() -> aioclient.InferResult:
        async with aioclient.InferenceServerClient(v2_server.url) as client:
            tensor = aioclient.InferInput("image", list(images.shape), "FP32")
            tensor.set_data_from_numpy(images, binary_data=binary_in)
            return await client.infer(MODEL_NAME, [tensor], request_id="aio-1")

    result = asyncio.run(infer())
    expected = _local(v2_server.model_path, images)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-5)
    assert result.get_response()["id"] == "aio-1"


@pytest.mark.parametrize("version", [V2_VERSION, MODEL_VERSION], ids=["integer", "model"])
def test_versioned_path_and_gzip_request(
    triton: httpclient.InferenceServerClient, v2_server: LiveServer, version: str
) -> None:
    result = _infers_as_local(
        triton,
        v2_server,
        _images(2, seed=4),
        binary_out=True,
        model_version=version,
        request_compression_algorithm="gzip",
    )
    assert result.get_response()["model_version"] == V2_VERSION


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("binary_out", [False, True], ids=["json-out", "binary-out"])
def test_compressed_answers_decode(
    triton: httpclient.InferenceServerClient,
    v2_server: LiveServer,
    algorithm: str,
    binary_out: bool,
) -> None:
    """response_compression_algorithm: the answer comes compressed (a binary one with its
    header length counting the JSON before compression, as tritonclient reads it)."""
    images = _images(64, seed=8)
    _infers_as_local(
        triton, v2_server, images, binary_out=binary_out, response_compression_algorithm=algorithm
    )


def test_classification_extension_gives_top_classes(
    triton: httpclient.InferenceServerClient, v2_server: LiveServer
) -> None:
    images = _images(3, seed=5)
    tensor = httpclient.InferInput("image", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    output = httpclient.InferRequestedOutput("probabilities", class_count=2)
    result = triton.infer(MODEL_NAME, [tensor], outputs=[output])
    classes = result.as_numpy("probabilities")
    assert classes is not None and classes.shape == (3, 2)
    expected = _local(v2_server.model_path, images)
    for row, probabilities in zip(classes, expected, strict=True):
        score, index, label = row[0].decode().split(":")
        assert int(index) == int(probabilities.argmax()) and label == index
        assert float(score) == pytest.approx(float(probabilities.max()), abs=1e-6)


@pytest.mark.parametrize(
    ("name", "datatype", "shape", "status", "message"),
    [
        ("image", "FP64", [1, 1, 28, 28], "400", "must have datatype FP32"),
        ("image", "FP32", [1, 28, 28], "400", "must have shape [N, 1, 28, 28]"),
        ("pixels", "FP32", [1, 1, 28, 28], "400", "unknown input 'pixels'"),
    ],
)
def test_wrong_input_is_a_400_with_the_protocol_error(
    triton: httpclient.InferenceServerClient,
    name: str,
    datatype: str,
    shape: list[int],
    status: str,
    message: str,
) -> None:
    dtype = np.float64 if datatype == "FP64" else np.float32
    tensor = httpclient.InferInput(name, shape, datatype)
    tensor.set_data_from_numpy(np.zeros(shape, dtype=dtype))
    with pytest.raises(InferenceServerException) as caught:
        triton.infer(MODEL_NAME, [tensor])
    assert caught.value.status() == status
    assert message in caught.value.message()


def test_wrong_model_name_and_version_are_404(triton: httpclient.InferenceServerClient) -> None:
    images = _images(1)
    tensor = httpclient.InferInput("image", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    with pytest.raises(InferenceServerException) as caught:
        triton.infer("mnist", [tensor])
    assert caught.value.status() == "404"
    assert "unknown model 'mnist'" in caught.value.message()
    for version in ("7", "1.0", "01"):
        with pytest.raises(InferenceServerException) as caught:
            triton.get_model_metadata(MODEL_NAME, model_version=version)
        assert caught.value.status() == "404"
        assert f"unknown version '{version}'" in caught.value.message()
        assert "available: '1' (model version '1.0.0')" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        triton.infer(MODEL_NAME, [tensor], model_version="2")
    assert caught.value.status() == "404"


def test_an_error_before_the_route_reads_as_a_message(
    triton: httpclient.InferenceServerClient,
) -> None:
    """An endpoint this server does not have (Triton's log settings): the client shows the
    message instead of failing to add a dict to a string."""
    with pytest.raises(InferenceServerException) as caught:
        triton.get_log_settings()
    assert caught.value.status() == "404"
    assert "no route /v2/logging" in str(caught.value)


@pytest.mark.parametrize("where", ["input", "output"])
def test_shared_memory_tensors_are_refused_not_ignored(
    triton: httpclient.InferenceServerClient, where: str
) -> None:
    """No shared memory extension here: an output meant for a region must not come back in
    the body instead (the client would read its region and never see the answer)."""
    tensor = httpclient.InferInput("image", [1, 1, 28, 28], "FP32")
    output = httpclient.InferRequestedOutput("probabilities")
    if where == "input":
        tensor.set_shared_memory("images", 3136)
    else:
        tensor.set_data_from_numpy(_images(1))
        output.set_shared_memory("probabilities", 40)
    with pytest.raises(InferenceServerException) as caught:
        triton.infer(MODEL_NAME, [tensor], outputs=[output])
    assert caught.value.status() == "400"
    assert "names shared memory region" in caught.value.message()
    assert "no shared memory extension" in caught.value.message()


def test_an_output_requested_twice_is_a_400(triton: httpclient.InferenceServerClient) -> None:
    """Two tensors of one name would make as_numpy read the second's bytes as the first."""
    tensor = httpclient.InferInput("image", [1, 1, 28, 28], "FP32")
    tensor.set_data_from_numpy(_images(1))
    outputs = [
        httpclient.InferRequestedOutput("probabilities"),
        httpclient.InferRequestedOutput("probabilities", class_count=2),
    ]
    with pytest.raises(InferenceServerException) as caught:
        triton.infer(MODEL_NAME, [tensor], outputs=outputs)
    assert caught.value.status() == "400"
    assert "output 'probabilities' is requested more than once" in caught.value.message()


@pytest.mark.parametrize(
    ("call", "extension"),
    [
        (lambda c: c.register_system_shared_memory("r", "/r", 3136), "system shared memory"),
        (lambda c: c.get_system_shared_memory_status(), "system shared memory"),
        (lambda c: c.register_cuda_shared_memory("r", b"\0" * 64, 0, 3136), "CUDA shared memory"),
        (lambda c: c.unregister_cuda_shared_memory(), "CUDA shared memory"),
        (lambda c: c.update_trace_settings(settings={"trace_level": ["OFF"]}), "trace"),
    ],
    ids=["shm register", "shm status", "cuda register", "cuda unregister", "trace"],
)
def test_an_extension_not_served_says_so(
    triton: httpclient.InferenceServerClient, call: Any, extension: str
) -> None:
    """Not only 'no route': the client learns that the extension is missing, not misspelt."""
    with pytest.raises(InferenceServerException) as caught:
        call(triton)
    assert caught.value.status() == "404"
    assert f"Triton's {extension} extension is not served here" in caught.value.message()
