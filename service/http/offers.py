"""An offer to switch protocols, declined: the request's head as it would be without it; and
the heads llhttp lets through that a server must refuse (``head_problem``).

A server may ignore ``Upgrade`` and answer in HTTP/1.1 (RFC 9110 section 7.8). Java's
HttpClient and Spring's RestClient offer h2c with every request to an http:// URL; httptools
ends such a message at its head, so service/http/connections.py parses the head again, as
this module writes it, with the bytes that followed.
"""

from __future__ import annotations

from collections.abc import Iterable

# The offer's own headers (Upgrade: h2c comes with HTTP2-Settings), and its Connection tokens.
OFFER_HEADERS = frozenset({b"upgrade", b"http2-settings"})


def head_problem(headers: Iterable[tuple[bytes, bytes]], version: str) -> str:
    """Why a parsed request head must be refused ("" when it need not), each of which llhttp
    lets through: a request line without HTTP/1.x (none at all, HTTP/0.9's, or "HTTP/2.0"
    was answered as HTTP/1.1); a transfer coding other than chunked (llhttp takes ``gzip,
    chunked`` and drops the gzip, so the body would reach the app still coded: RFC 9112
    section 6.1); Host sent twice (RFC 9112 section 3.2), or Content-Type twice with
    different types, which a proxy in front may have read the other way."""
    if version not in ("1.0", "1.1"):
        shown = "none" if version == "0.9" else f"HTTP/{version}"
        return f"the request line's HTTP version ({shown}) is not served here: send HTTP/1.1"
    hosts, types = [], set()
    for name, value in headers:
        field = name.lower()
        if field == b"host":
            hosts.append(value)
        elif field == b"content-type":
            types.add(value.strip().lower())
        elif field == b"transfer-encoding" and (coding := _unknown_coding(value)):
            return f"transfer coding {coding!r} is not supported; use chunked"
    if len(hosts) > 1:
        return "the Host header is sent more than once: send it once"
    if len(types) > 1:
        return "the Content-Type header is sent twice, with different types: send it once"
    return ""


def _unknown_coding(value: bytes) -> str:
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
