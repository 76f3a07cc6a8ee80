"""Data for training: image folders, video folders, or the built-in long-range task."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nlgc.data.folders import ImageFolder, MultiClipVideos, VideoFolder, list_classes
from nlgc.data.synthetic import DEFAULT_KINDS, PairsDataset

KINDS = ("images", "videos", "synthetic")


class EpochSeededSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch): a resumed run sees the same order."""

    def __init__(self, size: int, seed: int = 0):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning at every epoch
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class DataModule(L.LightningDataModule):
    """Train/val/test data of one kind.

    Args:
        kind: ``"images"`` or ``"videos"`` (class-per-folder under ``root/{train,val[,test]}``)
            or ``"synthetic"`` (the built-in task, see nlgc.data.synthetic).
        root: data folder (folders); a missing ``test`` split falls back to ``val``.
        size: crop side; batch_size, workers: DataLoader settings.
        skip_corrupt: leave unreadable files out (counted in the log) instead of failing.
        clip_len, frame_interval: video clips (N frames, every M-th), e.g. 32×2 or 8×8.
        full_video_test: test on whole videos with the multi-clip × crop protocol: ``test_clips``
            clips spread over each video, short side resized to ``test_short_side`` (the crops
            are the model's ``test_crops``).
        count, val_count, test_count, frames, source, kinds: the synthetic task's sizes
            (frames > 0 makes clips), object source and the Fashion-MNIST classes it draws from.
        seed: data generation and shuffling.
    """

    def __init__(
        self,
        kind: str = "synthetic",
        root: str | None = None,
        size: int = 224,
        batch_size: int = 32,
        workers: int = 0,
        skip_corrupt: bool = False,
        clip_len: int = 8,
        frame_interval: int = 8,
        full_video_test: bool = True,
        test_clips: int = 10,
        test_short_side: int = 256,
        count: int = 4000,
        val_count: int = 1000,
        test_count: int = 1000,
        frames: int = 0,
        source: str = "auto",
        kinds: tuple[int, ...] = DEFAULT_KINDS,
        seed: int = 0,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"data.kind must be one of {KINDS}, got {kind!r}")
        if kind != "synthetic" and not root:
            raise ValueError(f"data.root is required for data.kind={kind!r}")
        self.save_hyperparameters()
        self.datasets: dict[str, Dataset] = {}

    @property
    def classes(self) -> list[str]:
        if self.hparams.kind == "synthetic":
            return list(PairsDataset.classes)
        return list_classes(self.hparams.root, "train")

    def _folder(self, split: str, train: bool):
        hp = self.hparams
        if hp.kind == "images":
            return ImageFolder(hp.root, split, hp.size, self.classes, hp.skip_corrupt)
        return VideoFolder(
            hp.root,
            split,
            hp.clip_len,
            hp.frame_interval,
            hp.size,
            random_start=train,
            classes=self.classes,
            skip_corrupt=hp.skip_corrupt,
            threads=1 if hp.workers > 0 else 0,
        )

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if hp.kind == "synthetic":
            make = lambda n, seed, split: PairsDataset(  # noqa: E731
                n, seed, max(64, hp.size), hp.frames, split, hp.source, tuple(hp.kinds)
            )
            self.datasets = {
                "train": make(hp.count, hp.seed, "train"),
                "val": make(hp.val_count, hp.seed + 1, "train"),
                "test": make(hp.test_count, hp.seed + 2, "test"),
            }
            return
        test_split = "test" if (Path(hp.root) / "test").is_dir() else "val"
        self.datasets = {
            "train": self._folder("train", True) if stage in (None, "fit") else None,
            "val": self._folder("val", False),
            "test": self._folder(test_split, False) if stage in (None, "test") else None,
        }
        if hp.kind == "videos" and hp.full_video_test and self.datasets["test"] is not None:
            self.datasets["test"] = MultiClipVideos(
                self.datasets["test"], hp.test_clips, hp.test_short_side
            )

    def _loader(self, split: str, sampler=None, batch_size=None) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=batch_size or self.hparams.batch_size,
            sampler=sampler,
            num_workers=self.hparams.workers,
            persistent_workers=self.hparams.workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        sampler = EpochSeededSampler(len(self.datasets["train"]), self.hparams.seed)
        return self._loader("train", sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        full = isinstance(self.datasets["test"], MultiClipVideos)
        return self._loader("test", batch_size=1 if full else None)
