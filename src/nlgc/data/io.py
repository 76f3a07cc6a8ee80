"""Reading images (Pillow) and videos (PyAV) into tensors, with errors that name the file."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def is_video(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def find_media(paths: Iterable[str | Path]) -> list[Path]:
    """Image and video files among ``paths``; folders are searched recursively, sorted."""
    known = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in known)
        elif path.is_file():
            if path.suffix.lower() not in known:
                raise ValueError(f"{path} is neither an image ({sorted(IMAGE_SUFFIXES)}) "
                                 f"nor a video ({sorted(VIDEO_SUFFIXES)})")  # fmt: skip
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    if not found:
        raise ValueError(f"no images or videos found in {', '.join(map(str, paths))}")
    return found


def read_image(path: str | Path) -> torch.Tensor:
    """An image file as a (3, H, W) uint8 RGB tensor."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def read_video(path: str | Path, max_frames: int | None = None) -> torch.Tensor:
    """A video file's frames as a (3, T, H, W) uint8 RGB tensor (the first ``max_frames``)."""
    import av

    frames = []
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as error:
        raise ValueError(f"cannot read video {path}: {error}") from error
    if not frames:
        raise ValueError(f"cannot read video {path}: it has no video frames")
    return torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2)


def resize_and_crop(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """(3, [T,] H, W) uint8 → float in [0, 1], short side resized to ``size``, centre crop."""
    video = pixels.dim() == 4
    frames = pixels.transpose(0, 1) if video else pixels.unsqueeze(0)  # (T, 3, H, W)
    frames = frames.float() / 255
    h, w = frames.shape[-2:]
    scale = size / min(h, w)
    resized = (max(size, round(h * scale)), max(size, round(w * scale)))
    frames = F.interpolate(
        frames, size=resized, mode="bilinear", align_corners=False, antialias=True
    )
    top, left = (resized[0] - size) // 2, (resized[1] - size) // 2
    frames = frames[..., top : top + size, left : left + size].clamp(0, 1)
    return frames.transpose(0, 1) if video else frames[0]


def normalize(pixels: torch.Tensor, channel_dim: int = 0) -> torch.Tensor:
    """ImageNet mean/std normalisation of a tensor in [0, 1] with 3 channels at ``channel_dim``
    (0 for one image or clip, 1 for a batch)."""
    shape = [1] * pixels.dim()
    shape[channel_dim] = 3
    mean = torch.tensor(IMAGENET_MEAN, device=pixels.device).view(shape)
    std = torch.tensor(IMAGENET_STD, device=pixels.device).view(shape)
    return (pixels - mean) / std


def sample_frames(clip: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` frames spread uniformly over a (3, T, H, W) clip (repeating if T < count)."""
    index = torch.linspace(0, clip.shape[1] - 1, count).round().long()
    return clip[:, index]
