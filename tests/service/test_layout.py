"""The layout's boundaries hold in the running processes: the server process loads no image
or model code, a worker process and the imaging package load no web or metrics code."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from service.predictor import pool_options
from service.settings import Settings
from service.workers.pool import WorkerPool
from tests.conftest import REPO_ROOT
from tests.service.images import draw_digit, png
from tests.service.import_probe import WEB_AND_METRICS

IMAGE_AND_MODEL = ("cv2", "onnxruntime", "PIL")

# The server process's whole life in one interpreter: the app, its lifespan (the workers
# start and open the model), a /predict with the PNG of what the model saw and why, a
# correction written to the feedback folder, a V2 inference.
SERVER = """
import sys, tempfile
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings

image = sys.stdin.buffer.read()
settings = Settings(
    model_path=sys.argv[1], preprocess_workers=1, feedback_dir=tempfile.mkdtemp()
)
with TestClient(create_app(settings)) as client:
    answer = client.post(
        "/predict?include_image=true&explain=true",
        content=image,
        headers={"Content-Type": "image/png"},
    )
    assert answer.status_code == 200 and answer.json()["normalized_image"], answer.text
    assert answer.json()["explanation"]["overlay"], answer.text
    correction = {"request_id": answer.headers["x-request-id"], "digit": 1}
    assert client.post("/feedback", json=correction).status_code == 201
    tensor = {"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [0] * 784}
    answer = client.post("/v2/models/tiny/infer", json={"inputs": [tensor]})
    assert answer.status_code == 200, answer.text
"""
# Which of the modules named after the first argument this interpreter has loaded.
LOADED = """
print(",".join(sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[2:]))))
"""


def _run(code: str, *args: str, stdin: bytes = b"") -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        input=stdin,
        capture_output=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().strip()


def test_the_server_process_loads_no_image_or_model_code(tiny_onnx: Path) -> None:
    assert _run(SERVER + LOADED, str(tiny_onnx), *IMAGE_AND_MODEL, stdin=png(draw_digit())) == ""


def test_a_worker_process_loads_no_web_or_metrics_code(tiny_onnx: Path) -> None:
    async def loaded() -> str:
        settings = pool_options(Settings(model_path=tiny_onnx))
        options = replace(settings, workers=1, steps="tests.service.import_probe:steps")
        pool = WorkerPool(options)
        await pool.start()
        try:
            results = await pool.classify(png(draw_digit()))
        finally:
            pool.close()
        return results.errors[0].message

    assert asyncio.run(loaded()) == "loaded: "


def test_the_imaging_package_loads_no_web_metrics_or_model_code() -> None:
    code = "import sys, service.imaging\n" + LOADED
    assert _run(code, "-", *WEB_AND_METRICS, "onnxruntime") == ""


def test_the_explanations_load_no_web_or_metrics_code() -> None:
    code = "import sys, service.explanations.occlusion, service.explanations.overlay\n" + LOADED
    assert _run(code, "-", *WEB_AND_METRICS, "onnxruntime") == ""


def test_every_module_is_small_and_the_top_level_is_short() -> None:
    modules = list((REPO_ROOT / "service").rglob("*.py"))
    long = {
        str(path.relative_to(REPO_ROOT)): n
        for path in modules
        if (n := len(path.read_text().splitlines())) > 300
    }
    assert long == {}
    assert len(list((REPO_ROOT / "service").glob("*.py"))) <= 12


def test_the_design_notes_name_every_imaging_module() -> None:
    """docs/design.md's module map is where a newcomer learns the pipeline's parts; it had
    left segments.py out."""
    design = (REPO_ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    entry = design.split("  imaging/      ", 1)[1].split("\n  model.py", 1)[0]
    named = set(re.findall(r"[a-z_]+", entry))
    modules = {path.stem for path in (REPO_ROOT / "service" / "imaging").glob("*.py")}
    assert modules - {"__init__"} - named == set()
