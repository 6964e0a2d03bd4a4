"""The README is the operator's manual: it must keep up with the settings and the CI command."""

from __future__ import annotations

import re

from service.settings import Settings
from tests.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_configuration_table() -> None:
    prefix = Settings.model_config["env_prefix"]
    documented = set(re.findall(r"^\| `(DIGITS_[A-Z0-9_]+)` \|", README, flags=re.MULTILINE))
    expected = {f"{prefix}{name}".upper() for name in Settings.model_fields}
    assert expected - documented == set(), "settings missing from the README's table"
    assert documented - expected == set(), "README documents settings that do not exist"


def test_ci_runs_the_readme_test_command() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in quick_start.strip().splitlines()]
    assert commands == ["make serve", "make test"]
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, flags=re.MULTILINE), ".ci/run must run `make test`"


def test_no_placeholder_left() -> None:
    assert not re.search(r"\b[A-Z]+_(?:FIGURES|DURATION)\b|\bTODO\b|\bTBD\b", README)
