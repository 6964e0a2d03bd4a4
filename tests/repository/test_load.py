"""Loading a model while serving (in process): what changes, what is refused, and why."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.contract import ModelInfo, ModelSpec
from service.http.state import app_state
from service.repository.loader import LoadRefused, ModelLoader
from service.repository.staging import Staging
from service.settings import Settings
from tests.repository.conftest import AUTH, LOAD, TOKEN, Files, upload_body
from tests.repository.models import renamed, variant
from tests.service.images import draw_digit, png
from tests.service.test_metrics import scrape, value

SEVEN = png(draw_digit())
INDEX = "/v2/repository/index"
TENSOR = {"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [0.0] * 784}


def predict(client: TestClient) -> dict[str, Any]:
    response = client.post("/predict", content=SEVEN, headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    return response.json()


def served(client: TestClient) -> tuple[str, str]:
    model = client.get("/model").json()
    return model["version"], model["sha256"]


def model_info_series(client: TestClient) -> list[dict[str, str]]:
    return [dict(labels) for name, labels in scrape(client) if name == "digits_model_info"]


def test_an_uploaded_model_serves_from_the_next_request(admin: TestClient, files: Files) -> None:
    assert predict(admin)["model"] == {"name": "lenet5", "version": "1.0.0"}
    response = admin.post(LOAD, headers=AUTH, json=upload_body(files.v2))
    assert response.status_code == 200, response.text
    sha256 = hashlib.sha256(files.v2.read_bytes()).hexdigest()
    body = response.json()
    # V2 answers name a version by its integer (Triton's), the model's own beside it.
    assert (body["version"], body["model_version"]) == ("2", "2.0.0")
    assert (body["sha256"], body["changed"]) == (sha256, True)
    assert body["previous"] == {"name": "lenet5", "version": "1", "model_version": "1.0.0"}
    assert body["check_accuracy"] >= 0.95 and body["check_digits"] == 100
    assert predict(admin)["model"] == {"name": "lenet5", "version": "2.0.0"}
    assert served(admin) == ("2.0.0", sha256)
    assert admin.get("/v2/models/lenet5").json()["versions"] == ["2"]
    assert admin.get("/v2/models/lenet5/versions/1.0.0").status_code == 404
    for version in ("2", "2.0.0"):
        assert admin.get(f"/v2/models/lenet5/versions/{version}").status_code == 200
    infer = admin.post("/v2/models/lenet5/infer", json={"inputs": [TENSOR]})
    assert infer.json()["model_version"] == "2"
    # Statistics per V2 version, each named by its integer or the model's own version.
    stats = admin.get("/v2/models/lenet5/stats").json()["model_stats"]
    assert [entry["version"] for entry in stats] == ["1", "2"]
    assert stats[1]["inference_count"] == 2  # the /predict and the V2 request above
    for version in ("2", "2.0.0"):
        named = admin.get(f"/v2/models/lenet5/versions/{version}/stats").json()["model_stats"]
        assert named == [stats[1]]
    (series,) = model_info_series(admin)  # the old model's series is gone
    assert (series["version"], series["sha256"]) == ("2.0.0", sha256)
    assert admin.get("/readyz").status_code == 200


def test_v2_answers_of_two_versions_of_one_major_are_told_apart(
    admin: TestClient, tmp_path: Path, shipped_model: Path
) -> None:
    """V2 names a version by its major: after 1.0.0 gave way to 1.1.0, every V2 answer and
    the metadata said "1" as before, and only the probabilities differed. The model's own
    version is in their ``parameters`` (the metadata's with the file's sha256)."""
    before = admin.post("/v2/models/lenet5/infer", json={"inputs": [TENSOR]}).json()
    assert (before["model_version"], before["parameters"]) == ("1", {"model_version": "1.0.0"})
    minor = variant(tmp_path / "v1_1.onnx", "1.1.0", 0.9, shipped_model)
    assert admin.post(LOAD, headers=AUTH, json=upload_body(minor)).status_code == 200
    after = admin.post("/v2/models/lenet5/infer", json={"inputs": [TENSOR]}).json()
    assert (after["model_version"], after["parameters"]) == ("1", {"model_version": "1.1.0"})
    metadata = admin.get("/v2/models/lenet5").json()
    assert metadata["versions"] == ["1"]
    sha256 = hashlib.sha256(minor.read_bytes()).hexdigest()
    assert metadata["parameters"]["model_version"] == "1.1.0"
    assert metadata["parameters"]["sha256"] == sha256


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("logits", "expected 0..1 (softmax missing from the graph?)"),
        ("guessing", "below the floor of 95.0% (DIGITS_MODEL_MIN_ACCURACY)"),
        ("junk", "the uploaded file is not a loadable ONNX model"),
    ],
)
def test_a_refused_file_leaves_the_served_model(
    admin: TestClient, files: Files, name: str, reason: str
) -> None:
    before = served(admin)
    response = admin.post(LOAD, headers=AUTH, json=upload_body(getattr(files, name)))
    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith("failed to load 'lenet5': ") and reason in message, message
    assert "digits-models-" not in message  # names the file as the client knows it
    assert served(admin) == before
    assert predict(admin)["model"]["version"] == "1.0.0"
    assert len(model_info_series(admin)) == 1
    assert admin.get("/readyz").status_code == 200


def test_a_load_with_tritons_config_parameter_is_taken(admin: TestClient, files: Files) -> None:
    """Triton's clients send a model configuration with every file ('config' must come with
    'file:' overrides): it was refused as unsupported. What it says must agree with the file."""
    config = admin.get("/v2/models/lenet5/config").json()
    body = upload_body(files.v2)
    body["parameters"]["config"] = json.dumps(config)
    response = admin.post(LOAD, headers=AUTH, json=body)
    assert response.status_code == 200, response.text
    assert predict(admin)["model"]["version"] == "2.0.0"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"max_batch_size": 8}, "max_batch_size 8; served: 1024, which a load cannot change"),
        ({"dynamic_batching": {}}, "dynamic_batching {}; served:"),
        ({"instance_group": [{"count": 4, "kind": "KIND_GPU"}]}, "'instance_group', which"),
    ],
)
def test_a_config_asking_for_what_a_load_cannot_apply_is_refused(
    admin: TestClient, files: Files, change: dict[str, Any], fragment: str
) -> None:
    """Triton applies a load's 'config'; here the model file and the settings make the
    configuration, and a config asking for max_batch_size 8 was answered 200 and ignored."""
    config = {**admin.get("/v2/models/lenet5/config").json(), **change}
    body = upload_body(files.v2)
    body["parameters"]["config"] = json.dumps(config)
    response = admin.post(LOAD, headers=AUTH, json=body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]
    assert predict(admin)["model"]["version"] == "1.0.0"
    assert admin.get("/v2/models/lenet5/config").json()["max_batch_size"] == 1024


def test_a_load_without_a_body_rereads_the_configured_file(
    admin: TestClient, files: Files, model_path: Path
) -> None:
    unchanged = admin.post(LOAD, headers=AUTH)
    assert unchanged.status_code == 200 and unchanged.json()["changed"] is False
    shutil.copyfile(files.v3, model_path)
    response = admin.post(LOAD, headers=AUTH, json={})
    assert response.status_code == 200
    assert (response.json()["version"], response.json()["model_version"]) == ("3", "3.0.0")
    assert predict(admin)["model"]["version"] == "3.0.0"


def test_a_card_left_beside_another_file_is_not_shown(
    admin: TestClient, files: Files, model_path: Path, shipped_model: Path
) -> None:
    """A model copied over DIGITS_MODEL_PATH, its old card left beside it, was served with
    that card: /model showed another file's sha256 and test accuracy as this model's."""
    shutil.copyfile(shipped_model.with_suffix(".json"), model_path.with_suffix(".json"))
    shutil.copyfile(files.v3, model_path)
    assert admin.post(LOAD, headers=AUTH).status_code == 200
    model = admin.get("/model").json()
    assert model["sha256"] == hashlib.sha256(files.v3.read_bytes()).hexdigest()
    assert model["card"] is None


def test_a_refused_reload_names_the_configured_file(
    admin: TestClient, files: Files, model_path: Path
) -> None:
    shutil.copyfile(files.guessing, model_path)
    response = admin.post(LOAD, headers=AUTH)
    assert response.status_code == 400
    assert str(model_path) in response.json()["error"]
    model_path.unlink()
    missing = admin.post(LOAD, headers=AUTH).json()["error"]
    assert "not found" in missing and str(model_path) in missing
    assert predict(admin)["model"]["version"] == "1.0.0"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
        (b'{"parameters": ' + b"9" * 5000 + b"}", 400, "more than 4300 digits"),
        (b'["a list"]', 400, '{"parameters"'),
        (b'{"parameters": {"config": "{not json"}}', 400, "'config' must be a model config"),
        (b'{"parameters": {"config": "' + b"[" * 100_000 + b'"}}', 400, "a JSON object"),
        (b'{"parameters": {"config": {"name": "lenet5"}}}', 400, "a JSON object in a string"),
        (b'{"parameters": {"config": "\\ud800"}}', 400, "a JSON object in a string"),
        (
            b'{"parameters": {"config": "{\\"name\\": ' + b"[" * 990 + b"]" * 990 + b'}"}}',
            400,
            "a JSON",
        ),
        (b'{"parameters": {"config": "{\\"name\\": \\"mnist\\"}"}}', 400, "'mnist', not"),
        (
            b'{"parameters": {"config": "{\\"platform\\": \\"tensorrt_plan\\"}"}}',
            400,
            "platform 'tensorrt_plan'",
        ),
        (b'{"parameters": {"file:1/model.plan": "AAAA"}}', 400, "unknown parameter(s)"),
        (b'{"parameters": {"file:1/model.onnx": "%%%%"}}', 400, "not valid base64"),
        (b'{"parameters": {"file:1/model.onnx": 7}}', 400, "in base64"),
        (b'{"parameters": {"file:1/model.onnx": ""}}', 400, "is empty"),
        (b'{"parameters": {}, "more": 1}', 400, "unknown field(s) ['more']"),
        (
            b'{"parameters": {"file:1/model.onnx": "AAAA", "file:2/model.onnx": "AAAA"}}',
            400,
            "one model file per load",
        ),
    ],
)
def test_malformed_load_requests_are_refused(
    admin: TestClient, body: bytes, status: int, fragment: str
) -> None:
    response = admin.post(LOAD, headers=AUTH, content=body)
    assert response.status_code == status
    assert fragment in response.json()["error"]
    assert predict(admin)["model"]["version"] == "1.0.0"


def test_repository_bodies_are_inflated_as_the_infer_routes_are(
    admin: TestClient, files: Files
) -> None:
    """gzip bodies were read as JSON as they came (400 "not UTF-8") and an unknown encoding
    was ignored: now undone as tritonclient's request compression is on the infer route."""
    compressed = {**AUTH, "Content-Encoding": "gzip"}
    upload = gzip.compress(json.dumps(upload_body(files.v2)).encode())
    response = admin.post(LOAD, headers=compressed, content=upload)
    assert response.status_code == 200, response.text
    assert predict(admin)["model"]["version"] == "2.0.0"
    index = admin.post(INDEX, headers=compressed, content=gzip.compress(b'{"ready": true}'))
    assert index.status_code == 200 and index.json()[0]["state"] == "READY"
    unknown = admin.post(INDEX, headers={**AUTH, "Content-Encoding": "br"}, content=b"{}")
    assert unknown.status_code == 415 and "br" in unknown.json()["error"]


@pytest.mark.parametrize("ready", ['"no"', "1", "null", "[]"])
def test_ready_in_an_index_request_must_be_a_boolean(admin: TestClient, ready: str) -> None:
    """{"ready": "no"} was taken as true, and dropped the refused load from the list."""
    response = admin.post(INDEX, headers=AUTH, content=f'{{"ready": {ready}}}')
    assert response.status_code == 400
    assert response.json()["error"].startswith("'ready' must be a boolean, got ")


def test_an_upload_over_the_size_limit_is_413(admin: TestClient) -> None:
    big = {"parameters": {"file:1/model.onnx": "A" * 400_004}}  # 300,003 bytes decoded
    response = admin.post(LOAD, headers=AUTH, json=big)
    assert response.status_code == 413 and "over the limit of 300000" in response.json()["error"]


def test_a_load_names_the_served_model(admin: TestClient) -> None:
    response = admin.post("/v2/repository/models/resnet/load", headers=AUTH)
    assert response.status_code == 404 and "serves 'lenet5'" in response.json()["error"]


def test_a_file_naming_another_model_is_refused(
    admin: TestClient, tmp_path: Path, model_path: Path, shipped_model: Path
) -> None:
    """A load at /models/lenet5/load of a file naming 'mnistnet' installed it: every
    /v2/models/lenet5 route, and every later load addressed to lenet5, then answered 404. A
    load replaces the model it addresses, as Triton's does; SIGHUP addresses none."""
    other = renamed(tmp_path / "mnistnet.onnx", "mnistnet", shipped_model)
    response = admin.post(LOAD, headers=AUTH, json=upload_body(other))
    assert response.status_code == 400
    assert "named 'mnistnet', not 'lenet5'" in response.json()["error"]
    shutil.copyfile(other, model_path)
    assert admin.post(LOAD, headers=AUTH).status_code == 400  # the configured file, renamed
    assert admin.get("/v2/models/lenet5/ready").status_code == 200
    assert predict(admin)["model"]["name"] == "lenet5"
    _, refused = admin.post(INDEX, headers=AUTH).json()
    assert "named 'mnistnet'" in refused["reason"]


@pytest.mark.parametrize(
    ("file", "version", "metadata"), [("v2", "3", "2.0.0"), ("v3", "1", "3.0.0")]
)
def test_a_file_sent_as_another_version_is_refused(
    admin: TestClient, files: Files, file: str, version: str, metadata: str
) -> None:
    """Triton's file:<version>/model.onnx named a version the load then ignored: a file sent
    as version 3 answered 200 and served as its own, and version 3 was never ready."""
    response = admin.post(LOAD, headers=AUTH, json=upload_body(getattr(files, file), version))
    assert response.status_code == 400
    message = response.json()["error"]
    assert (
        f"says version '{metadata}', served as V2 version {metadata[0]}, not {version}" in message
    )
    assert f"'file:{metadata[0]}/model.onnx'" in message
    assert admin.get("/v2/models/lenet5").json()["versions"] == ["1"]
    assert predict(admin)["model"]["version"] == "1.0.0"
    _, refused = admin.post(INDEX, headers=AUTH).json()
    assert refused["reason"] == message.removeprefix("failed to load 'lenet5': ")


def test_the_served_file_sent_as_another_version_is_refused(
    admin: TestClient, shipped_model: Path
) -> None:
    """The served bytes again ("nothing to change") under another version's name."""
    response = admin.post(LOAD, headers=AUTH, json=upload_body(shipped_model, "3"))
    assert response.status_code == 400 and "not 3" in response.json()["error"]
    assert admin.post(LOAD, headers=AUTH, json=upload_body(shipped_model)).status_code == 200


def test_index_and_unload(admin: TestClient) -> None:
    entry = {"name": "lenet5", "version": "1", "state": "READY", "reason": ""}
    assert admin.post("/v2/repository/index", headers=AUTH).json() == [entry]
    assert admin.post("/v2/repository/index", headers=AUTH, json={"ready": True}).json() == [entry]
    assert admin.post("/v2/repository/index", headers=AUTH, json=[1]).status_code == 400
    unload = admin.post("/v2/repository/models/lenet5/unload", headers=AUTH)
    assert unload.status_code == 400 and "never unloads" in unload.json()["error"]
    other = admin.post("/v2/repository/models/mnist/unload", headers=AUTH)
    assert other.status_code == 404 and "unknown model 'mnist'" in other.json()["error"]


def test_outcomes_are_counted_and_a_refusal_stays_in_the_index(
    admin: TestClient, files: Files
) -> None:
    index = "/v2/repository/index"
    assert admin.post(LOAD, headers=AUTH, json=upload_body(files.guessing)).status_code == 400
    ready, refused = admin.post(index, headers=AUTH).json()
    assert ready["state"] == "READY" and ready["version"] == "1"
    assert refused["state"] == "UNAVAILABLE" and "below the floor" in refused["reason"]
    assert len(admin.post(index, headers=AUTH, json={"ready": True}).json()) == 1
    assert admin.post(LOAD, headers=AUTH).json()["changed"] is False  # the same file
    assert admin.post(index, headers=AUTH).json() == [ready]  # a success clears the refusal
    assert admin.post(LOAD, headers=AUTH, json=upload_body(files.v2)).status_code == 200
    samples = scrape(admin)
    counts = {
        outcome: value(samples, "digits_model_loads_total", outcome=outcome)
        for outcome in ("loaded", "unchanged", "refused", "failed", "busy")
    }
    assert counts == {"loaded": 1, "unchanged": 1, "refused": 1, "failed": 0, "busy": 0}


def test_loads_refused_for_their_request_are_counted_and_listed(
    admin: TestClient, files: Files
) -> None:
    """A body the route refused (not JSON, a parameter it cannot take, a file over the limit)
    moved no digits_model_loads_total and left an older, unrelated reason in the index."""
    assert admin.post(LOAD, headers=AUTH, json=upload_body(files.guessing)).status_code == 400
    assert admin.post(LOAD, headers=AUTH, content=b"{not json").status_code == 400
    big = {"parameters": {"file:1/model.onnx": "A" * 400_004}}
    assert admin.post(LOAD, headers=AUTH, json=big).status_code == 413
    _, refused = admin.post(INDEX, headers=AUTH).json()
    assert refused["reason"].startswith("the request: ") and "over the limit" in refused["reason"]
    assert value(scrape(admin), "digits_model_loads_total", outcome="refused") == 3


def test_the_old_workers_exit_after_a_load(admin: TestClient, files: Files) -> None:
    pool = app_state(admin.app).predictor.pool  # type: ignore[attr-defined,union-attr]
    old = pool.pids
    assert admin.post(LOAD, headers=AUTH, json=upload_body(files.v2)).status_code == 200
    assert set(pool.pids).isdisjoint(old)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in old) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in old)


class _BlockedPool:
    """A pool whose reload waits until the test lets it go."""

    def __init__(self, model: ModelSpec, info: ModelInfo) -> None:
        self.model = model
        self.info = info
        self.release = asyncio.Event()

    async def reload(self, model: ModelSpec) -> ModelInfo:
        await self.release.wait()
        self.model = model
        return self.info


def test_one_load_at_a_time(tmp_path: Path, files: Files, shipped_model: Path) -> None:
    from service.model import DigitClassifier

    info = DigitClassifier(shipped_model).info

    outcomes: list[str] = []

    async def scenario() -> tuple[int, str]:
        staging = Staging()
        source = ModelSpec(str(shipped_model))
        pool = _BlockedPool(staging.pin(source), replace(info, version="2.0.0", sha256="f" * 64))
        loader = ModelLoader(
            pool,  # type: ignore[arg-type]
            source,
            staging,
            Path("unused"),
            0.0,
            on_switch=lambda _: None,
            on_outcome=outcomes.append,
        )
        loader.current = info

        async def passes(_: ModelSpec, __: str | None) -> tuple[float, int]:
            return 1.0, 100  # (accuracy, check digits), as the gate answers

        loader._check = passes  # type: ignore[method-assign]
        first = asyncio.create_task(loader.load(files.v2.read_bytes()))
        await asyncio.sleep(0.05)
        assert loader.loading
        try:
            await loader.load(files.v3.read_bytes())
        except LoadRefused as exc:
            refused = (exc.status_code, exc.message)
        pool.release.set()
        await first
        staging.close()
        return refused

    status, message = asyncio.run(scenario())
    assert status == 409 and "another model load is in progress" in message
    assert outcomes == ["busy", "loaded"]


def test_a_copy_the_service_cannot_write_is_its_failure_not_the_files(
    files: Files, model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load keeps a private copy of the file (service/repository/staging.py). When that
    write fails (a full disk, a temporary folder gone), the file is not at fault: 503 and
    "failed", where it was 400 and "refused", as for a broken file."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    settings = Settings(model_path=model_path, admin_token=TOKEN, preprocess_workers=1)
    with TestClient(create_app(settings)) as client:
        (directory,) = tmp_path.glob("digits-models-*")
        shutil.rmtree(directory)
        directory.write_text("not a directory")  # as a full disk would, every write fails
        response = client.post(LOAD, headers=AUTH, json=upload_body(files.v2))
        assert response.status_code == 503, response.text
        assert "private copy" in response.json()["error"]
        assert value(scrape(client), "digits_model_loads_total", outcome="failed") == 1
        assert predict(client)["model"] == {"name": "lenet5", "version": "1.0.0"}


def test_staged_copies_are_private_and_released(tmp_path: Path, files: Files) -> None:
    staging = Staging()
    first = staging.store(files.v2.read_bytes(), ModelSpec("x"))
    second = staging.store(files.v3.read_bytes(), ModelSpec("x"))
    assert Path(first.path).parent == staging.directory != files.v2.parent
    assert Path(first.path).read_bytes() == files.v2.read_bytes()
    staging.release(first, keep=second)
    assert not Path(first.path).exists() and Path(second.path).exists()
    staging.close()
    assert not staging.directory.exists()
