"""An offer to switch protocols, declined: the request's head as it would be without it; and
a transfer coding the server does not know, which llhttp lets through.

A server may ignore ``Upgrade`` and answer in HTTP/1.1 (RFC 9110 section 7.8). Java's
HttpClient and Spring's RestClient offer h2c with every request to an http:// URL; httptools
ends such a message at its head, so service/http/connections.py parses the head again, as
this module writes it, with the bytes that followed.
"""

from __future__ import annotations

from collections.abc import Iterable

# The offer's own headers (Upgrade: h2c comes with HTTP2-Settings), and its Connection tokens.
OFFER_HEADERS = frozenset({b"upgrade", b"http2-settings"})


def unknown_coding(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """A transfer coding of the request other than chunked ("" when none): llhttp takes
    ``gzip, chunked`` and drops the gzip, so the body would reach the app still coded. A
    server should refuse a coding it does not know (RFC 9112 section 6.1)."""
    for name, value in headers:
        if name.lower() == b"transfer-encoding":
            for token in value.split(b","):
                if (coding := token.strip().lower()) and coding != b"chunked":
                    return coding.decode("latin-1")
    return ""


def head_without_offer(
    method: bytes, target: bytes, version: bytes, headers: Iterable[tuple[bytes, bytes]]
) -> bytes:
    """The request line and header lines, less the offer: its headers and their tokens in
    Connection (which is dropped when nothing else is left in it)."""
    lines = [b"%s %s HTTP/%s\r\n" % (method, target, version)]
    for name, value in headers:
        field = name.lower()
        if field == b"connection":
            tokens = [token.strip() for token in value.split(b",")]
            value = b", ".join(t for t in tokens if t and t.lower() not in OFFER_HEADERS)
            if not value:
                continue
        if field not in OFFER_HEADERS:
            lines.append(b"%s: %s\r\n" % (name, value))
    return b"".join(lines) + b"\r\n"
