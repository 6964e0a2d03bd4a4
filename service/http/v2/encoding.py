"""The V2 request body's ``Content-Encoding``: tritonclient compresses requests with gzip or
deflate (``request_compression_algorithm``); the routes undo it before reading the request."""

from __future__ import annotations

import zlib

from service.errors import quoted
from service.http.v2.errors import V2Error

# Request body encodings the Triton clients can send.
_DECOMPRESSORS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decode_body(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding: gzip|deflate``, refusing to inflate past ``max_bytes``."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    wbits = _DECOMPRESSORS.get(encoding)
    if wbits is None:
        raise V2Error(
            f"unsupported Content-Encoding {quoted(content_encoding)}; use gzip, deflate or none",
            status_code=415,
        )
    inflater = zlib.decompressobj(wbits)
    try:
        plain = inflater.decompress(body, max_bytes)
    except zlib.error as exc:
        raise V2Error(f"request body is not valid {encoding} data: {exc}") from None
    if inflater.unconsumed_tail:
        # 413, as for a body over the limit as sent: the same request should not get a
        # different answer for being compressed.
        raise V2Error(
            f"decompressed request body exceeds the limit of {max_bytes} bytes", status_code=413
        )
    if not inflater.eof:
        raise V2Error(f"request body is truncated {encoding} data (its stream does not end)")
    if inflater.unused_data:
        raise V2Error(
            f"request body has {len(inflater.unused_data)} bytes after its {encoding} data"
        )
    return plain
