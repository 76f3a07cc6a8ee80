"""Class-per-folder datasets of images (Pillow) and videos (PyAV), and clips of annotated videos.

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

from nlgc.clips import (
    clip_indices,
    clip_starts,
    random_clip_start,
    resize_and_crop,
    resize_short_side,
)
from nlgc.data.annotations import RAWFRAME_TEMPLATE, Annotation
from nlgc.data.crops import multiscale_crop, scale_jitter
from nlgc.data.io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, read_image
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


def scan_split(root: Path, split: str, classes: list[str], suffixes) -> list[tuple[Path, int]]:
    """(file, class index) of every file under ``root/split/<class>/`` with one of
    ``suffixes``; a missing class folder or one without files is an error naming it."""
    samples = []
    for label, name in enumerate(classes):
        folder = root / split / name
        if not folder.is_dir():
            raise FileNotFoundError(f"class folder missing in split {split!r}: {folder}")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)
        if not files:
            raise ValueError(
                f"class {name!r} has no files in {folder} (looked for {sorted(suffixes)})"
            )
        samples += [(path, label) for path in files]
    return samples


def keep_readable(samples: list, check, where) -> tuple[list, list[Path]]:
    """(the samples whose file ``check`` accepts, the files it refused), each refusal logged."""
    readable, skipped = [], []
    for sample in samples:
        try:
            check(sample[0])
            readable.append(sample)
        except ValueError as error:
            skipped.append(sample[0])
            log.warning("skipping %s", error)
    if skipped:
        log.warning("%s: skipped %d unreadable files", where, len(skipped))
    if not readable:
        raise ValueError(f"no readable files in {where}")
    return readable, skipped


class MediaFolder(Dataset):
    """Files of one split, labelled by their class folder. Subclasses decode one file."""

    suffixes: frozenset[str] = frozenset()

    def __init__(self, root, split: str, classes: list[str] | None = None, skip_corrupt=False):
        self.root, self.split = Path(root), split
        self.classes = classes or list_classes(self.root, "train")
        self.samples = scan_split(self.root, split, self.classes, self.suffixes)
        self.skipped: list[Path] = []
        if skip_corrupt:
            self.samples, self.skipped = keep_readable(self.samples, self.load, self.root / split)

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


class VideoClips(Dataset):
    """Clips of ``clip_len`` frames taken every ``frame_interval`` frames from a list of videos
    or frame folders (:class:`~nlgc.data.annotations.Annotation`): (3, T, size, size) uint8 and
    the label (an int, or with ``multi_label`` a (classes,) multi-hot float tensor).

    ``random_start`` picks the clip anywhere in the video (training); otherwise the centre clip.
    A video shorter than a clip is looped. Only the clip's frames are decoded
    (:func:`nlgc.data.video.read_frames`); frame counts come from the container, once per file.
    Training crops: ``train_scale`` ([low, high], the papers' scale jitter) or ``multiscale``
    (mmaction2's MultiScaleCrop scales, after a short side of ``resize``), else short side
    ``size`` and the centre crop.
    """

    def __init__(
        self,
        annotations: list[Annotation],
        classes: list[str],
        clip_len=8,
        frame_interval=8,
        size=224,
        random_start=False,
        threads=0,
        multi_label=False,
        train_scale: tuple[int, int] | None = None,
        multiscale: tuple[float, ...] | None = None,
        multiscale_gap: int = 1,
        resize: int = 256,
    ):
        self.annotations, self.classes = list(annotations), classes
        self.clip_len, self.frame_interval, self.size = clip_len, frame_interval, size
        self.random_start, self.threads, self.multi_label = random_start, threads, multi_label
        self.train_scale, self.multiscale = train_scale, multiscale
        self.multiscale_gap, self.resize = multiscale_gap, resize

    @property
    def samples(self) -> list[tuple[Path, int | tuple[int, ...]]]:
        return [(a.path, a.labels if self.multi_label else a.labels[0]) for a in self.annotations]

    def __len__(self) -> int:
        return len(self.annotations)

    def num_frames(self, index: int) -> int:
        annotation = self.annotations[index]
        return annotation.num_frames or probe_video(annotation.path).num_frames

    def read(self, index: int, frames: list[int]) -> torch.Tensor:
        """(3, len(frames), H, W) uint8: those frames of item ``index`` (0-based)."""
        annotation = self.annotations[index]
        if annotation.num_frames is None:
            return read_frames(annotation.path, frames, self.threads)
        images = [read_image(annotation.path / RAWFRAME_TEMPLATE.format(i + 1)) for i in frames]
        return torch.stack(images, 1)

    def target(self, index: int):
        labels = self.annotations[index].labels
        if not self.multi_label:
            return labels[0]
        hot = torch.zeros(len(self.classes))
        hot[list(labels)] = 1.0
        return hot

    def __getitem__(self, index: int):
        num_frames = self.num_frames(index)
        span = self.clip_len * self.frame_interval
        if self.random_start:
            start = random_clip_start(num_frames, span)
        else:
            start = clip_starts(num_frames, span, 1)[0]
        clip = self.read(index, clip_indices(start, self.clip_len, self.frame_interval, num_frames))
        return self._crop(clip), self.target(index)

    def _crop(self, clip: torch.Tensor) -> torch.Tensor:
        """(3, T, H, W) uint8 → (3, T, size, size): the training crop or the centre crop."""
        if not self.random_start or not (self.train_scale or self.multiscale):
            return resize_and_crop(clip, self.size)
        frames = clip.transpose(0, 1)  # (T, 3, H, W)
        if self.train_scale:
            frames = scale_jitter(frames, self.size, tuple(self.train_scale))
        else:  # mmaction2: Resize(-1, 256), MultiScaleCrop, Resize(224, 224)
            frames = resize_short_side(frames, self.resize)
            frames = multiscale_crop(frames, self.size, self.multiscale, self.multiscale_gap)
        return frames.transpose(0, 1)


class VideoFolder(VideoClips):
    """Class-per-folder videos, ``root/split/<class>/*.mp4``, as :class:`VideoClips`;
    unreadable files fail when read or, with ``skip_corrupt``, are left out here."""

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
        **crops,
    ):
        self.root, self.split = Path(root), split
        classes = classes or list_classes(self.root, "train")
        samples = scan_split(self.root, split, classes, VIDEO_SUFFIXES)
        self.skipped: list[Path] = []
        if skip_corrupt:
            check = lambda path: read_frames(path, [0], threads=1)  # noqa: E731
            samples, self.skipped = keep_readable(samples, check, self.root / split)
        annotations = [Annotation(path, (label,)) for path, label in samples]
        super().__init__(
            annotations, classes, clip_len, frame_interval, size, random_start, threads, **crops
        )


class MultiClipVideos(Dataset):
    """Whole videos for the Non-local paper's test: ``num_clips`` clips spread uniformly over
    each video, read in one forward pass over the file, short side resized to ``short_side``.

    Items are ((num_clips, 3, clip_len, H', W') uint8, label), min(H', W') = ``short_side``;
    the spatial crops are taken by the model's test step.
    """

    def __init__(self, videos: VideoClips, num_clips: int = 10, short_side: int = 256):
        self.videos, self.num_clips, self.short_side = videos, num_clips, short_side

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int):
        clip_len, interval = self.videos.clip_len, self.videos.frame_interval
        num_frames = self.videos.num_frames(index)
        starts = clip_starts(num_frames, clip_len * interval, self.num_clips)
        indices = [clip_indices(s, clip_len, interval, num_frames) for s in starts]
        unique = sorted({i for clip in indices for i in clip})
        frames = self.videos.read(index, unique).transpose(0, 1)  # (U, 3, H, W)
        frames = resize_short_side(frames, self.short_side)  # uint8
        position = {frame: i for i, frame in enumerate(unique)}
        gather = torch.tensor([[position[i] for i in clip] for clip in indices])
        clips = frames[gather]  # (clips, T, 3, H', W')
        return clips.transpose(1, 2), self.videos.target(index)  # (clips, 3, T, H', W')
