"""The request-body JSON reader: orjson reads first for speed, the standard library's
json.loads stays the contract for what is accepted and how a refusal is worded."""

from __future__ import annotations

import json
import math

import pytest

from service.http.json_body import ORJSON_MIN_BYTES, InvalidJSON, parse_json


@pytest.mark.parametrize(
    "raw",
    [b"NaN", b"[1e400]", b'"\\ud800"', b"[18446744073709551615]", b'{"a": 1, "a": 2}'],
    ids=["nan", "past-float", "lone-surrogate", "u64-max", "duplicate-key"],
)
@pytest.mark.parametrize("padding", [0, ORJSON_MIN_BYTES], ids=["small", "large"])
def test_what_json_loads_reads_is_read_the_same(raw: bytes, padding: int) -> None:
    """orjson refuses NaN, infinities and lone surrogates that json.loads reads: a client's
    body must not turn into a 400 by the change of parser (a large body is orjson's first)."""
    raw = raw + b" " * padding
    got, expected = parse_json(raw), json.loads(raw)
    assert repr(got) == repr(expected)


def test_a_small_body_keeps_its_whole_integers() -> None:
    """orjson reads 2**64 as a float: a V2 classification of 2**64 got "must be a
    non-negative integer" (a review); small bodies are json.loads's alone."""
    assert parse_json(b'{"classification": 18446744073709551616}') == {"classification": 2**64}


def test_a_large_tensor_reads_as_json_loads_reads_it() -> None:
    values = [i / 7 for i in range(50_000)] + [0.1, 1e-45, 3.4028234663852886e38]
    raw = json.dumps({"data": values}).encode()
    assert parse_json(memoryview(raw)) == json.loads(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (b"[1]\xff", "not UTF-8 (byte 3"),
        (b"[1,]", "Expecting value: line 1 column 4"),
        (b"1" * 5_000, "more than"),
    ],
    ids=["deep", "not-utf8", "trailing-comma", "long-integer"],
)
def test_refusals_keep_json_loads_words(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidJSON, match=reason.replace("(", r"\(")):
        parse_json(raw)


def test_nan_stays_a_float() -> None:
    assert math.isnan(parse_json(b"[NaN]")[0])
