"""V2 bodies compressed on the wire, as tritonclient does it: a request's ``Content-Encoding``
(``request_compression_algorithm``: gzip or deflate) is undone before the request is read, and
an inference answer is compressed when ``Accept-Encoding`` asks for it
(``response_compression_algorithm``), as Triton's server does."""

from __future__ import annotations

import zlib

from service.errors import quoted
from service.http.v2.errors import V2Error

# Request body encodings the Triton clients can send; the same two for answers, gzip first.
_DECOMPRESSORS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# Below this an answer (one image's JSON is about 300 bytes) saves less than compressing and a
# Content-Encoding header cost; clients that ask by default (httpx, requests, Go) get it plain.
MIN_COMPRESSED_BYTES = 1024
# zlib's fastest level: its default (6) took eleven times as long on a batch of 256 answers for
# 7 % fewer bytes (docs/performance.md, "Compressed V2 answers").
COMPRESSION_LEVEL = 1
# Past this an answer is compressed on a thread (about 150 us of zlib, a hand-off's cost).
INLINE_COMPRESSION_BYTES = 16 * 1024


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


def accepted_coding(accept_encoding: str | None) -> str | None:
    """The coding an answer may be compressed with: gzip or deflate, whichever the client
    weighs higher (gzip on a tie; ``*`` stands for any not named), or None for identity."""
    weights: dict[str, float] = {}
    for item in (accept_encoding or "").split(","):
        name, _, parameters = item.partition(";")
        weight = 1.0
        for parameter in parameters.split(";"):
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0  # a weight that is no number accepts nothing
        weights[name.strip().lower()] = weight
    best, best_weight = None, 0.0
    for coding in _DECOMPRESSORS:
        weight = weights.get(coding, weights.get("*", 0.0))
        if weight > best_weight:
            best, best_weight = coding, weight
    return best


def encode_body(body: bytes, coding: str | None) -> tuple[bytes, str | None]:
    """``body`` compressed with ``coding`` when it is worth it; the coding used, if any."""
    if coding is None or len(body) < MIN_COMPRESSED_BYTES:
        return body, None
    compressor = zlib.compressobj(COMPRESSION_LEVEL, wbits=_DECOMPRESSORS[coding])
    return compressor.compress(body) + compressor.flush(), coding
