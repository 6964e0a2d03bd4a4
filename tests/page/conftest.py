"""Headless Chromium (Debian package, driven by Playwright) against the real app on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.server import running_service
from tests.conftest import REPO_ROOT, require_binary

ARTIFACTS = REPO_ROOT / "test-artifacts"
# No GPU, no sandbox (containers, root), and nothing that reaches the internet.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="package")
def page_url(shipped_model: Path) -> Iterator[str]:
    """The drawing page of the app serving the shipped model, on a real uvicorn."""
    env = {"DIGITS_MODEL_PATH": str(shipped_model), "DIGITS_ACCESS_LOG": "false"}
    with running_service(env) as server:
        yield server.url + "/"


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Package-scoped: sync Playwright keeps an asyncio loop running in this thread until it
    closes, and later tests that call asyncio.run() must not find it."""
    executable = require_binary("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, page_url: str) -> Iterator[Any]:
    """A fresh desktop-sized page with the model information loaded."""
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    tab.goto(page_url)
    tab.wait_for_selector("#model-info .model-name")
    yield tab
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
