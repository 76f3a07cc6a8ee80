"""The Non-local paper's fully-convolutional video test: clips × 3 crops, scores averaged."""

from __future__ import annotations

import torch
from torch import nn

from nlgc.clips import clip_indices, clip_starts, crop_offsets, resize_short_side
from nlgc.common import eval_mode


def view_scores(
    model: nn.Module,
    clips: torch.Tensor,
    num_crops: int = 3,
    batch_size: int = 6,
    multi_label: bool = False,
) -> torch.Tensor:
    """Class probabilities of every view of one video: its clips × square crops (softmax, or
    with ``multi_label`` a sigmoid per class).

    Each clip gives ``num_crops`` (1 or 3) crops of its short side along its long side (centre,
    or both ends and the centre); the model runs on every view in eval mode without gradients
    and gives softmax scores.

    Args:
        model: a video classifier taking (B, C, T, S, S).
        clips: (K, C, T, H, W) float clips, normalised as the model expects.

    Returns:
        (K·num_crops, num_classes) probabilities, clip-major.
    """
    if not isinstance(clips, torch.Tensor) or clips.dim() != 5 or not clips.is_floating_point():
        got = tuple(clips.shape) if isinstance(clips, torch.Tensor) else type(clips).__name__
        raise ValueError(f"clips must be a float tensor of shape (K, C, T, H, W), got {got}")
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    height, width = clips.shape[-2:]
    crop = min(height, width)
    views = []
    for offset in crop_offsets(max(height, width), crop, num_crops):
        if height > width:
            views.append(clips[..., offset : offset + crop, :])
        else:
            views.append(clips[..., offset : offset + crop])
    views = torch.stack(views, 1).flatten(0, 1)  # (K·crops, C, T, S, S), clip-major
    with eval_mode(model), torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in views.split(batch_size)])
    return logits.sigmoid() if multi_label else logits.softmax(-1)


def multi_view_scores(
    model: nn.Module, clips: torch.Tensor, num_crops: int = 3, batch_size: int = 6
) -> torch.Tensor:
    """(num_classes,) class probabilities of one video: :func:`view_scores` averaged over its
    clips and crops (the Non-local paper's test)."""
    return view_scores(model, clips, num_crops, batch_size).mean(0)


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
    ``short_side`` along the long side (:func:`multi_view_scores`), as in the Non-local paper's
    test protocol. For video files, ``nlgc.data.MultiClipVideos`` decodes only these clips.

    Args:
        model: a video classifier taking (B, C, T, H, W).
        video: (C, T, H, W) float tensor, already normalised as the model expects.

    Returns:
        (num_classes,) averaged probabilities.
    """
    if not isinstance(video, torch.Tensor) or video.dim() != 4 or not video.is_floating_point():
        got = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"video must be a float tensor of shape (C, T, H, W), got {got}")
    for name, value in (
        ("clip_len", clip_len),
        ("frame_interval", frame_interval),
        ("num_clips", num_clips),
        ("short_side", short_side),
    ):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    num_frames = video.shape[1]
    starts = clip_starts(num_frames, clip_len * frame_interval, num_clips)
    index = [clip_indices(start, clip_len, frame_interval, num_frames) for start in starts]
    clips = video[:, index].transpose(0, 1)  # (K, C, T, H, W)
    frames = resize_short_side(clips.transpose(1, 2).flatten(0, 1), short_side)
    clips = frames.unflatten(0, (num_clips, clip_len)).transpose(1, 2)  # (K, C, T, H', W')
    return multi_view_scores(model, clips, num_crops, batch_size)
