"""The page in Chromium with corrections on: draw, see why (the heat map over what the model
saw), correct the answer, see the confirmation; and a not_a_digit refusal that carries its
map. Screenshots of each step go to test-artifacts/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.server import running_service
from tests.page.conftest import DESKTOP
from tests.page.strokes import DIGITS
from tests.page.test_page import draw, shown_result

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corrections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("page-feedback") / "corrections"


@pytest.fixture(scope="module")
def feedback_url(shipped_model: Path, corrections: Path) -> Iterator[str]:
    env = {
        "DIGITS_MODEL_PATH": str(shipped_model),
        "DIGITS_ACCESS_LOG": "false",
        "DIGITS_FEEDBACK_DIR": str(corrections),
    }
    with running_service(env) as server:
        yield server.url + "/"


@pytest.fixture
def tab(browser: Any, feedback_url: str) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP, reduced_motion="reduce")
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(feedback_url)
    page.wait_for_selector("#model-info .model-name")
    yield page
    context.close()


def _loaded_size(page: Any, selector: str) -> list[int] | None:
    return page.eval_on_selector(
        selector, "img => img.complete ? [img.naturalWidth, img.naturalHeight] : null"
    )


def test_draw_see_why_correct_and_see_the_confirmation(
    tab: Any, corrections: Path, artifacts: Path
) -> None:
    with tab.expect_response(lambda r: "explain=true" in r.url) as asked:
        draw(tab, DIGITS[7])
    answer = asked.value.json()
    assert shown_result(tab)["digit"] == 7 == answer["digit"]
    tab.wait_for_selector("#why:not([hidden])")
    assert _loaded_size(tab, "#heatmap") == [28, 28]
    assert _loaded_size(tab, "#seen") == [28, 28]
    assert tab.get_attribute("#heatmap", "src").endswith(answer["explanation"]["overlay"])
    assert tab.inner_text("#why-digit") == "7"
    # The heat map shows warm pixels: the ink behind the answer.
    warm = tab.evaluate(
        """() => {
            const img = document.getElementById('heatmap');
            const canvas = document.createElement('canvas');
            canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
            const ctx = canvas.getContext('2d');
            ctx.drawImage(img, 0, 0);
            const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
            let warm = 0;
            for (let i = 0; i < data.length; i += 4) if (data[i] > 150 && data[i + 2] < 100) warm++;
            return warm;
        }"""
    )
    assert warm >= 10
    tab.wait_for_selector("#feedback:not([hidden])")
    assert tab.is_disabled("#feedback-choices .choice[data-digit='7']")  # what it said
    tab.screenshot(path=str(artifacts / "page-why-1280.png"), full_page=True)

    tab.click("#feedback-choices .choice[data-digit='8']")
    tab.wait_for_selector(".feedback-status.done")
    assert tab.inner_text("#feedback-status") == (
        "Thanks: recorded as an 8 for the next training run."  # it said "a 8"
    )
    assert tab.get_attribute(".choice[data-digit='8']", "aria-pressed") == "true"
    tab.screenshot(path=str(artifacts / "page-feedback-1280.png"), full_page=True)
    (line,) = (corrections / "index.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert (record["label"], record["predicted"]) == (8, 7)
    assert (corrections / record["image"]).is_file()

    tab.click("#clear")
    assert tab.is_hidden("#feedback") and tab.is_hidden("#why")


def test_a_not_a_digit_answer_shows_its_map_and_can_be_corrected(tab: Any, artifacts: Path) -> None:
    with tab.expect_response(lambda r: "explain=true" in r.url) as asked:
        draw(tab, DIGITS[7])
    real = asked.value.json()
    shown_result(tab)
    refusal = {
        "error": {"code": "not_a_digit", "message": "not a digit: best guess 7, unsure"},
        "normalized_image": real["normalized_image"],
        "explanation": real["explanation"],
    }
    tab.route(
        "**/predict?*explain=true*",
        lambda route: route.fulfill(
            status=422,
            content_type="application/json",
            headers={"X-Request-ID": "mocked-refusal"},
            body=json.dumps(refusal),
        ),
    )
    tab.click("#clear")
    draw(tab, DIGITS[7])
    tab.wait_for_selector('#result[data-state="error"]')
    assert "That doesn't look like a digit" in tab.inner_text("#error")
    tab.wait_for_selector("#why:not([hidden])")
    assert _loaded_size(tab, "#heatmap") == [28, 28]
    assert tab.is_visible("#seen") and tab.is_visible("#feedback")
    assert tab.is_disabled(".choice[data-digit='']")  # "not a digit" is what it said
    tab.screenshot(path=str(artifacts / "page-not-a-digit-1280.png"), full_page=True)
    tab.click(".choice[data-digit='4']")
    # The refusal was mocked: the service never gave it, and says so, in words for a person
    # (the service's message named the request id and the window in seconds).
    tab.wait_for_selector("#feedback-status:not(:empty)")
    assert "can no longer be corrected" in tab.inner_text("#feedback-status")
    assert all(button.is_disabled() for button in tab.locator(".choice").all())


def test_a_second_choice_waits_for_the_first_correction(tab: Any) -> None:
    """Two choices in quick succession: the first was recorded, then the second's 409 put
    "already corrected" with a request id over the thanks."""
    draw(tab, DIGITS[7])
    shown_result(tab)
    tab.wait_for_selector("#feedback:not([hidden])")
    # From the keyboard, the focused choice is outlined (it was only hover's border colour).
    tab.locator(".choice[data-digit='2']").focus()
    tab.keyboard.press("Shift+Tab")
    tab.keyboard.press("Tab")
    outline = tab.eval_on_selector(".choice:focus-visible", "b => getComputedStyle(b).outlineStyle")
    assert outline == "solid"
    held: list[Any] = []
    tab.route("**/feedback", lambda route: held.append(route))
    tab.click("#feedback-choices .choice[data-digit='1']")
    tab.wait_for_function("() => document.querySelectorAll('.choice:not(:disabled)').length === 0")
    assert len(held) == 1
    held[0].continue_()
    tab.wait_for_selector(".feedback-status.done")
    assert tab.inner_text("#feedback-status").startswith("Thanks: recorded as a 1")


def test_a_choice_made_from_the_keyboard_keeps_the_focus_near(tab: Any) -> None:
    """Enter on a choice disabled it, and the focus fell to the page's start: the next Tab
    went to the top of the page."""
    draw(tab, DIGITS[7])
    shown_result(tab)
    tab.wait_for_selector("#feedback:not([hidden])")
    tab.locator(".choice[data-digit='1']").focus()
    tab.keyboard.press("Enter")
    tab.wait_for_selector(".feedback-status.done")
    assert tab.evaluate("document.activeElement.id") == "feedback-status"


def test_without_feedback_the_page_offers_no_correction(page: Any) -> None:
    draw(page, DIGITS[1])
    shown_result(page)
    page.wait_for_selector("#why:not([hidden])")  # explanations need no setting
    assert page.is_hidden("#feedback")
