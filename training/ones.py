"""MNIST's 1s given the flag (and sometimes the base) that most of the world writes and prints.

MNIST's writers draw a 1 as a bare stroke. Elsewhere a 1 has a flag running down-left from
its top, often a base, and Helvetica, Arial, Roboto and most sans-serif faces print it so.
A model that has seen only bare 1s and MNIST's 7s (a bar, then a stem) reads a flagged 1 as
a 7 with confidence near 1, and scikit-learn's writers' 1s as 4s and 7s. The printed digits
(training/fonts.py) are too few to teach it: a share of the batch's MNIST 1s get a flag drawn
on, in their own stroke width, before the augmentation slants and refits them.
"""

from __future__ import annotations

import math

import torch

from training.augment import uniform_per_image

INK = 0.5  # a pixel at least this bright is ink when finding the stroke's ends and width
FLAG_LENGTH = (0.25, 0.45)  # of the 1's height
FLAG_ANGLE_DEG = (20.0, 55.0)  # below the horizontal, running left from the top
BASE_SHARE = 0.35  # of the flagged 1s that get a base too
BASE_HALF_WIDTH = (0.15, 0.3)  # of the 1's height, each side of the stem's foot
MIN_HEIGHT = 8  # pixels: a smaller 1 (or a stray dot) is left alone


def _flags(ones: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The flag (and, for some, the base) to draw on each 1, as (n, 1, side, side) ink, and
    which 1s may take it: tall enough, and upright or leaning forward (one leaning back, its
    top left of its foot, would become a caret, not a flagged 1)."""
    n, side = ones.shape[0], ones.shape[-1]
    ink = ones[:, 0] >= INK  # (n, side, side)
    rows = torch.arange(side, dtype=ones.dtype)
    inked_rows = ink.any(dim=2)
    top = torch.where(inked_rows, rows, torch.inf).amin(dim=1)
    bottom = torch.where(inked_rows, rows, -torch.inf).amax(dim=1)
    height = (bottom - top + 1).clamp_min(1)

    def centre(row: torch.Tensor) -> torch.Tensor:
        line = ones[torch.arange(n), 0, row.clamp(0, side - 1).long()]  # (n, side)
        return (line * rows).sum(dim=1) / line.sum(dim=1).clamp_min(1e-6)

    width = (ink.sum(dim=(1, 2)) / height).clamp(1.5, 4.0)
    length = height * uniform_per_image(n, *FLAG_LENGTH, generator)
    angle = torch.deg2rad(uniform_per_image(n, *FLAG_ANGLE_DEG, generator))
    head = torch.stack([top, centre(top)], dim=1)
    flag_end = head + torch.stack([length * torch.sin(angle), -length * torch.cos(angle)], dim=1)
    foot = torch.stack([bottom, centre(bottom)], dim=1)
    half = height * uniform_per_image(n, *BASE_HALF_WIDTH, generator)
    based = (torch.rand(n, generator=generator) < BASE_SHARE).view(n, 1)
    offset = torch.stack([torch.zeros(n), half], dim=1)
    nan = torch.full_like(foot, math.nan)
    base_start = torch.where(based, foot - offset, nan)
    base_end = torch.where(based, foot + offset, nan)
    drawn = torch.maximum(
        _stroke(side, head, flag_end, width), _stroke(side, base_start, base_end, width)
    )
    usable = (inked_rows.sum(dim=1) >= MIN_HEIGHT) & (head[:, 1] >= foot[:, 1] - 1)
    return drawn, usable


def _stroke(side: int, start: torch.Tensor, end: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """(n, 1, side, side) ink of a straight stroke per image, anti-aliased over one pixel;
    zero where the segment is NaN."""
    n = start.shape[0]
    coords = torch.arange(side, dtype=start.dtype)
    py, px = coords.view(1, side, 1), coords.view(1, 1, side)
    ay, ax = start[:, 0].view(n, 1, 1), start[:, 1].view(n, 1, 1)
    dy, dx = (end[:, 0] - start[:, 0]).view(n, 1, 1), (end[:, 1] - start[:, 1]).view(n, 1, 1)
    along = (((py - ay) * dy + (px - ax) * dx) / (dy * dy + dx * dx).clamp_min(1e-6)).clamp(0, 1)
    distance = torch.hypot(py - (ay + along * dy), px - (ax + along * dx))
    ink = (width.view(n, 1, 1) / 2 + 0.5 - distance).clamp(0, 1)
    return torch.nan_to_num(ink, nan=0.0).unsqueeze(1)


def flag_ones(
    x: torch.Tensor, y: torch.Tensor, share: float, generator: torch.Generator
) -> torch.Tensor:
    """``x`` (N, 1, 28, 28) in 0..1 with ``share`` of its 1s (labels ``y``) given a flag and
    some a base; a new tensor (or ``x`` itself when none is chosen), the caller's untouched."""
    chosen = (torch.rand(len(y), generator=generator) < share) & (y == 1)
    picked = chosen.nonzero().flatten()
    if not len(picked):
        return x
    ones = x[picked]
    drawn, usable = _flags(ones, generator)
    out = x.clone()
    out[picked] = torch.where(usable.view(-1, 1, 1, 1), torch.maximum(ones, drawn), ones)
    return out
