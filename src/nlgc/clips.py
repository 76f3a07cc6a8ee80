"""Where clips and crops lie in a video, the short-side resize and the centre crop: plain index
and tensor arithmetic that the weights' transforms (:class:`nlgc.models.preprocessing.
Preprocessing`), data loading (``nlgc.data``) and the video test (``nlgc.evaluation``) share.

A clip of ``clip_len`` frames taken every ``frame_interval`` frames spans
``clip_len * frame_interval`` frames; a video shorter than that is looped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_indices(start: int, clip_len: int, frame_interval: int, num_frames: int) -> list[int]:
    """Frame indices ``start, start + interval, …`` (``clip_len`` of them), modulo the video's
    ``num_frames`` so a short video loops."""
    return [(start + i * frame_interval) % num_frames for i in range(clip_len)]


def clip_starts(num_frames: int, span: int, num_clips: int) -> list[int]:
    """First frames of ``num_clips`` clips of ``span`` frames spread uniformly over the video
    (one clip: the centre one)."""
    last = max(num_frames - span, 0)
    if num_clips == 1:
        return [last // 2]
    return [round(i * last / (num_clips - 1)) for i in range(num_clips)]


def random_clip_start(num_frames: int, span: int) -> int:
    """A uniformly random first frame for a clip of ``span`` frames (training), drawn from
    torch's global generator so seeded runs repeat."""
    return int(torch.randint(0, max(num_frames - span, 0) + 1, ()).item())


def uniform_indices(num_frames: int, count: int) -> list[int]:
    """``count`` frame indices spread uniformly from the first to the last frame."""
    return torch.linspace(0, num_frames - 1, count).round().long().tolist()


def crop_offsets(long_side: int, crop: int, num_crops: int) -> list[int]:
    """Offsets along the long side: centre (1 crop) or both ends and the centre (3 crops)."""
    centre = (long_side - crop) // 2
    return [centre] if num_crops == 1 else [0, centre, long_side - crop]


def resize_short_side(frames: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """(N, C, H, W) frames resized (``mode`` bilinear or bicubic, antialiased) so the short side
    is ``size``.

    uint8 frames stay uint8 (PyTorch's vectorised uint8 kernel, several times faster than
    float; within one grey level of the float result).
    """
    if frames.dtype == torch.uint8:
        frames = frames.contiguous(memory_format=torch.channels_last)
    h, w = frames.shape[-2:]
    scale = size / min(h, w)
    resized = (max(size, round(h * scale)), max(size, round(w * scale)))
    return F.interpolate(frames, size=resized, mode=mode, align_corners=False, antialias=True)


def resize_and_crop(
    pixels: torch.Tensor, size: int, crop: int | None = None, mode: str = "bilinear"
) -> torch.Tensor:
    """(3, [T,] H, W) uint8 → short side resized to ``size`` (``mode``), centre crop of side
    ``crop`` (default ``size``): (3, [T,] crop, crop) uint8 (4× less to move to a device than
    float; ``x.float() / 255`` there)."""
    crop = crop or size
    if crop > size:
        raise ValueError(f"crop must be at most the resized short side {size}, got {crop}")
    video = pixels.dim() == 4
    frames = pixels.transpose(0, 1) if video else pixels.unsqueeze(0)  # (T, 3, H, W)
    frames = resize_short_side(frames, size, mode)  # uint8 → uint8
    top, left = (frames.shape[-2] - crop) // 2, (frames.shape[-1] - crop) // 2
    frames = frames[..., top : top + crop, left : left + crop].contiguous()
    return frames.transpose(0, 1) if video else frames[0]


def keep_ratio_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv's ``rescale_size`` with ``keep_ratio``: the (H, W) that fits (H, W) into ``scale``
    (long side, short side) with the aspect ratio kept."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def resize_to_fit(
    pixels: torch.Tensor, scale: tuple[int, int], mode: str = "bilinear"
) -> torch.Tensor:
    """(3, H, W) uint8 → (3, H', W') uint8 fit into ``scale`` (long side, short side) with the
    aspect ratio kept (:func:`keep_ratio_size`), not antialiased (as OpenCV's resize)."""
    size = keep_ratio_size(*pixels.shape[-2:], scale)
    if size == tuple(pixels.shape[-2:]):
        return pixels
    resized = F.interpolate(pixels[None].float(), size=size, mode=mode, align_corners=False)[0]
    return resized.round().clamp(0, 255).to(torch.uint8)
