"""How many metadata segments an image file holds, counted before any parser reads them.

Pillow reads a PNG's chunks, a JPEG's markers before its image data and a GIF's blocks
before its first frame one at a time in Python, some microseconds each. A 10 MB file of
nothing but empty ones held a worker for 2.4 s (PNG), 4.5 s (JPEG) and 2.8 s (GIF), where a
photograph of that size decodes in a tenth of a second (docs/performance.md, "Files of empty
segments"). Real files hold tens of segments, a few thousand at most (a PNG's image data
split into small chunks); a file with more is refused before any parser sees it. The walk
stops there, so it costs a few microseconds for a real file.

A progressive JPEG's scans come after its first one, past that walk, and each scan is a pass
over the whole image: 8,000 scans of 82 bytes in an 800 KB file held a worker past its
10-second limit, and the killed worker's other images with it (docs/performance.md, "A
JPEG of thousands of scans"). Encoders write about ten; more than MAX_JPEG_SCANS are refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

MAX_SEGMENTS = 10_000
MAX_JPEG_SCANS = 64
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI: no length follows
_JPEG_SCAN, _JPEG_END = 0xDA, 0xD9
_JPEG_PROGRESSIVE_FRAMES = (b"\xff\xc2", b"\xff\xc6", b"\xff\xca", b"\xff\xce")  # SOF2, 6, 10, 14
_GIF_EXTENSION, _GIF_IMAGE = 0x21, 0x2C


def segment_count(data: bytes) -> int:
    """The PNG chunks, JPEG markers (up to its first scan) or GIF blocks and sub-blocks (up to
    its first frame) of ``data``, counted up to MAX_SEGMENTS + 1; 0 for other formats."""
    if data.startswith(PNG_SIGNATURE):
        return sum(1 for _ in islice(png_chunk_kinds(data), MAX_SEGMENTS + 1))
    if data.startswith(b"\xff\xd8"):
        return _jpeg_markers(data)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return _gif_blocks(data)
    return 0


def jpeg_scans(data: bytes) -> int:
    """The scans of a progressive JPEG; 0 for other files. A sequential JPEG's decoder
    rejects a scan repeated, and counting costs a tenth of decoding a large photo, so only a
    progressive frame's are counted. Its start-of-scan marker cannot occur inside entropy-
    coded data, where every 0xFF byte is followed by 0x00 or a restart marker, so counting
    the two bytes counts the scans (an embedded thumbnail's among them)."""
    if not data.startswith(b"\xff\xd8"):
        return 0
    header = data[: data.find(b"\xff\xda")]
    if not any(marker in header for marker in _JPEG_PROGRESSIVE_FRAMES):
        return 0
    return data.count(b"\xff\xda")


def png_chunk_kinds(data: bytes) -> Iterator[bytes]:
    """The kinds of a PNG's chunks (b"IHDR", ...) in order, up to IEND or where the data ends;
    the one walk of the chunk list, for counting here and for decode.py's fast path."""
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        kind = data[offset + 4 : offset + 8]
        yield kind
        if kind == b"IEND":
            return
        offset += 12 + int.from_bytes(data[offset : offset + 4], "big")  # length, kind, CRC


def _jpeg_markers(data: bytes) -> int:
    count, offset = 0, 2
    while offset + 4 <= len(data) and count <= MAX_SEGMENTS and data[offset] == 0xFF:
        count += 1
        marker = data[offset + 1]
        if marker in (_JPEG_SCAN, _JPEG_END):
            break
        if marker == 0xFF:  # a fill byte before a marker: parsers read it on its own
            offset += 1
        elif marker in _JPEG_STANDALONE:
            offset += 2
        else:
            offset += 2 + int.from_bytes(data[offset + 2 : offset + 4], "big")
    return count


def _gif_blocks(data: bytes) -> int:
    flags = data[10] if len(data) > 10 else 0
    offset = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the colour table
    count = 0
    while offset < len(data) and count <= MAX_SEGMENTS and data[offset] == _GIF_EXTENSION:
        offset += 2  # introducer and label, then sub-blocks up to an empty one
        while offset < len(data) and count <= MAX_SEGMENTS:
            count += 1
            size = data[offset]
            offset += 1 + size
            if size == 0:
                break
    return count
