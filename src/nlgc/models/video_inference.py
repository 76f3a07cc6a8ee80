"""The Non-local paper's fully-convolutional video test: clips × 3 crops, scores averaged."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def clip_starts(num_frames: int, span: int, num_clips: int) -> list[int]:
    """First frames of ``num_clips`` clips of ``span`` frames, spread uniformly over the video."""
    last = max(num_frames - span, 0)
    if num_clips == 1:
        return [last // 2]
    return [round(i * last / (num_clips - 1)) for i in range(num_clips)]


def crop_offsets(long_side: int, crop: int, num_crops: int) -> list[int]:
    """Offsets along the long side: centre (1 crop) or both ends and the centre (3 crops)."""
    centre = (long_side - crop) // 2
    return [centre] if num_crops == 1 else [0, centre, long_side - crop]


def fully_convolutional_scores(
    model: nn.Module,
    video: torch.Tensor,
    clip_len: int = 32,
    frame_interval: int = 2,
    num_clips: int = 10,
    num_crops: int = 3,
    short_side: int = 256,
    batch_size: int = 6,
) -> torch.Tensor:
    """Class probabilities of a whole video, averaged over clips and spatial crops.

    The video is resized so its short side is ``short_side``; ``num_clips`` clips of
    ``clip_len`` frames taken every ``frame_interval`` frames are spread over its length (a video
    shorter than one clip is looped); each clip gives ``num_crops`` (1 or 3) square crops of
    ``short_side`` along the long side. The model runs fully convolutionally on every view and
    the softmax scores are averaged, as in the Non-local paper's test protocol.

    Args:
        model: a video classifier taking (B, C, T, H, W).
        video: (C, T, H, W) float tensor, already normalised as the model expects.

    Returns:
        (num_classes,) averaged probabilities.
    """
    if not isinstance(video, torch.Tensor) or video.dim() != 4 or not video.is_floating_point():
        got = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"video must be a float tensor of shape (C, T, H, W), got {got}")
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    for name, value in (("clip_len", clip_len), ("frame_interval", frame_interval),
                        ("num_clips", num_clips), ("short_side", short_side)):  # fmt: skip
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    _, num_frames, height, width = video.shape
    scale = short_side / min(height, width)
    size = (max(short_side, round(height * scale)), max(short_side, round(width * scale)))
    frames = F.interpolate(video.transpose(0, 1), size=size, mode="bilinear", align_corners=False)
    frames = frames.transpose(0, 1)  # (C, T, H', W')

    views = []
    span = clip_len * frame_interval
    for start in clip_starts(num_frames, span, num_clips):
        index = torch.arange(start, start + span, frame_interval) % num_frames
        clip = frames[:, index]  # (C, clip_len, H', W')
        vertical = size[0] > size[1]
        for offset in crop_offsets(max(size), short_side, num_crops):
            if vertical:
                views.append(clip[:, :, offset : offset + short_side, :short_side])
            else:
                views.append(clip[:, :, :short_side, offset : offset + short_side])

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            probabilities = [
                model(torch.stack(views[i : i + batch_size])).softmax(-1)
                for i in range(0, len(views), batch_size)
            ]
    finally:
        model.train(was_training)
    return torch.cat(probabilities).mean(0)
