"""Data for training: image folders, video folders, or the built-in long-range task."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nlgc.data.folders import ImageFolder, MultiClipVideos, VideoFolder, list_classes
from nlgc.data.synthetic import PairsDataset
from nlgc.train.config import DataConfig


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
    """Train/val/test data of one kind, as a :class:`~nlgc.train.config.DataConfig` says.

    Folders: a missing ``test`` split falls back to ``val``; with ``full_video_test`` the test
    split gives whole videos as (clips, 3, T, H, W) (the Non-local paper's protocol).
    ``seed`` fixes the synthetic data and the shuffling (per epoch).
    """

    def __init__(self, data: DataConfig | None = None, seed: int = 0):
        super().__init__()
        self.config, self.seed = data or DataConfig(), seed
        self.save_hyperparameters({"data": dataclasses.asdict(self.config), "seed": seed})
        self.datasets: dict[str, Dataset] = {}

    @property
    def classes(self) -> list[str]:
        if self.config.kind == "synthetic":
            return list(PairsDataset.classes)
        return list_classes(self.config.root, "train")

    def _folder(self, split: str, train: bool):
        hp = self.config
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
        hp = self.config
        if hp.kind == "synthetic":
            make = lambda n, seed, split: PairsDataset(  # noqa: E731
                n, seed, max(64, hp.size), hp.frames, split, hp.source, tuple(hp.kinds)
            )
            self.datasets = {
                "train": make(hp.count, self.seed, "train"),
                "val": make(hp.val_count, self.seed + 1, "val"),
                "test": make(hp.test_count, self.seed + 2, "test"),
            }
            return
        test_split = "test" if (Path(hp.root) / "test").is_dir() else "val"
        self.datasets = {
            "train": self._folder("train", True) if stage in (None, "fit") else None,
            "val": self._folder("val", False),
            "test": self._folder(test_split, False) if stage in (None, "test") else None,
        }
        if hp.kind == "videos" and hp.full_video_test and self.datasets["test"] is not None:
            protocol = hp.video_test
            self.datasets["test"] = MultiClipVideos(
                self.datasets["test"], protocol.clips, protocol.short_side
            )

    def _loader(self, split: str, sampler=None, batch_size=None) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=batch_size or self.config.batch_size,
            sampler=sampler,
            num_workers=self.config.workers,
            persistent_workers=self.config.workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        sampler = EpochSeededSampler(len(self.datasets["train"]), self.seed)
        return self._loader("train", sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        full = isinstance(self.datasets["test"], MultiClipVideos)
        return self._loader("test", batch_size=1 if full else None)
