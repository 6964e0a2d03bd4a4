"""The server's relay of a worker's stderr: JSON passes, library lines become records."""

from __future__ import annotations

import logging
import re

import pytest

from service.workers.native_output import LINES_PER_S, StderrRelay


def test_a_workers_last_words_are_relayed_when_it_dies(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A C++ runtime's message before an abort has no newline and no reader left in the
    worker: the server reads it once the pipe closes."""
    relay = StderrRelay(pid=7)
    with caplog.at_level(logging.WARNING, logger="service.native"):
        relay.data_received(b'{"level": "INFO", "message": "ready"}\nterminate called after')
        relay.data_received(b" throwing an instance of 'Ort::Exception'")
        relay.connection_lost(None)
    assert capsys.readouterr().err == '{"level": "INFO", "message": "ready"}\n'
    assert [record.getMessage() for record in caplog.records] == [
        "worker 7: terminate called after throwing an instance of 'Ort::Exception'"
    ]


def test_a_flood_of_library_lines_is_logged_in_a_few_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One libpng line for each broken PNG a client sends: the log keeps up to LINES_PER_S
    a second and counts the rest."""
    relay = StderrRelay(pid=7)
    with caplog.at_level(logging.WARNING, logger="service.native"):
        relay.data_received(b"libpng error: IDAT: CRC error\n" * 100)
        relay.connection_lost(None)
    messages = [record.getMessage() for record in caplog.records]
    single = [message for message in messages if message.startswith("worker 7: libpng")]
    summed = [int(m) for message in messages for m in re.findall(r"^(\d+) more native", message)]
    assert len(single) + sum(summed) == 100
    assert len(single) <= 2 * LINES_PER_S  # a second may end among them
    assert summed, messages


def test_output_without_line_ends_is_not_hoarded(caplog: pytest.LogCaptureFixture) -> None:
    """A library printing bytes without a newline grew the server's buffer without bound."""
    relay = StderrRelay(pid=7)
    with caplog.at_level(logging.WARNING, logger="service.native"):
        for _ in range(100):
            relay.data_received(b"x" * 10_000)
        assert caplog.records  # said as it came (cut short), not kept for the pipe's end
        relay.connection_lost(None)
    assert all(len(record.getMessage()) <= 600 for record in caplog.records)
