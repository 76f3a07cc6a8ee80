"""Reading images (Pillow) and videos (PyAV) into tensors, with errors that name the file."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})


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
                raise ValueError(
                    f"{path} is neither an image ({sorted(IMAGE_SUFFIXES)}) "
                    f"nor a video ({sorted(VIDEO_SUFFIXES)})"
                )
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
    """A video file's frames as a (3, T, H, W) uint8 RGB tensor (the first ``max_frames``).

    The plain full decode: the reference that :func:`nlgc.data.video.read_frames`, which
    decodes only the frames a clip needs, is tested against. Use that one to load clips.
    """
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


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: int | Fraction = 30,
    gop: int = 250,
    codec: str = "libx264",
    pts: list[int] | None = None,
) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames (H, W even) into a video file with PyAV.

    Args:
        fps: frame rate; the stream's time base is 1/fps unless ``pts`` is given.
        gop: frames from one keyframe to the next (scene-cut keyframes are off for libx264).
        codec: an FFmpeg encoder (``libx264`` with B-frames, ``mpeg4``, ``libvpx-vp9``, …).
        pts: explicit presentation timestamps in units of 1/(1000·fps), e.g. for a variable
            frame rate or a first timestamp that is not 0.
    """
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        if codec in ("libx264", "h264"):
            stream.options = {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, 1000 * Fraction(fps))
        for t, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[t], stream.codec_context.time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
