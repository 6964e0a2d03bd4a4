"""Accuracy through the API on MNIST digits photographed the way paper gets photographed.

Each condition puts real MNIST test digits, written with a dark pen, on off-white paper in a
phone-sized JPEG, with one thing real photos have: a shadow across the page (or a phone's, its
edge sharp, over a corner), ruled, notebook or squared paper (a notebook photographed turned
too), a form's box (also smeared by the hand's motion), rule (apart from the digit or through
its foot, level or photographed turned, or only a little longer than the digit is wide) or comb
field, a marker's line under the digit at a slant, a sticky note on the page, a finger in a
corner, the desk round the sheet (also with the phone's shadow across both) or in the corners
of a turned one, a house number (white paint on a dark plate, also cut by the frame), a pencil,
a red pen, a dark-mode screen (also a message bubble on it), chalk on a board. Each must still
read at least MIN_ACCURACY. (Before the lighting fit, every shadowed photo was refused as "no
ink"; before form lines and edge objects were handled, a finger in the corner left 13 %; before
grains were taken in, chalk read 91 %; before wedges lying on the sides were dropped, a turned
sheet read 79 %; before straight lines holding the digit from below were dropped, a comb field
read 8 %; before a dark line the digit is written on was, that line 23 %; before such a line
photographed turned was levelled, 71 %, and a notebook so photographed 84 %; before two lines
facing each other across the digit were dropped, a smeared box 83 %; before a long line under
it was judged by its own thickness, not its box's, the marker 89 %; before a sheet darker than
its surround was taken for the paper, a pink note 45 %; before the ink's own box was looked
across, a short field's line 95 %; before a dark plate with lighter marks was, a house number
0.7 %, and cut by the frame, 2.0 %; before a plate lighter than a dark surround was, a dark
mode's message bubble 29 %; before a hard shadow was lifted, a phone's 16 %, and before a sheet
in such a shadow was, 13 %.)
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw, ImageFilter

from tests.service.conftest import Served, served_answers
from tests.service.images import shaken, smooth_noise

COUNT = 150  # digits per condition (of the 1000-digit sample)
MIN_ACCURACY = 0.97  # counting not_a_digit as wrong
MAX_LOST_POINTS = 0.3  # accuracy lost to refusals of right answers, over all conditions
WIDTH, HEIGHT = 300, 280
SIDE = 28 * 6  # the digit's 28x28 square, enlarged
SHIFT = 20  # pixels the digit's square lies off the photo's middle, at most, either way
PAPER = (0.95, 0.93, 0.88)
BLUE_LINE = (0.6, 0.75, 0.95)
DESK = (0.3, 0.2, 0.12)  # dark wood round the sheet
NOTEBOOK_LINE = (0.47, 0.59, 0.86)
MARGIN_LINE = (0.9, 0.3, 0.3)
BOARD = (0.16, 0.24, 0.2)  # a green chalkboard...
SMUDGES = 0.03  # ...unevenly wiped: chalk dust left in patches a digit's size across
CHALK = (0.9, 0.9, 0.85)
CHALK_COVER = 0.5  # of a chalk stroke, the share its grains cover
TURN = 4.0  # degrees: a page photographed up to this far off level...
TURN_CROP = 24  # ...and cropped by this much each side, past the corners the turn brought in
MARKER = 18  # pixels: the width of a marker's line
NOTE = (0.95, 0.45, 0.7)  # a pink sticky note...
NOTE_TURN = 8.0  # ...stuck on up to this many degrees off level
PLATE = (0.1, 0.18, 0.45)  # a house number's dark blue plate on the wall...
PAINT = (0.95, 0.95, 0.92)  # ...the digit painted on it in white
PHONE_SHADE = 0.4  # of the light, taken by a phone's shadow...
SHADOW_EDGE = 2.0  # ...whose edge is this blurred (pixels)
BUBBLE = (0.6, 0.6, 0.55)  # a message bubble, once inverted a dark mode's grey-blue one

Page = np.ndarray  # (HEIGHT, WIDTH, 3) float 0..1
Condition = Callable[[Page, tuple[int, int]], Page]


def _plain(page: Page, _: tuple[int, int]) -> Page:
    return page


def _shadow(page: Page, _: tuple[int, int]) -> Page:
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    light = 0.5 + 0.5 * (xs / WIDTH) * (0.7 + 0.3 * ys / HEIGHT)
    return page * light[..., np.newaxis]


def _phone_shadow(page: Page, corner: tuple[int, int]) -> Page:
    """The phone's own hard-edged shadow over the photo's bottom-left corner, its edge across
    the digit (its slant going with the digit's place): the paper under it PHONE_SHADE darker."""
    x, y = corner[0] + SIDE // 2, corner[1] + SIDE // 2
    lean = _slant(corner, 20.0)
    outline = [(-1, y - 40 + lean), (x + lean, y), (x + 30 - lean, HEIGHT), (-1, HEIGHT)]
    shade = Image.new("L", (WIDTH, HEIGHT), 0)
    ImageDraw.Draw(shade).polygon(outline, fill=255)
    shade = shade.filter(ImageFilter.GaussianBlur(SHADOW_EDGE))
    cover = (np.asarray(shade, dtype=np.float32) / 255)[..., np.newaxis]
    return page * (1 - PHONE_SHADE * cover)


def _ruled(page: Page, _: tuple[int, int]) -> Page:
    page[20::30] = BLUE_LINE
    return page


def _notebook(page: Page, _: tuple[int, int]) -> Page:
    """A school notebook: darker rules, two pixels wide, and a red margin joining them all."""
    page[20::30], page[21::30] = NOTEBOOK_LINE, NOTEBOOK_LINE
    page[:, 40:42] = MARGIN_LINE
    return page


def _squared(page: Page, _: tuple[int, int]) -> Page:
    page[10::24], page[:, 10::24] = BLUE_LINE, BLUE_LINE
    return page


def _chalkboard(page: Page, _: tuple[int, int]) -> Page:
    """A green board, wiped unevenly: the same smudges in every photo, the digit on a
    different part of them."""
    smudges = smooth_noise(np.random.default_rng(0), (HEIGHT, WIDTH), sigma=20)
    board = np.array(BOARD, np.float32) + SMUDGES * smudges[..., np.newaxis]
    return np.broadcast_to(board, page.shape).copy()


def _chalk_grains(rng: np.random.Generator) -> np.ndarray:
    """Where a chalk stroke leaves its grains: CHALK_COVER of it, in clumps a pixel or two
    wide, the board showing between them."""
    grains = smooth_noise(rng, (SIDE, SIDE), sigma=1.0)
    return (grains > np.quantile(grains, 1 - CHALK_COVER)).astype(np.float32)[..., np.newaxis]


def _on_image(page: Page, draw: Callable[[ImageDraw.ImageDraw], None]) -> Page:
    image = Image.fromarray((np.clip(page, 0, 1) * 255).astype(np.uint8))
    draw(ImageDraw.Draw(image))
    return np.asarray(image, dtype=np.float32) / 255


def _box(page: Page, corner: tuple[int, int]) -> Page:
    """The field on a form that the digit is written in."""
    x, y = corner[0] - 12, corner[1] - 12
    frame = (x, y, x + SIDE + 24, y + SIDE + 24)
    return _on_image(page, lambda draw: draw.rectangle(frame, outline=(40, 40, 40), width=3))


def _rule(page: Page, corner: tuple[int, int]) -> Page:
    """The printed line the digit is written on."""
    x, y = corner[0], corner[1] + SIDE + 8
    return _on_image(page, lambda draw: draw.line((x, y, x + SIDE, y), fill=(20, 20, 20), width=4))


def _on_rule(page: Page, corner: tuple[int, int]) -> Page:
    """A printed line across the form, as dark as the pen, that the digit is written on: it
    crosses the foot (MNIST's digits end about 4 of their 28 rows from the bottom; the line,
    5)."""
    y = corner[1] + SIDE * 23 // 28
    return _on_image(page, lambda draw: draw.line((0, y, WIDTH, y), fill=(40, 40, 40), width=3))


def _on_field_line(page: Page, corner: tuple[int, int]) -> Page:
    """The same line only a little longer than the digit is wide: a short field's line
    ("Age: ____") or the writer's own underline, on a page photographed with more round it."""
    x, y = corner[0] - 10, corner[1] + SIDE * 23 // 28
    line = (x, y, x + SIDE + 20, y)
    return _on_image(page, lambda draw: draw.line(line, fill=(40, 40, 40), width=4))


def _comb(page: Page, corner: tuple[int, int]) -> Page:
    """A comb field's cell: the baseline runs on into the next cells, a tick either side."""
    x, y = corner[0], corner[1] + SIDE + 4

    def draw(pen: ImageDraw.ImageDraw) -> None:
        pen.line((0, y, WIDTH, y), fill=(40, 40, 40), width=3)
        for tick in (x - 14, x + SIDE + 14):
            pen.line((tick, y - SIDE // 3, tick, y), fill=(40, 40, 40), width=3)

    return _on_image(page, draw)


def _underlined(page: Page, corner: tuple[int, int]) -> Page:
    """A marker's line under the digit, past it on both sides, at a slant of up to TURN
    degrees either way (the slant follows the digit's place across the photo)."""
    x, y, length = corner[0] - 30, corner[1] + SIDE + 18, SIDE + 60
    rise = length * np.tan(np.deg2rad(_slant(corner, TURN)))
    line = (x, y + rise / 2, x + length, y - rise / 2)
    return _on_image(page, lambda draw: draw.line(line, fill=(40, 40, 40), width=MARKER))


def _slant(corner: tuple[int, int], most: float) -> float:
    """Degrees from -``most`` to ``most`` as the digit's place across the photo goes from
    one end of its shift to the other: a slant that differs from photo to photo."""
    return most * (corner[0] - (WIDTH - SIDE) // 2) / SHIFT


def _finger(page: Page, _: tuple[int, int]) -> Page:
    """A thumb in the bottom-right corner of the photo."""
    thumb = (WIDTH - 70, HEIGHT - 70, WIDTH + 40, HEIGHT + 40)
    return _on_image(page, lambda draw: draw.ellipse(thumb, fill=(60, 50, 45)))


def _desk(page: Page, corner: tuple[int, int]) -> Page:
    """The sheet, turned a little, lies on a dark desk that fills the photo round it."""
    return _on_desk(page, np.array(corner) + SIDE / 2, SIDE / 2 + 25, 6.0)


def _desk_in_shadow(page: Page, corner: tuple[int, int]) -> Page:
    """The sheet on the desk, the phone's shadow across both."""
    return _phone_shadow(_desk(page, corner), corner)


def _turned_sheet(page: Page, _: tuple[int, int]) -> Page:
    """The sheet fills the photo, turned: the desk shows in its corners only."""
    return _on_desk(page, np.array([WIDTH, HEIGHT]) / 2, 0.55 * WIDTH, 12.0)


def _sticky_note(page: Page, corner: tuple[int, int]) -> Page:
    """A pink sticky note on the page, the digit written on it: darker than the page,
    lighter than the pen."""
    return _sheet_round_the_digit(page, corner, NOTE)


def _house_number(page: Page, corner: tuple[int, int]) -> Page:
    """A dark plate on a light wall, the digit painted on it in white."""
    return _sheet_round_the_digit(page, corner, PLATE)


def _house_number_close(page: Page, corner: tuple[int, int]) -> Page:
    """The same plate photographed close: the frame cuts it at the top and bottom, the wall
    shows either side."""
    plate = (corner[0] - 30, -1, corner[0] + SIDE + 30, HEIGHT)
    colour = tuple(int(255 * c) for c in PLATE)
    return _on_image(page, lambda draw: draw.rectangle(plate, fill=colour))


def _bubble(page: Page, corner: tuple[int, int]) -> Page:
    """A message bubble round the digit: grey, a shade from the page towards the pen. In
    dark mode it is lighter than the black round it, and the digit on it lighter still."""
    return _sheet_round_the_digit(page, corner, BUBBLE)


def _sheet_round_the_digit(
    page: Page, corner: tuple[int, int], colour: tuple[float, float, float]
) -> Page:
    """A square of ``colour`` round the digit on the page, turned a little (with the digit's
    place across the photo)."""
    sheet = np.broadcast_to(np.array(colour, np.float32), page.shape)
    return _on_desk(
        sheet, np.array(corner) + SIDE / 2, SIDE / 2 + 16, _slant(corner, NOTE_TURN), surround=page
    )


def _on_desk(
    page: Page, centre: np.ndarray, half: float, degrees: float, surround: Page | None = None
) -> Page:
    """The page as a square sheet (``half`` its side) turned by ``degrees`` about
    ``centre``, the desk (or ``surround``) round it."""
    turn = np.deg2rad(degrees)
    square = np.array([(-half, -half), (half, -half), (half, half), (-half, half)])
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    sheet = Image.new("L", (WIDTH, HEIGHT), 0)
    ImageDraw.Draw(sheet).polygon([tuple(p) for p in square @ rotation.T + centre], fill=255)
    on_sheet = (np.asarray(sheet, dtype=np.float32) / 255)[..., np.newaxis]
    round_it = np.array(DESK, np.float32) if surround is None else surround
    return page * on_sheet + round_it * (1 - on_sheet)


CONDITIONS: dict[str, tuple[Condition, tuple[float, float, float]]] = {
    "plain": (_plain, (0.05, 0.05, 0.1)),
    "shadow": (_shadow, (0.05, 0.05, 0.1)),
    "phone_shadow": (_phone_shadow, (0.05, 0.05, 0.1)),
    "ruled": (_ruled, (0.05, 0.05, 0.1)),
    "notebook": (_notebook, (0.05, 0.05, 0.1)),
    "squared": (_squared, (0.05, 0.05, 0.1)),
    "box": (_box, (0.05, 0.05, 0.1)),
    "rule": (_rule, (0.05, 0.05, 0.1)),
    "on_rule": (_on_rule, (0.05, 0.05, 0.1)),
    "on_field_line": (_on_field_line, (0.05, 0.05, 0.1)),
    "comb": (_comb, (0.05, 0.05, 0.1)),
    "underlined": (_underlined, (0.05, 0.05, 0.1)),
    "shaken_box": (_box, (0.05, 0.05, 0.1)),  # smeared by the hand's motion (see photograph)
    "turned_form": (_on_rule, (0.05, 0.05, 0.1)),  # turned after the pen (see photograph)
    "turned_notebook": (_notebook, (0.05, 0.05, 0.1)),  # the same
    "sticky_note": (_sticky_note, (0.05, 0.05, 0.1)),
    "house_number": (_house_number, PAINT),
    "house_number_close": (_house_number_close, PAINT),
    "finger": (_finger, (0.05, 0.05, 0.1)),
    "desk": (_desk, (0.05, 0.05, 0.1)),
    "desk_in_shadow": (_desk_in_shadow, (0.05, 0.05, 0.1)),
    "turned_sheet": (_turned_sheet, (0.05, 0.05, 0.1)),
    "pencil": (_plain, (0.55, 0.55, 0.55)),
    "red_pen": (_plain, (0.85, 0.1, 0.1)),
    "dark_mode": (_plain, (0.05, 0.05, 0.1)),  # inverted after the pen (see photograph)
    "dark_mode_bubble": (_bubble, (0.05, 0.05, 0.1)),  # the same
    "chalkboard": (_chalkboard, CHALK),  # the pen leaves grains (see photograph)
}


def photograph(digit: np.ndarray, name: str, rng: np.random.Generator) -> bytes:
    """The digit in pen on paper, with the condition, slightly blurred, as a JPEG."""
    condition, pen = CONDITIONS[name]
    ink = np.asarray(Image.fromarray(digit).resize((SIDE, SIDE), Image.Resampling.BILINEAR))
    ink = (ink.astype(np.float32) / 255)[..., np.newaxis]
    shift = rng.integers(-SHIFT, SHIFT + 1, size=2)
    if name == "chalkboard":
        ink = ink * _chalk_grains(rng)
    corner = ((WIDTH - SIDE) // 2 + int(shift[0]), (HEIGHT - SIDE) // 2 + int(shift[1]))
    page = np.ones((HEIGHT, WIDTH, 3), np.float32) * np.array(PAPER, np.float32)
    page = condition(page, corner)
    x, y = corner
    region = page[y : y + SIDE, x : x + SIDE]
    page[y : y + SIDE, x : x + SIDE] = region * (1 - ink) + np.array(pen, np.float32) * ink
    pixels = (np.clip(page, 0, 1) * 255).astype(np.uint8)
    if name.startswith("dark_mode"):
        pixels = 255 - pixels
    photo = Image.fromarray(pixels)
    if name == "shaken_box":
        photo = shaken(photo, float(rng.uniform(0, 180)))  # any direction
    if name.startswith("turned_"):
        photo = photo.rotate(float(rng.uniform(-TURN, TURN)), resample=Image.Resampling.BICUBIC)
        photo = photo.crop((TURN_CROP, TURN_CROP, WIDTH - TURN_CROP, HEIGHT - TURN_CROP))
    return _snapshot(photo)


def _snapshot(image: Image.Image) -> bytes:
    """What a phone makes of the scene: slightly blurred, as a JPEG."""
    buffer = io.BytesIO()
    image.filter(ImageFilter.GaussianBlur(0.8)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served_photos(
    accuracy_client: TestClient, mnist_sample: tuple[np.ndarray, np.ndarray]
) -> dict[str, Served]:
    """Each condition's photos, sent once through /predict/batch."""
    images = mnist_sample[0][:COUNT]
    answers = {}
    for name in CONDITIONS:
        rng = np.random.default_rng(len(name))
        answers[name] = served_answers(accuracy_client, [photograph(d, name, rng) for d in images])
    return answers


@pytest.mark.parametrize("name", list(CONDITIONS))
def test_photographed_digits_are_read(
    served_photos: dict[str, Served], mnist_sample: tuple[np.ndarray, np.ndarray], name: str
) -> None:
    labels = mnist_sample[1][:COUNT]
    accuracy = float((served_photos[name].digits == labels).mean())
    assert accuracy >= MIN_ACCURACY, f"{name}: {accuracy:.3f}"


def test_few_photographed_digits_are_refused(
    served_photos: dict[str, Served], mnist_sample: tuple[np.ndarray, np.ndarray]
) -> None:
    labels = mnist_sample[1][:COUNT]
    lost = np.mean([served.lost_points(labels) for served in served_photos.values()])
    assert lost <= MAX_LOST_POINTS, {n: s.lost_points(labels) for n, s in served_photos.items()}


FAR_PAGE = (1600, 1200)  # a phone photo of a whole sheet...
FAR_SIDE = 80  # ...with one digit written on it: its ink is under 0.1 % of the pixels


def photograph_from_afar(digit: np.ndarray, rng: np.random.Generator, vignette: float) -> bytes:
    """The digit in dark pen, small somewhere on a page of paper, its corners ``vignette``
    darker than its centre (a lamp, a phone's lens), blurred, as a JPEG."""
    ink = Image.fromarray(digit).resize((FAR_SIDE, FAR_SIDE), Image.Resampling.BILINEAR)
    page = Image.new("RGB", FAR_PAGE, tuple(round(255 * c) for c in PAPER))
    corner = tuple(int(v) for v in rng.integers(100, np.array(FAR_PAGE) - FAR_SIDE - 100))
    page.paste(Image.new("RGB", ink.size, (13, 13, 26)), corner, mask=ink)
    if vignette:
        ys, xs = np.ogrid[-1 : 1 : FAR_PAGE[1] * 1j, -1 : 1 : FAR_PAGE[0] * 1j]
        light = 1 - vignette * (xs**2 + ys**2) / 2
        lit = np.asarray(page, dtype=np.float32) * light[..., np.newaxis]
        page = Image.fromarray(lit.astype(np.uint8))
    return _snapshot(page)


@pytest.mark.parametrize("vignette", [0.0, 0.3])
def test_a_digit_small_on_a_large_page_is_read(
    accuracy_client: TestClient, mnist_sample: tuple[np.ndarray, np.ndarray], vignette: float
) -> None:
    """So little ink cannot move the percentiles that tell ink from paper; the darkest pixels
    still do (before they were asked, every one of these was answered no_ink). Under a
    vignette the lighting's ends decided alone, and said the paper's bright middle was ink
    (every one refused as no_ink, until the other side was looked at too)."""
    rng = np.random.default_rng(FAR_SIDE)
    images = [photograph_from_afar(d, rng, vignette) for d in mnist_sample[0][:COUNT]]
    served = served_answers(accuracy_client, images)
    labels = mnist_sample[1][:COUNT]
    assert float((served.digits == labels).mean()) >= MIN_ACCURACY
    assert served.lost_points(labels) <= MAX_LOST_POINTS
