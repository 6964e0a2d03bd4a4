"""/docs (Swagger UI) and /redoc work on a machine without internet: every byte they load comes
from the service, and in Chromium, with every request off loopback aborted, they draw each
operation of the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.page.conftest import DESKTOP

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class OfflineTab:
    page: Any
    base_url: str
    left_loopback: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


@pytest.fixture
def offline(browser: Any, page_url: str) -> Iterator[OfflineTab]:
    """A tab whose requests to anything but loopback are aborted (and recorded)."""
    context = browser.new_context(viewport=DESKTOP)
    tab = OfflineTab(context.new_page(), page_url.rstrip("/"))

    def only_loopback(route: Any) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            tab.left_loopback.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_loopback)
    tab.page.on("pageerror", lambda error: tab.errors.append(str(error)))

    def console(message: Any) -> None:
        if message.type == "error":
            tab.console_errors.append(message.text)

    tab.page.on("console", console)
    tab.page.set_default_timeout(20_000)
    yield tab
    context.close()


def _operations(base_url: str) -> list[tuple[str, str]]:
    spec = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
    return sorted((method.upper(), path) for path, item in spec["paths"].items() for method in item)


@pytest.mark.slow
def test_swagger_ui_draws_every_operation_offline(offline: OfflineTab) -> None:
    operations = _operations(offline.base_url)
    assert ("POST", "/predict") in operations and len(operations) >= 10
    page = offline.page
    page.goto(f"{offline.base_url}/docs")
    page.wait_for_selector(".opblock")
    methods = page.locator(".opblock .opblock-summary-method").all_inner_texts()
    paths = page.locator(".opblock .opblock-summary-path").all_inner_texts()
    drawn = sorted(
        (method.strip().upper(), path.strip()) for method, path in zip(methods, paths, strict=True)
    )
    assert drawn == operations
    assert offline.left_loopback == [] and offline.errors == []


@pytest.mark.slow
def test_swagger_ui_try_it_out_reaches_the_service_offline(offline: OfflineTab) -> None:
    page = offline.page
    page.goto(f"{offline.base_url}/docs#/health")
    operation = page.locator(".opblock-get", has=page.locator('[data-path="/healthz"]'))
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    response = operation.locator(".live-responses-table tr.response").first
    response.wait_for()
    assert response.locator(".response-col_status").inner_text().strip() == "200"
    assert '"ok"' in response.locator(".microlight").first.inner_text()
    assert offline.left_loopback == [] and offline.errors == []


@pytest.mark.slow
def test_redoc_draws_every_operation_offline(offline: OfflineTab) -> None:
    operations = _operations(offline.base_url)
    page = offline.page
    page.goto(f"{offline.base_url}/redoc")
    page.wait_for_selector("h2")
    menu = page.locator("ul[role=menu] .operation-type")
    menu.first.wait_for(state="attached")
    assert menu.count() == len(operations)
    assert "Read the digit in one image" in page.locator("h2").all_inner_texts()
    assert offline.left_loopback == [] and offline.errors == []
    # Its bundle asked for its vendor's logo from a CDN: the policy blocked it, with an error.
    assert offline.console_errors == []


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_elsewhere(client: Any, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 200
    referenced = re.findall(r'(?:src|href)="([^"]+)"', answer.text)
    assert referenced and all(url.startswith("/docs/assets/") for url in referenced), referenced
    assert "https://" not in answer.text and "http://" not in answer.text
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "img-src 'self' data:" in policy
    for url in referenced:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url


@pytest.mark.parametrize("bundle", ["swagger-ui-bundle.js", "redoc.standalone.js"])
def test_docs_assets_are_revalidated_and_confined(client: Any, bundle: str) -> None:
    answer = client.get(f"/docs/assets/{bundle}")
    assert answer.headers["cache-control"] == "no-cache"
    assert answer.headers["content-type"].startswith("text/javascript")
    assert b"https://cdn." not in answer.content
    again = client.get(answer.url, headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304
    for path in ("/docs/assets/missing.js", "/docs/assets/..%2Fcore.py"):
        refused = client.get(path)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"


def test_docs_routes_are_not_in_the_api_schema(client: Any) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(path.startswith(("/docs", "/redoc")) for path in paths)
