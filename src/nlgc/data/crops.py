"""Training crops of clips: the papers' scale jitter and mmaction2's MultiScaleCrop.

Both take (T, 3, H, W) uint8 frames and give (T, 3, size, size) uint8, the same crop for every
frame, drawn from torch's global generator (seeded per step by the training module's workers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nlgc.clips import resize_short_side


def scale_jitter(frames: torch.Tensor, size: int, scales: tuple[int, int]) -> torch.Tensor:
    """Short side resized to a side drawn uniformly from ``scales`` = [low, high], then a
    random ``size`` crop: the Non-local paper's "[256, 320] then 224" (Caffe2
    ``TRAIN.JITTER_SCALES``, PySlowFast ``DATA.TRAIN_JITTER_SCALES``)."""
    low, high = scales
    side = int(torch.randint(low, high + 1, ()).item())
    frames = resize_short_side(frames, side)
    top = int(torch.randint(0, frames.shape[-2] - size + 1, ()).item())
    left = int(torch.randint(0, frames.shape[-1] - size + 1, ()).item())
    return frames[..., top : top + size, left : left + size].contiguous()


def multiscale_crop(
    frames: torch.Tensor, size: int, scales: tuple[float, ...], max_gap: int = 1
) -> torch.Tensor:
    """mmaction2's MultiScaleCrop with ``random_crop=False`` (``mmaction/datasets/transforms/
    processing.py``): crop sides ``short side · scale`` for width and height (scale indices at
    most ``max_gap`` apart), at one of its 13 fixed offsets (corners, centre, edge centres and
    quarter points, ``more_fix_crop``), then resized to ``size`` × ``size``. Run it after the
    short side is resized (its configs: 256)."""
    height, width = frames.shape[-2:]
    sides = [int(min(height, width) * s) for s in scales]
    pairs = [
        (w, h) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= max_gap
    ]
    crop_w, crop_h = pairs[int(torch.randint(len(pairs), ()).item())]
    step_w, step_h = (width - crop_w) // 4, (height - crop_h) // 4
    quarter = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0)]
    quarter += [(1, 1), (3, 1), (1, 3), (3, 3)]
    x, y = quarter[int(torch.randint(len(quarter), ()).item())]
    left, top = x * step_w, y * step_h
    crop = frames[..., top : top + crop_h, left : left + crop_w]
    resized = F.interpolate(crop.float(), size=(size, size), mode="bilinear", align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)
