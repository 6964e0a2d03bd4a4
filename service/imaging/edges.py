"""Dark things cut by the frame that are not the digit: a finger, the table, a shadowed
corner of a photo, a screen's bezel, the filled corners of a turned image.

They touch the image's edge, and are far thicker than the strokes away from the edge, or lie
along a side: a solid band along all of it, or a piece lying flat on it, touching it along
nearly all of its own extent (the surround showing in the corners of a sheet turned in a
photo, the black or white an editor fills a rotated image's corners with). A digit's own
strokes that reach the edge have the pen's width and cross it, and are kept. Images whose ink
all touches the edge (a tightly cropped digit) or none of it are left as they are.
"""

from __future__ import annotations

import cv2
import numpy as np

THICKNESS = 2.5  # edge-touching ink this many times thicker than the strokes: not ink
BAND_LENGTH = 0.9  # of the image's side: a solid band this long along an edge...
BAND_FILL = 0.8  # ...and solid, filling this share of its box,...
DEPTH = 0.25  # ...reaching at most this far in (of the other side), or ink lying on a side...
ON_SIDE = 0.9  # ...along this share of its own extent beside it...
RUN = 2.0  # ...and this many times as long as it is deep: the filled corner of a turned image


def edge_objects(
    strong: np.ndarray, labels: np.ndarray, stats: np.ndarray, speck_fraction: float
) -> np.ndarray:
    """Indices (into ``stats[1:]``) of the components of ``strong`` that are dark things cut
    by the frame. The strokes they are compared with are the components inside the frame
    not smaller than ``speck_fraction`` of the largest of them."""
    height, width = labels.shape
    left, top = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
    right = left + stats[1:, cv2.CC_STAT_WIDTH]
    bottom = top + stats[1:, cv2.CC_STAT_HEIGHT]
    at_edge = (left == 0) | (top == 0) | (right >= width) | (bottom >= height)
    if at_edge.all() or not at_edge.any():
        return np.zeros(0, dtype=np.intp)
    inside = np.flatnonzero(~at_edge)
    inside_areas = stats[1:, cv2.CC_STAT_AREA][inside]
    inside = inside[inside_areas >= speck_fraction * inside_areas.max()]  # strokes, not specks
    distance = cv2.distanceTransform(strong, cv2.DIST_L2, 3)
    radius = np.zeros(len(stats), dtype=np.float32)  # half the thickest part, per component
    np.maximum.at(radius, labels.ravel(), distance.ravel())
    stroke = float(radius[inside + 1].max())
    edge = np.flatnonzero(at_edge)
    thick = radius[edge + 1] > THICKNESS * stroke
    along = _bands_along_a_side(stats[edge + 1], height, width)
    along |= _lying_on_a_side(labels, stats, edge + 1)
    return edge[thick | along]


def _bands_along_a_side(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Which edge-touching components are solid bands along a whole side: a screen's bezel or
    a desk's edge beside the sheet, however thin beside the strokes. A stroke reaching the
    edge runs across it, not along all of it."""
    box_width, box_height = boxes[:, cv2.CC_STAT_WIDTH], boxes[:, cv2.CC_STAT_HEIGHT]
    upright = (box_height >= BAND_LENGTH * height) & (box_width <= DEPTH * width)
    lying = (box_width >= BAND_LENGTH * width) & (box_height <= DEPTH * height)
    solid = boxes[:, cv2.CC_STAT_AREA] >= BAND_FILL * box_width * box_height
    return (upright | lying) & solid


def _lying_on_a_side(labels: np.ndarray, stats: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Which of ``components`` lie on a side of the frame: they touch it along nearly all of
    their extent beside it, at least RUN times as far as they reach in, and reach at most
    DEPTH into the image. The surround in a turned sheet's corners is a wedge lying on the
    sides; a stroke crosses a side, touching a pen's width of it and reaching further in, or
    runs into it at a slant, touching a part of its extent."""
    height, width = labels.shape
    boxes = stats[components]
    across, down = boxes[:, cv2.CC_STAT_WIDTH], boxes[:, cv2.CC_STAT_HEIGHT]
    lying = np.zeros(len(components), dtype=bool)
    for side, extent, depth, most in (
        (labels[0], across, down, height),
        (labels[-1], across, down, height),
        (labels[:, 0], down, across, width),
        (labels[:, -1], down, across, width),
    ):
        touching = np.bincount(side, minlength=len(stats))[components]
        flat = (touching >= ON_SIDE * extent) & (touching >= RUN * depth)
        lying |= flat & (depth <= DEPTH * most)
    return lying
