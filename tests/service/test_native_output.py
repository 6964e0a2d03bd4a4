"""The server's relay of a worker's stderr: JSON passes, library lines become records."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

import pytest

from service.workers.native_output import LINES_PER_S, MAX_HELD_BYTES, StderrRelay


def _in_a_loop(steps: Callable[[StderrRelay], object]) -> None:
    """Feed a relay as the event loop does (its timer needs a running loop)."""

    async def run() -> None:
        relay = StderrRelay(pid=7)
        outcome = steps(relay)
        if asyncio.iscoroutine(outcome):
            await outcome

    asyncio.run(run())


def _native(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "service.native"]


def test_a_workers_last_words_are_relayed_when_it_dies(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A C++ runtime's message before an abort has no newline and no reader left in the
    worker: the server reads it once the pipe closes."""

    def dying(relay: StderrRelay) -> None:
        relay.data_received(b'{"level": "INFO", "message": "ready"}\nterminate called after')
        relay.data_received(b" throwing an instance of 'Ort::Exception'")
        relay.connection_lost(None)

    with caplog.at_level(logging.WARNING, logger="service.native"):
        _in_a_loop(dying)
    assert capsys.readouterr().err == '{"level": "INFO", "message": "ready"}\n'
    assert _native(caplog) == [
        "worker 7: terminate called after throwing an instance of 'Ort::Exception'"
    ]


def test_a_flood_of_library_lines_is_logged_in_a_few_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One libpng line for each broken PNG a client sends: the log keeps up to LINES_PER_S
    a second and says how many more, a second later, while the worker lives on (the count
    waited for the next line, which might come hours later)."""

    async def flood(relay: StderrRelay) -> None:
        relay.data_received(b"libpng error: IDAT: CRC error\n" * 100)
        await asyncio.sleep(1.2)

    with caplog.at_level(logging.WARNING, logger="service.native"):
        _in_a_loop(flood)
    messages = _native(caplog)
    single = [message for message in messages if message.startswith("worker 7: libpng")]
    summed = [int(m) for message in messages for m in re.findall(r"^(\d+) more native", message)]
    assert len(single) + sum(summed) == 100, messages
    assert len(single) <= 2 * LINES_PER_S  # a second may end among them


def test_a_long_json_line_in_two_reads_stays_whole(capsys: pytest.CaptureFixture[str]) -> None:
    """A worker's JSON line with a traceback, read in two parts, was cut at 500 bytes: half
    written raw, half logged as a library's line."""
    line = '{"level": "ERROR", "exc_info": "' + "File x, line 1\\n" * 60 + '"}'

    def split_read(relay: StderrRelay) -> None:
        relay.data_received(line[:600].encode())
        relay.data_received(line[600:].encode() + b"\n")

    _in_a_loop(split_read)
    assert capsys.readouterr().err == line + "\n"


def test_output_without_line_ends_is_not_hoarded(caplog: pytest.LogCaptureFixture) -> None:
    """A library printing bytes without a newline grew the server's buffer without bound."""

    def endless(relay: StderrRelay) -> None:
        for _ in range(10):
            relay.data_received(b"x" * (MAX_HELD_BYTES // 4))
        assert _native(caplog)  # said as it came (cut short), not kept for the pipe's end
        relay.connection_lost(None)

    with caplog.at_level(logging.WARNING, logger="service.native"):
        _in_a_loop(endless)
    assert all(len(message) <= 600 for message in _native(caplog))


def test_a_librarys_terminal_colours_are_left_out(caplog: pytest.LogCaptureFixture) -> None:
    """ONNX Runtime colours its warnings: the JSON log carried "\\u001b[0;93m...\\u001b[m"."""

    def coloured(relay: StderrRelay) -> None:
        relay.data_received(
            b"\x1b[0;93m2026-12-07 [W:onnxruntime:Default] Removing initializer\x1b[m\n"
            b"\x1b[0;93m{a library line in braces}\x1b[m\n"  # not the worker's JSON
        )

    with caplog.at_level(logging.WARNING, logger="service.native"):
        _in_a_loop(coloured)
    assert _native(caplog) == [
        "worker 7: 2026-12-07 [W:onnxruntime:Default] Removing initializer",
        "worker 7: {a library line in braces}",
    ]
