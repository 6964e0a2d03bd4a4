"""The page against answers that are not the service's usual ones (a proxy's 429, a captive
portal's 200, a model still loading), a window resized under a stroke, and a phone held
sideways: what a browser probe of the page found (2026-12-07)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.page.strokes import DIGITS
from tests.page.test_page import draw, ink_on_pad, shown_result

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (429, "application/json", '{"detail": "rate limit exceeded"}'),
        (429, "text/plain", "Too Many Requests"),
        (200, "text/html", "<html><body>Sign in to the Wi-Fi</body></html>"),
        (200, "application/json", '{"status": "ok"}'),
    ],
    ids=["429-json", "429-text", "200-portal", "200-not-a-prediction"],
)
def test_a_proxys_answer_is_not_blamed_on_the_image(
    page: Any, status: int, content_type: str, body: str
) -> None:
    """A 429 from a rate limiter, or a 200 that is no prediction, was "This image could not
    be read", with no way to send the drawing again."""
    page.route(
        "**/predict*",
        lambda route: route.fulfill(status=status, content_type=content_type, body=body),
    )
    draw(page, DIGITS[7])
    page.wait_for_selector('#result[data-state="error"]')
    assert "could not be read" not in page.inner_text("#error")
    assert page.locator("#try-again").count() == 1
    page.unroute("**/predict*")
    page.click("#try-again")
    assert shown_result(page)["digit"] == 7


def test_the_model_line_asks_again_while_the_model_loads(browser: Any, page_url: str) -> None:
    """A 503 not_ready at page load left "The model is loading. Try again shortly." in the
    header for the whole visit: nothing asked again."""
    context = browser.new_context()
    tab = context.new_page()
    answered = []

    def loading(route: Any) -> None:
        answered.append(route.request.url)
        body = '{"error": {"code": "not_ready", "message": "the model is loading"}}'
        route.fulfill(status=503, content_type="application/json", body=body)

    try:
        tab.route("**/model", loading, times=1)
        tab.goto(page_url)
        tab.wait_for_selector("#model-info:has-text('Model information unavailable')")
        tab.wait_for_selector("#model-info .model-name", timeout=15_000)
        assert len(answered) == 1
    finally:
        context.close()


def test_a_model_line_that_is_no_description_is_not_shown_as_one(
    browser: Any, page_url: str
) -> None:
    """A 200 with {} (a proxy's answer) showed "undefined vundefined" and was never asked
    again."""
    context = browser.new_context()
    tab = context.new_page()
    try:
        tab.route(
            "**/model",
            lambda route: route.fulfill(status=200, content_type="application/json", body="{}"),
        )
        tab.goto(page_url)
        tab.wait_for_selector("#model-info:has-text('Model information unavailable')")
        assert "undefined" not in tab.inner_text("#model-info")
    finally:
        context.close()


def test_a_stroke_goes_on_at_the_new_scale_when_the_window_is_resized(
    browser: Any, page_url: str
) -> None:
    """The pad's backing store was rescaled under a stroke, but not the stroke's points: its
    next segment started from the old scale's point, a stray hook (a 1 read as 4)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    try:
        tab.goto(page_url)
        tab.wait_for_selector("#model-info .model-name")
        box = tab.locator("#pad").bounding_box()
        x = box["x"] + 0.75 * box["width"]
        tab.mouse.move(x, box["y"] + 0.2 * box["height"])
        tab.mouse.down()
        tab.mouse.move(x, box["y"] + 0.5 * box["height"], steps=6)
        tab.set_viewport_size({"width": 1280, "height": 420})
        tab.wait_for_function("() => document.getElementById('pad').width < 390")
        box = tab.locator("#pad").bounding_box()
        x = box["x"] + 0.75 * box["width"]
        tab.mouse.move(x, box["y"] + 0.55 * box["height"], steps=1)  # not from the old place
        tab.mouse.move(x, box["y"] + 0.8 * box["height"], steps=6)
        tab.mouse.up()
        # Ink only along the stroke's column (three quarters across, the pen 7 % of the
        # side wide): a hook from the old scale's point reaches a fifth of the side aside.
        stray = tab.evaluate(
            """() => {
                const pad = document.getElementById('pad');
                const data = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;
                let stray = 0;
                for (let y = 0; y < pad.height; y += 1) {
                    for (let x = 0; x < pad.width; x += 1) {
                        const aside = Math.abs(x - 0.75 * pad.width) > 0.08 * pad.width;
                        if (aside && data[(y * pad.width + x) * 4] < 128) stray += 1;
                    }
                }
                return stray;
            }"""
        )
        assert ink_on_pad(tab) > 0 and stray == 0
    finally:
        context.close()


@pytest.mark.parametrize(
    "viewport",
    [(844, 390), (667, 375), (568, 320), (1024, 600), (800, 600)],
    ids=["844x390", "667x375", "568x320", "1024x600", "800x600"],
)
def test_a_phone_held_sideways_shows_the_whole_pad_and_its_buttons(
    browser: Any, page_url: str, viewport: tuple[int, int]
) -> None:
    """Sideways, the pad ran 75 px below the screen's edge and the buttons further; the pad
    takes touches for drawing, so it could not be scrolled by."""
    width, height = viewport
    phone = height < 500
    context = browser.new_context(
        viewport={"width": width, "height": height}, has_touch=phone, is_mobile=phone
    )
    tab = context.new_page()
    try:
        tab.goto(page_url)
        tab.wait_for_selector("#model-info .model-name")
        pad = tab.locator("#pad").bounding_box()
        clear = tab.locator("#clear").bounding_box()
        assert pad["y"] >= 0 and pad["y"] + pad["height"] <= height, pad
        assert clear["y"] + clear["height"] <= height, clear
        assert pad["width"] >= 130  # still a pad to draw on
    finally:
        context.close()
