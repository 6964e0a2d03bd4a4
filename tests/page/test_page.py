"""The drawing page in a real browser: draw, upload, errors, keyboard, two widths."""

from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.conftest import REPO_ROOT
from tests.page.conftest import DESKTOP, PHONE
from tests.page.strokes import DIGITS, Stroke

pytestmark = pytest.mark.slow
MOVE_STEPS = 2  # intermediate pointer events per segment, as a real mouse sends them


def draw(page: Any, strokes: list[Stroke]) -> None:
    """Press, move and release the mouse along each stroke, like a person drawing."""
    box = page.locator("#pad").bounding_box()

    def at(point: tuple[float, float]) -> tuple[float, float]:
        return box["x"] + point[0] * box["width"], box["y"] + point[1] * box["height"]

    for stroke in strokes:
        page.mouse.move(*at(stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*at(point), steps=MOVE_STEPS)
        page.mouse.up()


def shown_result(page: Any) -> dict[str, Any]:
    """The answer on screen once the request for the finished drawing has come back."""
    page.wait_for_selector('#result[data-state="done"]')
    values = [
        float(text.rstrip("%")) / 100 for text in page.locator(".bar-value").all_inner_texts()
    ]
    return {
        "digit": int(page.inner_text("#digit")),
        "probabilities": values,
        "best_bar": int(page.inner_text(".bar.best .bar-label")),
        "announce": page.inner_text("#announce"),
        "seen_size": page.eval_on_selector(
            "#seen", "img => img.hidden ? null : [img.naturalWidth, img.naturalHeight]"
        ),
    }


def ink_on_pad(page: Any) -> int:
    return page.evaluate(
        """() => {
            const pad = document.getElementById('pad');
            const data = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;
            let dark = 0;
            for (let i = 0; i < data.length; i += 4) if (data[i] < 128) dark += 1;
            return dark;
        }"""
    )


def mnist_samples(mnist_dir: Path, count: int) -> list[tuple[np.ndarray, int]]:
    def read(name: str, offset: int) -> np.ndarray:
        return np.frombuffer(gzip.open(mnist_dir / f"{name}.gz").read(), np.uint8, offset=offset)

    images = read("t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28)
    labels = read("t10k-labels-idx1-ubyte", 8)
    return [(images[index], int(labels[index])) for index in range(count)]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("digit", sorted(DIGITS))
def test_a_drawn_digit_is_read(page: Any, digit: int) -> None:
    draw(page, DIGITS[digit])
    result = shown_result(page)
    assert result["digit"] == digit
    assert result["best_bar"] == digit
    assert sum(result["probabilities"]) == pytest.approx(1.0, abs=0.01)
    assert result["seen_size"] == [28, 28]  # the normalised input, decoded by the browser
    assert f"Predicted digit {digit}" in result["announce"]


def test_clear_resets_the_pad_and_the_answer(page: Any) -> None:
    draw(page, DIGITS[7])
    shown_result(page)
    page.click("#clear")
    assert page.inner_text("#digit") == "?"
    assert page.get_attribute("#result", "data-state") == "idle"
    assert page.is_hidden("#seen")
    assert ink_on_pad(page) == 0


def test_an_uploaded_file_is_read(page: Any, mnist_dir: Path, tmp_path: Path) -> None:
    for index, (pixels, label) in enumerate(mnist_samples(mnist_dir, 3)):
        # As a person would photograph or scan it: dark ink on light paper, larger than 28 px.
        image = Image.fromarray(255 - pixels).resize((112, 112), Image.Resampling.BILINEAR)
        path = tmp_path / f"digit-{index}.png"
        path.write_bytes(png_bytes(image))
        page.set_input_files("#file", str(path))
        result = shown_result(page)
        assert result["digit"] == label, path.name
        assert result["seen_size"] == [28, 28]
        assert path.name in page.inner_text("#pad-hint")


def test_a_dropped_file_is_read(page: Any, mnist_dir: Path) -> None:
    pixels, label = mnist_samples(mnist_dir, 1)[0]
    data = list(png_bytes(Image.fromarray(255 - pixels)))
    page.evaluate(
        """(bytes) => {
            const file = new File([new Uint8Array(bytes)], 'dropped.png', {type: 'image/png'});
            const transfer = new DataTransfer();
            transfer.items.add(file);
            const zone = document.getElementById('drop-zone');
            for (const type of ['dragenter', 'dragover', 'drop']) {
                zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true,
                                                        cancelable: true}));
            }
        }""",
        data,
    )
    assert shown_result(page)["digit"] == label


def test_a_non_image_is_refused_kindly(page: Any, tmp_path: Path, artifacts: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a picture of a digit")
    page.set_input_files("#file", str(path))
    page.wait_for_selector('#result[data-state="error"]')
    alert = page.locator("#error[role=alert]")
    assert alert.is_visible()
    assert "could not be read" in alert.inner_text()
    assert "Cannot identify an image" in alert.inner_text()  # the API's error.message, a sentence
    assert page.inner_text("#digit") == "?"
    page.screenshot(path=str(artifacts / "page-error-1280.png"), full_page=True)


def test_a_blank_drawing_is_never_sent(page: Any) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.click("#clear")
    page.wait_for_timeout(1000)  # over three times the pause before a drawing is sent
    assert not [url for url in requests if "/predict" in url]


BUSY = {"error": {"code": "overloaded", "message": "the inference queue is full (1024)"}}


def answer_every_prediction_busy(page: Any) -> None:
    page.route(
        "**/predict*",
        lambda route: route.fulfill(
            status=503, content_type="application/json", body=json.dumps(BUSY)
        ),
    )


def test_server_errors_show_the_api_message(page: Any) -> None:
    answer_every_prediction_busy(page)
    draw(page, DIGITS[1])
    page.wait_for_selector('#result[data-state="error"]')
    text = page.inner_text("#error")
    assert "busy" in text and "The inference queue is full (1024)." in text


def test_a_drawing_that_is_not_a_digit_is_refused_plainly(page: Any) -> None:
    """Eight separate dabs on the real model: the service answers not_a_digit, the page says
    so in plain words and shows no digit."""
    dabs = [[(x, y), (x + 0.02, y + 0.02)] for x in (0.25, 0.5, 0.75) for y in (0.25, 0.75)]
    draw(page, [*dabs, [(0.25, 0.5), (0.27, 0.52)], [(0.75, 0.5), (0.77, 0.52)]])
    page.wait_for_selector('#result[data-state="error"]')
    text = page.inner_text("#error")
    assert text.startswith("That doesn't look like a digit")
    assert "separate pieces" in text and "best guess is" in text
    assert page.inner_text("#digit") == "?"


def test_a_network_failure_is_explained(page: Any) -> None:
    page.route("**/predict*", lambda route: route.abort("connectionrefused"))
    draw(page, DIGITS[1])
    page.wait_for_selector('#result[data-state="error"]')
    assert "Cannot reach the digits service" in page.inner_text("#error")


def test_model_name_version_and_accuracy_come_from_the_api(page: Any, page_url: str) -> None:
    model = httpx.get(page_url + "model").json()
    assert page.inner_text(".model-name") == f"{model['name']} v{model['version']}"
    accuracy = page.inner_text(".model-accuracy")
    if model["test_accuracy"] is None:
        assert accuracy == "test accuracy not recorded"
    else:
        assert accuracy == f"test accuracy {model['test_accuracy'] * 100:.2f}%"


def test_buttons_work_from_the_keyboard(page: Any, mnist_dir: Path, tmp_path: Path) -> None:
    # Playwright switches on file-chooser interception without waiting for Chromium to
    # confirm; listening from the start makes sure it is on before Enter is pressed.
    page.on("filechooser", lambda chooser: None)
    draw(page, DIGITS[7])
    shown_result(page)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "clear"
    page.keyboard.press("Enter")
    assert page.inner_text("#digit") == "?"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "upload"
    pixels, label = mnist_samples(mnist_dir, 1)[0]
    path = tmp_path / "keyboard.png"
    path.write_bytes(png_bytes(Image.fromarray(pixels)))  # white on black, MNIST's own way
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(str(path))
    assert shown_result(page)["digit"] == label


def test_the_page_is_self_contained(page: Any, page_url: str) -> None:
    """Everything the page loads comes from the app: it must work with no internet."""
    loaded: list[str] = []
    page.on("request", lambda request: loaded.append(request.url))
    page.reload()
    page.wait_for_selector("#model-info .model-name")
    assert loaded and all(url.startswith(page_url) for url in loaded), loaded
    answer = httpx.get(page_url)
    assert "default-src 'self'" in answer.headers["content-security-policy"]


@pytest.mark.parametrize(("name", "viewport"), [("phone", PHONE), ("desktop", DESKTOP)])
def test_screenshots_at_phone_and_desktop_widths(
    browser: Any, page_url: str, artifacts: Path, name: str, viewport: dict[str, int]
) -> None:
    # Reduced motion: the bars are drawn at their final length, not mid-animation.
    context = browser.new_context(viewport=viewport, device_scale_factor=2, reduced_motion="reduce")
    page = context.new_page()
    try:
        page.goto(page_url)
        page.wait_for_selector("#model-info .model-name")
        pad = page.locator("#pad").bounding_box()
        assert pad["width"] >= min(300, viewport["width"] - 60)  # big enough to draw on
        draw(page, DIGITS[3])
        assert shown_result(page)["digit"] == 3
        # Nothing sticks out sideways: no horizontal scrolling on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        path = artifacts / f"page-{viewport['width']}.png"
        page.screenshot(path=str(path), full_page=True)
        assert re.match(rb"\x89PNG", path.read_bytes()[:4])
    finally:
        context.close()


def test_a_finger_draws_on_a_phone(browser: Any, page_url: str) -> None:
    """Touch input (pointer events of type touch) draws, and does not scroll the page."""
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    page = context.new_page()
    try:
        page.goto(page_url)
        page.wait_for_selector("#model-info .model-name")
        page.evaluate("window.scrollTo(0, 0)")
        box = page.locator("#pad").bounding_box()
        cdp = context.new_cdp_session(page)

        def touch(kind: str, point: tuple[float, float] | None) -> None:
            points = []
            if point is not None:
                points = [
                    {
                        "x": box["x"] + point[0] * box["width"],
                        "y": box["y"] + point[1] * box["height"],
                    }
                ]
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        (stroke,) = DIGITS[7]
        touch("touchStart", stroke[0])
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:], strict=False):
            for step in range(1, 9):
                touch("touchMove", (x0 + (x1 - x0) * step / 8, y0 + (y1 - y0) * step / 8))
        touch("touchEnd", None)
        assert shown_result(page)["digit"] == 7
        assert page.evaluate("window.scrollY") == 0
        assert page.inner_text("#quick-result").startswith("Reads as 7")
    finally:
        context.close()


def draw_slowly_until_answered(page: Any, stroke: Stroke) -> None:
    """One stroke with pauses, as a person draws, held down until a live answer shows."""
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + stroke[0][0] * box["width"], box["y"] + stroke[0][1] * box["height"])
    page.mouse.down()
    for x, y in stroke[1:]:
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=2)
        page.wait_for_timeout(50)
    page.wait_for_function("document.getElementById('digit').textContent !== '?'")


def test_the_answer_updates_while_drawing(page: Any) -> None:
    """Before the mouse is released, the page has already asked about the drawing so far."""
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    draw_slowly_until_answered(page, DIGITS[0][0])
    assert any("/predict" in url for url in asked)
    page.mouse.up()
    assert shown_result(page)["digit"] == 0


def test_a_passing_failure_is_tried_again_without_losing_the_drawing(page: Any) -> None:
    """A busy service answered the drawing 503; the only way on was Clear, losing it."""
    answer_every_prediction_busy(page)
    draw(page, DIGITS[7])
    page.wait_for_selector('#result[data-state="error"]')
    assert "full (1024). Try again in a moment." in page.inner_text("#error")
    assert page.inner_text("#quick-result") == "The service is busy"
    drawn = ink_on_pad(page)
    page.unroute("**/predict*")
    page.click("#try-again")
    assert shown_result(page)["digit"] == 7
    assert ink_on_pad(page) == drawn > 0


def test_a_refusal_of_the_image_itself_offers_no_retry(page: Any) -> None:
    dabs = [[(x, y), (x + 0.02, y + 0.02)] for x in (0.25, 0.5, 0.75) for y in (0.25, 0.75)]
    draw(page, [*dabs, [(0.25, 0.5), (0.27, 0.52)], [(0.75, 0.5), (0.77, 0.52)]])
    page.wait_for_selector('#result[data-state="error"]')
    assert page.locator("#try-again").count() == 0
    # No answer: the bars say so, rather than ten times 0.0 % beside "the best guess is ...".
    assert set(page.locator(".bar-value").all_inner_texts()) == {"–"}
    assert "The service reads one digit, 0 to 9. " in page.inner_text("#error")


def test_an_answer_on_its_way_shows_reading_and_one_that_never_comes_is_reported(
    browser: Any, page_url: str
) -> None:
    """A slow answer looked like nothing had happened ("Draw something to start"), and a
    request that never answered left the page so for good."""
    context = browser.new_context(viewport=DESKTOP)
    try:
        tab = context.new_page()
        tab.clock.install()
        tab.goto(page_url)
        tab.wait_for_selector("#model-info .model-name")
        tab.route("**/predict*", lambda route: None)  # held: never answered
        draw(tab, DIGITS[1])
        tab.clock.run_for(1_000)
        assert tab.get_attribute("#result", "data-state") == "pending"
        assert tab.inner_text("#confidence") == "Reading…"
        tab.clock.run_for(20_000)
        tab.wait_for_selector('#result[data-state="error"]')
        assert "did not answer within 20 seconds" in tab.inner_text("#error")
        assert tab.locator("#try-again").is_visible()
    finally:
        context.close()


def test_a_low_confidence_answer_says_it_is_unsure(page: Any) -> None:
    """The house of examples/ read as 6 at 63 % was shown exactly like a 100 % answer."""
    page.set_input_files("#file", str(REPO_ROOT / "examples" / "not-a-digit.png"))
    page.wait_for_selector('#result[data-state="done"]')
    confidence = page.inner_text("#confidence")
    assert confidence.endswith("confident: unsure, it may not be a digit"), confidence
    assert "Unsure." in page.inner_text("#announce")
    page.set_input_files("#file", str(REPO_ROOT / "examples" / "digit.png"))
    expect(page.locator("#digit")).to_have_text("3")
    assert page.inner_text("#confidence").endswith("% confident")


def test_only_the_finished_drawing_is_announced(page: Any) -> None:
    """A screen reader heard seven guesses while a 3 was drawn (the live answers)."""
    page.evaluate(
        """() => {
            window.announced = [];
            const node = document.getElementById('announce');
            new MutationObserver(() => window.announced.push(node.textContent))
                .observe(node, {childList: true, characterData: true, subtree: true});
        }"""
    )
    draw_slowly_until_answered(page, DIGITS[3][0])
    page.mouse.up()
    assert shown_result(page)["digit"] == 3
    announced = [text for text in page.evaluate("window.announced") if text]
    assert len(announced) == 1 and announced[0].startswith("Predicted digit 3"), announced


def test_a_confidence_near_certainty_is_not_rounded_up_to_it(page: Any, page_url: str) -> None:
    """examples/digit.png, answered 0.99968, was shown "100.0% confident": a certainty the
    calibrated model does not claim, and not what the CLI shows (99.97%)."""
    path = REPO_ROOT / "examples" / "digit.png"
    answer = httpx.post(
        page_url + "predict", content=path.read_bytes(), headers={"Content-Type": "image/png"}
    ).json()
    assert 0.99 <= answer["confidence"] < 1
    shown = f"{min(round(answer['confidence'] * 10000), 9999) / 100:.2f}%"
    page.set_input_files("#file", str(path))
    expect(page.locator("#confidence")).to_have_text(f"{shown} confident")
    assert page.inner_text(".bar.best .bar-value") == shown != "100.00%"


def test_a_blank_image_is_called_blank(page: Any, tmp_path: Path) -> None:
    """A white page was titled "This image could not be read", though it was read."""
    path = tmp_path / "white.png"
    path.write_bytes(png_bytes(Image.new("L", (200, 200), 255)))
    page.set_input_files("#file", str(path))
    page.wait_for_selector('#result[data-state="error"]')
    assert page.inner_text("#error").startswith("Nothing to read here")


def test_try_again_from_the_keyboard_keeps_the_focus(page: Any) -> None:
    """The button went away while the image was sent again, and the focus with it, to the
    start of the page: the next Tab led to the footer."""
    answer_every_prediction_busy(page)
    draw(page, DIGITS[7])
    page.wait_for_selector('#result[data-state="error"]')
    page.focus("#try-again")
    page.keyboard.press("Enter")
    page.wait_for_selector('#result[data-state="error"]')  # the service still busy
    expect(page.locator("#try-again")).to_be_focused()  # the new one
    page.unroute("**/predict*")
    page.keyboard.press("Enter")
    assert shown_result(page)["digit"] == 7
    assert page.evaluate("document.activeElement.id") == "result"


def test_a_stroke_begun_off_the_pad_draws_from_where_it_comes_on(page: Any) -> None:
    box = page.locator("#pad").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] - 20, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, y, steps=10)
    page.mouse.up()
    assert ink_on_pad(page) > 0
