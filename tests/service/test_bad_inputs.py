"""A corpus of hostile and broken requests: each gets the right 4xx JSON, none a 500, and the
service still answers a good request afterwards."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from zlib import compress, crc32, decompress

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.settings import Settings
from tests.service.images import draw_digit, encode, png

GOOD = png(draw_digit())
PNG_DATA = encode(draw_digit().convert("RGB"), "PNG")
JPEG_DATA = encode(draw_digit().convert("RGB"), "JPEG")
BOMB = encode(Image.new("1", (30000, 30000), 0), "PNG", optimize=True)
WIDE = encode(Image.new("1", (100_000, 500), 1), "PNG", optimize=True)
NAN_TIFF = encode(Image.fromarray(np.full((28, 28), np.nan, np.float32)), "TIFF")
RAW = {"Content-Type": "image/png"}
MAX_BODY = 256 * 1024


def _with_empty_segments(data: bytes, at: int, segment: bytes, count: int = 10_001) -> bytes:
    """``data`` with ``count`` copies of an empty metadata segment inserted at ``at``: cheap
    to send, and each one a step of Pillow's parsers in Python."""
    return data[:at] + segment * count + data[at:]


def _after_gif_colour_table(data: bytes) -> int:
    return 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)


GIF_DATA = encode(draw_digit(), "GIF")
MANY_CHUNKS = _with_empty_segments(GOOD, 33, struct.pack(">I4sI", 0, b"prVt", crc32(b"prVt")))
MANY_MARKERS = _with_empty_segments(JPEG_DATA, 2, b"\xff\xfe\x00\x02")  # empty comments
MANY_BLOCKS = _with_empty_segments(GIF_DATA, _after_gif_colour_table(GIF_DATA), b"\x21\xfe\x00")
PROGRESSIVE = encode(draw_digit().convert("RGB"), "JPEG", progressive=True)


def _with_scans(data: bytes, count: int) -> bytes:
    """A progressive JPEG with its last scan repeated ``count`` times before its end: each
    one a pass over the whole image for the decoder."""
    last_scan = data[data.rfind(b"\xff\xda") : -2]
    return data[:-2] + last_scan * count + data[-2:]


def _rows_missing(data: bytes, share: float = 0.8) -> bytes:
    """``data`` (a PNG of one IDAT chunk) with only ``share`` of its rows, in a complete
    compressed stream: Pillow reads it without an error, the missing rows black."""
    length = int.from_bytes(data[33:37], "big")
    assert data[37:41] == b"IDAT", "one IDAT right after IHDR"
    rows = decompress(data[41 : 41 + length])
    kept = compress(rows[: int(len(rows) * share)])
    chunk = (
        struct.pack(">I4s", len(kept), b"IDAT") + kept + struct.pack(">I", crc32(b"IDAT" + kept))
    )
    return data[:33] + chunk + data[41 + length + 4 :]


# (name, request kwargs, status, code)
CORPUS = [
    ("zero bytes", {"content": b"", "headers": RAW}, 400, "invalid_image"),
    ("random bytes", {"content": os.urandom(4096), "headers": RAW}, 400, "invalid_image"),
    (
        "truncated png",
        {"content": PNG_DATA[: len(PNG_DATA) // 2], "headers": RAW},
        400,
        "invalid_image",
    ),
    (
        "truncated jpeg",
        {"content": JPEG_DATA[:300], "headers": {"Content-Type": "image/jpeg"}},
        400,
        "invalid_image",
    ),
    ("png header only", {"content": PNG_DATA[:33], "headers": RAW}, 400, "invalid_image"),
    # Pillow fills the rows black: examples/digit.png (a 3) so cut was answered 200, 2 at 0.92.
    (
        "png with rows missing",
        {"content": _rows_missing(GOOD), "headers": RAW},
        400,
        "invalid_image",
    ),
    ("decompression bomb", {"content": BOMB, "headers": RAW}, 413, "image_too_large"),
    ("huge dimensions", {"content": WIDE, "headers": RAW}, 413, "image_too_large"),
    (
        "float tiff of NaN",
        {"content": NAN_TIFF, "headers": {"Content-Type": "image/tiff"}},
        400,
        "invalid_image",
    ),
    ("blank white", {"content": png(Image.new("L", (64, 64), 255)), "headers": RAW}, 422, "no_ink"),
    ("blank black", {"content": png(Image.new("L", (28, 28), 0)), "headers": RAW}, 422, "no_ink"),
    (
        "svg",
        {
            "content": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
            "headers": {"Content-Type": "image/svg+xml"},
        },
        415,
        "unsupported_media_type",
    ),
    (
        "text/plain",
        {"content": GOOD, "headers": {"Content-Type": "text/plain"}},
        415,
        "unsupported_media_type",
    ),
    (
        "no content type",
        {"content": GOOD, "headers": {"Content-Type": ""}},
        415,
        "unsupported_media_type",
    ),
    (
        "format not allowed",
        {"content": encode(draw_digit(), "ICO"), "headers": RAW},
        415,
        "unsupported_media_type",
    ),
    (
        "png of 10,001 empty chunks",
        {"content": MANY_CHUNKS, "headers": RAW},
        400,
        "invalid_image",
    ),
    (
        "jpeg of 10,001 empty comments",
        {"content": MANY_MARKERS, "headers": {"Content-Type": "image/jpeg"}},
        400,
        "invalid_image",
    ),
    (
        "gif of 10,001 empty comments",
        {"content": MANY_BLOCKS, "headers": {"Content-Type": "image/gif"}},
        400,
        "invalid_image",
    ),
    (  # named by its first bytes: "cannot identify an image" told its sender nothing
        "pdf as image",
        {"content": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", "headers": RAW},
        415,
        "unsupported_media_type",
    ),
    (  # an iPhone's photo; a 400 invalid_image said the file was broken
        "heic as image",
        {
            "content": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\0" * 64,
            "headers": RAW,
        },
        415,
        "unsupported_media_type",
    ),
    (  # in a form field the part's type is not read: 400 invalid_image, 415 sent raw
        "svg in a form",
        {
            "files": {
                "file": (
                    "d.svg",
                    b"<?xml version='1.0'?>\n<svg xmlns='http://www.w3.org/2000/svg'/>",
                    "image/svg+xml",
                )
            }
        },
        415,
        "unsupported_media_type",
    ),
    (
        "bad json",
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        400,
        "bad_request",
    ),
    ("json not an object", {"json": [1, 2, 3]}, 422, "validation_error"),
    ("json without image", {"json": {"picture": "x"}}, 422, "validation_error"),
    ("json image not a string", {"json": {"image": 42}}, 422, "validation_error"),
    (
        "json extra field",
        {"json": {"image": base64.b64encode(GOOD).decode(), "x": 1}},
        422,
        "validation_error",
    ),
    ("bad base64", {"json": {"image": "***not base64***"}}, 422, "validation_error"),
    (
        "base64 of garbage",
        {"json": {"image": base64.b64encode(b"hello").decode()}},
        400,
        "invalid_image",
    ),
    (
        "json nested 100,000 deep",
        {
            "content": b"[" * 100_000 + b"]" * 100_000,
            "headers": {"Content-Type": "application/json"},
        },
        400,
        "bad_request",
    ),
    (
        "json integer of 5,000 digits",
        {
            "content": b'{"image": ' + b"9" * 5000 + b"}",
            "headers": {"Content-Type": "application/json"},
        },
        400,
        "bad_request",
    ),
    (
        "gzip-encoded body",
        {"content": gzip.compress(GOOD), "headers": {**RAW, "Content-Encoding": "gzip"}},
        415,
        "unsupported_media_type",
    ),
    (
        "unknown content encoding",
        {"content": GOOD, "headers": {**RAW, "Content-Encoding": "x-squash"}},
        415,
        "unsupported_media_type",
    ),
    (
        "json utf-16 junk",
        {"content": b"\xff\xfe\x00", "headers": {"Content-Type": "application/json"}},
        400,
        "bad_request",
    ),
    (
        "multipart without file",
        {"files": {"other": ("a.png", GOOD, "image/png")}},
        422,
        "validation_error",
    ),
    (
        "multipart text field",
        {"data": {"file": "not a file"}, "files": {"x": ("x", b"", "text/plain")}},
        422,
        "validation_error",
    ),
    (
        "multipart broken",
        {
            "content": b"--zz\r\nbroken",
            "headers": {"Content-Type": "multipart/form-data; boundary=zz"},
        },
        400,
        "bad_request",
    ),
    (
        "multipart no boundary",
        {"content": b"abc", "headers": {"Content-Type": "multipart/form-data"}},
        400,
        "bad_request",
    ),
    (
        "over body limit",
        {"content": b"\0" * (MAX_BODY + 1), "headers": RAW},
        413,
        "payload_too_large",
    ),
    (
        "multipart over body limit",
        {"files": {"file": ("big.png", b"\0" * (MAX_BODY + 1), "image/png")}},
        413,
        "payload_too_large",
    ),
]


@pytest.fixture(scope="module")
def hardened(tiny_onnx: Path) -> Iterator[TestClient]:
    settings = Settings(model_path=tiny_onnx, max_body_bytes=MAX_BODY, batch_max_delay_us=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("name", "request_kwargs", "status", "code"), CORPUS, ids=[c[0] for c in CORPUS]
)
def test_bad_input_gets_a_clear_4xx(
    hardened: TestClient, name: str, request_kwargs: dict, status: int, code: str
) -> None:
    response = hardened.post("/predict", **request_kwargs)
    assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"] and len(error["message"]) < 400
    assert response.headers["x-request-id"]
    follow_up = hardened.post("/predict", content=GOOD, headers=RAW)
    assert follow_up.status_code == 200  # still serving


def test_a_jpeg_of_many_scans_is_refused_before_it_is_decoded(hardened: TestClient) -> None:
    """Scans come after the markers the segment count walks: 8,000 of them in an 800 KB
    file held a worker past its time limit, and the images it held failed with it."""
    jpeg = {"Content-Type": "image/jpeg"}
    assert hardened.post("/predict", content=PROGRESSIVE, headers=jpeg).status_code == 200
    response = hardened.post("/predict", content=_with_scans(PROGRESSIVE, 100), headers=jpeg)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_image"
    assert error["message"].startswith("the JPEG holds 110 scans, more than the 64 allowed")


def test_a_bomb_is_told_the_services_limit_not_pillows(hardened: TestClient) -> None:
    """Pillow refuses a header past its own limit (178956970 pixels, twice its default) with
    a message naming that limit, which was passed on: two limits in one answer."""
    response = hardened.post("/predict", content=BOMB, headers=RAW)
    assert response.status_code == 413
    message = response.json()["error"]["message"]
    limit = Settings.model_fields["max_image_pixels"].default
    assert message == f"image is 900000000 pixels; the limit is {limit} pixels"


def test_chunked_body_over_the_limit_is_stopped_while_reading(hardened: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: only counting receive() can stop it
        for _ in range(8):
            yield b"\0" * (MAX_BODY // 4)

    response = hardened.post("/predict", content=chunks(), headers=RAW)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_lying_content_length_is_refused_before_reading(hardened: TestClient) -> None:
    response = hardened.post(
        "/predict", content=b"x", headers={**RAW, "Content-Length": str(MAX_BODY * 10)}
    )
    assert response.status_code == 413
    assert str(MAX_BODY * 10) in response.json()["error"]["message"]


def test_batch_with_only_bad_files_answers_each(hardened: TestClient) -> None:
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate([b"", BOMB])]
    response = hardened.post("/predict/batch", files=files)
    assert response.status_code == 200
    codes = [entry["error"]["code"] for entry in response.json()["predictions"]]
    assert codes == ["invalid_image", "image_too_large"]


def test_a_batch_mixing_good_and_hostile_images_answers_each_as_alone(
    hardened: TestClient,
) -> None:
    """The worker prepares a batch's images stage by stage and measures their statistics
    together (two good images per bad one: enough to be measured in rows): failures at every
    stage, between good images, must each stay with their own entry."""
    images = [  # every bad image body of the corpus that fits a batch within the body limit
        (name, kwargs["content"], code)
        for name, kwargs, _, code in CORPUS
        if kwargs.get("headers") in (RAW, {"Content-Type": "image/jpeg"})
        and code != "payload_too_large"
        and len(kwargs["content"]) <= MAX_BODY // 16  # not the floods of empty segments
    ]
    codes = {"invalid_image", "image_too_large", "no_ink", "unsupported_media_type"}
    assert {code for _, _, code in images} == codes
    good = [("good", data, None) for data in [png(draw_digit()), JPEG_DATA] * len(images)]
    pairs = zip(images, good[0::2], good[1::2], strict=True)
    mixed = [item for trio in pairs for item in trio]  # bad, good, good, bad, ...
    assert len(mixed) == 3 * len(images)
    files = [("files", (f"{i}.img", data, "image/png")) for i, (_, data, _) in enumerate(mixed)]
    response = hardened.post("/predict/batch", files=files)
    assert response.status_code == 200
    for (name, data, code), entry in zip(mixed, response.json()["predictions"], strict=True):
        if code is not None:
            assert entry["error"]["code"] == code, name
            continue
        alone = hardened.post("/predict", content=data, headers=RAW).json()
        assert entry["digit"] == alone["digit"], name
        assert entry["probabilities"] == pytest.approx(alone["probabilities"], rel=1e-5, abs=1e-7)


def test_identity_content_encoding_is_read_as_plain(hardened: TestClient) -> None:
    response = hardened.post(
        "/predict", content=GOOD, headers={**RAW, "Content-Encoding": "identity"}
    )
    assert response.status_code == 200, response.text


def test_a_compressed_batch_is_refused_before_its_files_are_read(hardened: TestClient) -> None:
    response = hardened.post(
        "/predict/batch", files=[("files", GOOD)] * 2, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 415
    assert "Content-Encoding 'gzip'" in response.json()["error"]["message"]


def test_a_batch_of_large_images_is_read_up_to_its_pixel_budget(tiny_onnx: Path) -> None:
    large = Image.new("L", (1000, 1000), 255)
    large.paste(0, (480, 200, 520, 800))
    data = png(large)  # 1,000,000 pixels
    settings = Settings(  # one worker: the request is one frame, one budget
        model_path=tiny_onnx,
        preprocess_workers=1,
        max_image_pixels=1_500_000,
        max_batch_pixels=2_500_000,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.post("/predict/batch", files=[("files", data)] * 3)
        assert response.status_code == 200, response.text
        entries = response.json()["predictions"]
        assert ["error" in entry for entry in entries] == [False, False, True]
        assert entries[2]["error"]["code"] == "image_too_large"
        assert "DIGITS_MAX_BATCH_PIXELS" in entries[2]["error"]["message"]
        alone = client.post("/predict", content=data, headers=RAW)
        assert alone.status_code == 200  # a request of its own has a budget of its own


LONG = "x" * 3000  # a client's value far longer than any answer should quote
ADMIN_TOKEN = "test-admin-token-0123456789"
# (what, method, url, request kwargs): each answer quotes a client's value in its message.
ECHOES = [
    ("model name", "GET", f"/v2/models/{LONG}", {}),
    ("model name, readiness", "GET", f"/v2/models/{LONG}/ready", {}),
    ("model name, statistics", "GET", f"/v2/models/{LONG}/stats", {}),
    ("model version", "GET", f"/v2/models/tiny/versions/{LONG}", {}),
    (
        "model name, load",
        "POST",
        f"/v2/repository/models/{LONG}/load",
        {"headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"}},
    ),
    (
        "V2 body encoding",
        "POST",
        "/v2/models/tiny/infer",
        {"content": b"x", "headers": {"Content-Encoding": LONG}},
    ),
    (
        "V2 header length",
        "POST",
        "/v2/models/tiny/infer",
        {"content": b"{}", "headers": {"Inference-Header-Content-Length": LONG}},
    ),
    (
        "body encoding",
        "POST",
        "/predict",
        {"content": GOOD, "headers": {**RAW, "Content-Encoding": LONG}},
    ),
    (
        "correction media type",
        "POST",
        "/feedback",
        {"content": b"x", "headers": {"Content-Type": f"text/{LONG}"}},
    ),
    ("multipart field name", "POST", "/predict/batch", {"files": [(LONG, ("a.png", GOOD))]}),
]


@pytest.fixture(scope="module")
def every_route(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The feedback and repository routes on too, so each can answer with an echo."""
    settings = Settings(
        model_path=tiny_onnx,
        admin_token=ADMIN_TOKEN,
        feedback_dir=tmp_path_factory.mktemp("feedback"),
        preprocess_workers=1,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/v2/models/tiny").status_code == 200  # the name the URLs assume
        yield client


@pytest.mark.parametrize(("what", "method", "url", "kwargs"), ECHOES, ids=[e[0] for e in ECHOES])
def test_a_long_client_value_is_quoted_short_in_the_error(
    every_route: TestClient, what: str, method: str, url: str, kwargs: dict
) -> None:
    """Every route clips what it echoes by one rule, so an error answer stays a message."""
    response = every_route.request(method, url, **kwargs)
    assert 400 <= response.status_code < 500, f"{what}: {response.status_code}"
    error = response.json()["error"]
    message = error if isinstance(error, str) else error["message"]  # V2's error is a string
    assert "xxxxxxxx..." in message, message  # the value, clipped
    assert len(message) < 300, f"{what}: {len(message)} characters"


def _tiff_of_samples(samples: int) -> bytes:
    """An 8-bit TIFF of 64x64 pixels declaring ``samples`` samples a pixel."""
    entries = [
        (256, 4, 1, 64),  # width
        (257, 4, 1, 64),  # height
        (258, 3, 1, 8),  # bits a sample
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 1),  # black is zero
        (273, 4, 1, 122),  # where the strip starts
        (277, 3, 1, samples),
        (278, 4, 1, 64),  # rows a strip
        (279, 4, 1, 4096),  # the strip's bytes
    ]
    directory = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", *entry) for entry in entries
    )
    return b"II*\0" + struct.pack("<I", 8) + directory + b"\0" * 4100


def test_what_pillow_finds_wrong_in_a_file_is_not_logged(
    tiny_onnx: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A TIFF declaring 65,535 samples a pixel made Pillow log two ERROR lines each time a
    client sent it (128 for one batch of 64): the client's 400 says what was wrong."""
    settings = Settings(model_path=tiny_onnx, access_log=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for _ in range(3):
            response = client.post(
                "/predict", content=_tiff_of_samples(65535), headers={"Content-Type": "image/tiff"}
            )
            assert response.status_code == 400, response.text
        assert client.post("/predict", content=GOOD, headers=RAW).status_code == 200
    logged = capfd.readouterr().err
    assert "samples per pixel" not in logged.lower()


def _idat_crc_broken(data: bytes) -> bytes:
    """``data`` (a PNG) with its first IDAT chunk's CRC flipped."""
    at = 8
    while data[at + 4 : at + 8] != b"IDAT":
        at += 12 + int.from_bytes(data[at : at + 4], "big")
    crc_at = at + 8 + int.from_bytes(data[at : at + 4], "big")
    return data[:crc_at] + bytes(b ^ 0xFF for b in data[crc_at : crc_at + 4]) + data[crc_at + 4 :]


def test_what_c_libraries_print_is_logged_as_json(
    tiny_onnx: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """libpng printed "libpng error: IDAT: CRC error" on the worker's stderr for each such
    file, a line no JSON log reader could parse, as often as a client sent one. The server
    now reads its workers' stderr: their JSON lines pass, any other becomes a log record."""
    settings = Settings(model_path=tiny_onnx, access_log=False)
    with (
        caplog.at_level(logging.WARNING, logger="service.native"),
        TestClient(create_app(settings), raise_server_exceptions=False) as client,
    ):
        response = client.post("/predict", content=_idat_crc_broken(GOOD), headers=RAW)
        assert response.status_code == 400, response.text
        assert "checksum" in response.json()["error"]["message"]  # not "rows ... cut short"
        assert client.post("/predict", content=GOOD, headers=RAW).status_code == 200
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert all(json.loads(line) for line in lines)  # what reached stderr is JSON
    native = [record.getMessage() for record in caplog.records if record.name == "service.native"]
    assert any("libpng error: IDAT: CRC error" in message for message in native), native
