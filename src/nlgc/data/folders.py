"""Class-per-folder datasets of images (Pillow) and videos (PyAV).

    root/train/<class>/*.jpg        root/val/<class>/*.jpg         (images)
    root/train/<class>/*.mp4        root/val/<class>/*.mp4         (videos)

Classes come from the train split's folder names, sorted, so every split shares one mapping.
A missing or empty folder or a class without files is an error naming the path. A file that
cannot be decoded is an error naming it, or, with ``skip_corrupt=True``, is left out when the
dataset is built and counted in ``skipped``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.utils.data import Dataset

from nlgc.clips import clip_indices, clip_starts, random_clip_start, resize_short_side
from nlgc.data.io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, read_image, resize_and_crop
from nlgc.data.video import probe_video, read_frames

log = logging.getLogger(__name__)


def list_classes(root: Path, split: str = "train") -> list[str]:
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(
            f"data folder not found: {folder} (expected {root}/{split}/<class>/)"
        )
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{folder} has no class folders (expected {folder}/<class>/<files>)")
    return classes


class MediaFolder(Dataset):
    """Files of one split, labelled by their class folder. Subclasses decode one file."""

    suffixes: frozenset[str] = frozenset()

    def __init__(self, root, split: str, classes: list[str] | None = None, skip_corrupt=False):
        self.root, self.split = Path(root), split
        self.classes = classes or list_classes(self.root, "train")
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(self.classes):
            folder = self.root / split / name
            if not folder.is_dir():
                raise FileNotFoundError(f"class folder missing in split {split!r}: {folder}")
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in self.suffixes)
            if not files:
                raise ValueError(
                    f"class {name!r} has no files in {folder} (looked for {sorted(self.suffixes)})"
                )
            self.samples += [(path, label) for path in files]
        self.skipped: list[Path] = []
        if skip_corrupt:
            readable = []
            for path, label in self.samples:
                try:
                    self.check(path)
                    readable.append((path, label))
                except ValueError as error:
                    self.skipped.append(path)
                    log.warning("skipping %s", error)
            self.samples = readable
            if self.skipped:
                log.warning("%s/%s: skipped %d unreadable files", root, split, len(self.skipped))
            if not self.samples:
                raise ValueError(f"no readable files in {self.root / split}")

    def check(self, path: Path) -> None:
        """Raise ValueError if ``path`` cannot be decoded."""
        self.load(path)

    def load(self, path: Path) -> torch.Tensor:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return self.load(path), label


class ImageFolder(MediaFolder):
    """Images resized (short side) and centre-cropped to ``size``: (3, size, size) uint8."""

    suffixes = IMAGE_SUFFIXES

    def __init__(self, root, split, size=224, classes=None, skip_corrupt=False):
        self.size = size
        super().__init__(root, split, classes, skip_corrupt)

    def load(self, path: Path) -> torch.Tensor:
        return resize_and_crop(read_image(path), self.size)


class VideoFolder(MediaFolder):
    """Clips of ``clip_len`` frames taken every ``frame_interval`` frames: (3, T, size, size)
    uint8 (the training module converts to float on the device).

    ``random_start`` picks the clip anywhere in the video (training); otherwise the centre clip.
    A video shorter than a clip is looped. Only the clip's frames are decoded
    (:func:`nlgc.data.video.read_frames`); frame counts come from the container, once per file.
    """

    suffixes = VIDEO_SUFFIXES

    def __init__(
        self,
        root,
        split,
        clip_len=8,
        frame_interval=8,
        size=224,
        random_start=False,
        classes=None,
        skip_corrupt=False,
        threads=0,
    ):
        self.clip_len, self.frame_interval, self.size = clip_len, frame_interval, size
        self.random_start, self.threads = random_start, threads
        super().__init__(root, split, classes, skip_corrupt)

    def check(self, path: Path) -> None:
        read_frames(path, [0], threads=1)

    def load(self, path: Path) -> torch.Tensor:
        num_frames = probe_video(path).num_frames
        span = self.clip_len * self.frame_interval
        if self.random_start:
            start = random_clip_start(num_frames, span)
        else:
            start = clip_starts(num_frames, span, 1)[0]
        index = clip_indices(start, self.clip_len, self.frame_interval, num_frames)
        return resize_and_crop(read_frames(path, index, self.threads), self.size)


class MultiClipVideos(Dataset):
    """Whole videos for the Non-local paper's test: ``num_clips`` clips spread uniformly over
    each video, read in one forward pass over the file, short side resized to ``short_side``.

    Items are ((num_clips, 3, clip_len, H', W') uint8, label), min(H', W') = ``short_side``;
    the spatial crops are taken by the model's test step.
    """

    def __init__(self, folder: VideoFolder, num_clips: int = 10, short_side: int = 256):
        self.folder, self.num_clips, self.short_side = folder, num_clips, short_side

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int):
        path, label = self.folder.samples[index]
        clip_len, interval = self.folder.clip_len, self.folder.frame_interval
        num_frames = probe_video(path).num_frames
        starts = clip_starts(num_frames, clip_len * interval, self.num_clips)
        indices = [clip_indices(s, clip_len, interval, num_frames) for s in starts]
        unique = sorted({i for clip in indices for i in clip})
        frames = read_frames(path, unique, self.folder.threads).transpose(0, 1)  # (U, 3, H, W)
        frames = resize_short_side(frames, self.short_side)  # uint8
        position = {frame: i for i, frame in enumerate(unique)}
        gather = torch.tensor([[position[i] for i in clip] for clip in indices])
        clips = frames[gather]  # (clips, T, 3, H', W')
        return clips.transpose(1, 2), label  # (clips, 3, T, H', W')
