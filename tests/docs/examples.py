"""The docs' shell examples: found in the Markdown, run against a live server, and each
answer they show compared with the answer the service gives now.

Conventions (the README says them too): a command is a line of a ```bash block (a trailing
backslash continues it); the `# ` lines under it are the answer it shows. A JSON answer may be
shortened: keys left out, floats rounded to 3 decimals (and compared within one unit of the
third: another CPU or library build may move the model's float32 output a little), a long
string cut with "...". Any
other answer is lines of text, each of which must be a line of the real output (numbers to
the precision shown). Answers from the shipped model change when it is retrained: a failure
prints the lines to paste instead, rendered from the live answer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
# Where the examples are: (file, level-2 section titles).
SOURCES = {
    "README.md": ("Quick start", "The API", "The drawing page and the CLI"),
    "docs/design.md": (
        "2. The HTTP API (service serves it; page, client, bench and deploy use it)",
    ),
}
# The Quick start's two make commands start this server and run this suite: the tests start
# the same server themselves (python -m service); tests/service/test_readme.py pins them.
NOT_RUN = {"make serve", "make test"}
DOCS_URL = "http://127.0.0.1:8000"  # the address the docs use; the test server's replaces it
DECIMALS = 3
CUT = "..."
# curl as the docs call it, plus the status on a last line of its own.
_CURL = "curl() { command curl --silent --show-error --write-out '\\n%{http_code}\\n' \"$@\"; }\n"
_NUMBER = re.compile(r"^-?\d+(?:\.(\d+))?%?$")


@dataclass(frozen=True)
class Example:
    where: str  # "README.md, The API"
    command: str
    shown: str  # the answer shown under it ('' when none)

    @property
    def is_curl(self) -> bool:
        return self.command.lstrip().startswith("curl ")

    @property
    def path(self) -> str:
        """The URL path the command calls (no query), or ''."""
        match = re.search(re.escape(DOCS_URL) + r"(/[^\s'\"?]*)?", self.command)
        return (match.group(1) or "/") if match else ""


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str  # curl: the body only
    stderr: str
    status: int | None  # curl: the HTTP status


def section(markdown: str, title: str) -> str:
    """The text under the level-2 heading ``title``, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"no section '## {title}'"
    return match.group(1)


def shell_examples(markdown: str, where: str) -> list[Example]:
    examples: list[Example] = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.M | re.S):
        pieces: list[tuple[list[str], list[str]]] = []  # (command lines, shown lines)
        for line in block.splitlines():
            if pieces and pieces[-1][0][-1].rstrip().endswith("\\"):
                pieces[-1][0].append(line)
            elif line.startswith("#") and pieces:
                pieces[-1][1].append(line[2:] if line.startswith("# ") else line[1:])
            elif line.strip() and not line.startswith("#"):
                pieces.append(([line], []))
        examples += [Example(where, "\n".join(c), "\n".join(a)) for c, a in pieces]
    return examples


def doc_examples() -> list[Example]:
    """Every shell example of the docs' example sections, in order, but the two make ones."""
    return [
        example
        for name, titles in SOURCES.items()
        for title in titles
        for example in shell_examples(
            section((REPO_ROOT / name).read_text(encoding="utf-8"), title), f"{name}, {title}"
        )
        if example.command.split("#", 1)[0].strip() not in NOT_RUN
    ]


def lay_out_clone(root: Path) -> Path:
    """Where the docs' commands run: examples/ and .venv/bin/ as in a clone after `make`
    (.venv/bin is this interpreter's), and room for the files they write."""
    (root / "examples").symlink_to(REPO_ROOT / "examples")
    (root / ".venv").mkdir()
    (root / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    return root


def run(example: Example, base_url: str, workdir: Path, timeout_s: float = 60.0) -> Outcome:
    """The command in bash, as pasted, with the test server's URL for the docs' one."""
    command = example.command.replace(DOCS_URL, base_url)
    done = subprocess.run(
        ["bash", "-c", _CURL + command],
        cwd=workdir,
        env={**os.environ, "DIGITS_URL": base_url},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if not example.is_curl:
        return Outcome(done.returncode, done.stdout, done.stderr, None)
    body, _, status = done.stdout.rstrip("\n").rpartition("\n")
    return Outcome(done.returncode, body, done.stderr, int(status) if status.isdigit() else None)


def mismatches(shown: Any, live: Any, where: str = "answer") -> list[str]:
    """Where the shown (shortened, rounded) JSON is not the live answer."""
    if isinstance(shown, dict):
        if not isinstance(live, dict):
            return [f"{where}: the service answered {_short(live)}, not an object"]
        return [
            problem
            for key, value in shown.items()
            for problem in (
                mismatches(value, live[key], f"{where}.{key}")
                if key in live
                else [f"{where}.{key}: not in the answer"]
            )
        ]
    if isinstance(shown, list):
        if not isinstance(live, list) or len(live) != len(shown):
            return [f"{where}: the service answered {_short(live)}"]
        return [
            problem
            for index, (a, b) in enumerate(zip(shown, live, strict=True))
            for problem in mismatches(a, b, f"{where}[{index}]")
        ]
    if isinstance(shown, str) and shown.endswith(CUT):
        if isinstance(live, str) and live.startswith(shown[: -len(CUT)]):
            return []
    elif isinstance(shown, float) and not isinstance(live, bool):
        if isinstance(live, int | float) and abs(shown - live) <= 10**-DECIMALS + 1e-9:
            return []
    elif shown == live and type(shown) is type(live):
        return []
    return [f"{where}: shown {_short(shown)}, the service answered {_short(live)}"]


def render(live: Any, like: Any) -> Any:
    """The live answer shortened the way ``like`` (the shown answer) is: what to paste."""
    if isinstance(like, dict) and like and isinstance(live, dict):
        return {key: render(live[key], like[key]) for key in like if key in live}
    if isinstance(live, dict):
        return {key: render(value, None) for key, value in live.items()}
    if isinstance(live, list):
        template = like[0] if isinstance(like, list) and like else None
        return [render(item, template) for item in live]
    if isinstance(live, float):
        # A figure the model computed is rounded; one stored with few decimals (an accuracy
        # from the model card) is shown as it is.
        return live if round(live, DECIMALS + 1) == live else round(live, DECIMALS)
    if isinstance(live, str) and isinstance(like, str) and like.endswith(CUT):
        return live[: max(len(like) - len(CUT), 0)] + CUT
    return live


def dumps(value: Any) -> str:
    """JSON as the service writes it: compact."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def text_mismatches(shown: str, live: str) -> list[str]:
    """Each shown line must be a line of the live output, numbers to the precision shown."""
    lines = [line.split() for line in live.splitlines()]
    return [
        f"shown line not in the output: {line!r}"
        for line in shown.splitlines()
        if line.strip() and not any(_same_tokens(line.split(), other) for other in lines)
    ]


def _same_tokens(shown: list[str], live: list[str]) -> bool:
    if len(shown) != len(live):
        return False
    for a, b in zip(shown, live, strict=True):
        number = _NUMBER.match(a)
        if number and _NUMBER.match(b) and a.endswith("%") == b.endswith("%"):
            places = len(number.group(1) or "")
            if abs(float(a.rstrip("%")) - float(b.rstrip("%"))) > 10**-places + 1e-9:
                return False
        elif a != b:
            return False
    return True


def _short(value: Any) -> str:
    text = dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
