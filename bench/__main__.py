"""``python -m bench``: measure the service side by side with its peers; print one table.

Starts the service (with its real settings, from DIGITS_* variables) on loopback in a
subprocess, and beside it the peers a user would compare it with (bench/peers: a plain
FastAPI no-op app, and the obvious FastAPI + Pillow + ONNX Runtime app with one and with two
uvicorn processes); drives each scenario with wrk for a bounded time, the /predict runs of
the service and the peers alternating in short slices; runs ONNX Runtime alone in this
process for the model's own limit; prints the event loop's and the workers' CPU per
/predict; and checks the targets as ratios of the same run.

    python -m bench                      # about 2 minutes
    python -m bench --duration 3 --overload-duration 3 --ort-duration 1   # a quick look
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack

import httpx

from bench.app import NOOP_PATH
from bench.cpu import CpuSeconds, cpu_by_role
from bench.inprocess import run_onnxruntime
from bench.loadgen import LoadResult, combine, run_wrk, wrk_binary
from bench.payloads import Payload, digit_png, multipart, photo_jpeg, v2_binary, v2_json
from bench.report import (
    Row,
    Targets,
    accepted_p99,
    capacity,
    format_table,
    ratios,
    scrape,
    wait_idle,
)
from bench.server import running_peer, running_service
from client.cli import positive_float, positive_int
from service.settings import Settings

PEERS = (
    ("fastapi_noop", "bench.peers.noop:app", 1),
    ("tutorial_1", "bench.peers.tutorial:app", 1),
    ("tutorial_2", "bench.peers.tutorial:app", 2),
)
PEER_NAMES = {
    "fastapi_noop": "peer: plain FastAPI no-op (UploadFile), 1 process",
    "tutorial_1": "peer: tutorial FastAPI+Pillow+ORT, 1 process",
    "tutorial_2": "peer: tutorial FastAPI+Pillow+ORT, 2 processes",
}
BATCH_FILES = 64
V2_BATCH = 256
OVERLOAD_CONCURRENCY = 256


_OPTIONS: tuple[tuple[str, Callable[[str], float], float, str], ...] = (
    ("--duration", positive_float, 10.0, "seconds per scenario"),
    ("--overload-duration", positive_float, 10.0, "seconds at c=256"),
    ("--ort-duration", positive_float, 3.0, "seconds per ORT run"),
    ("--warmup", positive_float, 2.0, "seconds of warm-up load"),
    ("--concurrency", positive_int, 16, "for no-op, JPEG, ratios"),
    ("--batch-concurrency", positive_int, 4, "for batch and V2 runs"),
    (
        "--rounds",
        positive_int,
        5,
        "the no-op and /predict runs of the ratio targets alternate this many times",
    ),
)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for flag, kind, default, help_text in _OPTIONS:
        parser.add_argument(flag, type=kind, default=default, help=help_text)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    wrk_binary()  # fail before anything starts when the generator is missing
    settings = Settings()
    png, jpeg = digit_png(), photo_jpeg()
    one_png = multipart("file", [("digit.png", png, "image/png")])
    one_jpeg = multipart("file", [("photo.jpg", jpeg, "image/jpeg")])
    many_png = multipart("files", [(f"d{i}.png", png, "image/png") for i in range(BATCH_FILES)])
    v2, v2_text = v2_binary(V2_BATCH), v2_json(V2_BATCH)
    c, bc = args.concurrency, args.batch_concurrency
    started = time.monotonic()

    # The model alone first, while no server competes for the cores.
    ort = {b: run_onnxruntime(settings, b, args.ort_duration) for b in (1, V2_BATCH)}
    rows: dict[str, Row] = {}
    per_image: dict[str, CpuSeconds] = {}  # server CPU per image of a scenario, by role
    model_env = {"DIGITS_MODEL_PATH": str(settings.resolved_model_path)}
    with ExitStack() as servers:
        server = servers.enter_context(running_service(module="bench.app"))
        peers = {
            key: servers.enter_context(running_peer(app, workers, model_env))
            for key, app, workers in PEERS
        }
        url = server.url
        run_wrk(f"{url}/predict", one_png, connections=c, duration_s=args.warmup)
        for peer in peers.values():
            run_wrk(f"{peer.url}/predict", one_png, connections=c, duration_s=args.warmup / 2)

        def measure(path: str, payload: Payload, conn: int, seconds: float) -> LoadResult:
            wait_idle(url)
            return run_wrk(f"{url}{path}", payload, connections=conn, duration_s=seconds)

        def load(key: str, name: str, path: str, payload: Payload, conn: int) -> None:
            before = cpu_by_role(server.process.pid)
            result = measure(path, payload, conn, args.duration)
            spent = cpu_by_role(server.process.pid) - before
            rows[key] = Row.from_load(name, conn, result, payload.images)
            images = max(1, result.requests * payload.images)
            per_image[key] = CpuSeconds(spent.front_ends / images, spent.workers / images)

        # The ratios compare runs of several servers; this machine's speed drifts by 20-30 %
        # within a minute (shared cores), so they alternate in short slices and share it.
        slice_s = args.duration / args.rounds
        runs: dict[str, list[LoadResult]] = {key: [] for key in ("noop", "png", *peers)}
        cpu = CpuSeconds(0.0, 0.0)
        for _ in range(args.rounds):
            runs["noop"].append(measure(NOOP_PATH, one_png, c, slice_s))
            before = cpu_by_role(server.process.pid)
            runs["png"].append(measure("/predict", one_png, c, slice_s))
            cpu += cpu_by_role(server.process.pid) - before
            for key, peer in peers.items():
                result = run_wrk(f"{peer.url}/predict", one_png, connections=c, duration_s=slice_s)
                runs[key].append(result)
        png_name = "/predict 28x28 PNG"
        rows["noop"] = Row.from_load("no-op route, multipart 28x28 PNG", c, combine(runs["noop"]))
        load("png_c1", png_name, "/predict", one_png, 1)
        png_runs = combine(runs["png"])
        rows[f"png_c{c}"] = Row.from_load(png_name, c, png_runs)
        for key, name in PEER_NAMES.items():
            rows[key] = Row.from_load(name, c, combine(runs[key]))
        load("png_c64", png_name, "/predict", one_png, 64)
        load("jpeg", "/predict 600x600 JPEG photo", "/predict", one_jpeg, c)
        load("batch", f"/predict/batch {BATCH_FILES} PNGs", "/predict/batch", many_png, bc)
        # The model keeps its own name in V2 paths: ask the service, never assume "lenet5".
        v2_path = f"/v2/models/{httpx.get(f'{url}/model').json()['name']}/infer"
        load("v2", f"V2 binary infer, batch {V2_BATCH}", v2_path, v2, bc)
        load("v2_json", f"V2 JSON infer, batch {V2_BATCH}", v2_path, v2_text, bc)
        wait_idle(url)
        before_scrape = scrape(url)
        overload = run_wrk(
            f"{url}/predict",
            one_png,
            connections=OVERLOAD_CONCURRENCY,
            duration_s=args.overload_duration,
            count_503=True,
        )
        overload_p99 = accepted_p99(before_scrape, scrape(url), route="/predict")
        rows["overload"] = Row.from_load(
            "overload: /predict PNG", OVERLOAD_CONCURRENCY, overload, one_png.images
        )
    for batch, result in ort.items():
        rows[f"ort_{batch}"] = Row.from_inprocess(
            f"ONNX Runtime in-process, batch {batch}", batch, result
        )
    per_request = CpuSeconds(cpu.front_ends / png_runs.requests, cpu.workers / png_runs.requests)
    per_image = {f"png_c{c}": per_request, **per_image}

    targets = Targets.evaluate(rows, c, per_request.front_ends, overload, overload_p99)
    wall = time.monotonic() - started
    # The table is the program's output (stdout); logs stay on stderr.
    sys.stdout.write(f"{format_table(list(rows.values()))}\n\n")
    sys.stdout.write(
        f"CPU per /predict at c={c} (process CPU over its slices): event loop "
        f"{per_request.front_ends * 1e6:.0f} us, workers {per_request.workers * 1e6:.0f} us\n"
    )
    sys.stdout.write(f"{capacity(rows, per_image)}\n")
    sys.stdout.write(f"{ratios(rows, c)}\n\n{targets.format()}\n\n")
    sys.stdout.write(f"settings: {_describe(settings)}; wall time {wall:.0f} s\n")
    return 0 if targets.all_passed else 1


def _describe(settings: Settings) -> str:
    return (
        f"provider={settings.provider} event_loop={settings.event_loop} "
        f"intra_op_threads={settings.intra_op_threads} "
        f"batch_max_size={settings.batch_max_size} "
        f"batch_max_delay_us={settings.batch_max_delay_us} "
        f"batch_max_queue_images={settings.batch_max_queue_images}"
    )


if __name__ == "__main__":
    sys.exit(main())
