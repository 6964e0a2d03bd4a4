"""Accuracy through the API on digits rendered the way people send them, and on non-digits.

MNIST test digits drawn black on white, enlarged and off-centre, as PNG and JPEG, must score
within 0.3 points of the shipped model's offline accuracy on the same digits. A digit answered
not_a_digit counts as wrong, and refusals of right answers may cost at most 0.3 points on
each set. Issue 16 asked for 97.5 % on scikit-learn's 8x8 digits (other writers) and 95 % of
held-out non-digits (nondigit_images.py) answered not_a_digit; the shipped model measures
96.66 % and 92.6 % (README, "Images that are not digits"), so the bounds below hold it there: a
retrained model may not fall back, and reaching the issue's figures is still open.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw, ImageOps

from tests.conftest import require_fonts
from tests.service.conftest import CHUNK, SEED, served_answers
from tests.service.images import encode, pixel_font_digit, png
from tests.service.nondigit_images import (
    FONT_FILES,
    glyph_images,
    held_out_fonts,
    nondigit_set,
    open_fonts,
)
from training.calibrate import expected_calibration_error

MAX_DROP_POINTS = 0.3
MAX_LOST_POINTS = 0.3  # right answers refused as not_a_digit, in accuracy points
UNDERLINED_MIN_ACCURACY = 0.95  # a pen's underline under the digit, narrower than it
SKLEARN_MIN_ACCURACY = 0.955  # issue 16's goal: 0.975
SKLEARN_MAX_ECE = 0.025  # the goal: 0.015, as on MNIST test (tests/training)
NONDIGIT_MIN_REFUSED = 0.92  # issue 16's goal: 0.95
# Letters written with a pen (nondigit_images.pen_letters): 0.744 before training drew any
# (docs/performance.md, "Issue 16, eighteenth round"); the shipped model refuses 0.850.
HANDWRITING_MIN_REFUSED = 0.80
PRINTED_MIN_ACCURACY = 0.96  # the goal: every one; a recipe of round 4 reached 0.992
INK_LEVEL = 30  # of MNIST's 0..255 white ink: fainter is the pen's anti-aliased edge


def as_user_would_send(digit: np.ndarray, fmt: str, rng: np.random.Generator) -> bytes:
    """Black on white, enlarged 3-8x, somewhere on a larger sheet, PNG or JPEG."""
    scale = int(rng.integers(3, 9))
    side = 28 * scale
    enlarged = Image.fromarray(255 - digit).resize((side, side), Image.Resampling.BILINEAR)
    width, height = (int(side * rng.uniform(1.2, 2.0)) for _ in range(2))
    sheet = Image.new("L", (width, height), 255)
    sheet.paste(
        enlarged, (int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1)))
    )
    buffer = io.BytesIO()
    sheet.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_mnist_as_users_send_it_matches_offline_accuracy(
    accuracy_client: TestClient, shipped_model: Path, mnist_sample: tuple, fmt: str
) -> None:
    images, labels = mnist_sample
    session = ort.InferenceSession(str(shipped_model), providers=["CPUExecutionProvider"])
    batch = (images[:, np.newaxis] / np.float32(255)).astype(np.float32)
    offline = float((session.run(None, {"image": batch})[0].argmax(axis=1) == labels).mean())
    rng = np.random.default_rng(SEED)
    rendered = [as_user_would_send(digit, fmt, rng) for digit in images]
    answers = served_answers(accuracy_client, rendered)
    served = float((answers.digits == labels).mean())
    assert served >= offline - MAX_DROP_POINTS / 100, (
        f"{fmt}: served {served:.4f} vs offline {offline:.4f}"
    )
    assert answers.lost_points(labels) <= MAX_LOST_POINTS


def cropped_close(digit: np.ndarray, margin: int, scale: int = 4) -> Image.Image:
    """The digit cut out of its 28x28 image ``margin`` pixels round its ink, as a client
    that finds each digit on a page and crops it sends it: black on white, enlarged."""
    rows, cols = np.nonzero(digit > INK_LEVEL)
    top, left = max(rows.min() - margin, 0), max(cols.min() - margin, 0)
    crop = 255 - digit[top : rows.max() + 1 + margin, left : cols.max() + 1 + margin]
    height, width = crop.shape
    return Image.fromarray(crop).resize((width * scale, height * scale), Image.BILINEAR)


@pytest.mark.parametrize("polarity", ["black on white", "white on black"])
def test_digits_cropped_close_read_as_on_the_whole_sheet(
    accuracy_client: TestClient, mnist_sample: tuple, polarity: str
) -> None:
    """A 1 cropped two pixels round its ink fills most of a narrow image, a bold stroke
    with a darker core: it was cut out as a sticky note and read from its outline (98.9 %
    of MNIST test digits so cropped were read, 11 of 3,000 misses were such 1s)."""
    images, labels = mnist_sample
    rendered = []
    for digit in images:
        crop = cropped_close(digit, margin=2)
        rendered.append(png(crop if polarity == "black on white" else ImageOps.invert(crop)))
    cropped = served_answers(accuracy_client, rendered).digits
    whole = served_answers(
        accuracy_client, [png(Image.fromarray(255 - digit).resize((112, 112))) for digit in images]
    ).digits
    read, read_whole = (cropped == labels).mean(), (whole == labels).mean()
    assert read >= read_whole - MAX_DROP_POINTS / 100, f"cropped {read:.4f}, whole {read_whole:.4f}"
    ones = labels == 1
    ones_read, ones_whole = (cropped[ones] == 1).mean(), (whole[ones] == 1).mean()
    assert ones_read >= ones_whole - MAX_DROP_POINTS / 100, f"1s: {ones_read:.4f}, {ones_whole:.4f}"


@pytest.mark.parametrize("polarity", ["black on white", "white on black"])
def test_a_1_cut_at_its_inks_box_is_read(
    accuracy_client: TestClient, mnist_sample: tuple, polarity: str
) -> None:
    """Cut at the ink's bounding box, as a form reader's segmentation cuts it, a 1 is
    stroke on every side, with paper only in the corners the box left over: 12 % of MNIST
    test's 1s so cut were answered no_ink (docs/performance.md, "A 1 cropped to its ink")."""
    images, labels = mnist_sample
    ones = [digit for digit, label in zip(images, labels, strict=True) if label == 1]
    rendered = []
    for digit in ones:
        crop = cropped_close(digit, margin=0)
        rendered.append(png(crop if polarity == "black on white" else ImageOps.invert(crop)))
    read = []
    for start in range(0, len(rendered), CHUNK):
        chunk = rendered[start : start + CHUNK]
        files = [("files", (f"{i}", data, "image/png")) for i, data in enumerate(chunk)]
        response = accuracy_client.post("/predict/batch", files=files)
        assert response.status_code == 200, response.text
        read += [entry.get("digit") == 1 for entry in response.json()["predictions"]]
    assert len(read) == len(ones) > 50
    assert sum(read) >= 0.97 * len(ones), f"{sum(read)} of {len(ones)} 1s read"


def test_digits_saved_as_dithered_one_bit_images_read_as_the_grey_ones(
    accuracy_client: TestClient, mnist_sample: tuple
) -> None:
    """A fax or a scanner's black-and-white mode dithers a stroke's soft grey edge into
    single black and white pixels. Each was a piece of ink: beside them the strokes looked
    like a finger cut by the frame, or the ink came in too many pieces (the first 1,000
    MNIST test digits enlarged to 56 or 112 pixels and so saved: 98.0 and 98.5 % read, 8 and
    5 refused; this sample at 56 pixels 98.3 % against 99.5 % grey)."""
    images, labels = mnist_sample
    for side in (56, 112):
        grey = [
            Image.fromarray(255 - digit).resize((side, side), Image.BILINEAR) for digit in images
        ]
        one_bit = served_answers(accuracy_client, [png(image.convert("1")) for image in grey])
        as_grey = served_answers(accuracy_client, [png(image) for image in grey])
        read, read_grey = (one_bit.digits == labels).mean(), (as_grey.digits == labels).mean()
        assert read >= read_grey - MAX_DROP_POINTS / 100, (
            f"{side}: {read:.4f}, grey {read_grey:.4f}"
        )
        assert one_bit.lost_points(labels) <= MAX_LOST_POINTS


def test_digits_saved_with_their_paper_transparent_read_as_the_grey_ones(
    accuracy_client: TestClient, mnist_sample: tuple
) -> None:
    """A GIF's transparency or a PNG-8's tRNS key makes the white paper transparent and keeps
    the strokes' anti-aliased fringe opaque. Taken for strokes drawn through alpha, a thin
    digit's light fringe outweighed its core and the paper was put back black (the first
    1,000 MNIST test digits at 200 pixels: 90.0 % read as GIF, 85.8 % as PNG-8, 99.1 % grey;
    this sample at 112 pixels as GIF 90.6 % against 99.6 % grey)."""
    images, labels = mnist_sample
    grey = [Image.fromarray(255 - digit).resize((112, 112), Image.BILINEAR) for digit in images]
    read_grey = served_answers(accuracy_client, [png(image) for image in grey]).digits == labels
    keyed = {
        "GIF": [encode(image, "GIF", transparency=255) for image in grey],
        "PNG-8": [encode(image.convert("P"), "PNG", transparency=255) for image in grey],
    }
    for kind, sent in keyed.items():
        answers = served_answers(accuracy_client, sent)
        read = (answers.digits == labels).mean()
        assert read >= read_grey.mean() - MAX_DROP_POINTS / 100, f"{kind}: {read:.4f}"
        assert answers.lost_points(labels) <= MAX_LOST_POINTS


@pytest.mark.parametrize("plate", [(0, 0, 0), (30, 80, 200), (255, 255, 255)])
def test_digits_cut_out_of_a_plate_read_as_the_grey_ones(
    accuracy_client: TestClient, mnist_sample: tuple, plate: tuple[int, int, int]
) -> None:
    """A stencil or a knockout: an opaque plate with the digit cut out inside it,
    transparent. Its transparency took the plate's colour (opaque pixels were taken for
    paper), and every one was refused as no_ink on a black or a blue plate. Behind the
    holes is now a colour against the plate's, as a viewer shows them. (Holes that reach
    the frame are taken for transparent paper: a few MNIST digits touch their frame, so
    each sits in a margin of plate.)"""
    images, labels = mnist_sample
    grey = [Image.fromarray(255 - digit).resize((112, 112), Image.BILINEAR) for digit in images]
    read_grey = served_answers(accuracy_client, [png(image) for image in grey]).digits == labels
    stencils = []
    for image in grey:
        rgba = np.empty((128, 128, 4), np.uint8)
        rgba[..., :3] = plate
        rgba[..., 3] = np.pad(np.asarray(image), 8, constant_values=255)  # ink: cut away
        stencils.append(png(Image.fromarray(rgba, mode="RGBA")))
    answers = served_answers(accuracy_client, stencils)
    read = (answers.digits == labels).mean()
    assert read >= read_grey.mean() - MAX_DROP_POINTS / 100, f"{plate}: {read:.4f}"
    assert answers.lost_points(labels) <= MAX_LOST_POINTS


def test_sklearn_digits_by_other_writers(accuracy_client: TestClient) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rendered = []
    for image in digits.images:  # 8x8, 0..16, white ink on black
        pixels = (255 - image * (255 / 16)).astype(np.uint8)
        enlarged = Image.fromarray(pixels).resize((96, 96), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        enlarged.save(buffer, format="PNG")
        rendered.append(buffer.getvalue())
    answers = served_answers(accuracy_client, rendered)
    accuracy = float((answers.digits == digits.target).mean())
    assert accuracy >= SKLEARN_MIN_ACCURACY, f"sklearn digits: {accuracy:.4f}"
    assert answers.lost_points(digits.target) <= MAX_LOST_POINTS
    # Calibrated for other writers too: among answers at confidence p, about p are right.
    answered = answers.digits != -1
    ece = expected_calibration_error(answers.probabilities[answered], digits.target[answered])
    assert ece <= SKLEARN_MAX_ECE, f"sklearn digits: ECE {ece:.4f}"


def test_small_digits_enlarged_by_repeating_pixels(accuracy_client: TestClient) -> None:
    """A pixel font's digits and scikit-learn's 8x8 digits, saved enlarged by whole pixels
    (as a pixel-art editor or a browser's "pixelated" scaling saves them). Read from their
    blocks, three of the font's 40 were refused and the 8x8 digits read 1.1 points worse
    than sent small; each small image is now read as its own source."""
    from sklearn.datasets import load_digits

    images, labels = [], []
    for digit in range(10):
        sheet = pixel_font_digit(digit)
        for factor in (4, 8, 16, 25):
            images.append(png(sheet.resize((12 * factor, 15 * factor), Image.NEAREST)))
            labels.append(digit)
    answers = served_answers(accuracy_client, images)
    assert list(answers.digits) == labels

    digits = load_digits()
    small = [
        Image.fromarray((255 - pixels * (255 / 16)).astype(np.uint8)) for pixels in digits.images
    ]
    as_sent = served_answers(accuracy_client, [png(image) for image in small])
    blocks = served_answers(
        accuracy_client, [png(image.resize((32, 32), Image.NEAREST)) for image in small]
    )
    assert np.array_equal(blocks.digits, as_sent.digits)


def _in_dots(bitmap: np.ndarray, pitch: int, turn: float) -> bytes:
    """Each inked pixel of ``bitmap`` a round dot a third of ``pitch`` wide, black on white."""
    rows, columns = bitmap.shape
    sheet = Image.new("L", (columns * pitch + 60, rows * pitch + 60), 255)
    draw = ImageDraw.Draw(sheet)
    radius = pitch / 3
    for row, column in zip(*np.nonzero(bitmap), strict=True):
        x, y = 30 + (column + 0.5) * pitch, 30 + (row + 0.5) * pitch
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=0)
    return png(sheet.rotate(turn, Image.Resampling.BICUBIC, expand=True, fillcolor=255))


def test_digits_printed_in_dots(accuracy_client: TestClient) -> None:
    """A dot-matrix printer's, a date stamp's or an LED sign's digits: each dot a separate
    piece of ink. Every one was refused before (more than five pieces); each is now read from
    its grid's bitmap. Dots not on a grid (a ring of them) are still no digit."""
    images, labels = [], []
    for digit in range(10):
        bitmap = np.asarray(pixel_font_digit(digit)) < 128
        for pitch, turn in ((12, 0.0), (24, 2.5)):
            images.append(_in_dots(bitmap, pitch, turn))
            labels.append(digit)
    assert list(served_answers(accuracy_client, images).digits) == labels

    angles = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    ring = Image.new("L", (280, 280), 255)
    for angle in angles:
        x, y = 140 + 90 * np.cos(angle), 140 + 90 * np.sin(angle)
        ImageDraw.Draw(ring).ellipse((x - 10, y - 10, x + 10, y + 10), fill=0)
    assert served_answers(accuracy_client, [png(ring)]).digits[0] == -1


def _underlined(digit: np.ndarray, share: float) -> bytes:
    """The digit in dark ink, a pen's bar under it as wide as ``share`` of its ink, centred."""
    enlarged = Image.fromarray(255 - digit).resize((112, 112), Image.Resampling.BILINEAR)
    columns = np.flatnonzero((np.asarray(enlarged) < 128).any(axis=0))
    rows = np.flatnonzero((np.asarray(enlarged) < 128).any(axis=1))
    page = Image.new("L", (200, 200), 255)
    page.paste(enlarged, (44, 30))
    half, centre, top = (columns[-1] - columns[0]) * share / 2, 44 + columns.mean(), 40 + rows[-1]
    ImageDraw.Draw(page).rectangle((centre - half, top, centre + half, top + 7), fill=0)
    return png(page)


@pytest.mark.parametrize("share", [0.6, 0.8])
def test_a_digit_underlined_narrower_than_itself_is_read(
    accuracy_client: TestClient, mnist_sample: tuple, share: float
) -> None:
    """A writer's underline (how a 6 is told from a 9) is often shorter than the digit is
    wide. A rule was once required to span 0.9 of the ink's width, to keep a seven-segment
    display's bottom bar: these underlines were then kept, and read 88.9 and 78.9 % (0.6
    and 0.8 of the width) where they read 95.6 and 98.7 % dropped."""
    images, labels = mnist_sample
    answers = served_answers(accuracy_client, [_underlined(digit, share) for digit in images])
    assert (answers.digits == labels).mean() >= UNDERLINED_MIN_ACCURACY


def drawing_app_screenshot(digit: np.ndarray, rng: np.random.Generator, buttons: bool) -> bytes:
    """A phone screenshot of a drawing app: status bar, a blue app bar, the digit drawn on
    the white canvas, and a light "Clear" and a blue "Send" button under it."""
    width, height = 360, 640
    shot = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(shot)
    draw.rectangle((0, 0, width, 24), fill="black")
    draw.rectangle((0, 24, width, 84), fill=(33, 150, 243))
    draw.text((16, 46), "Draw a digit", fill="white")
    side = int(rng.integers(160, 240))
    enlarged = Image.fromarray(255 - digit).resize((side, side), Image.Resampling.BILINEAR)
    shot.paste(enlarged.convert("RGB"), (int(rng.integers(20, width - side - 20)), 140))
    if buttons:
        top = height - 90
        draw.rounded_rectangle((24, top, 164, top + 52), 10, fill=(224, 224, 224))
        draw.rounded_rectangle((196, top, 336, top + 52), 10, fill=(33, 150, 243))
        draw.text((76, top + 20), "Clear", fill="black")
        draw.text((252, top + 20), "Send", fill="white")
    return png(shot)


@pytest.mark.parametrize("buttons", [False, True])
def test_a_screenshot_of_a_drawing_app_is_read_without_its_buttons(
    accuracy_client: TestClient, mnist_sample: tuple, buttons: bool
) -> None:
    """The blue "Send" button is as dark as a pen in grey and lies apart from the digit: it
    was fitted into the box with it, as a bar underneath: 10 of these 150 digits were read
    with the buttons, 149 without (service/imaging/panels.py)."""
    images, labels = mnist_sample[0][:150], mnist_sample[1][:150]
    rng = np.random.default_rng(SEED)
    shots = [drawing_app_screenshot(digit, rng, buttons) for digit in images]
    read = float((served_answers(accuracy_client, shots).digits == labels).mean())
    assert read >= 0.97, f"{read:.3f} read"


def stacked_pair(upper: np.ndarray, lower: np.ndarray, rng: np.random.Generator) -> bytes:
    """Two MNIST digits written one under the other, a line apart, black on white: a
    fraction, or two lines of a cell sent as one image."""
    side = 140
    spacing = int(rng.integers(20, 50))
    sheet = Image.new("L", (side + 40, 2 * side + spacing), 255)
    for digit, top in ((upper, 0), (lower, side + spacing)):
        enlarged = Image.fromarray(255 - digit).resize((side, side), Image.Resampling.BILINEAR)
        sheet.paste(enlarged, (int(rng.integers(0, 41)), top))
    return png(sheet)


def test_two_digits_one_above_the_other_are_refused(
    accuracy_client: TestClient, mnist_sample: tuple
) -> None:
    """Side by side, a pair is refused by the model (trained on such pairs); one above the
    other, it was read as one digit 66 times in 100, most of them confidently: the shape
    refuses it (service/imaging/shape.py, "stacked")."""
    images, _ = mnist_sample
    rng = np.random.default_rng(SEED)
    pairs = [stacked_pair(images[i], images[i + 1], rng) for i in range(0, 400, 2)]
    files = [("files", (f"{i}", data, "image/png")) for i, data in enumerate(pairs)]
    messages = []
    for start in range(0, len(files), CHUNK):
        response = accuracy_client.post("/predict/batch", files=files[start : start + CHUNK])
        assert response.status_code == 200, response.text
        messages += [
            (entry.get("error") or {}).get("message", "")
            for entry in response.json()["predictions"]
        ]
    refused = [message for message in messages if message.startswith("That doesn't look like")]
    assert len(refused) >= 0.95 * len(pairs), f"{len(refused)} of {len(pairs)} refused"
    assert sum("one above the other" in message for message in refused) >= 0.9 * len(pairs)


def test_nondigits_are_answered_not_a_digit(accuracy_client: TestClient) -> None:
    """Letters, symbols, shapes, scribbles and handwritten letters from sources training
    never saw."""
    fonts = held_out_fonts()
    require_fonts(fonts, FONT_FILES)
    refused: dict[str, float] = {}
    total, count = 0.0, 0
    for kind, images in nondigit_set(fonts).items():
        answers = served_answers(accuracy_client, images)
        refused[kind] = float((answers.digits == -1).mean())
        total += refused[kind] * len(images)
        count += len(images)
    assert total / count >= NONDIGIT_MIN_REFUSED, refused
    assert refused["handwriting"] >= HANDWRITING_MIN_REFUSED, refused


def printed_digits(font_paths: list[Path], size: int = 110) -> tuple[list[bytes], np.ndarray]:
    """Each digit in each font (and Pillow's built-in Aileron), black on a white sheet."""
    fonts = open_fonts(font_paths, size)
    images = [glyph_images([font], str(digit))[0] for font in fonts for digit in range(10)]
    return images, np.tile(np.arange(10), len(fonts))


def test_printed_digits_in_fonts_training_never_used(accuracy_client: TestClient) -> None:
    """A receipt's or a form's digits, in typefaces training never used. The shipped model
    reads 128 of 130: each miss is Helvetica's "1", a flag and stem without a base (URW
    Gothic, Aileron), read as a 7 (docs/performance.md, "Issue 16, fourth round"; the model
    of round four missed it in FreeSans and its bold and Nimbus Sans too)."""
    fonts = held_out_fonts()
    require_fonts(fonts, FONT_FILES)
    images, labels = printed_digits(fonts)
    answers = served_answers(accuracy_client, images)
    wrong = [
        (int(labels[i]), int(answers.guesses[i])) for i in np.flatnonzero(answers.digits != labels)
    ]
    assert float((answers.digits == labels).mean()) >= PRINTED_MIN_ACCURACY, wrong
