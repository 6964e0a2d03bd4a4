"""Corrections: recent answers kept for a window, a capped folder, clear errors, a metric."""

from __future__ import annotations

import base64
import errno
import gzip
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError

from service.app import create_app
from service.errors import AlreadyCorrected, FeedbackFull, ServiceError, UnknownRequest
from service.feedback.recent import RecentAnswers
from service.feedback.store import CorrectionStore
from service.settings import Settings
from tests.service.images import draw_digit, png

SEVEN = png(draw_digit())
MODEL = {"name": "tiny", "version": "0"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_recent_answers_are_kept_for_the_window_and_up_to_the_capacity() -> None:
    clock = Clock()
    recent = RecentAnswers(capacity=3, window_s=60.0, clock=clock)
    for number in range(4):
        recent.remember(f"r{number}", 0, b"png", 7, 0.9, MODEL)
    assert len(recent) == 3  # the oldest went first
    with pytest.raises(UnknownRequest, match="no answer to request 'r0'"):
        recent.take("r0", 0)
    assert recent.take("r1", 0).predicted == 7
    with pytest.raises(AlreadyCorrected):
        recent.take("r1", 0)
    clock.now += 61.0
    with pytest.raises(UnknownRequest, match="in the last 60 s"):
        recent.take("r2", 0)
    assert len(recent) == 0
    recent.remember(None, 0, b"png", 7, 0.9, MODEL)  # no request id: nothing to name it by
    assert len(recent) == 0


def test_a_request_id_reused_within_the_window_takes_no_correction() -> None:
    """A reused id silently named its newest answer: a correction meant for the older image
    was recorded against the newer one."""
    clock = Clock()
    recent = RecentAnswers(capacity=10, window_s=60.0, clock=clock)
    recent.remember("same", 0, b"old", 1, 0.9, MODEL)
    clock.now += 30.0
    recent.remember("same", 0, b"new", 2, 0.8, MODEL)
    assert len(recent) == 1  # one entry per name, however often it is reused
    clock.now += 45.0  # the older answer's window is over, the newer one's is not
    with pytest.raises(ServiceError, match="'same' .* more than one request") as refused:
        recent.take("same", 0)
    assert (refused.value.status_code, refused.value.code) == (409, "ambiguous_request")


def test_a_request_id_reused_after_the_window_names_its_new_answer() -> None:
    clock = Clock()
    recent = RecentAnswers(capacity=10, window_s=60.0, clock=clock)
    recent.remember("same", 0, b"old", 1, 0.9, MODEL)
    clock.now += 61.0
    recent.remember("same", 0, b"new", 2, 0.8, MODEL)
    assert recent.take("same", 0).pixels == b"new"


def test_the_store_names_its_files_itself_and_stops_at_its_cap(tmp_path: Path) -> None:
    store = CorrectionStore(tmp_path / "corrections", max_records=2)
    hostile = {"label": 3, "request_id": "../../etc/passwd", "index": 0}
    pixels = bytes(range(256)) * 3 + bytes(16)  # 784
    first = store.append(hostile, pixels)
    store.append({**hostile, "label": None}, pixels)
    with pytest.raises(FeedbackFull):
        store.append(hostile, pixels)
    files = sorted(path.name for path in (tmp_path / "corrections" / "images").iterdir())
    assert len(files) == 2 and f"{first}.png" in files and not any(".." in f for f in files)
    lines = [
        json.loads(line) for line in (tmp_path / "corrections/index.jsonl").read_text().splitlines()
    ]
    assert [line["label"] for line in lines] == [3, None]
    assert (
        lines[0]["image"] == f"images/{first}.png" and lines[0]["request_id"] == "../../etc/passwd"
    )
    assert CorrectionStore(tmp_path / "corrections", max_records=2).records == 2  # counted again
    with Image.open(tmp_path / "corrections" / lines[0]["image"]) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "L", (28, 28))
        assert image.tobytes() == pixels


def _lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "index.jsonl").read_text().splitlines()]


def test_a_write_the_disk_cuts_short_leaves_no_half_line_and_no_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a full disk the index kept half a line and the image had no line: the next
    correction was appended onto the half line, and training's --extra-data stopped at it."""
    folder = tmp_path / "corrections"
    store = CorrectionStore(folder, max_records=10)
    pixels = bytes(784)
    store.append({"label": 1}, pixels)
    real_write = os.write

    def short_write(handle: int, data: bytes) -> int:
        return real_write(handle, data[: len(data) // 2])  # the disk took half of it

    monkeypatch.setattr(os, "write", short_write)
    with pytest.raises(FeedbackFull, match="cannot store this correction: No space left"):
        store.append({"label": 2}, pixels)
    monkeypatch.setattr(os, "write", real_write)
    store.append({"label": 3}, pixels)
    lines = _lines(folder)
    assert [line["label"] for line in lines] == [1, 3] and store.records == 2
    assert sorted(path.name for path in (folder / "images").iterdir()) == sorted(
        line["image"].removeprefix("images/") for line in lines
    )


def test_a_half_line_left_by_an_older_crash_is_cut_at_start(tmp_path: Path) -> None:
    folder = tmp_path / "corrections"
    CorrectionStore(folder, max_records=10).append({"label": 4}, bytes(784))
    with (folder / "index.jsonl").open("a") as index:
        index.write('{"id":"cut-short","lab')
    store = CorrectionStore(folder, max_records=10)
    store.append({"label": 5}, bytes(784))
    assert [line["label"] for line in _lines(folder)] == [4, 5] and store.records == 2


def test_feedback_needs_one_front_end(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="DIGITS_FEEDBACK_DIR needs DIGITS_FRONT_ENDS=1"):
        Settings(feedback_dir=tmp_path, front_ends=2)


@pytest.fixture
def feedback_client(tiny_onnx: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(model_path=tiny_onnx, feedback_dir=tmp_path / "fb", preprocess_workers=1)
    with TestClient(create_app(settings)) as client:
        yield client


def test_every_correction_is_counted_from_zero(feedback_client: TestClient) -> None:
    """A pair's series appeared at 1 with its first correction: Prometheus's increase() and
    rate() saw no step, and the dashboard's Corrections panels missed the first of each."""
    metrics = feedback_client.get("/metrics").text
    assert 'digits_corrections_total{corrected="8",predicted="3"} 0.0' in metrics
    assert 'digits_corrections_total{corrected="1",predicted="not_a_digit"} 0.0' in metrics
    assert 'digits_corrections_total{corrected="not_a_digit",predicted="4"} 0.0' in metrics


def test_a_correction_is_written_counted_and_refused_twice(
    feedback_client: TestClient, tmp_path: Path, tiny_onnx: Path
) -> None:
    assert feedback_client.get("/feedback").json()["enabled"] is True
    plain = feedback_client.post("/predict", content=SEVEN, headers={"Content-Type": "image/png"})
    assert plain.status_code == 200 and "normalized_image" not in plain.json()
    answer = feedback_client.post(
        "/predict?include_image=1", content=SEVEN, headers={"Content-Type": "image/png"}
    )
    request_id = answer.headers["x-request-id"]
    recorded = feedback_client.post("/feedback", json={"request_id": request_id, "digit": 7})
    assert recorded.status_code == 201, recorded.text
    body = recorded.json()
    assert (body["predicted"], body["label"], body["index"]) == (answer.json()["digit"], 7, 0)
    (line,) = (tmp_path / "fb" / "index.jsonl").read_text().splitlines()
    record = json.loads(line)
    # The file's hash names the model: every trained model may be version 1.0.0.
    sha256 = hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    assert record["id"] == body["id"]
    assert record["model"] == {"name": "tiny", "version": "0.0.1", "sha256": sha256}
    assert answer.json()["model"] == {"name": "tiny", "version": "0.0.1"}  # the answer's as was
    seen = Image.open(io.BytesIO(base64.b64decode(answer.json()["normalized_image"])))
    with Image.open(tmp_path / "fb" / record["image"]) as image:
        assert (image.size, image.mode) == ((28, 28), "L")
        assert image.tobytes() == seen.tobytes()  # exactly what the model saw
    again = feedback_client.post("/feedback", json={"request_id": request_id, "digit": 1})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_corrected")
    metrics = feedback_client.get("/metrics").text
    predicted = answer.json()["digit"]
    assert f'digits_corrections_total{{corrected="7",predicted="{predicted}"}} 1.0' in metrics


def test_a_whole_number_written_as_a_float_is_that_digit(feedback_client: TestClient) -> None:
    """3.0 was refused 422 though JSON Schema's integer, which /openapi.json promises, takes
    it (a Schemathesis probe): a client holding its digit as a float writes it so."""
    answer = feedback_client.post(
        "/predict?include_image=1", content=SEVEN, headers={"Content-Type": "image/png"}
    )
    request_id = answer.headers["x-request-id"]
    recorded = feedback_client.post(
        "/feedback",
        content=b'{"request_id": "%s", "digit": 3.0, "index": 0.0}' % request_id.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert recorded.status_code == 201, recorded.text
    assert (recorded.json()["label"], recorded.json()["index"]) == (3, 0)


def _corrected(client: TestClient) -> object:
    answer = client.post(
        "/predict?include_image=1", content=SEVEN, headers={"Content-Type": "image/png"}
    )
    return client.post("/feedback", json={"request_id": answer.headers["x-request-id"], "digit": 7})


def test_a_full_disk_or_a_deleted_folder_is_no_server_error(
    feedback_client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both were a 500 with two tracebacks, and a folder deleted under the service stayed
    gone: every later correction failed until someone made it again."""

    def disk_full(handle: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", disk_full)
        refused = _corrected(feedback_client)
    assert refused.status_code == 507, refused.text
    assert refused.json()["error"]["code"] == "feedback_full"
    assert "No space left on device" in refused.json()["error"]["message"]
    assert list((tmp_path / "fb" / "images").iterdir()) == []  # nor a .partial left behind
    shutil.rmtree(tmp_path / "fb")
    assert _corrected(feedback_client).status_code == 201
    assert len(_lines(tmp_path / "fb")) == 1
    assert feedback_client.get("/feedback").json()["records"] == 1


def test_a_correction_naming_a_reused_request_id_is_refused(
    feedback_client: TestClient,
) -> None:
    """The probe's case: two answers under one client X-Request-ID, then a correction."""
    headers = {"Content-Type": "image/png", "X-Request-ID": "same"}
    for _ in range(2):
        answer = feedback_client.post("/predict", content=SEVEN, headers=headers)
        assert answer.headers["x-request-id"] == "same"
    refused = feedback_client.post("/feedback", json={"request_id": "same", "digit": 0})
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "ambiguous_request"
    assert "used by more than one request" in error["message"]
    assert feedback_client.get("/feedback").json()["records"] == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"request_id": "never-answered", "digit": 3}, 404, "unknown_request"),
        ({"request_id": "x", "digit": 10}, 422, "validation_error"),
        ({"request_id": "x"}, 422, "validation_error"),  # null must be said, not implied
        ({"request_id": "a/b", "digit": 1}, 422, "validation_error"),
        ({"request_id": "x", "digit": 1, "path": "/tmp/x"}, 422, "validation_error"),
    ],
)
def test_bad_corrections_get_clear_errors(
    feedback_client: TestClient, body: dict[str, object], status: int, code: str
) -> None:
    response = feedback_client.post("/feedback", json=body)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


def test_a_batch_image_is_named_by_its_position(
    feedback_client: TestClient, tmp_path: Path
) -> None:
    blank = png(Image.new("L", (40, 40), 255))
    files = [("files", (n, d, "image/png")) for n, d in (("a", SEVEN), ("b", blank), ("c", SEVEN))]
    answer = feedback_client.post("/predict/batch", files=files)
    request_id = answer.headers["x-request-id"]
    refused = feedback_client.post(
        "/feedback", json={"request_id": request_id, "index": 1, "digit": 2}
    )
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "nothing_to_correct")
    third = feedback_client.post(
        "/feedback", json={"request_id": request_id, "index": 2, "digit": None}
    )
    assert third.status_code == 201 and third.json()["label"] is None


def test_a_no_ink_answer_is_told_it_has_no_image_to_correct(feedback_client: TestClient) -> None:
    """It was answered 404 "no answer to request ... in the last 600 s": the answer was
    there, but a blank image leaves no 28x28 input to store with a label."""
    blank = png(Image.new("L", (40, 40), 255))
    answer = feedback_client.post("/predict", content=blank, headers={"Content-Type": "image/png"})
    assert answer.json()["error"]["code"] == "no_ink"
    request_id = answer.headers["x-request-id"]
    refused = feedback_client.post("/feedback", json={"request_id": request_id, "digit": 4})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == {
        "code": "nothing_to_correct",
        "message": f"request {request_id!r} (image 0) was answered no_ink: "
        "there is no digit image to correct",
    }
    assert feedback_client.get("/feedback").json()["records"] == 0


def test_feedback_is_off_by_default(client: TestClient) -> None:
    assert client.get("/feedback").json() == {"enabled": False}
    assert "digits_corrections_total{" not in client.get("/metrics").text
    response = client.post("/feedback", json={"request_id": "x", "digit": 1})
    assert (response.status_code, response.json()["error"]["code"]) == (404, "feedback_disabled")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nested too deeply"),
        (b'{"request_id": "x", "digit": ' + b"9" * 5000 + b"}", "application/json", 400, "4300"),
        (b'{"request_id": "\xff", "digit": 3}', "application/json", 400, "not UTF-8"),
        (b"", "application/json", 400, "body is empty"),
        (b'{"request_id": "x", "digit": 3}', "text/plain", 415, "application/json"),
        (b"[1, 2]", "application/json", 422, "a JSON object"),
        (b'{"request_id": "x", "digit": true}', "application/json", 422, "body.digit"),
        (b'{"request_id": "x", "digit": 3.5}', "application/json", 422, "body.digit"),
        (b'{"request_id": "x", "digit": "3"}', "application/json", 422, "body.digit"),
        (b'{"request_id": "x", "digit": 3, "index": false}', "application/json", 422, "body.index"),
    ],
    ids=[
        "deep",
        "long-int",
        "latin-1",
        "empty",
        "text",
        "list",
        "true",
        "fraction",
        "string",
        "false-index",
    ],
)
def test_a_body_that_is_no_correction_is_told_why(
    feedback_client: TestClient, body: bytes, content_type: str, status: int, says: str
) -> None:
    """FastAPI's own body parsing answered the first three with a bare "There was an error
    parsing the body", JSON sent as text/plain with "a valid dictionary", and stored `true`
    as the digit 1."""
    response = feedback_client.post(
        "/feedback", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == status, response.text
    assert says in response.json()["error"]["message"]
    assert feedback_client.get("/feedback").json()["records"] == 0


@pytest.mark.parametrize(
    "body",
    [
        gzip.compress(b'{"request_id": "x", "digit": 3}', mtime=0),
        b'{"request_id": "x", "digit": 3}',
    ],
    ids=["compressed", "labelled-compressed"],
)
def test_a_compressed_correction_is_unsupported_media(
    feedback_client: TestClient, body: bytes
) -> None:
    """docs/design.md answers a compressed body 415 on every route but /v2; a gzipped
    correction was a 400 saying it was not UTF-8, and a plain one labelled gzip was read."""
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    response = feedback_client.post("/feedback", content=body, headers=headers)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "Content-Encoding 'gzip'" in error["message"]


def test_a_correction_without_a_content_type_is_read_as_json(feedback_client: TestClient) -> None:
    response = feedback_client.post("/feedback", content=b'{"request_id": "x", "digit": 3}')
    assert (response.status_code, response.json()["error"]["code"]) == (404, "unknown_request")


def test_the_correction_body_is_documented(feedback_client: TestClient) -> None:
    spec = feedback_client.get("/openapi.json").json()
    post = spec["paths"]["/feedback"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rpartition("/")[2]]
    assert set(schema["properties"]) == {"request_id", "digit", "index"}
    assert schema["required"] == ["request_id", "digit"]
    assert {"400", "404", "409", "415", "422", "507"} <= set(post["responses"])
