"""multipart/form-data bodies -> the files of one field, for the prediction routes.

Why not ``request.form()``: Starlette feeds python-multipart's byte-at-a-time state machine
and wraps every file in an UploadFile over a SpooledTemporaryFile; for a /predict/batch of
small PNGs that cost the event loop more than everything else the server does for those
images (docs/performance.md). The body is already bounded by
DIGITS_MAX_BODY_BYTES and read whole, so the framing (RFC 2046: ``--boundary`` lines) is found
with ``bytes.find`` and each part's headers are parsed by python-multipart's own
``parse_options_header``. Files stay ``bytes`` slices; nothing touches the disk.
"""

from __future__ import annotations

import re
from email.message import Message

from python_multipart.multipart import parse_options_header

from service.errors import BadRequest, ValidationFailed, quoted
from service.predictor import Upload

MAX_HEADER_BYTES = 16 * 1024  # of one part's header block; real clients send ~100 bytes
EXTRA_PARTS = 16  # parts besides the files that a body may carry (other form fields)
# How the allowed image formats begin (WebP and BMP: _is_image). A part without a file name
# is still a file when it begins so (curl -F 'file=<digit.png' sends no name).
_IMAGE_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"II*\0",  # TIFF, and BigTIFF below
    b"MM\0*",
    b"II+\0",
    b"MM\0+",
    *(f"P{kind}".encode() for kind in range(1, 7)),  # PPM, PGM, PBM, when allowed
    b"\0\0\1\0",  # ICO, when allowed
)
_CRLF = b"\r\n"
_HEADERS_END = b"\r\n\r\n"
_PLAIN_BOUNDARY = re.compile(
    r"multipart/form-data; ?boundary=(?P<boundary>[0-9A-Za-z'()+_,\-./:=?]+)"
)
_PLAIN_DISPOSITION = re.compile(
    rb'form-data; name="(?P<name>[^"\\\r\n]*)"(?:; filename="(?P<filename>[^"\\\r\n]*)")?'
)


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a multipart Content-Type; 400 when it is missing. The plain
    form every HTTP library sends is read by a regex, anything else by python-multipart."""
    plain = _PLAIN_BOUNDARY.fullmatch(content_type)
    if plain is not None:
        boundary = plain["boundary"].encode("latin-1")
    else:
        boundary = parse_options_header(content_type)[1].get(b"boundary", b"")
    if not boundary or len(boundary) > 200:
        raise BadRequest("multipart body needs a boundary parameter (1-200 characters)")
    return boundary


def read_files(body: bytes, boundary: bytes, field: str, max_files: int) -> list[Upload]:
    """The files sent under ``field``, in order; 400 for a malformed body or more than
    ``max_files`` files (or ``EXTRA_PARTS`` more parts), 422 when the field is missing or
    carries text."""
    delimiter = b"--" + boundary
    start = _first_part(body, delimiter)
    files: list[Upload] = []
    names: list[str] = []
    while True:
        end, closing, following = _next_delimiter(body, delimiter, start)
        name, filename, data = _part(body, start, end)
        names.append(name)
        if len(names) > max_files + EXTRA_PARTS:
            raise BadRequest(f"too many multipart parts: at most {max_files + EXTRA_PARTS}")
        if name == field:
            if filename is None and not _is_image(data):
                raise ValidationFailed(
                    f"multipart field '{field}' must carry a file, not text (curl: -F "
                    f"'{field}=@digit.png', with the @)"
                )
            if len(files) == max_files:
                raise BadRequest(f"too many files: at most {max_files} per request")
            files.append(Upload(data, filename))
        if closing:
            break  # anything after the closing delimiter is the epilogue
        start = following
    if not files:
        raise ValidationFailed(f"multipart field '{field}' is missing (fields: {quoted(names)})")
    return files


def _first_part(body: bytes, delimiter: bytes) -> int:
    """Where the first part's headers begin, past any preamble and the first delimiter."""
    if body.startswith(delimiter):
        at = 0
    else:
        at = body.find(_CRLF + delimiter)
        if at < 0:
            raise BadRequest("malformed multipart body: the boundary never appears")
        at += 2
    after = at + len(delimiter)
    if body.startswith(b"--", after):
        raise ValidationFailed("multipart body has no parts")
    following = _line_end(body, after)
    if following < 0:
        raise BadRequest("malformed multipart body: a boundary line is broken")
    return following


def _next_delimiter(body: bytes, delimiter: bytes, start: int) -> tuple[int, bool, int]:
    """The next delimiter line at or after ``start``: where the part before it ends, whether
    it is the closing one, and where the next part begins. A delimiter followed by anything
    but ``--`` or the end of its line is the part's data (RFC 2046 boundary lines)."""
    marker = _CRLF + delimiter
    end = body.find(marker, start)
    while end >= 0:
        after = end + len(marker)
        if body.startswith(b"--", after):
            return end, True, after + 2
        following = _line_end(body, after)
        if following >= 0:
            return end, False, following
        end = body.find(marker, end + 1)
    raise BadRequest("malformed multipart body: a part is not closed by its boundary")


def _line_end(body: bytes, at: int) -> int:
    """Past the rest of a delimiter line (transport padding is allowed, RFC 2046), or -1 if
    something else follows the boundary there."""
    end = body.find(_CRLF, at)
    if end < 0 or body[at:end].strip(b" \t"):
        return -1
    return end + 2


def _disposition(value: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """``parse_options_header`` for a Content-Disposition, faster for the plain form every
    HTTP library sends (``form-data; name="f"; filename="a.png"``, no escapes); anything else
    (escapes, RFC 2231 ``filename*``, odd spacing) goes to python-multipart."""
    match = _PLAIN_DISPOSITION.fullmatch(value)
    if match is None:
        return parse_options_header(value)
    options = {b"name": match["name"]}
    if match["filename"] is not None:
        options[b"filename"] = match["filename"]
    return b"form-data", options


def _part(body: bytes, start: int, end: int) -> tuple[str, str | None, bytes]:
    """(field name, file name or None for text, content) of the part in body[start:end]."""
    split = body.find(_HEADERS_END, start, end + 2)
    if split < 0 or split - start > MAX_HEADER_BYTES:
        raise BadRequest("malformed multipart body: a part's headers are missing or too long")
    disposition = b""
    for line in body[start:split].split(_CRLF):
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-disposition":
            disposition = value.strip()
    kind, options = _disposition(disposition)
    if kind.lower() != b"form-data" or b"name" not in options:
        raise BadRequest("malformed multipart body: a part has no Content-Disposition name")
    filename = options.get(b"filename")
    name = None if filename is None else filename.decode("utf-8", "replace")
    if b"filename*" in disposition:  # python-multipart drops it
        name = _extended_filename(disposition)
    return options[b"name"].decode("utf-8", "replace"), name, body[split + 4 : end]


def _extended_filename(disposition: bytes) -> str | None:
    """The file name of a Content-Disposition carrying RFC 2231's ``filename*``
    (``utf-8''%E2%82%AC.png``): urllib3 1.x sends only that for a name beyond ASCII, and
    RFC 7578 allows it. The standard library's email parser decodes it."""
    header = Message()
    header["content-disposition"] = disposition.decode("latin-1")
    return header.get_filename()


def _is_image(data: bytes) -> bool:
    if data.startswith(_IMAGE_SIGNATURES):
        return True
    if data[:4] == b"RIFF":
        return data[8:12] == b"WEBP"
    # "BM" alone begins words too: a BMP's two reserved fields (bytes 6-9) are zero.
    return data[:2] == b"BM" and data[6:10] == b"\0\0\0\0"
