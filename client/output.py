"""Rendering results: an aligned table for people, JSON or CSV for programs."""

from __future__ import annotations

import csv
import io
import json
import os
import unicodedata
from collections.abc import Sequence
from typing import Any

from client.api import FileResult

CSV_COLUMNS = ("file", "digit", "confidence", "error_code", "error_message")


def shown(result: FileResult) -> str:
    """The file's path as text: a name that is not UTF-8 (bytes a POSIX file system allows)
    shows its odd bytes as \\xNN, so the table, JSON and CSV stay valid UTF-8."""
    return os.fsencode(result.path).decode("utf-8", "backslashreplace")


def printable(text: str) -> str:
    """A cell of the table on one line: a newline or tab in a file name shown as \\n, \\t."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _width(text: str) -> int:
    """Columns the text takes on a terminal: CJK and other wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - _width(text))
    return fill + text if right else text + fill


def _error_text(result: FileResult) -> str:
    return f"{result.error_code}: {result.error_message}" if not result.ok else ""


def table(results: Sequence[FileResult], encoding: str = "utf-8") -> str:
    """FILE / DIGIT / CONFIDENCE columns, plus ERROR with the server's message if any failed.
    What ``encoding`` (the terminal's) cannot show is escaped here, before the columns are
    measured: escaped on its way out, a name pushed the row's later columns out of line."""
    header = ["FILE", "DIGIT", "CONFIDENCE"]
    with_errors = any(not result.ok for result in results)
    if with_errors:
        header.append("ERROR")
    rows = [header]
    for result in results:
        row = [
            printable(shown(result)),
            "-" if result.digit is None else str(result.digit),
            "-" if result.confidence is None else f"{result.confidence:.2%}",
        ]
        if with_errors:
            row.append(printable(_error_text(result)))
        rows.append([_encodable(cell, encoding) for cell in row])
    widths = [max(_width(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            _pad(cell, width, right=column in (1, 2))  # numbers right-aligned, text left
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _encodable(text: str, encoding: str) -> str:
    return text.encode(encoding, "backslashreplace").decode(encoding)


def as_record(result: FileResult) -> dict[str, Any]:
    return {
        "file": shown(result),
        "digit": result.digit,
        "confidence": result.confidence,
        "probabilities": list(result.probabilities) if result.probabilities else None,
        "error": None
        if result.ok
        else {"code": result.error_code, "message": result.error_message},
    }


def as_json(results: Sequence[FileResult]) -> str:
    """A JSON array, one object per file in input order (null fields where not applicable)."""
    return json.dumps([as_record(result) for result in results], indent=2) + "\n"


def as_csv(results: Sequence[FileResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for result in results:
        writer.writerow(
            [
                shown(result),
                "" if result.digit is None else result.digit,
                "" if result.confidence is None else repr(result.confidence),
                result.error_code or "",
                result.error_message or "",
            ]
        )
    return buffer.getvalue()
