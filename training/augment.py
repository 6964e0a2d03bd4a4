"""Batched data augmentation in torch: whole batches at once, no per-image PIL loops.

People write with other pens and hands than MNIST's writers: thick markers and fine pens,
slanted or rotated digits, and images that reach us blurred or at low resolution (phone photos,
small scans, upscaled thumbnails). Each transform below models one of those, generically; none
is tuned to a particular test set. Inputs and outputs are (N, 1, 28, 28) float tensors in 0..1,
white ink on black.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

BOX = 20.0  # MNIST fits the ink into a 20x20 box inside the 28x28 image
INK_THRESHOLD = 0.1  # what counts as ink when measuring the box


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of each transform; probabilities are per image."""

    rotate_deg: float = 12.0
    shear: float = 0.25  # horizontal shear factor: slant of italic handwriting
    aspect: float = 0.15  # +-15 % width/height change: narrow and wide writers
    box_scale: tuple[float, float] = (0.9, 1.05)  # of the 20-pixel box the ink is refitted to
    shift_px: float = 1.5  # centre-of-mass jitter around (14, 14) after refitting
    p_elastic: float = 0.3  # wobbly, uneven strokes (Simard et al. 2003 elastic distortion)
    elastic_px: float = 1.5  # largest local displacement, in pixels
    elastic_cells: int = 5  # the smooth displacement field is interpolated from 5x5 nodes
    p_thicken: float = 0.4  # heavy pens and markers
    p_thin: float = 0.15  # fine pens
    p_low_res: float = 0.3  # blocky, upscaled small images
    low_res_sides: tuple[int, int] = (9, 13)  # the image passes through side x side pixels
    p_blur: float = 0.1  # out-of-focus photos, soft scans


def _per_image(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _chosen(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=generator) < p).view(n, 1, 1, 1)


def stroke_width(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Grey-level dilation (max filter) thickens strokes, erosion (min filter) thins them; a
    random blend with the original gives widths in between rather than two fixed sizes."""
    n = x.shape[0]
    # One dilation size per batch (3, 5 or 7 pixels wide) keeps this a single pooling call.
    size = 3 + 2 * int(torch.randint(0, 3, (1,), generator=generator))
    dilated = F.max_pool2d(x, kernel_size=size, stride=1, padding=size // 2)
    eroded = -F.max_pool2d(-x, kernel_size=3, stride=1, padding=1)
    thick_amount = _per_image(n, 0.4, 1.0, generator).view(n, 1, 1, 1)
    thin_amount = _per_image(n, 0.3, 0.7, generator).view(n, 1, 1, 1)
    thicker = x + thick_amount * (dilated - x)
    thinner = x + thin_amount * (eroded - x)
    roll = torch.rand(n, generator=generator).view(n, 1, 1, 1)
    out = torch.where(roll < cfg.p_thicken, thicker, x)
    return torch.where((roll >= cfg.p_thicken) & (roll < cfg.p_thicken + cfg.p_thin), thinner, out)


def random_affine(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Rotation, slant (shear) and aspect change, composed into one resampling about the centre.

    Overall size and position are left to `refit`, as the service's normalisation fixes them."""
    n = x.shape[0]
    angle = torch.deg2rad(_per_image(n, -cfg.rotate_deg, cfg.rotate_deg, generator))
    shear = _per_image(n, -cfg.shear, cfg.shear, generator)
    aspect = _per_image(n, -cfg.aspect, cfg.aspect, generator)
    sx, sy = 1 + aspect, 1 - aspect
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Forward map A = R @ Shear @ S; affine_grid wants the inverse (output -> input coordinates).
    a = torch.stack(
        [
            torch.stack([cos * sx, (cos * shear - sin) * sy], dim=-1),
            torch.stack([sin * sx, (sin * shear + cos) * sy], dim=-1),
        ],
        dim=-2,
    )  # (N, 2, 2)
    theta = torch.cat([torch.linalg.inv(a), torch.zeros(n, 2, 1, dtype=x.dtype)], dim=-1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def elastic(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Smooth random displacement field: strokes bend and wobble like a hand's, locally."""
    n, _, height, width = x.shape
    nodes = torch.rand(n, 2, cfg.elastic_cells, cfg.elastic_cells, generator=generator) * 2 - 1
    field = F.interpolate(nodes, size=(height, width), mode="bicubic", align_corners=True)
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=x.dtype).view(1, 2, 1, 1)
    displacement = (field * cfg.elastic_px * scale).permute(0, 2, 3, 1)  # (N, H, W, 2) as (x, y)
    identity = torch.eye(2, 3, dtype=x.dtype).expand(n, 2, 3)
    grid = F.affine_grid(identity, list(x.shape), align_corners=False) + displacement
    bent = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return torch.where(_chosen(n, cfg.p_elastic, generator), bent, x)


def refit(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Fit the ink into the MNIST box again (longer side BOX pixels, centre of mass at the
    centre), with a little jitter: a thickened or slanted digit reaches the model only after
    the service's normalisation, so training sees it the same way."""
    n, _, height, width = x.shape
    ink = x[:, 0] > INK_THRESHOLD  # (N, H, W)
    rows, cols = ink.any(dim=2), ink.any(dim=1)  # (N, H), (N, W)
    extent_h = _extent(rows)
    extent_w = _extent(cols)
    has_ink = (extent_h > 0) & (extent_w > 0)
    box = BOX * _per_image(n, *cfg.box_scale, generator)
    scale = torch.where(has_ink, box / torch.maximum(extent_h, extent_w).clamp_min(1), 1.0)
    mass = x[:, 0].sum(dim=(1, 2)).clamp_min(1e-6)
    cy = (x[:, 0].sum(dim=2) * torch.arange(height, dtype=x.dtype)).sum(dim=1) / mass
    cx = (x[:, 0].sum(dim=1) * torch.arange(width, dtype=x.dtype)).sum(dim=1) / mass
    ty = height / 2 + _per_image(n, -cfg.shift_px, cfg.shift_px, generator)
    tx = width / 2 + _per_image(n, -cfg.shift_px, cfg.shift_px, generator)
    # Output pixel j samples input pixel c + (j - t) / scale; in affine_grid's normalised
    # coordinates (align_corners=False) that is u_in = u_out / scale + offset.
    offset_x = (2 * cx + 1) / width - 1 + (width - 1 - 2 * tx) / (width * scale)
    offset_y = (2 * cy + 1) / height - 1 + (height - 1 - 2 * ty) / (height * scale)
    zero = torch.zeros(n, dtype=x.dtype)
    theta = torch.stack(
        [
            torch.stack([1 / scale, zero, offset_x], dim=-1),
            torch.stack([zero, 1 / scale, offset_y], dim=-1),
        ],
        dim=-2,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    fitted = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return torch.where(has_ink.view(n, 1, 1, 1), fitted, x)


def _extent(any_ink: torch.Tensor) -> torch.Tensor:
    """Pixels from the first to the last True along dim 1 (0 when none)."""
    index = torch.arange(any_ink.shape[1], dtype=torch.float32)
    last = torch.where(any_ink, index, -1.0).amax(dim=1)
    first = torch.where(any_ink, index, float(any_ink.shape[1])).amin(dim=1)
    return (last - first + 1).clamp_min(0)


def low_resolution(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Average down to a few pixels and back up: blocky (nearest) or soft (bilinear)."""
    n, _, height, width = x.shape
    low, high = cfg.low_res_sides
    side = int(torch.randint(low, high + 1, (1,), generator=generator))
    small = F.adaptive_avg_pool2d(x, side)
    blocky = F.interpolate(small, size=(height, width), mode="nearest")
    soft = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
    use_blocky = _chosen(n, 0.5, generator)
    degraded = torch.where(use_blocky, blocky, soft)
    return torch.where(_chosen(n, cfg.p_low_res, generator), degraded, x)


def blur(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur of random strength (sigma 0.5..1.2 px), applied per image."""
    n = x.shape[0]
    sigma = _per_image(n, 0.5, 1.2, generator)
    offsets = torch.arange(-2, 3, dtype=x.dtype)
    kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (N, 5)
    # Separable blur with a different kernel per image: images as channels, grouped conv.
    flat = x.transpose(0, 1)  # (1, N, H, W)
    rows = F.conv2d(F.pad(flat, (2, 2, 0, 0)), kernel.view(n, 1, 1, 5), groups=n)
    both = F.conv2d(F.pad(rows, (0, 0, 2, 2)), kernel.view(n, 1, 5, 1), groups=n)
    blurred = both.transpose(0, 1)
    return torch.where(_chosen(n, cfg.p_blur, generator), blurred, x)


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Pen, hand and camera variation for one batch; output stays in 0..1."""
    x = stroke_width(x, cfg, generator)
    x = random_affine(x, cfg, generator)
    x = elastic(x, cfg, generator)
    x = refit(x, cfg, generator)
    x = low_resolution(x, cfg, generator)
    x = blur(x, cfg, generator)
    peak = x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    # Resampling dims the ink; the service stretches ink to full brightness, so do the same.
    return (x / peak).clamp(0.0, 1.0)
