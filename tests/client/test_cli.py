"""The ``digits`` command line against the real app on a real uvicorn."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw
from prometheus_client.parser import text_string_to_metric_families

from bench.server import free_port, running_service
from client import cli as cli_module
from client.cli import (
    EXIT_FILE_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SERVICE,
    EXIT_USAGE,
    main,
)
from tests.client.conftest import mnist_test_images
from tests.conftest import REPO_ROOT, tiny_model_env

FILES_IN_FOLDER = 12


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["predict", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def table_rows(text: str) -> list[list[str]]:
    lines = text.strip().splitlines()
    return [re.split(r"\s{2,}", line.strip()) for line in lines]


def server_answer(url: str, path: Path) -> dict[str, object]:
    """What the service says about one file through the single-image route."""
    with path.open("rb") as handle:
        return httpx.post(f"{url}/predict", files={"file": (path.name, handle)}).json()


def batch_requests(url: str, status: str | None = None) -> float:
    """Answered POST /predict/batch requests so far (with that status), from the metrics."""
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
    return sum(
        sample.value
        for family in families
        if family.name == "digits_http_requests"
        for sample in family.samples
        if sample.name == "digits_http_requests_total"
        and sample.labels["route"] == "/predict/batch"
        and status in (None, sample.labels["status"])
    )


def test_table_has_one_row_per_image_with_the_services_answer(
    capsys: pytest.CaptureFixture[str], service_url: str, digit_folder: Path
) -> None:
    status, out, err = run(capsys, str(digit_folder), "--url", service_url)
    assert status == EXIT_OK, err
    header, *rows = table_rows(out)
    assert header == ["FILE", "DIGIT", "CONFIDENCE"]
    assert len(rows) == FILES_IN_FOLDER  # README.txt and the hidden folder are skipped
    assert [Path(row[0]).name for row in rows] == sorted(
        path.name for path in digit_folder.rglob("*-label*")
    )
    for file, digit, confidence in rows:
        expected = server_answer(service_url, Path(file))
        assert int(digit) == expected["digit"]
        assert float(confidence.rstrip("%")) == pytest.approx(
            100 * float(expected["confidence"]), abs=0.01
        )
    assert err == ""  # no progress bar when stderr is not a terminal


def test_json_gives_probabilities_and_nulls(
    capsys: pytest.CaptureFixture[str], service_url: str, digit_folder: Path
) -> None:
    status, out, _ = run(capsys, str(digit_folder), "--url", service_url, "--json")
    assert status == EXIT_OK
    records = json.loads(out)
    assert len(records) == FILES_IN_FOLDER
    for record in records:
        assert set(record) == {"file", "digit", "confidence", "probabilities", "error"}
        assert record["error"] is None
        probabilities = record["probabilities"]
        assert len(probabilities) == 10 and math.isclose(sum(probabilities), 1.0, abs_tol=1e-4)
        assert record["digit"] == int(np.argmax(probabilities))
        assert record["confidence"] == pytest.approx(max(probabilities))


def test_csv_is_parseable(
    capsys: pytest.CaptureFixture[str], service_url: str, digit_folder: Path
) -> None:
    status, out, _ = run(capsys, str(digit_folder), "--url", service_url, "--csv")
    assert status == EXIT_OK
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["file", "digit", "confidence", "error_code", "error_message"]
    assert len(rows) == FILES_IN_FOLDER
    assert all(0 <= int(row["digit"]) <= 9 and 0 < float(row["confidence"]) <= 1 for row in rows)
    assert all(row["error_code"] == "" for row in rows)


def test_a_folder_goes_in_chunks_with_a_progress_bar(
    capsys: pytest.CaptureFixture[str], service_url: str, digit_folder: Path
) -> None:
    before = batch_requests(service_url)
    status, out, err = run(
        capsys, str(digit_folder), "--url", service_url, "--batch-size", "5", "--json", "--progress"
    )
    assert status == EXIT_OK
    assert batch_requests(service_url) - before == math.ceil(FILES_IN_FOLDER / 5)
    assert len(json.loads(out)) == FILES_IN_FOLDER
    assert f"{FILES_IN_FOLDER}/{FILES_IN_FOLDER}" in err and "reading digits" in err


def test_a_bad_file_fails_alone_with_the_servers_message(
    capsys: pytest.CaptureFixture[str], service_url: str, digit_folder: Path
) -> None:
    broken = digit_folder / "batch-a" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    status, out, err = run(capsys, str(digit_folder), "--url", service_url, "--batch-size", "4")
    assert status == EXIT_FILE_FAILED
    header, *rows = table_rows(out)
    assert header == ["FILE", "DIGIT", "CONFIDENCE", "ERROR"]
    failed = [row for row in rows if row[0] == str(broken)]
    assert len(failed) == 1 and failed[0][1:3] == ["-", "-"]
    assert failed[0][3].startswith("invalid_image: ")
    assert len([row for row in rows if len(row) == 3]) == FILES_IN_FOLDER  # the rest were read
    assert f"1 of {FILES_IN_FOLDER + 1} files failed" in err

    status, out, err = run(capsys, str(broken), "--url", service_url, "--json")
    assert status == EXIT_FILE_FAILED
    (record,) = json.loads(out)
    assert record["error"]["code"] == "invalid_image"
    assert record["error"]["message"] in err  # also said on stderr, stdout stays JSON


def test_explain_writes_each_images_heat_map(
    capsys: pytest.CaptureFixture[str], service_url: str, digit_folder: Path, tmp_path: Path
) -> None:
    broken = digit_folder / "batch-a" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    original = next((digit_folder / "batch-a").glob("01-*.png"))
    twin = digit_folder / "batch-b" / original.name  # the same name as a file in batch-a
    Image.open(original).save(twin)
    why = tmp_path / "why"
    status, out, err = run(
        capsys, str(digit_folder), "--url", service_url, "--explain", str(why), "--json"
    )
    assert status == EXIT_FILE_FAILED  # the broken file
    records = json.loads(out)
    answered = [record for record in records if record["error"] is None]
    written = sorted(path.name for path in why.iterdir())
    assert len(written) == len(answered) == FILES_IN_FOLDER + 1
    assert "broken.png.why.png" not in written
    assert {f"{original.name}.why.png", f"{original.name}-2.why.png"} <= set(written)
    for path in why.iterdir():
        with Image.open(path) as image:
            assert (image.format, image.size, image.mode) == ("PNG", (28, 28), "RGB")
    assert f"{FILES_IN_FOLDER + 1} heat maps written to {why}" in err


def test_a_chunk_over_the_body_limit_is_split(
    capsys: pytest.CaptureFixture[str], tiny_onnx: Path, digit_folder: Path, tmp_path: Path
) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8)
    huge = tmp_path / "huge.png"
    Image.fromarray(noise).save(huge)  # incompressible: far over the 2 KiB limit alone
    env = {
        **tiny_model_env(tiny_onnx),
        "DIGITS_MAX_BODY_BYTES": "2048",
        "DIGITS_ACCESS_LOG": "false",
    }
    with running_service(env) as server:
        url = server.url
        status, out, err = run(capsys, str(digit_folder), str(huge), "--url", url, "--json")
        answered = batch_requests(url, "200")
    # 13 files fit one chunk of 32: more than one answered request means the refused chunk
    # was halved (and halved again) until each part fitted under the limit.
    assert answered >= 2
    records = {Path(record["file"]).name: record for record in json.loads(out)}
    assert status == EXIT_FILE_FAILED
    assert records.pop("huge.png")["error"]["code"] == "payload_too_large"
    assert len(records) == FILES_IN_FOLDER
    assert all(record["error"] is None for record in records.values())


def test_connection_refused_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], digit_folder: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    status, out, err = run(capsys, str(digit_folder), "--url", url)
    assert status == EXIT_SERVICE
    assert out == ""
    assert err.strip() == (
        f"digits: error: cannot connect to {url}: connection refused; "
        "is the service running there? (set --url)"
    )


def test_a_url_that_is_not_the_service_is_named(
    capsys: pytest.CaptureFixture[str], service_url: str, digit_folder: Path
) -> None:
    status, _, err = run(capsys, str(digit_folder), "--url", f"{service_url}/docs")
    assert status == EXIT_SERVICE
    assert "does not look like a digits service" in err and "HTTP 404" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ftp://example"], "invalid --url 'ftp://example'"),
        (["--url", "127.0.0.1:8000"], "expected http://HOST[:PORT]"),
    ],
)
def test_usage_errors(
    capsys: pytest.CaptureFixture[str], digit_folder: Path, args: list[str], message: str
) -> None:
    status, _, err = run(capsys, str(digit_folder), *args)
    assert status == EXIT_USAGE
    assert message in err


def test_missing_paths_and_empty_folders_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, _, err = run(capsys, str(tmp_path / "nope.png"))
    assert status == EXIT_USAGE and f"no such file or folder: {tmp_path / 'nope.png'}" in err
    status, _, err = run(capsys, str(tmp_path))
    assert status == EXIT_USAGE and "no image files found" in err


def test_bad_numbers_are_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["predict", "x.png", "--batch-size", "0"])
    assert exited.value.code == EXIT_USAGE
    assert "must be at least 1" in capsys.readouterr().err


def test_console_script_and_python_m_client(service_url: str, digit_folder: Path) -> None:
    script = Path(sys.executable).parent / "digits"
    one_file = next(digit_folder.rglob("*.png"))
    for command in ([sys.executable, "-m", "client"], [str(script)]):
        done = subprocess.run(
            [*command, "predict", str(one_file), "--url", service_url, "--csv"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO_ROOT,
            env={**os.environ, "DIGITS_URL": "http://unused.invalid"},
        )
        assert done.returncode == EXIT_OK, done.stderr
        assert done.stdout.splitlines()[1].startswith(f"{one_file},")


def test_url_comes_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    service_url: str,
    digit_folder: Path,
) -> None:
    monkeypatch.setenv("DIGITS_URL", service_url)
    status, out, _ = run(capsys, str(digit_folder), "--csv")
    assert status == EXIT_OK and len(out.splitlines()) == FILES_IN_FOLDER + 1


def long_dash(path: Path) -> Path:
    """An image the shipped model refuses (not_a_digit): a long dash, no digit is this wide."""
    strip = Image.new("L", (600, 40), 255)
    strip.paste(0, (100, 15, 500, 25))
    strip.save(path)
    return path


def test_the_shipped_model_reads_mnist_files(
    capsys: pytest.CaptureFixture[str], shipped_model: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    expected = {}
    for index, (pixels, label) in enumerate(mnist_test_images(mnist_dir, 20)):
        path = tmp_path / f"{index:02d}.png"
        Image.fromarray(255 - pixels).resize((84, 84)).save(path)
        expected[str(path)] = label
    env = {"DIGITS_MODEL_PATH": str(shipped_model), "DIGITS_ACCESS_LOG": "false"}
    dash = tmp_path / "not-a-digit" / "dash.png"
    dash.parent.mkdir()
    with running_service(env) as server:
        status, out, _ = run(capsys, str(tmp_path), "--url", server.url, "--json")
        long_dash(dash)
        refused_status, table, err = run(capsys, str(dash), "--url", server.url)
    assert status == EXIT_OK
    assert {record["file"]: record["digit"] for record in json.loads(out)} == expected
    # Refused like any other per-image error: printed, exit status 1.
    assert refused_status == EXIT_FILE_FAILED
    _, row = table_rows(table)
    assert row[1:3] == ["-", "-"] and row[3].startswith("not_a_digit: That doesn't look like")
    assert "1 of 1 files failed" in err


def test_explain_writes_a_refused_images_heat_map_too(
    capsys: pytest.CaptureFixture[str], shipped_model: Path, tmp_path: Path
) -> None:
    """A not_a_digit refusal carries the map of why, but only answered files got one."""
    dash = long_dash(tmp_path / "dash.png")
    why = tmp_path / "why"
    env = {"DIGITS_MODEL_PATH": str(shipped_model), "DIGITS_ACCESS_LOG": "false"}
    with running_service(env) as server:
        status, out, err = run(
            capsys, str(dash), "--url", server.url, "--explain", str(why), "--json"
        )
    assert status == EXIT_FILE_FAILED
    (record,) = json.loads(out)
    assert record["error"]["code"] == "not_a_digit"
    with Image.open(why / "dash.png.why.png") as image:
        assert (image.format, image.size, image.mode) == ("PNG", (28, 28), "RGB")
    assert f"1 heat map written to {why}" in err


def test_the_client_needs_neither_the_service_nor_numpy_nor_torch() -> None:
    """It installs with the `client` extra alone (httpx + tqdm) on any machine."""
    code = (
        "import sys, client.cli\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'service', 'training', 'torch', 'numpy', 'onnxruntime', 'fastapi', 'PIL'})\n"
        "print(heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


Handler = Callable[[httpx.Request], httpx.Response]


def answering(
    files_per_request: int, fail_after: int | None = None, stop: type[BaseException] = Exception
) -> tuple[Handler, list[int]]:
    """A stand-in service: each request's files read as 1 at 0.9, at most
    ``files_per_request`` of them (the service's 400 beyond), the request after
    ``fail_after`` answered requests raising ``stop``."""
    answered: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        count = request.content.count(b'name="files"')
        if fail_after is not None and len(answered) >= fail_after:
            raise stop("the service went away")
        if count > files_per_request:
            message = f"too many files: at most {files_per_request} per request"
            return httpx.Response(400, json={"error": {"code": "bad_request", "message": message}})
        answered.append(count)
        entry = {"digit": 1, "confidence": 0.9, "probabilities": [0.1 / 9] * 9 + [0.9]}
        return httpx.Response(200, json={"predictions": [entry] * count})

    return handler, answered


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Callable[[Handler], None]:
    """Point the CLI's client at ``answering``'s handler instead of the network."""

    def install(handler: Handler) -> None:
        real = cli_module.DigitsClient

        def client(url: str, **options: object) -> cli_module.DigitsClient:
            return real(url, transport=httpx.MockTransport(handler), **options)

        monkeypatch.setattr(cli_module, "DigitsClient", client)

    return install


@pytest.mark.parametrize(
    ("stop", "status", "says"),
    [
        (httpx.ConnectError, EXIT_SERVICE, "cannot connect"),
        (KeyboardInterrupt, EXIT_INTERRUPTED, "interrupted"),
    ],
)
def test_a_run_stopped_part_way_still_prints_what_it_read(
    capsys: pytest.CaptureFixture[str],
    stand_in: Callable[[Handler], None],
    digit_folder: Path,
    stop: type,
    status: int,
    says: str,
) -> None:
    """Three answered requests were thrown away when the fourth failed, or on Ctrl-C."""
    handler, answered = answering(64, fail_after=3, stop=stop)
    stand_in(handler)
    code, out, err = run(capsys, str(digit_folder), "--batch-size", "2", "--csv")
    assert code == status
    rows = list(csv.reader(io.StringIO(out)))
    assert len(rows) == 1 + 6 and answered == [2, 2, 2]  # the header, then three requests' files
    assert "6 of 12 files were not read" in err and says in err


def test_a_service_that_stays_busy_stops_the_run_after_what_it_read(
    capsys: pytest.CaptureFixture[str],
    stand_in: Callable[[Handler], None],
    digit_folder: Path,
) -> None:
    """A service still answering 503 after the retries failed each file 'overloaded' (exit
    1, as if the images were bad), and every later chunk waited out the same retries."""
    reader, answered = answering(64)
    sent: list[int] = []
    busy = {"error": {"code": "overloaded", "message": "queue full"}}

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(1)
        if len(sent) > 1:
            return httpx.Response(503, json=busy, headers={"Retry-After": "0"})
        return reader(request)

    stand_in(handler)
    code, out, err = run(capsys, str(digit_folder), "--batch-size", "4", "--csv")
    assert code == EXIT_SERVICE
    assert len(list(csv.reader(io.StringIO(out)))) == 1 + 4 and answered == [4]
    assert len(sent) == 1 + 4  # the second chunk and its three retries; no third chunk
    assert "8 of 12 files were not read" in err
    assert "stayed busy (HTTP 503 overloaded: queue full) through 4 tries" in err


def test_a_batch_over_the_services_file_limit_is_split(
    capsys: pytest.CaptureFixture[str],
    stand_in: Callable[[Handler], None],
    digit_folder: Path,
) -> None:
    """--batch-size over DIGITS_MAX_BATCH_FILES failed every file with a 400."""
    handler, answered = answering(files_per_request=5)
    stand_in(handler)
    code, out, err = run(capsys, str(digit_folder), "--batch-size", "12", "--json")
    assert code == EXIT_OK, err
    assert len(json.loads(out)) == 12 and sum(answered) == 12 and max(answered) <= 5


def test_a_heat_map_folder_that_cannot_be_made_is_refused_before_sending(
    capsys: pytest.CaptureFixture[str],
    stand_in: Callable[[Handler], None],
    digit_folder: Path,
    tmp_path: Path,
) -> None:
    handler, answered = answering(64)
    stand_in(handler)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = run(capsys, str(digit_folder), "--explain", str(blocker))
    assert code == EXIT_USAGE and "cannot write heat maps" in err
    assert answered == []  # nothing was sent for heat maps that could not be written


def test_a_file_name_that_is_not_utf8_is_read_and_printed_as_it_is(
    capsys: pytest.CaptureFixture[str], service_url: str, digit_folder: Path, tmp_path: Path
) -> None:
    """One such name crashed the whole run with a UnicodeEncodeError traceback."""
    source = next(digit_folder.rglob("*.png"))
    odd = tmp_path / os.fsdecode(b"caf\xe9.png")
    odd.write_bytes(source.read_bytes())
    code, out, err = run(capsys, str(odd), "--url", service_url)
    assert code == EXIT_OK, err
    assert "caf\\xe9.png" in out  # its odd byte shown, the output still UTF-8


def test_a_closed_pipe_and_an_infinite_timeout_are_no_tracebacks(
    service_url: str, digit_folder: Path
) -> None:
    command = [sys.executable, "-m", "client", "predict", str(digit_folder), "--url", service_url]
    piped = subprocess.run(
        ["bash", "-c", f"{' '.join(command)} --json | head -c 1"],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
    )  # fmt: skip
    assert piped.stdout == "[" and "Traceback" not in piped.stderr, piped.stderr
    with open("/dev/full", "w") as full:  # a disk with no room left
        stuck = subprocess.run(
            command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60, cwd=REPO_ROOT
        )
    assert stuck.returncode == EXIT_FILE_FAILED and "Traceback" not in stuck.stderr
    assert "cannot write the output" in stuck.stderr
    endless = subprocess.run(
        [*command, "--timeout", "inf"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert endless.returncode == EXIT_USAGE and "Traceback" not in endless.stderr


def test_help_lists_the_exit_statuses_and_no_empty_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["predict", "--help"])
    assert exited.value.code == EXIT_OK
    text = capsys.readouterr().out
    assert "exit status:" in text and "130  interrupted" in text
    assert "(default: None)" not in text  # --explain and --progress said so


def test_the_table_stays_aligned_for_wide_and_odd_file_names(
    capsys: pytest.CaptureFixture[str], service_url: str, digit_folder: Path, tmp_path: Path
) -> None:
    """A CJK name took two columns per character but was padded as one; a newline in a name
    broke its row in two."""
    source = next(digit_folder.rglob("*.png")).read_bytes()
    names = ["数字の七.png", "two\nlines.png", "plain.png"]
    for name in names:
        (tmp_path / name).write_bytes(source)
    code, out, err = run(capsys, *(str(tmp_path / name) for name in names), "--url", service_url)
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert len(lines) == 1 + len(names) and "two\\nlines.png" in out

    def columns(line: str) -> int:
        return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in line)

    assert len({columns(line) for line in lines}) == 1, lines  # the right column lines up


def test_a_named_pipe_fails_alone_instead_of_waiting_for_a_writer(
    service_url: str, digit_folder: Path, tmp_path: Path
) -> None:
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    image = next(digit_folder.rglob("*.png"))
    answer = subprocess.run(
        [sys.executable, "-m", "client", "predict", str(pipe), str(image), "--url", service_url],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
    )  # fmt: skip
    assert answer.returncode == EXIT_FILE_FAILED, answer.stderr
    assert "unreadable_file: a named pipe" in answer.stdout
    assert re.search(rf"{re.escape(str(image))}\s+\d\s+[\d.]+%", answer.stdout)


def test_a_folder_scan_fails_odd_entries_alone_as_when_named(
    service_url: str, digit_folder: Path, tmp_path: Path
) -> None:
    """A named pipe, a link to /dev/zero and broken links named like images were left out of
    a folder scan with no row and no warning; named, each fails its own row as in the scan
    (a broken link named ended the whole run as a usage error)."""
    odd = tmp_path / "odd"
    odd.mkdir()
    image = next(digit_folder.rglob("*.png"))
    (odd / image.name).write_bytes(image.read_bytes())
    os.mkfifo(odd / "pipe.png")
    (odd / "zero.png").symlink_to("/dev/zero")
    (odd / "dangling.png").symlink_to(odd / "missing.png")
    (odd / "loop.png").symlink_to(odd / "loop.png")
    os.mkfifo(odd / ".hidden.png")  # hidden: still skipped

    def errors(*paths: Path) -> dict[str, str]:
        """Each file's ``code: message`` ("" when read), by name."""
        command = [sys.executable, "-m", "client", "predict", *map(str, paths), "--json"]
        answer = subprocess.run(
            [*command, "--url", service_url],
            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
        )  # fmt: skip
        assert answer.returncode == EXIT_FILE_FAILED, answer.stderr
        return {
            Path(record["file"]).name: ""
            if record["error"] is None
            else f"{record['error']['code']}: {record['error']['message']}"
            for record in json.loads(answer.stdout)
        }

    scanned = errors(odd)
    assert sorted(scanned) == sorted(
        [image.name, "dangling.png", "loop.png", "pipe.png", "zero.png"]
    )
    assert scanned[image.name] == ""
    assert scanned["pipe.png"] == "unreadable_file: a named pipe"
    assert scanned["zero.png"].startswith("file_too_large: ")
    assert scanned["dangling.png"].startswith("unreadable_file: no such file or directory")
    assert scanned["loop.png"].startswith("unreadable_file: too many levels of symbolic links")
    named = errors(*(odd / name for name in ("pipe.png", "zero.png", "dangling.png", "loop.png")))
    assert named == {name: scanned[name] for name in named}
    assert len(named) == 4


def test_a_terminal_named_like_an_image_fails_its_row_at_once(tmp_path: Path) -> None:
    """A folder scan reads what is named like an image, devices included (a link to
    /dev/zero fails as too large): a terminal with nothing typed, read as a file, waited for
    ever. Its row fails at once, as the pipe's does."""
    primary, secondary = os.openpty()  # the test holds the terminal open: a read would wait
    try:
        folder = tmp_path / "scan"
        folder.mkdir()
        (folder / "tty.png").symlink_to(os.ttyname(secondary))
        answer = subprocess.run(
            [sys.executable, "-m", "client", "predict", str(folder), "--json"],
            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
        )  # fmt: skip
    finally:
        os.close(primary)
        os.close(secondary)
    assert answer.returncode == EXIT_FILE_FAILED, answer.stderr
    (record,) = json.loads(answer.stdout)
    assert record["error"]["code"] == "unreadable_file", record


def test_images_crowded_out_of_a_batch_are_sent_again_alone(
    capsys: pytest.CaptureFixture[str], tiny_onnx: Path, tmp_path: Path
) -> None:
    """Large photos in one chunk: all but the first were refused image_too_large, the pixels
    a request may decode taken by the ones before (DIGITS_MAX_BATCH_PIXELS), and the CLI
    failed them though each fits a request alone (with --batch-size 1 all were read)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(3):
        image = Image.new("L", (300, 300), 255)
        image.paste(0, (120 + 10 * index, 60, 180, 240))  # a bar: a 1 of sorts
        image.save(folder / f"{index}.png")
    env = {
        **tiny_model_env(tiny_onnx),
        "DIGITS_MAX_IMAGE_PIXELS": "100000",  # one 300x300 image (90,000 pixels) fits alone
        "DIGITS_MAX_BATCH_PIXELS": "100000",
        "DIGITS_ACCESS_LOG": "false",
    }
    with running_service(env) as server:
        status, out, err = run(capsys, str(folder), "--url", server.url, "--json")
    assert status == EXIT_OK, err
    assert [record["error"] for record in json.loads(out)] == [None, None, None]


def test_heat_maps_that_cannot_be_written_cost_the_maps_not_the_answers(
    capsys: pytest.CaptureFixture[str], service_url: str, digit_folder: Path, tmp_path: Path
) -> None:
    """The folder was there, but a map's name was taken by a folder: the run's answers were
    thrown away and the exit status said bad usage (2)."""
    why = tmp_path / "why"
    first = next((digit_folder / "batch-a").glob("00-*"))
    (why / f"{first.name}.why.png").mkdir(parents=True)
    status, out, err = run(
        capsys, str(digit_folder), "--url", service_url, "--explain", str(why), "--json"
    )
    assert status == EXIT_FILE_FAILED
    assert len(json.loads(out)) == FILES_IN_FOLDER
    assert f"cannot write heat maps to {why}" in err


def test_paths_the_system_will_not_look_at_fail_their_own_rows(
    capsys: pytest.CaptureFixture[str],
    stand_in: Callable[[Handler], None],
    digit_folder: Path,
) -> None:
    """A name too long for the file system ended the run in an OSError traceback."""
    handler, _ = answering(64)
    stand_in(handler)
    too_long = "x" * 300 + ".png"
    status, out, err = run(capsys, str(digit_folder), too_long, "--json")
    assert status == EXIT_FILE_FAILED
    records = json.loads(out)
    assert len(records) == FILES_IN_FOLDER + 1
    assert records[-1]["error"]["code"] == "unreadable_file"
    assert "too long" in records[-1]["error"]["message"]


def test_a_scan_keeps_real_names_and_skips_its_own_heat_maps(
    capsys: pytest.CaptureFixture[str],
    stand_in: Callable[[Handler], None],
    digit_folder: Path,
) -> None:
    """A link sorted before the file it points to took the file's place in the output, and
    --explain's maps written into the scanned folder were read as digits by the next run."""
    handler, answered = answering(64)
    stand_in(handler)
    real = next((digit_folder / "batch-b").rglob("*.png"))
    (digit_folder / "batch-a" / "a-link.png").symlink_to(real)
    (digit_folder / "batch-a" / "00.png.why.png").write_bytes(b"a heat map")
    status, out, err = run(capsys, str(digit_folder), "--json")
    assert status == EXIT_OK, err
    files = [record["file"] for record in json.loads(out)]
    assert len(files) == FILES_IN_FOLDER == sum(answered)
    assert str(real) in files and not [name for name in files if "a-link" in name]


def test_failures_on_stderr_keep_odd_file_names_on_one_line(
    capsys: pytest.CaptureFixture[str],
    stand_in: Callable[[Handler], None],
    tmp_path: Path,
) -> None:
    """With --json the failures are listed on stderr, where a newline or an escape sequence
    in a file name came out raw (the table shows them as \\n, \\x1b)."""
    handler, _ = answering(64)
    stand_in(handler)
    odd = tmp_path / "bad\nname\x1b[31m.png"
    odd.symlink_to(tmp_path / "nowhere")  # a broken link: it fails its own row
    status, out, err = run(capsys, str(odd), "--json")
    assert status == EXIT_FILE_FAILED
    assert json.loads(out)[0]["file"] == str(odd)  # JSON carries the name as it is
    assert all(line.startswith("digits: ") for line in err.splitlines()), err
    assert "bad\\nname\\x1b[31m.png: unreadable_file" in err


def _unlistable(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``folder`` as a user without read permission sees it (the tests may run as root, who
    reads every folder): listing it raises PermissionError, in the scan and in its row."""
    real_scandir = os.scandir

    def scandir(path: str | os.PathLike[str] = ".") -> object:
        if os.path.realpath(path) == os.path.realpath(folder):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_a_folder_that_cannot_be_listed_fails_its_own_row(
    capsys: pytest.CaptureFixture[str],
    stand_in: Callable[[Handler], None],
    digit_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A subfolder without read permission was left out of the scan in silence (exit 0), and
    named, it was "no image files found" (exit 2): the user never heard that it was shut."""
    handler, answered = answering(64)
    stand_in(handler)
    locked = digit_folder / "batch-b" / "nested"
    _unlistable(monkeypatch, locked)
    status, out, err = run(capsys, str(digit_folder), "--json")
    assert status == EXIT_FILE_FAILED, err
    records = {record["file"]: record for record in json.loads(out)}
    assert len(records) == 6 + 1 == sum(answered) + 1  # batch-a's six, and the locked folder
    error = records[str(locked)]["error"]
    assert error["code"] == "unreadable_folder"
    assert error["message"].startswith("its files cannot be listed: permission denied")
    assert f"{locked}: unreadable_folder" in err
    status, out, err = run(capsys, str(locked))
    assert status == EXIT_FILE_FAILED, err
    assert "unreadable_folder" in out and "no image files" not in err


def test_a_linked_folder_is_searched_once_and_a_loop_ends(
    capsys: pytest.CaptureFixture[str],
    stand_in: Callable[[Handler], None],
    digit_folder: Path,
    tmp_path: Path,
) -> None:
    """A link to a folder was skipped in silence (rglob does not follow links); followed, a
    link back up the tree must not loop, and a file keeps its own name, not a link's."""
    handler, answered = answering(64)
    stand_in(handler)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.new("L", (28, 28), 255).save(elsewhere / "outside.png")
    (digit_folder / "aa-outside").symlink_to(elsewhere)
    (digit_folder / "aa-batch-b").symlink_to(digit_folder / "batch-b")  # sorts first
    (digit_folder / "batch-a" / "up").symlink_to(digit_folder)  # a loop
    status, out, err = run(capsys, str(digit_folder), "--json")
    assert status == EXIT_OK, err
    files = [record["file"] for record in json.loads(out)]
    assert len(files) == FILES_IN_FOLDER + 1 == sum(answered)
    assert str(digit_folder / "aa-outside" / "outside.png") in files
    assert not [name for name in files if "aa-batch-b" in name or "/up/" in name]


def test_an_empty_path_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """``digits predict "$DIR"`` with DIR unset searched the current folder: Path("") is "."."""
    with pytest.raises(SystemExit) as exited:
        main(["predict", ""])
    assert exited.value.code == EXIT_USAGE
    assert "an empty path" in capsys.readouterr().err


def test_an_empty_url_variable_is_the_default_and_a_bad_port_is_refused(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stand_in: Callable[[Handler], None],
    digit_folder: Path,
) -> None:
    """DIGITS_URL= (set, empty, as Compose passes an unset one) was "invalid --url ''" with
    no --url given; port 99999 was taken and failed as "connection refused" (exit 3)."""
    handler, _ = answering(64)
    stand_in(handler)
    monkeypatch.setenv("DIGITS_URL", "")
    status, _, err = run(capsys, str(digit_folder))
    assert status == EXIT_OK, err
    status, _, err = run(capsys, str(digit_folder), "--url", "http://127.0.0.1:99999")
    assert status == EXIT_USAGE
    assert "port 99999 is not 1..65535" in err


@pytest.mark.parametrize(
    "entry",
    [
        {"digit": 3, "confidence": float("nan"), "probabilities": [0.1] * 10},
        {"digit": 3.7, "confidence": 0.9, "probabilities": [0.1] * 10},
        {"digit": True, "confidence": 0.9, "probabilities": [0.1] * 10},
        {"digit": 3, "confidence": 0.9, "probabilities": [1.0]},
        {"digit": 3, "confidence": "0.9", "probabilities": [0.1] * 10},
        {"digit": 3, "confidence": 1e400, "probabilities": [0.1] * 10},
    ],
    ids=["nan", "fraction", "boolean", "one-probability", "string", "infinity"],
)
def test_an_answer_that_breaks_the_contract_is_not_a_result(
    capsys: pytest.CaptureFixture[str],
    stand_in: Callable[[Handler], None],
    tmp_path: Path,
    entry: dict[str, object],
) -> None:
    """A server answering confidence NaN made --json print NaN (not JSON) with exit 0; a
    digit 3.7 was shown as 3 and one probability in place of ten was taken."""
    body = json.dumps({"predictions": [entry]}).encode()  # NaN and Infinity as Python writes
    stand_in(lambda request: httpx.Response(200, content=body))
    image = tmp_path / "one.png"
    Image.new("L", (28, 28), 255).save(image)
    status, out, err = run(capsys, str(image), "--json")
    assert status == EXIT_SERVICE
    assert out == "" and "malformed entry" in err


def test_a_heat_map_that_cannot_be_written_costs_only_itself(
    capsys: pytest.CaptureFixture[str], service_url: str, tmp_path: Path
) -> None:
    """A file name long enough that ``.why.png`` made it too long stopped every map after it
    and the count of those written."""
    images = tmp_path / "images"
    images.mkdir()
    names = ["00.png", "m" * (255 - len(".png")) + ".png", "zz.png"]
    for name in names:
        image = Image.new("L", (28, 28), 255)
        ImageDraw.Draw(image).line([(14, 4), (14, 24)], fill=0, width=3)
        image.save(images / name)
    why = tmp_path / "why"
    status, out, err = run(capsys, str(images), "--url", service_url, "--explain", str(why))
    assert status == EXIT_FILE_FAILED
    written = sorted(path.name for path in why.iterdir())
    assert written == ["00.png.why.png", "zz.png.why.png"]
    assert "2 heat maps written" in err
    assert "1 not written" in err and "File name too long" in err


def test_a_closed_stdout_and_a_narrow_locale_are_no_tracebacks(
    service_url: str, tmp_path: Path
) -> None:
    """An ASCII locale could not encode a file name (UnicodeEncodeError in a traceback, no
    output at all), and a closed stdout (``>&-``) ended in an AttributeError traceback."""
    image = tmp_path / "日本語.png"
    Image.new("L", (28, 28), 255).save(image)
    command = [sys.executable, "-m", "client", "predict", str(image), "--url", service_url]
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    narrow = subprocess.run(
        command, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=env
    )
    assert narrow.returncode == EXIT_FILE_FAILED  # a blank image: no_ink
    assert "\\u65e5\\u672c\\u8a9e.png" in narrow.stdout and "Traceback" not in narrow.stderr
    head, row = narrow.stdout.splitlines()[:2]  # escaped before measured: columns in line
    assert row[head.index("DIGIT") + len("DIGIT") - 1] == "-", narrow.stdout
    closed = subprocess.run(
        ["bash", "-c", 'exec "$@" >&-', "bash", *command],
        capture_output=False, stderr=subprocess.PIPE, text=True, timeout=60, cwd=REPO_ROOT,
    )  # fmt: skip
    assert closed.returncode == EXIT_FILE_FAILED
    assert "stdout is closed" in closed.stderr and "Traceback" not in closed.stderr
    silent = subprocess.run(
        ["bash", "-c", 'exec "$@" 2>&-', "bash", *command, "--json"],
        capture_output=False, stdout=subprocess.PIPE, text=True, timeout=60, cwd=REPO_ROOT,
    )  # fmt: skip
    assert silent.returncode == EXIT_FILE_FAILED  # no_ink, said by the status alone
    assert json.loads(silent.stdout)[0]["error"]["code"] == "no_ink"


def test_a_subfolder_of_a_folder_read_but_not_entered_fails_its_own_row(
    capsys: pytest.CaptureFixture[str],
    stand_in: Callable[[Handler], None],
    digit_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A folder with read but no search permission lists its names, but nothing in it can be
    looked at: its subfolder, taken for no folder, left the scan without a word (a re-probe
    of 705b8d8 as a user without root's permissions)."""
    handler, _ = answering(64)
    stand_in(handler)
    shut = digit_folder / "batch-b"  # holds the subfolder nested/
    _unlistable(monkeypatch, shut / "nested")
    real_stat = Path.stat

    def stat(self: Path, **options: Any) -> os.stat_result:
        if self.parent == shut:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, **options)

    monkeypatch.setattr(Path, "stat", stat)
    status, out, err = run(capsys, str(shut), "--json")
    records = {record["file"]: record["error"] for record in json.loads(out)}
    # Its row says what the system says (not even whether it is a folder can be looked up).
    assert "permission denied" in records[str(shut / "nested")]["message"], records
    assert status == EXIT_FILE_FAILED


def test_a_broken_server_never_makes_a_traceback(
    capsys: pytest.CaptureFixture[str],
    stand_in: Callable[[Handler], None],
    tmp_path: Path,
) -> None:
    """An answer nested 100,000 deep raised RecursionError, and 'Retry-After: nan' reached
    time.sleep, which refuses NaN: each a traceback (a re-probe with a fake server)."""
    image = tmp_path / "one.png"
    Image.new("L", (28, 28), 255).save(image)
    busy = {"error": {"code": "overloaded", "message": "queue full"}}
    answers = [
        httpx.Response(200, content=b'{"predictions": ' + b"[" * 100_000),
        *[httpx.Response(503, json=busy, headers={"Retry-After": "nan"})] * 4,
    ]
    stand_in(lambda request: answers.pop(0))
    status, out, err = run(capsys, str(image))
    assert status == EXIT_SERVICE and "Traceback" not in err
    status, out, err = run(capsys, str(image))  # three retries, a second apart
    assert status == EXIT_SERVICE and "Traceback" not in err
    assert err.count("again in 1 s") == 3


def test_an_empty_heat_map_folder_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--explain "$DIR" with DIR unset wrote the maps into the current folder."""
    with pytest.raises(SystemExit) as exited:
        main(["predict", "x.png", "--explain", ""])
    assert exited.value.code == EXIT_USAGE
    assert "an empty path" in capsys.readouterr().err


@pytest.mark.timeout(30)  # the regression waits 200 s for the trickle's 1000 bytes
def test_an_answer_trickled_a_byte_at_a_time_ends_at_the_timeout(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Each read came within --timeout, so a server sending its answer a byte every 0.2 s
    held the run for as long as it liked (a probe waited 25 s on --timeout 2)."""
    image = tmp_path / "one.png"
    Image.new("L", (28, 28), 255).save(image)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            while not stop.wait(0.2):
                try:
                    connection.sendall(b" ")
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    started = time.monotonic()
    try:
        status, out, err = run(capsys, str(image), "--url", url, "--timeout", "1")
    finally:
        stop.set()
        listener.close()
    assert status == EXIT_SERVICE and "took more than 1 s to arrive" in err
    assert time.monotonic() - started < 10
