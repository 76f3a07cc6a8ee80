"""Data for training: image folders, video folders, or the built-in long-range task."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nlgc.data.folders import MultiClipVideos
from nlgc.train.config import DataConfig
from nlgc.train.formats import DATA_FORMATS, DataFormat


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
    """Train/val/test data of one kind (:data:`DATA_FORMATS`), as a
    :class:`~nlgc.train.config.DataConfig` says.

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
    def format(self) -> DataFormat:
        return DATA_FORMATS[self.config.kind]

    @functools.cached_property
    def classes(self) -> list[str]:
        """The class names, as the data kind reads them."""
        return self.format.classes(self)

    def path(self, name: str) -> Path:
        """``name`` relative to ``data.root`` unless absolute."""
        path = Path(name)
        return path if path.is_absolute() else Path(self.config.root) / path

    def setup(self, stage: str | None = None) -> None:
        self.datasets = self.format.datasets(self, stage)

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
