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

from training.config import DIGIT_BOX

INK_THRESHOLD = 0.1  # what counts as ink when measuring the box


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of each transform; probabilities are per image."""

    rotate_deg: float = 12.0
    shear: float = 0.25  # horizontal shear factor: slant of italic handwriting
    aspect: float = 0.15  # +-15 % width/height change: narrow and wide writers
    box_scale: tuple[float, float] = (0.9, 1.05)  # of the 20-pixel box the ink is refitted to
    shift_px: float = 1.5  # centre-of-mass jitter around (14, 14) after refitting
    p_elastic: float = 0.2  # wobbly, uneven strokes (Simard et al. 2003 elastic distortion)
    elastic_px: float = 1.5  # largest local displacement, in pixels
    elastic_cells: int = 5  # the smooth displacement field is interpolated from 5x5 nodes
    p_thicken: float = 0.3  # heavy pens and markers
    thicken_amount: tuple[float, float] = (0.4, 1.0)  # blend towards the dilated strokes
    p_thin: float = 0.1  # fine pens
    thin_amount: tuple[float, float] = (0.3, 0.7)  # blend towards the eroded strokes
    p_low_res: float = 0.2  # blocky, upscaled small images
    low_res_sides: tuple[int, int] = (9, 13)  # the image passes through side x side pixels
    p_blur: float = 0.05  # out-of-focus photos, soft scans
    blur_sigma: tuple[float, float] = (0.5, 1.2)  # pixels


def uniform_per_image(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """(n,) draws from U(low, high): one strength per image of a batch."""
    return low + (high - low) * torch.rand(n, generator=generator)


def _chosen(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=generator) < p).view(n, 1, 1, 1)


def _max_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square max filter as two 1-D passes: 2k comparisons per pixel instead of k squared."""
    rows = F.max_pool2d(x, kernel_size=(1, size), stride=1, padding=(0, size // 2))
    return F.max_pool2d(rows, kernel_size=(size, 1), stride=1, padding=(size // 2, 0))


def stroke_width(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Grey-level dilation (max filter) thickens strokes, erosion (min filter) thins them; a
    random blend with the original gives widths in between rather than two fixed sizes.

    Only the chosen images are filtered: the filters are most of this step's cost.
    """
    n = x.shape[0]
    # One dilation size per batch (3, 5 or 7 pixels wide) keeps this a single pooling call.
    size = 3 + 2 * int(torch.randint(0, 3, (1,), generator=generator))
    thick_amount = uniform_per_image(n, *cfg.thicken_amount, generator).view(n, 1, 1, 1)
    thin_amount = uniform_per_image(n, *cfg.thin_amount, generator).view(n, 1, 1, 1)
    roll = torch.rand(n, generator=generator)
    thick = torch.nonzero(roll < cfg.p_thicken).squeeze(1)
    thin = torch.nonzero((roll >= cfg.p_thicken) & (roll < cfg.p_thicken + cfg.p_thin)).squeeze(1)
    out = x.clone()
    if len(thick):
        part = x[thick]
        out[thick] = part + thick_amount[thick] * (_max_filter(part, size) - part)
    if len(thin):
        part = x[thin]
        out[thin] = part + thin_amount[thin] * (-_max_filter(-part, 3) - part)
    return out


def _forward_affine(n: int, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Rotation, slant (shear) and aspect change about the centre: (N, 2, 2), input -> output
    in affine_grid's normalised coordinates. Overall size and position are left to the refit,
    as the service's normalisation fixes them."""
    angle = torch.deg2rad(uniform_per_image(n, -cfg.rotate_deg, cfg.rotate_deg, generator))
    shear = uniform_per_image(n, -cfg.shear, cfg.shear, generator)
    aspect = uniform_per_image(n, -cfg.aspect, cfg.aspect, generator)
    sx, sy = 1 + aspect, 1 - aspect
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack(  # R @ Shear @ S
        [
            torch.stack([cos * sx, (cos * shear - sin) * sy], dim=-1),
            torch.stack([sin * sx, (sin * shear + cos) * sy], dim=-1),
        ],
        dim=-2,
    )


def _elastic_displacement(
    x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Smooth random displacement field (N, H, W, 2), zero for the images not chosen: strokes
    bend and wobble like a hand's, locally (Simard et al. 2003)."""
    n, _, height, width = x.shape
    nodes = torch.rand(n, 2, cfg.elastic_cells, cfg.elastic_cells, generator=generator) * 2 - 1
    chosen = torch.nonzero(_chosen(n, cfg.p_elastic, generator).view(n)).squeeze(1)
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=x.dtype).view(1, 2, 1, 1)
    field = torch.zeros(n, 2, height, width, dtype=x.dtype)
    if len(chosen):  # interpolating only the chosen fields: bicubic is not cheap
        smooth = F.interpolate(
            nodes[chosen], size=(height, width), mode="bicubic", align_corners=True
        )
        field[chosen] = smooth * cfg.elastic_px * scale
    return field.permute(0, 2, 3, 1)


def _pixel_centres(side: int, dtype: torch.dtype) -> torch.Tensor:
    """(side * side, 2) normalised (x, y) centres of the pixels, row-major."""
    centres = (2 * torch.arange(side, dtype=dtype) + 1) / side - 1
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)


def geometry(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Affine distortion, elastic wobble and the refit into the MNIST box, as ONE resampling.

    The refit fits the ink into the 20x20 box again (longer side DIGIT_BOX pixels, centre of mass at
    the centre, with a little jitter): a slanted or thickened digit reaches the model only after
    the service's normalisation, so training sees it the same way. Its box and centre of mass
    are measured on the ink's pixel centres moved by the affine map, not on a resampled image,
    so each training image is interpolated once: every bilinear pass softens the strokes, and
    test images are crisp. (The elastic field, at most ``elastic_px``, is left out of the
    measurement; the box jitter is larger.)
    """
    n, _, height, width = x.shape
    if height != width:
        raise ValueError(f"square images expected, got {height}x{width}")
    forward = _forward_affine(n, cfg, generator)  # (N, 2, 2)
    weight = x[:, 0].reshape(n, -1)  # (N, H*W)
    moved = _pixel_centres(width, x.dtype) @ forward.transpose(1, 2)  # (N, H*W, 2)
    ink = (weight > INK_THRESHOLD).unsqueeze(-1)
    ink_count = ink.sum(dim=1)  # (N, 1)
    has_ink = ink_count.squeeze(-1) > 0
    # Non-ink pixels are moved onto the ink's mean point, which lies inside the ink's box, so
    # one min/max pass over all pixels gives the ink's box.
    inside = (moved * ink).sum(dim=1, keepdim=True) / ink_count.clamp_min(1).unsqueeze(-1)
    low, high = torch.aminmax(torch.where(ink, moved, inside), dim=1)  # (N, 2) each
    extent = ((high - low) * width / 2 + 1).amax(dim=1)  # longer side, in pixels
    extent = torch.where(has_ink, extent, torch.ones_like(extent))
    mass = weight.sum(dim=1, keepdim=True).clamp_min(1e-6)
    centre = (moved * weight.unsqueeze(-1)).sum(dim=1) / mass  # (N, 2) normalised
    box = DIGIT_BOX * uniform_per_image(n, *cfg.box_scale, generator)
    scale = torch.where(has_ink, box / extent.clamp_min(1), torch.ones_like(box))
    jitter = (
        torch.stack(
            [uniform_per_image(n, -cfg.shift_px, cfg.shift_px, generator) for _ in range(2)], dim=-1
        )
        * (2 / width)
        + 1 / width
    )  # target centre of mass: pixel (14, 14), normalised
    # Output u samples the distorted image at v = centre + (u - jitter) / scale, which is the
    # input at inverse(forward) @ v.
    centre = torch.where(has_ink.unsqueeze(-1), centre, jitter)
    inverse = torch.linalg.inv(forward)
    linear = inverse / scale.view(n, 1, 1)
    offset = inverse @ (centre - jitter / scale.view(n, 1)).unsqueeze(-1)  # (N, 2, 1)
    theta = torch.cat([linear, offset], dim=-1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    grid = grid + _elastic_displacement(x, cfg, generator)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def low_resolution(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Average down to a few pixels and back up: blocky (nearest) or soft (bilinear).

    Only the chosen images (``cfg.p_low_res`` of them) are resampled; the draws are made for
    every image, in the same order either way, so the choice of images does not depend on how
    this is computed.
    """
    n, _, height, width = x.shape
    low, high = cfg.low_res_sides
    side = int(torch.randint(low, high + 1, (1,), generator=generator))
    use_blocky = _chosen(n, 0.5, generator).view(n)
    chosen = _chosen(n, cfg.p_low_res, generator).view(n)
    out = x.clone()
    for blocky, mode in ((True, "nearest"), (False, "bilinear")):
        pick = torch.nonzero(chosen & (use_blocky == blocky)).squeeze(1)
        if len(pick):
            small = F.adaptive_avg_pool2d(x[pick], side)
            corners = {} if blocky else {"align_corners": False}
            out[pick] = F.interpolate(small, size=(height, width), mode=mode, **corners)
    return out


def blur(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur of random strength (``cfg.blur_sigma``), applied to the chosen images."""
    n = x.shape[0]
    sigma = uniform_per_image(n, *cfg.blur_sigma, generator)
    pick = torch.nonzero(_chosen(n, cfg.p_blur, generator).view(n)).squeeze(1)
    if not len(pick):
        return x
    offsets = torch.arange(-2, 3, dtype=x.dtype)
    kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma[pick].view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (K, 5)
    # Separable blur with a different kernel per image: images as channels, grouped conv.
    k = len(pick)
    flat = x[pick].transpose(0, 1)  # (1, K, H, W)
    rows = F.conv2d(F.pad(flat, (2, 2, 0, 0)), kernel.view(k, 1, 1, 5), groups=k)
    both = F.conv2d(F.pad(rows, (0, 0, 2, 2)), kernel.view(k, 1, 5, 1), groups=k)
    out = x.clone()
    out[pick] = both.transpose(0, 1)
    return out


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Pen, hand and camera variation for one batch; output stays in 0..1."""
    x = stroke_width(x, cfg, generator)
    x = geometry(x, cfg, generator)
    x = low_resolution(x, cfg, generator)
    x = blur(x, cfg, generator)
    peak = x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    # Resampling dims the ink; the service stretches ink to full brightness, so do the same.
    return (x / peak).clamp(0.0, 1.0)
