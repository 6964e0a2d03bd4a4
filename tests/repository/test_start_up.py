"""Start-up checks the model as a load does: a file a load would refuse never serves.

Before, start-up only opened the file (its contract): an export without its softmax or an
untrained one served nonsense, and a rolling update to it went ready. Checked through
``model_problem``, which ``python -m service`` runs before it binds its port (exit 2 with
the reason: tests/service/test_model.py runs that path).
"""

from __future__ import annotations

from pathlib import Path

from service.__main__ import model_problem
from service.settings import Settings
from tests.repository.conftest import Files


def test_an_untrained_model_stops_start_up_at_the_accuracy_floor(files: Files) -> None:
    problem = model_problem(Settings(model_path=files.guessing))
    assert problem is not None
    assert "check digits" in problem and "(DIGITS_MODEL_MIN_ACCURACY)" in problem, problem


def test_a_model_without_its_softmax_stops_start_up(files: Files) -> None:
    problem = model_problem(Settings(model_path=files.logits))
    assert problem is not None and "softmax missing" in problem, problem


def test_the_operator_may_lower_the_floor_and_the_shipped_model_passes_it(
    files: Files, shipped_model: Path
) -> None:
    assert model_problem(Settings(model_path=files.guessing, model_min_accuracy=0.0)) is None
    assert model_problem(Settings(model_path=shipped_model)) is None


def test_a_shadow_is_only_opened_it_is_there_to_be_judged(
    files: Files, shipped_model: Path
) -> None:
    settings = Settings(model_path=shipped_model, shadow_model_path=files.guessing)
    assert model_problem(settings) is None
