"""examples/make_examples.py draws exactly the committed example images (no downloads)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from tests.docs.examples import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"


def _generator() -> ModuleType:  # examples/ is no package: load the script as a module
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()


@pytest.mark.parametrize("name", sorted(GENERATOR.EXAMPLES))
def test_the_script_redraws_the_committed_image(name: str, tmp_path: Path) -> None:
    GENERATOR.EXAMPLES[name](tmp_path / name)
    committed = Image.open(EXAMPLES / name)
    redrawn = Image.open(tmp_path / name)
    assert (committed.mode, committed.size) == (redrawn.mode, redrawn.size)
    difference = np.abs(np.asarray(committed, np.int16) - np.asarray(redrawn, np.int16))
    # PNG pixels are exact; a JPEG decoder or encoder of another build may move a level.
    assert difference.max() <= (0 if name.endswith(".png") else 8), name
    assert difference.mean() <= (0 if name.endswith(".png") else 0.5), name


def test_every_example_is_in_the_folder_and_small() -> None:
    shipped = {path.name for path in EXAMPLES.iterdir() if path.suffix in {".png", ".jpg"}}
    assert shipped == set(GENERATOR.EXAMPLES)
    assert all((EXAMPLES / name).stat().st_size < 64_000 for name in shipped)


def test_the_canvas_export_is_ink_on_transparency() -> None:
    alpha = np.asarray(Image.open(EXAMPLES / "canvas.png"))[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255 and (alpha == 0).mean() > 0.8
