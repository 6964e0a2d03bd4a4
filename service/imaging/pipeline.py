"""Turn what people send into what LeNet-5 was trained on (docs/design.md section 1).

MNIST convention: white ink on black, 0..1, the ink fitted into a 20x20 box with its aspect
kept, placed in 28x28 so that its centre of mass sits at pixel (14, 14). Real images are black
ink on light, tinted, noisy paper, of any size and anywhere in the frame, so the steps are, in
the order they run (``_normalize_steps``):

1. Decode to 8-bit gray (decode.py: format, EXIF orientation, transparency put on paper; a
   file of too many metadata segments refused before any parser reads it, segments.py).
2. A small image enlarged by whole pixels back to its own pixels (enlarged.py), reduced to
   at most ``WORK_SIDE`` on its longer side (resampling.py); a 1-bit halftone's dots smoothed
   to grey (halftone.py).
3. Measure: the paper's level and noise from a band along the border, the polarity, the
   stretch from paper to ink (measurement.py; batch.py measures a batch's images together).
4. A 28x28 image that is already MNIST's convention goes through as it is
   (``geometry.already_mnist``).
5. A sheet on a surround of another shade: the sheet is the image (sheet.py), measured again.
6. Ink made bright, uneven light flattened or a hard shadow lifted (lighting.py,
   hard_shadow.py). When nothing stands out: measured again on the outermost ring (a crop cut
   at its ink), then framed in paper (a narrow 1 cut at its box; both cropped.py).
7. The strokes kept, everything else dropped (strokes.py, in this order: lines the digit
   touches, joined.py; a page's printed lines, lines.py; things cut by the frame, edges.py;
   specks; a form's lines apart from it, forms.py; the grains of chalk closed, grain.py; the
   three line finders see a turned page's lines level through levelling.py).
8. Fit: the ink's box scaled to 20 pixels (geometry.py; a digit printed in dots as its grid's
   bitmap, dots.py), then centred by mass in 28x28.

When decoding in gray finds no ink at all, the image is decoded again by colour contrast (ink
as bright as its paper, in another colour: colour.py) and runs the steps from 2.

This runs once per image on the request path; its cost bounds the service's throughput. So
pixels stay 8-bit until the final crop, statistics come from 256-bin histograms, the stretch
is a 256-entry lookup table, and OpenCV and BLAS do the image work: a handful of calls.

A run of one image is a generator paused between its stages (``Steps``). The service's
workers drive it through batch.py (``prepare_batch``), each stage for every image of a batch
before the next; ``preprocess_image`` drives one image through it in turn, for tests, the docs
and scripts. This module defines that protocol; batch.py is the only other code that drives
it.
"""

from __future__ import annotations

from collections.abc import Collection, Generator
from dataclasses import dataclass
from typing import Protocol, cast

import cv2
import numpy as np

from service.errors import NoInk
from service.imaging.colour import decode_colour_contrast
from service.imaging.cropped import framed_in_paper, is_clean_paper, ring_as_border
from service.imaging.decode import decode_gray
from service.imaging.enlarged import native_pixels
from service.imaging.geometry import (
    SIZE,
    already_mnist,
    centre_by_mass,
    fit_box,
)
from service.imaging.halftone import smooth_halftone
from service.imaging.hard_shadow import lift_hard_shadow
from service.imaging.lighting import flatten_lighting
from service.imaging.measurement import Measurement, ink_table, measure
from service.imaging.resampling import WORK_SIDE, shrink_to
from service.imaging.sheet import find_sheet
from service.imaging.strokes import keep_strokes


@dataclass(frozen=True, slots=True)
class Measure:
    """What a run yields when it needs the statistics of its work image (once decoded, and
    again for a sheet, a ring or a framed crop): answered by sending back
    ``measure([work, ...])``'s entry for it."""

    work: np.ndarray
    decoded: int = 0  # pixels the image was decoded to: what its decoding cost


Steps = Generator[Measure | None, Measurement | None, np.ndarray]
"""A preprocessing run paused between its stages; its return value is the (28, 28) image.
A stage may end by yielding a ``Measure``: the next one must be sent its ``Measurement``."""


class StepsFactory(Protocol):
    """``preprocess_steps``'s signature; tests put slow or crashing stand-ins in its place."""

    def __call__(
        self, data: bytes, *, allowed_formats: Collection[str], max_pixels: int
    ) -> Steps: ...


def preprocess_image(
    data: bytes, *, allowed_formats: Collection[str], max_pixels: int
) -> np.ndarray:
    """Image bytes -> float32 (28, 28) in MNIST convention; typed ServiceErrors for bad input."""
    steps = preprocess_steps(data, allowed_formats=allowed_formats, max_pixels=max_pixels)
    answer: Measurement | None = None
    while True:
        try:
            request = steps.send(answer)
        except StopIteration as done:
            return cast(np.ndarray, done.value)
        answer = measure([request.work])[0] if request is not None else None


def preprocess_steps(data: bytes, *, allowed_formats: Collection[str], max_pixels: int) -> Steps:
    """``preprocess_image`` in stages. Between stages an image holds only its work copy, never
    the full decoded image: at most ``WORK_SIDE`` on its longer side, or up to twice that once
    framed for a measurement (cropped.py). The first stage ends by yielding a ``Measure`` of
    the work image."""
    try:
        return (yield from _normalize_steps(decode_gray(data, allowed_formats, max_pixels)))
    except NoInk:  # perhaps ink as bright as its paper, in another colour (red on green)
        colours = decode_colour_contrast(data, allowed_formats, max_pixels)
        if colours is None:
            raise
        in_colour = _normalize_steps(colours)
        del colours  # the stages hold only their work copy
    return (yield from in_colour)


def _normalize_steps(gray: np.ndarray) -> Steps:
    pixels = native_pixels(_as_uint8(gray))  # a small image enlarged by blocks: its source
    work = shrink_to(pixels, WORK_SIDE)
    if work is pixels:  # not averaged by a reduction: a 1-bit halftone's dots are still dots
        work = smooth_halftone(work)
    original = gray if pixels.shape == (SIZE, SIZE) else None  # may already be MNIST
    decoded = gray.size
    del gray, pixels  # only the work copy waits for the next stage
    measured = yield Measure(work, decoded)
    assert measured is not None, "a Measure is answered with its Measurement"
    if original is not None:
        passthrough = already_mnist(original, measured.background)
        if passthrough is not None:
            return passthrough
    sheet = find_sheet(work, measured)
    if sheet is not None:  # a sheet on a darker surround: its own paper is the paper
        work = sheet
        measured = yield from _measured(work)
    ink, lut = _bright_ink(work, measured)
    if lut is None:  # perhaps cropped to its ink: the border band was strokes, not paper
        ring = yield from _measured(ring_as_border(work))
        if is_clean_paper(ring):
            ink, lut = _bright_ink(work, ring)
    if lut is None:  # a 1 cut at its ink's box: the stroke is every side; frame it in paper
        framed = framed_in_paper(work)
        if framed is not None:
            work = framed
            measured = yield from _measured(work)
            ink, lut = _bright_ink(work, measured)
    if lut is None:  # nothing stands out from the paper's noise, however busy the paper is
        raise NoInk(
            "no ink found: nothing stands out from the background (a blank image, too "
            "little contrast, or a busy picture such as a photograph)"
        )
    yield None
    kept, pieces = keep_strokes(ink, lut)
    yield None
    fitted = fit_box(kept, lut, pieces)
    yield None
    return centre_by_mass(fitted)


def _measured(work: np.ndarray) -> Generator[Measure, Measurement | None, Measurement]:
    measured = yield Measure(work)
    assert measured is not None, "a Measure is answered with its Measurement"
    return measured


def _bright_ink(work: np.ndarray, measured: Measurement) -> tuple[np.ndarray, np.ndarray | None]:
    """The work image with its ink bright, lighting flattened, and its stretch table."""
    ink = cv2.bitwise_not(work) if measured.inverted else work
    flattened = flatten_lighting(ink, measured.sigma)
    if flattened is ink:
        # A shadow's hard edge is no smooth light; it darkens light paper, where it shows.
        if measured.inverted and measured.lut is not None:
            lifted = lift_hard_shadow(ink, measured.lut, measured.sigma)
            if lifted is not ink:
                return lifted, ink_table(lifted)
        return ink, measured.lut
    lut = ink_table(flattened)
    if lut is None:
        # A digit too small to reach the polarity's percentiles (a page photographed whole)
        # leaves the lighting's bright and dark ends to decide which side is ink: the wrong
        # one, when nothing stands out once the lighting is gone. The other side, then.
        other = flatten_lighting(cv2.bitwise_not(ink), measured.sigma)
        other_lut = ink_table(other)
        if other_lut is not None:
            return other, other_lut
    return flattened, lut


def _as_uint8(gray: np.ndarray) -> np.ndarray:
    if gray.dtype == np.uint8:
        return np.ascontiguousarray(gray)
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)
