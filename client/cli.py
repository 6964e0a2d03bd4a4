"""``digits``: read handwritten digits from image files with a running digits service.

    digits predict scans/ extra.png                       # a table: file, digit, confidence
    digits predict scans/ --json > digits.json            # or --csv
    digits predict scans/ --url http://digits.internal:8000 --batch-size 64
    digits predict scans/ --explain why/                  # also why/<file>.why.png heat maps

Files are sent to POST /predict/batch in chunks of --batch-size. A run stopped part way (the
service gone, Ctrl-C) still prints the files read so far.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from client import output
from client.api import DigitsClient, FileResult, InvalidURL, ServiceUnavailable, normalise_url
from client.files import IMAGE_EXTENSIONS, NoSuchPath, collect

EXIT_OK = 0
EXIT_FILE_FAILED = 1
EXIT_USAGE = 2
EXIT_SERVICE = 3
EXIT_INTERRUPTED = 130
URL_ENV = "DIGITS_URL"
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_BATCH_SIZE = 32  # the service's default DIGITS_MAX_BATCH_FILES is 64
DEFAULT_TIMEOUT = 30.0
PROG = "digits"
EXIT_STATUSES = """exit status:
  0    every file was read
  1    some file failed (its row says why), or the output could not be written
  2    bad usage (an option, a path that does not exist, no image files)
  3    the service cannot be reached, stays busy (503), does not answer in time or is not
       a digits service
  130  interrupted (Ctrl-C)
with 3 and 130, the files read before are still printed"""


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (also used by ``python -m bench``)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0 (also used by ``python -m bench``)."""
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number more than 0, got {text}")
    return value


def path_argument(text: str) -> Path:
    """An argparse type: a path, never the empty string (``Path("")`` is the current folder,
    which ``digits predict "$DIR"`` with DIR unset would then search)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path (an unset variable?)")
    return Path(text)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown (but not "None": those options say what not giving them does), and the
    exit statuses' lines kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Client of the digits service: reads handwritten digits from images.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict = commands.add_parser(
        "predict",
        help="read the digit in each image file",
        description="Send image files (folders are searched recursively for "
        f"{', '.join(sorted(IMAGE_EXTENSIONS))}; hidden files and folders are skipped) to the "
        "service and print one line per file.",
        epilog=EXIT_STATUSES,
        formatter_class=HelpFormatter,
    )
    predict.add_argument(
        "paths", nargs="+", type=path_argument, metavar="PATH", help="files or folders"
    )
    predict.add_argument(
        "--url",
        default=os.environ.get(URL_ENV) or DEFAULT_URL,  # set but empty: as if unset
        help=f"base URL of the service (environment: {URL_ENV})",
    )
    fmt = predict.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    fmt.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    predict.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        help="files per request (at most the service's DIGITS_MAX_BATCH_FILES)",
    )
    predict.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait at each step of a request: connecting, sending, and for the "
        "answer, which must then arrive whole within as long again",
    )
    predict.add_argument(
        "--explain",
        type=path_argument,
        default=None,
        metavar="DIR",
        help="also ask why, and write the heat map over what the model saw as "
        "DIR/<file name>.why.png for each image the model ran on, refused ones included "
        "(28x28 PNG; red to yellow: ink behind the answer, blue: ink against it)",
    )
    predict.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (without either: when stderr is a terminal and there "
        "is more than one request to make)",
    )
    return parser


def _chunks(paths: list[Path], size: int) -> list[list[Path]]:
    return [paths[start : start + size] for start in range(0, len(paths), size)]


def _say(line: str) -> None:
    """A diagnostic on stderr, where it never mixes with the table / JSON / CSV on stdout
    (none when stderr is closed: ``2>&-``; the exit status still says it)."""
    if sys.stderr is not None:
        sys.stderr.write(f"{PROG}: {line}\n")


def _fail(message: str, status: int) -> int:
    _say(f"error: {message}")
    return status


def _render(results: list[FileResult], args: argparse.Namespace) -> str:
    if args.json:
        return output.as_json(results)
    if args.csv:
        return output.as_csv(results)
    return output.table(results, getattr(sys.stdout, "encoding", None) or "utf-8")


def predict(args: argparse.Namespace) -> int:
    """The ``predict`` command; returns the exit status."""
    try:
        url = normalise_url(args.url)
        paths = collect(args.paths)
    except (InvalidURL, NoSuchPath) as exc:
        return _fail(str(exc), EXIT_USAGE)
    if not paths:
        shown = " ".join(str(path) for path in args.paths)
        return _fail(f"no image files found in {shown}", EXIT_USAGE)
    if args.explain is not None:
        try:  # before any file is sent: a folder that cannot be made would waste the run
            args.explain.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return _fail(f"cannot write heat maps to {args.explain}: {exc}", EXIT_USAGE)
    chunks = _chunks(paths, args.batch_size)
    show_progress = args.progress and sys.stderr is not None
    if args.progress is None:
        show_progress = sys.stderr is not None and sys.stderr.isatty() and len(chunks) > 1
    results: list[FileResult] = []
    stopped: tuple[str, int] | None = None  # why the run ended before every file was read
    try:
        with (
            DigitsClient(
                url, timeout=args.timeout, explain=args.explain is not None, on_retry=_say
            ) as client,
            tqdm(
                total=len(paths),
                unit="file",
                desc="reading digits",
                file=sys.stderr,
                disable=not show_progress,
                dynamic_ncols=True,
            ) as progress,
        ):
            for chunk in chunks:
                results.extend(client.predict(chunk))
                progress.update(len(chunk))
    except ServiceUnavailable as exc:
        stopped = (str(exc), EXIT_SERVICE)
    except KeyboardInterrupt:
        stopped = ("interrupted", EXIT_INTERRUPTED)
    if stopped is not None and not results:
        return _fail(*stopped)
    status = _report(results, args)
    if stopped is not None:
        _say(f"{len(paths) - len(results)} of {len(paths)} files were not read")
        return _fail(*stopped)
    return status


def _report(results: list[FileResult], args: argparse.Namespace) -> int:
    """The results on stdout, then the heat maps in their folder (one that fails late, a
    full disk or a map's name taken by a folder, costs the maps, not the answers); EXIT_OK
    or EXIT_FILE_FAILED."""
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        return _fail("cannot write the output: stdout is closed", EXIT_FILE_FAILED)
    try:
        sys.stdout.write(_render(results, args))
        sys.stdout.flush()
    except BrokenPipeError:
        raise  # main: the reader went away, nothing to say
    except OSError as exc:  # stdout on a full disk
        _quiet_stdout()
        return _fail(f"cannot write the output: {exc}", EXIT_FILE_FAILED)
    failed = [result for result in results if not result.ok]
    if failed and (args.json or args.csv):
        # The table carries the messages; machine formats keep stdout clean, so say it here.
        for result in failed:
            name = output.printable(output.shown(result))
            _say(f"{name}: {result.error_code}: {result.error_message}")
    if args.explain is not None:
        written, unwritten = write_overlays(results, args.explain)
        _say(f"{written} heat map{'' if written == 1 else 's'} written to {args.explain}")
        if unwritten:
            _say(
                f"cannot write heat maps to {args.explain}: {len(unwritten)} not written "
                f"(the first: {unwritten[0]})"
            )
            return EXIT_FILE_FAILED
    if failed:
        _say(f"{len(failed)} of {len(results)} files failed")
        return EXIT_FILE_FAILED
    return EXIT_OK


def write_overlays(results: list[FileResult], folder: Path) -> tuple[int, list[str]]:
    """Each heat map the service sent as ``folder/<name>.why.png`` (``-2``, ``-3``... when two
    files share a name): how many were written, and why each other one was not (a name too
    long, a folder in its way, a full disk) without costing the maps after it. A refused
    image has one when the model ran on it (not_a_digit): the map shows why. ``predict``
    made ``folder`` before sending."""
    used: set[str] = set()
    written, unwritten = 0, []
    for result in results:
        if result.overlay is None:
            continue
        name, number = f"{result.path.name}.why.png", 1
        while name in used:
            number += 1
            name = f"{result.path.name}-{number}.why.png"
        used.add(name)
        try:
            (folder / name).write_bytes(result.overlay)
        except OSError as exc:
            unwritten.append(output.printable(f"{name}: {exc.strerror or exc}"))
            continue
        written += 1
    return written, unwritten


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``digits`` console script and ``python -m client``."""
    args = build_parser().parse_args(argv)
    _escape_what_the_terminal_cannot_show()
    try:
        return predict(args)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # `digits predict ... | head`: the reader has what it wanted
        _quiet_stdout()
        return EXIT_FILE_FAILED


def _escape_what_the_terminal_cannot_show() -> None:
    """A file name the locale cannot encode (an ASCII or Latin-1 terminal) is shown as
    ``\\uXXXX`` instead of ending the run in a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered would fail again at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
