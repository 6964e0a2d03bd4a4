"""Rewrite the answers the docs show from what the service answers now.

    .venv/bin/python -m tests.docs.refresh      # after retraining: then review `git diff`

Starts the service on the shipped model, runs every shell example of the docs (the ones
tests/docs/test_readme_examples.py checks) and replaces each shown answer that no longer
matches: a JSON answer by the live one shortened the same way, a text answer by the live
output when it showed all of it. Anything it cannot rewrite is printed, to edit by hand.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from bench.server import running_service
from tests.conftest import SHIPPED_MODEL
from tests.docs.examples import (
    REPO_ROOT,
    Example,
    doc_examples,
    dumps,
    lay_out_clone,
    mismatches,
    render,
    run,
    text_mismatches,
)


def _fresh_answer(example: Example, stdout: str) -> list[str] | None:
    """The lines to show now, or None when the shown ones still hold or cannot be redone."""
    try:
        shown = json.loads(example.shown)
    except ValueError:
        if not text_mismatches(example.shown, stdout):
            return None
        lines = stdout.rstrip("\n").splitlines()
        return lines if len(lines) == len(example.shown.splitlines()) else []
    live = json.loads(stdout)
    return None if not mismatches(shown, live) else [dumps(render(live, shown))]


def _shown_block(example: Example, lines: list[str]) -> str:
    return example.command + "".join(f"\n# {line}".rstrip() for line in lines)


def main() -> int:
    examples = [example for example in doc_examples() if example.shown]
    texts = {
        name: (REPO_ROOT / name).read_text(encoding="utf-8")
        for name in ("README.md", "docs/design.md")
    }
    left: list[str] = []
    with (
        running_service({"DIGITS_MODEL_PATH": str(SHIPPED_MODEL)}) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        clone = lay_out_clone(Path(tmp))
        for example in examples:
            outcome = run(example, server.url, clone)
            name = example.where.split(",", 1)[0]
            fresh = _fresh_answer(example, outcome.stdout)
            old = _shown_block(example, example.shown.splitlines())
            if fresh is None:
                continue
            new = _shown_block(example, fresh)
            if fresh and old not in texts[name] and new in texts[name]:
                continue  # the same command and answer shown twice: rewritten already
            if not fresh or old not in texts[name]:
                left.append(f"{example.where}: {example.command.splitlines()[0]}\n{outcome.stdout}")
                continue
            texts[name] = texts[name].replace(old, new)
            print(f"rewrote {example.where}: {example.command.splitlines()[0]}")
    for name, text in texts.items():
        (REPO_ROOT / name).write_text(text, encoding="utf-8")
    for item in left:
        print(f"edit by hand: {item}", file=sys.stderr)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
