"""Every shell example of the README's Quick start, API and CLI sections (and design.md's API
example) runs as pasted against a live server on the shipped model: its status, the shape
of its answer, and the answer it shows, so the docs cannot drift from the service."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bench.server import RunningService
from tests.docs.examples import (
    Example,
    Outcome,
    doc_examples,
    dumps,
    mismatches,
    render,
    run,
    text_mismatches,
)

EXAMPLES = doc_examples()


def _prediction(answer: dict[str, Any]) -> None:
    assert set(answer) >= {"digit", "confidence", "probabilities", "model"}, answer
    assert answer["digit"] in range(10) and len(answer["probabilities"]) == 10
    assert answer["confidence"] == max(answer["probabilities"])
    assert answer["probabilities"].index(answer["confidence"]) == answer["digit"]
    assert sum(answer["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert set(answer["model"]) == {"name", "version"}


def _predict(example: Example, answer: Any) -> None:
    _prediction(answer)
    if "include_image=true" in example.command:
        image = Image.open(io.BytesIO(base64.b64decode(answer["normalized_image"])))
        assert image.format == "PNG" and image.size == (28, 28)


def _batch(example: Example, answer: Any) -> None:
    sent = re.findall(r"files=@(\S+)", example.command)
    assert len(answer["predictions"]) == len(sent) >= 2
    for entry, path in zip(answer["predictions"], sent, strict=True):
        assert entry["filename"] == Path(path).name
        _prediction(entry)


def _model(example: Example, answer: Any) -> None:
    assert answer["name"] == "lenet5" and re.fullmatch(r"[0-9a-f]{64}", answer["sha256"])
    assert answer["labels"] == [str(digit) for digit in range(10)]
    assert answer["input"]["shape"] == ["N", 1, 28, 28]
    # Structured metadata comes back structured, not as JSON text inside JSON.
    assert isinstance(answer["metadata"]["labels"], list)
    assert isinstance(answer["metadata"]["fonts"], dict | list)


def _v2_metadata(example: Example, answer: Any) -> None:
    assert answer["name"] == "lenet5" and answer["versions"] == ["1"]
    assert answer["inputs"][0]["shape"] == [-1, 1, 28, 28]


def _v2_infer(example: Example, answer: Any) -> None:
    (output,) = answer["outputs"]
    assert output["name"] == "probabilities" and output["shape"] == [1, 10]
    assert sum(output["data"]) == pytest.approx(1.0, abs=1e-4)
    assert answer["model_version"] == "1"


SHAPES: dict[str, Callable[[Example, Any], None]] = {
    "/predict": _predict,
    "/predict/batch": _batch,
    "/model": _model,
    "/healthz": lambda _, answer: _equal(answer, {"status": "ok"}),
    "/readyz": lambda _, answer: _equal(answer, {"status": "ready"}),
    "/v2/models/lenet5": _v2_metadata,
    "/v2/models/lenet5/versions/1": _v2_metadata,
    "/v2/models/lenet5/versions/1/ready": lambda _, a: _equal(a, {"name": "lenet5", "ready": True}),
    "/v2/models/lenet5/infer": _v2_infer,
}


def _equal(answer: Any, expected: Any) -> None:
    assert answer == expected


def _check_curl(example: Example, outcome: Outcome) -> None:
    assert outcome.status == 200, f"HTTP {outcome.status}: {outcome.stdout[:300]}"
    if example.path == "/metrics":
        assert "digits_model_ready 1.0" in outcome.stdout.splitlines()
        return
    assert example.path in SHAPES, f"{example.path}: a README route this test has no check for"
    SHAPES[example.path](example, json.loads(outcome.stdout))


def _check_cli(example: Example, outcome: Outcome, clone: Path) -> None:
    if "--json" in example.command and "> answers.json" in example.command:
        answers = json.loads((clone / "answers.json").read_text())
        assert {answer["file"] for answer in answers} >= {"examples/digit.png"}
        assert all(answer["error"] is None for answer in answers)
    elif not example.shown:
        assert outcome.stdout.strip(), "a CLI example printed nothing"


def _shown_problems(example: Example, outcome: Outcome) -> list[str]:
    if not example.shown:
        return []
    try:
        shown = json.loads(example.shown)
    except ValueError:
        problems = text_mismatches(example.shown, outcome.stdout)
        return problems + (["the live output:\n" + outcome.stdout] if problems else [])
    live = json.loads(outcome.stdout)
    problems = mismatches(shown, live)
    if problems:
        problems.append("the live answer, shortened as shown:\n# " + dumps(render(live, shown)))
        problems.append("(.venv/bin/python -m tests.docs.refresh rewrites the docs' answers)")
    return problems


def test_the_docs_have_their_examples() -> None:
    commands = [example.command for example in EXAMPLES]
    assert sum(example.is_curl for example in EXAMPLES) >= 12, commands
    assert any(".venv/bin/digits predict" in command for command in commands), commands
    assert all("examples/" in c for c in commands if "@" in c or "digits predict" in c), commands
    # Every make command these sections show is either run here or pinned elsewhere.
    assert not [c for c in commands if c.startswith("make ")], commands


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.where}: {e.command[:60]}")
def test_a_docs_example_works_as_pasted(
    example: Example, live: RunningService, clone: Path
) -> None:
    outcome = run(example, live.url, clone)
    assert outcome.returncode == 0, f"exit {outcome.returncode}: {outcome.stderr[-500:]}"
    if example.is_curl:
        _check_curl(example, outcome)
    else:
        _check_cli(example, outcome, clone)
    problems = _shown_problems(example, outcome)
    assert not problems, "\n".join(problems)
