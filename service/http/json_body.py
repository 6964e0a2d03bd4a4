"""Request bodies parsed as JSON, where every way a body can fail is the client's error.

``json.loads`` fails in more ways than ``JSONDecodeError``: a body nested a few thousand
levels deep raises ``RecursionError``, an integer literal longer than Python's conversion
limit a bare ``ValueError``, bytes that are not UTF-8 ``UnicodeDecodeError``. Left to the
routes, the first two were 500s; here each becomes an ``InvalidJSON`` that says what is wrong
in words a client can act on, and each route wraps it in its own error format.

orjson reads a large body first: a V2 tensor of flat JSON data parses two to four times
faster (docs/performance.md), and the GIL is held that much less. What orjson refuses goes to
``json.loads``, which stays the contract: it accepts what it always did (NaN, an escaped lone
surrogate, a number past float's range) and words the refusals as before. So does a body
with many brackets: orjson takes 1,024 levels of nesting where json.loads stops near 950, and
a value that deep then broke what reads it (json.dumps in an error message: a 500). Small
bodies (a request's parameters, a correction, a model's config) are read by json.loads alone:
orjson reads an integer past 64 bits as a float, which made a V2 classification of 2**64 a
400 saying it must be an integer; in a large body that stays so.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import orjson

# A body above this is parsed in a worker thread, so that one large request (a V2 tensor in
# JSON, a model upload) cannot stall the event loop for every other connection.
INLINE_JSON_BYTES = 64 * 1024
# A body with this many opening brackets may nest deeper than json.loads takes: it is read by
# json.loads (a flat V2 tensor has a handful; one nested as [N][1][28][28] has 30 an image).
ORJSON_MAX_BRACKETS = 512
# Below this, orjson saves under a millisecond: json.loads reads it, exactly as it always did.
ORJSON_MIN_BYTES = 64 * 1024


class InvalidJSON(ValueError):
    """The body is not JSON this service can read; ``str()`` is the reason, for a 400."""


def parse_json(raw: bytes | bytearray | memoryview) -> Any:
    """``raw`` as a JSON document; ``InvalidJSON`` for any body that is not one."""
    if isinstance(raw, memoryview):
        raw = bytes(raw)  # counting needs bytes; the routes pass bytes (no copy there)
    large = len(raw) >= ORJSON_MIN_BYTES
    if large and raw.count(b"[") + raw.count(b"{") < ORJSON_MAX_BRACKETS:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(raw)
    except RecursionError:
        raise InvalidJSON("it is nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise InvalidJSON(f"it is not UTF-8 (byte {exc.start}: {exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise InvalidJSON(str(exc)) from None
    except ValueError:  # the only other ValueError json.loads raises: int() refused a literal
        limit = sys.get_int_max_str_digits()
        raise InvalidJSON(f"it holds an integer of more than {limit} digits") from None


def json_type(value: object) -> str:
    """``value``'s JSON type name, for a message to a client that wrote JSON, not Python."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"
