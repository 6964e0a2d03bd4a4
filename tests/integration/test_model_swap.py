"""Swapping the model of a real server under continuous traffic: good file, a file that fails
the contract, one that fails the accuracy floor, then a good one again through SIGHUP. Nothing
is dropped or refused, every answer comes from exactly one model, the one the timeline allows."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bench.server import RunningService, free_port, running_service
from service.imaging import preprocess_image
from service.model import DigitClassifier
from service.settings import Settings
from tests.conftest import REPO_ROOT, tiny_model_env
from tests.integration.processes import descendants
from tests.repository.conftest import AUTH, LOAD, TOKEN, upload_body
from tests.repository.models import guessing, no_softmax, variant
from tests.service.images import mnist_like
from training.data import load_split

pytestmark = pytest.mark.slow

PREDICT_CLIENTS = 3
PHASE_S = 1.5  # traffic on each state (a model serving, a refusal just answered)...
PHASE_CALLS = 12  # ...and at least this many answers, however slow the machine is
IMAGES = 16
SWITCH_TIMEOUT_S = 60.0


@dataclass
class Call:
    kind: str  # "predict" or "v2"
    image: int
    sent: float
    done: float = 0.0
    status: int | None = None
    version: str | None = None
    probabilities: np.ndarray | None = None
    error: str | None = None


@dataclass
class Traffic:
    """Clients sending without pause until stopped, and a readiness probe beside them."""

    url: str
    pngs: list[bytes]
    tensors: np.ndarray  # (IMAGES, 1, 28, 28)
    versions: dict[str, str]  # a V2 version (a major number) -> the model version
    calls: list[Call] = field(default_factory=list)
    readiness: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        loops: list[Callable[[httpx.Client, int], None]] = [self._predict] * PREDICT_CLIENTS
        for number, loop in enumerate([*loops, self._v2, self._probe]):
            thread = threading.Thread(target=self._run, args=(loop, number), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, loop: Callable[[httpx.Client, int], None], number: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            sent = 0
            while not self._stop.is_set():
                loop(client, number + sent)
                sent += 1

    def _predict(self, client: httpx.Client, n: int) -> None:
        image = n % len(self.pngs)
        call = Call("predict", image, time.monotonic())
        self._send(
            call,
            lambda: client.post(
                "/predict", content=self.pngs[image], headers={"Content-Type": "image/png"}
            ),
        )

    def _v2(self, client: httpx.Client, n: int) -> None:
        image = n % len(self.tensors)
        tensor = {
            "name": "image",
            "datatype": "FP32",
            "shape": [1, 1, 28, 28],
            "data": self.tensors[image].ravel().tolist(),
        }
        call = Call("v2", image, time.monotonic())
        self._send(call, lambda: client.post("/v2/models/lenet5/infer", json={"inputs": [tensor]}))

    def _send(self, call: Call, send: Callable[[], httpx.Response]) -> None:
        try:
            response = send()
        except httpx.HTTPError as exc:
            call.error = repr(exc)
        else:
            call.status = response.status_code
            if response.status_code == 200:
                body = response.json()
                if call.kind == "predict":
                    call.version = body["model"]["version"]
                    call.probabilities = np.array(body["probabilities"], np.float32)
                else:  # V2 may name a version by its major number (Triton's are integers)
                    call.version = self.versions.get(body["model_version"], body["model_version"])
                    call.probabilities = np.array(body["outputs"][0]["data"], np.float32)
        call.done = time.monotonic()
        self.calls.append(call)

    def _probe(self, client: httpx.Client, _: int) -> None:
        try:
            self.readiness.append(client.get("/readyz").status_code)
        except httpx.HTTPError:
            self.readiness.append(0)
        time.sleep(0.02)


@dataclass(frozen=True)
class Load:
    """A load request as the client saw it: sent at ``started``, answered at ``finished``."""

    name: str
    started: float
    finished: float
    status: int
    answer: dict[str, Any]


def served_version(url: str) -> str:
    return str(httpx.get(f"{url}/model", timeout=10).json()["version"])


def settle(traffic: Traffic) -> None:
    """Traffic on the state the server is in now: ``PHASE_S`` and ``PHASE_CALLS`` answers."""
    began, answered = time.monotonic(), len(traffic.calls)
    time.sleep(PHASE_S)
    while len(traffic.calls) - answered < PHASE_CALLS:
        assert time.monotonic() - began < SWITCH_TIMEOUT_S, "the traffic stopped"
        time.sleep(0.05)


def upload(server: RunningService, name: str, path: Path) -> Load:
    started = time.monotonic()
    response = httpx.post(f"{server.url}{LOAD}", headers=AUTH, json=upload_body(path), timeout=120)
    return Load(name, started, time.monotonic(), response.status_code, response.json())


def sighup(server: RunningService, model_path: Path, new: Path, version: str) -> Load:
    """Replace the configured file, SIGHUP; answered once /model names the new version."""
    shutil.copyfile(new, model_path)
    started = time.monotonic()
    server.process.send_signal(signal.SIGHUP)
    while served_version(server.url) != version:
        assert time.monotonic() - started < SWITCH_TIMEOUT_S, server.log()[-3000:]
        time.sleep(0.01)
    return Load("sighup", started, time.monotonic(), 200, {"version": version})


def expected_outputs(
    models: dict[str, Path], pngs: list[bytes], tensors: np.ndarray
) -> dict[tuple[str, str], np.ndarray]:
    """(kind, version) -> (IMAGES, 10): what each model answers to each input, in process."""
    settings = Settings()
    inputs = np.stack(
        [
            preprocess_image(
                data,
                allowed_formats=settings.allowed_image_formats,
                max_pixels=settings.max_image_pixels,
            )
            for data in pngs
        ]
    )[:, None]
    outputs = {}
    for version, path in models.items():
        model = DigitClassifier(path)
        outputs["predict", version] = model.predict(inputs)
        outputs["v2", version] = model.predict(tensors)
    return outputs


def allowed_versions(call: Call, timeline: list[tuple[Load, str]], first: str) -> list[str]:
    """The versions that may answer ``call``: from the last switch that completed before it was
    sent up to the last switch that had begun before its answer came."""
    versions = [first] + [version for _, version in timeline]
    earliest = sum(1 for load, _ in timeline if load.finished < call.sent)
    latest = sum(1 for load, _ in timeline if load.started < call.done)
    return versions[earliest : latest + 1]


def test_three_swaps_under_traffic_drop_nothing(
    tmp_path: Path, shipped_model: Path, mnist_dir: Path
) -> None:
    test_set = load_split(mnist_dir, train=False)
    digits = test_set.images[:IMAGES]
    pngs = [mnist_like(digit) for digit in digits]
    tensors = (digits.astype(np.float32) / 255.0)[:, None]
    models = {
        "1.0.0": shipped_model,
        "2.0.0": variant(tmp_path / "v2.onnx", "2.0.0", 0.8, shipped_model),
        "3.0.0": variant(tmp_path / "v3.onnx", "3.0.0", 0.9, shipped_model),
    }
    expected = expected_outputs(models, pngs, tensors)
    model_path = tmp_path / "model.onnx"
    shutil.copyfile(shipped_model, model_path)
    env = {
        "DIGITS_MODEL_PATH": str(model_path),
        "DIGITS_ADMIN_TOKEN": TOKEN,
        "DIGITS_PREPROCESS_WORKERS": "2",
        "DIGITS_ACCESS_LOG": "false",
    }
    with running_service(env) as server:
        traffic = Traffic(server.url, pngs, tensors, {v.split(".")[0]: v for v in models})
        traffic.start()
        try:
            settle(traffic)
            loads = [upload(server, "good", models["2.0.0"])]
            settle(traffic)
            loads.append(upload(server, "contract", no_softmax(tmp_path / "logits.onnx")))
            settle(traffic)
            loads.append(upload(server, "floor", guessing(tmp_path / "guessing.onnx")))
            settle(traffic)
            loads.append(sighup(server, model_path, models["3.0.0"], "3.0.0"))
            settle(traffic)
        finally:
            traffic.stop()
        index = httpx.post(f"{server.url}/v2/repository/index", headers=AUTH).json()
        log = server.log()

    good, contract, floor, again = loads
    assert good.status == 200, good.answer
    assert (good.answer["version"], good.answer["model_version"]) == ("2", "2.0.0")
    assert contract.status == 400 and "softmax missing" in contract.answer["error"]
    assert floor.status == 400 and "below the floor" in floor.answer["error"]
    assert again.status == 200 and "SIGHUP: reloading" in log
    assert [entry["version"] for entry in index] == ["3"]  # V2 versions are integers

    calls = traffic.calls
    failures = [call for call in calls if call.status != 200]
    assert failures == [], failures[:5]  # nothing dropped, refused or failed
    assert set(traffic.readiness) == {200} and len(traffic.readiness) > 20

    timeline = [(good, "2.0.0"), (again, "3.0.0")]
    by_version: dict[str, int] = {}
    for call in calls:
        assert call.version in allowed_versions(call, timeline, "1.0.0"), call
        assert call.probabilities is not None
        matches = [
            version
            for version in models
            if np.allclose(
                call.probabilities, expected[call.kind, version][call.image], rtol=1e-5, atol=1e-6
            )
        ]
        assert matches == [call.version], (call, matches)  # computed by that model alone
        by_version[call.version] = by_version.get(call.version, 0) + 1
    assert all(by_version.get(version, 0) >= 10 for version in models), by_version
    # While the refused files were checked, and between them, the good one served on.
    during_refusals = [
        call for call in calls if contract.started <= call.sent and call.done <= again.started
    ]
    assert len(during_refusals) >= 10
    assert {call.version for call in during_refusals} == {"2.0.0"}
    # Right after each switch was answered, every new request got the new model.
    for load, version in timeline:
        after = [call for call in calls if load.finished < call.sent < load.finished + PHASE_S]
        assert after and {call.version for call in after} == {version}
    seconds = ", ".join(f"{load.name} {load.finished - load.started:.2f} s" for load in loads)
    print(  # the figures for the README and reports (pytest -s)
        f"\nswap under traffic: {len(calls)} requests "
        f"({sum(call.kind == 'v2' for call in calls)} V2), 0 failed; by version {by_version}; "
        f"{len(during_refusals)} during the refused loads; loads: {seconds}; "
        f"{len(traffic.readiness)} readiness probes, all 200"
    )


def test_a_sighup_during_a_load_reloads_after_it(tmp_path: Path, shipped_model: Path) -> None:
    """A SIGHUP that met an upload being checked was refused as busy (a log line and a
    count) and dropped: the file it announced never served. It now reloads after the load,
    whichever of the two came first."""
    model_path = tmp_path / "model.onnx"
    shutil.copyfile(shipped_model, model_path)
    uploaded = variant(tmp_path / "v2.onnx", "2.0.0", 0.8, shipped_model)
    env = {"DIGITS_MODEL_PATH": str(model_path), "DIGITS_ADMIN_TOKEN": TOKEN}
    with running_service(env) as server:
        shutil.copyfile(variant(tmp_path / "v3.onnx", "3.0.0", 0.9, shipped_model), model_path)
        with ThreadPoolExecutor(1) as pool:
            load = pool.submit(upload, server, "good", uploaded)
            time.sleep(0.3)  # the upload is being checked: its child process alone takes longer
            server.process.send_signal(signal.SIGHUP)
            assert load.result().status in (200, 409)  # 409: the SIGHUP's reload came first
        deadline = time.monotonic() + SWITCH_TIMEOUT_S
        while served_version(server.url) != "3.0.0" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert served_version(server.url) == "3.0.0", server.log()[-2000:]


def test_a_sighup_while_starting_is_ignored_with_a_line(tiny_onnx: Path) -> None:
    """SIGHUP's default action ends a process: one sent while the service started (a
    reloader firing as a pod restarts) killed it with exit status 129 and no line. From
    main() on (its model check's child process shows it has begun) it is logged and ignored."""
    port = free_port()
    env = {
        **os.environ,
        **tiny_model_env(tiny_onnx),
        "DIGITS_HOST": "127.0.0.1",
        "DIGITS_PORT": str(port),
    }
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + SWITCH_TIMEOUT_S
            while not descendants(process.pid) and process.poll() is None:
                assert time.monotonic() < deadline, _tail(log)
                time.sleep(0.01)
            process.send_signal(signal.SIGHUP)  # during the model check, before uvicorn
            while not _ready(port) and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert process.poll() is None and _ready(port), _tail(log)
        finally:
            process.terminate()
            process.wait(SWITCH_TIMEOUT_S)
        said = _tail(log)
    assert "SIGHUP while the service is not serving: ignored" in said, said


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _tail(log: Any) -> str:
    log.seek(0)
    return str(log.read()[-4000:].decode(errors="replace"))
