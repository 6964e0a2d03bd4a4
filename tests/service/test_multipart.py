"""Multipart bodies as real clients frame them, and as broken or hostile ones do."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.settings import Settings
from tests.service.images import draw_digit, png

SEVEN = png(draw_digit())
TYPE = "multipart/form-data; boundary={}"


def _part(name: str, data: bytes, filename: str | None = "d.png", boundary: str = "b0") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: image/png\r\n\r\n"
    return head.encode() + data + b"\r\n"


def _post(client: TestClient, path: str, body: bytes, boundary: str = "b0") -> Any:
    return client.post(path, content=body, headers={"Content-Type": TYPE.format(boundary)})


def _reference(client: TestClient) -> Any:
    """The answer for SEVEN sent the way an HTTP library frames it."""
    return client.post("/predict", files={"file": ("d.png", SEVEN, "image/png")}).json()


def test_preamble_epilogue_padding_and_a_quoted_boundary_are_read(client: TestClient) -> None:
    body = (
        b"a preamble that clients may send\r\n"
        + _part("file", SEVEN, boundary="x y")
        + b"--x y-- \r\nan epilogue"
    )
    response = _post(client, "/predict", body, boundary='"x y"')
    assert response.status_code == 200, response.text
    assert response.json() == _reference(client)


def test_file_bytes_that_look_like_framing_are_kept(client: TestClient) -> None:
    tricky = b"\r\n--b\r\n\r\n--b0x" + b"\0" * 8  # CRLF, dashes, a longer boundary-like run
    body = _part("files", SEVEN) + _part("files", tricky, "t.bin") + b"--b0--\r\n"
    entries = _post(client, "/predict/batch", body).json()["predictions"]
    assert [entry["filename"] for entry in entries] == ["d.png", "t.bin"]
    assert entries[0]["digit"] == _reference(client)["digit"]
    assert entries[1]["error"]["code"] == "invalid_image"


def test_batch_keeps_order_and_ignores_other_fields(client: TestClient) -> None:
    body = (
        _part("note", b"hello", filename=None)
        + b"".join(_part("files", SEVEN, f"{i}.png") for i in range(3))
        + b"--b0--\r\n"
    )
    entries = _post(client, "/predict/batch", body).json()["predictions"]
    assert [entry["filename"] for entry in entries] == ["0.png", "1.png", "2.png"]


@pytest.mark.parametrize(
    ("disposition", "filename"),
    [
        ("filename*=utf-8''%E2%82%AC%20a.png", "\u20ac a.png"),  # urllib3 1.x, beyond ASCII
        ("filename=\"a.png\"; filename*=UTF-8''%C3%A9.png", "a.png"),  # both: the first
        ('filename="a \\"b\\".png"', 'a "b".png'),  # quoted-pair escapes
    ],
    ids=["rfc2231-only", "both", "escapes"],
)
def test_file_names_in_other_forms_are_read(
    client: TestClient, disposition: str, filename: str
) -> None:
    """A part naming its file only by RFC 2231's ``filename*`` was taken for a text field:
    422 "must carry a file, not text" for a client that sent a file."""
    head = f'--b0\r\nContent-Disposition: form-data; name="files"; {disposition}\r\n\r\n'
    entries = _post(client, "/predict/batch", head.encode() + SEVEN + b"\r\n--b0--\r\n").json()
    assert [entry["filename"] for entry in entries["predictions"]] == [filename]
    assert entries["predictions"][0]["digit"] == _reference(client)["digit"]


@pytest.mark.parametrize("fmt", ["PNG", "TIFF-big"])
def test_a_part_without_a_file_name_holding_an_image_is_the_file(
    client: TestClient, fmt: str
) -> None:
    """curl -F 'file=<digit.png' sends the file's bytes with no file name: RFC 7578 makes
    the name optional, and the part was refused 422 "must carry a file, not text"."""
    data = SEVEN
    if fmt == "TIFF-big":
        buffer = io.BytesIO()
        Image.open(io.BytesIO(SEVEN)).save(buffer, "TIFF", big_tiff=True)
        data = buffer.getvalue()
        assert data.startswith(b"II+\0")
    response = _post(client, "/predict", _part("file", data, filename=None) + b"--b0--")
    assert response.status_code == 200, response.text
    assert response.json()["digit"] == _reference(client)["digit"]


def test_a_part_without_a_file_name_in_a_format_an_operator_allowed(tiny_onnx: Path) -> None:
    """PPM and ICO can be allowed (DIGITS_ALLOWED_IMAGE_FORMATS); a part of one without a
    file name was refused as text."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(SEVEN)).convert("L").save(buffer, "PPM")
    settings = Settings(model_path=tiny_onnx, allowed_image_formats=frozenset({"PNG", "PPM"}))
    with TestClient(create_app(settings)) as client:
        response = _post(client, "/predict", _part("file", buffer.getvalue(), None) + b"--b0--")
    assert response.status_code == 200, response.text


def test_text_that_begins_like_a_bmp_gets_the_hint(client: TestClient) -> None:
    response = _post(client, "/predict", _part("file", b"BMW 3 series", filename=None) + b"--b0--")
    assert response.status_code == 422
    assert "with the @" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (_part("file", SEVEN), 400, "not closed"),  # no closing delimiter: truncated
        (b"no boundary anywhere", 400, "never appears"),
        (b"--b0--\r\n", 422, "no parts"),
        (b"--b0junk\r\n" + _part("file", SEVEN)[5:] + b"--b0--", 400, "boundary line"),
        (b"--b0\r\nContent-Type: image/png\r\n\r\nxx\r\n--b0--", 400, "Content-Disposition"),
        (b"--b0\r\n" + b"X: " + b"y" * 20_000 + b"\r\n\r\nxx\r\n--b0--", 400, "headers"),
        (_part("file", b"text", filename=None) + b"--b0--", 422, "not text"),
        (_part("other", SEVEN) + b"--b0--", 422, "missing"),
        (_part("file", SEVEN) * 2 + b"--b0--", 400, "too many files"),
        (_part("x", b"", None) * 40 + _part("file", SEVEN) + b"--b0--", 400, "too many"),
    ],
    ids=[
        "truncated",
        "no-boundary",
        "no-parts",
        "broken-delimiter",
        "no-disposition",
        "huge-headers",
        "text-not-file",
        "wrong-field",
        "two-files-for-one",
        "too-many-parts",
    ],
)
def test_broken_bodies_get_a_clear_error(
    client: TestClient, body: bytes, status: int, words: str
) -> None:
    response = _post(client, "/predict", body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]
    assert _post(client, "/predict", _part("file", SEVEN) + b"--b0--").status_code == 200
