"""`python -m service` refuses what it cannot run with one log line naming the variable and
exit status 2: values the settings' types cannot parse or hold, and folders and ports this
machine does not give it (each was a traceback, an exit 1 or 3, or a server that started
and then did other than it was told)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.server import free_port
from service.server import listening_problem
from service.settings import Settings
from tests.conftest import REPO_ROOT


def _start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service"],
        env={"PATH": "", "DIGITS_HOST": "127.0.0.1", "DIGITS_PORT": str(free_port()), **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _the_one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    message: str = json.loads(lines[0])["message"]
    return message


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"DIGITS_ALLOWED_IMAGE_FORMATS": "[PNG"}, "DIGITS_ALLOWED_IMAGE_FORMATS: not a JSON"),
        ({"DIGITS_KEEP_ALIVE_SECONDS": "inf"}, "DIGITS_KEEP_ALIVE_SECONDS: Input should be"),
        (
            {"DIGITS_FRONT_ENDS": "3", "DIGITS_PREPROCESS_WORKERS": "2"},
            "DIGITS_FRONT_ENDS (3) must not exceed the worker processes (2",
        ),
    ],
    ids=["formats not parsed", "keep-alive inf", "more front ends than workers"],
)
def test_a_value_its_setting_cannot_hold_stops_it(env: dict[str, str], said: str) -> None:
    """A comma list of formats was a 41-line traceback (exit 1), an infinite keep-alive an
    OverflowError at start, and 64 front ends on one worker started 64 workers."""
    assert said in _the_one_line(_start(env))


def test_a_port_already_taken_is_named(taken_port: int) -> None:
    said = _the_one_line(_start({"DIGITS_PORT": str(taken_port)}))
    assert f"cannot listen on 127.0.0.1:{taken_port} (DIGITS_HOST, DIGITS_PORT)" in said


def test_a_port_taken_on_ipv4_alone_leaves_ipv6_free(taken_port: int) -> None:
    """asyncio binds "::" for IPv6 alone: the check refused it when an IPv4 socket had the
    port (its probe took both), a server uvicorn would have started."""
    assert listening_problem(Settings(host="::", port=taken_port)) is None
    assert listening_problem(Settings(host="", port=free_port())) is None  # every interface


def test_a_feedback_folder_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    """It was a lifespan failure: a traceback in a log line and exit 3."""
    file = tmp_path / "a-file"
    file.write_text("")
    said = _the_one_line(_start({"DIGITS_FEEDBACK_DIR": str(file / "corrections")}))
    assert said.startswith(f"cannot start: DIGITS_FEEDBACK_DIR {file / 'corrections'}")


@pytest.mark.parametrize("what", ["a file", "a folder with files of others"])
def test_a_metrics_folder_it_cannot_have_is_named_and_left_alone(tmp_path: Path, what: str) -> None:
    """A file there was a raw FileExistsError traceback (exit 1); every *.db in a folder was
    deleted at start, an operator's own among them."""
    folder = tmp_path / "metrics"
    if what == "a file":
        folder.write_text("mine")
        kept = folder
    else:
        folder.mkdir()
        kept = folder / "backup.db"
        kept.write_text("mine")
        (folder / "counter_123.db").write_bytes(b"")  # a previous run's: it may go
    env = {
        "DIGITS_FRONT_ENDS": "2",
        "DIGITS_PREPROCESS_WORKERS": "2",
        "DIGITS_METRICS_DIR": str(folder),
    }
    said = _the_one_line(_start(env))
    assert said.startswith(f"cannot start: DIGITS_METRICS_DIR {folder}")
    assert kept.read_text() == "mine"


@pytest.mark.parametrize(
    ("value", "formats"),
    [("PNG,JPEG", {"PNG", "JPEG"}), (" webp ", {"WEBP"}), ('["png", "GIF"]', {"PNG", "GIF"})],
)
def test_image_formats_are_read_as_operators_write_them(
    monkeypatch: pytest.MonkeyPatch, value: str, formats: set[str]
) -> None:
    monkeypatch.setenv("DIGITS_ALLOWED_IMAGE_FORMATS", value)
    assert Settings().allowed_image_formats == formats


def test_no_writable_temporary_folder_is_named(tmp_path: Path) -> None:
    """A read-only root with no tmpfs at /tmp (Docker's --read-only) failed in the lifespan:
    exit 3 after a traceback. The private copy's folder is tried before the port is bound.
    (Python's own fallbacks, /var/tmp and the working directory, are set aside here.)"""
    gone = tmp_path / "read-only-root" / "tmp"
    code = f"import runpy, tempfile; tempfile.tempdir = {str(gone)!r}; "
    code += "runpy.run_module('service', run_name='__main__')"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": "", "DIGITS_HOST": "127.0.0.1", "DIGITS_PORT": str(free_port())},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = _the_one_line(result)
    assert said.startswith("cannot start: no writable temporary directory"), said
    assert "mount a tmpfs at /tmp or point TMPDIR" in said
