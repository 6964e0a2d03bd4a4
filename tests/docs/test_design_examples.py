"""docs/design.md's metadata table shows the shipped model's values: compared with /model."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from bench.server import RunningService
from tests.docs.examples import REPO_ROOT, section

DESIGN = (REPO_ROOT / "docs" / "design.md").read_text(encoding="utf-8")
# | `key` | `value` ... |: the rows whose value is a literal (the others describe it).
ROW = re.compile(r"^\| `([a-z_0-9]+)` \| `([^`]+)`", re.M)


def _value(text: str) -> Any:
    """A cell as the service decodes metadata: JSON objects and lists decoded, else the text."""
    return json.loads(text) if text.startswith(("{", "[")) else text


@pytest.mark.slow
def test_the_metadata_table_shows_the_shipped_models_values(live: RunningService) -> None:
    table = dict(
        ROW.findall(section(DESIGN, "1. The model artifact (training writes it, service reads it)"))
    )
    assert {"name", "version", "labels", "normalization", "param_count"} <= set(table)
    metadata = httpx.get(f"{live.url}/model", timeout=10).json()["metadata"]
    wrong = {
        key: (shown, metadata.get(key))
        for key, shown in table.items()
        if _value(shown) != metadata.get(key)
    }
    assert not wrong, f"design.md shows (shown, served): {wrong}"
