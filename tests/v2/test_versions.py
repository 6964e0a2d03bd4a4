"""How the V2 routes name a model's version: an integer, the major of its semantic version."""

from __future__ import annotations

import pytest

from service.contract import v2_version


@pytest.mark.parametrize(
    ("model_version", "expected"),
    [
        ("1.0.0", "1"),
        ("1.4.2", "1"),
        ("2.0.0", "2"),
        ("3", "3"),
        ("10.1", "10"),
        ("v2.1.0", "2"),
        ("1.0.0rc1", "1"),
        ("1.0.0+cpu", "1"),
        ("007", "7"),
        ("beta", "1"),
        ("", "1"),
    ],
)
def test_v2_version_is_the_major_number(model_version: str, expected: str) -> None:
    assert v2_version(model_version) == expected
