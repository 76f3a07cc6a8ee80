"""Data for training: image folders, video folders, or the built-in long-range task."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

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


class GroupedBatches(BatchSampler):
    """Batches of one group each where the group has enough items left (torchvision's
    detection references group images by aspect ratio, so a batch pads less), the rest mixed
    at the end: ⌈len(sampler) / batch_size⌉ batches in the sampler's order, on every process.

    Args:
        sampler: the order of the items (its ``set_epoch`` is called through this).
        groups: the group of every item (0: landscape, 1: portrait).
    """

    def __init__(self, sampler: Sampler[int], groups: list[int], batch_size: int):
        super().__init__(sampler, batch_size, drop_last=False)
        self.groups = groups

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        waiting: dict[int, list[int]] = {}
        drawn: dict[int, int] = {}  # item → when the sampler gave it
        for index in self.sampler:
            drawn[index] = len(drawn)
            batch = waiting.setdefault(self.groups[index], [])
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                waiting[self.groups[index]] = []
        rest = sorted((i for batch in waiting.values() for i in batch), key=drawn.__getitem__)
        for start in range(0, len(rest), self.batch_size):
            yield rest[start : start + self.batch_size]

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)


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

    @property
    def has_train(self) -> bool:
        """Whether a train split is configured (COCO's classes come from its file)."""
        hp = self.config
        return (
            "train" in (hp.annotations or {})
            or self.path("annotations/instances_train2017.json").is_file()
        )

    def setup(self, stage: str | None = None) -> None:
        self.datasets = self.format.datasets(self, stage)

    def _loader(self, split: str, sampler=None, batch_size=None, batches=None) -> DataLoader:
        """``split``'s loader: items batched ``batch_size`` (default ``data.batch_size``) at a
        time in ``sampler``'s order, or the batches a batch sampler gives."""
        if batches is not None:
            batching = {"batch_sampler": batches}
        else:
            batching = {"batch_size": batch_size or self.config.batch_size, "sampler": sampler}
        return DataLoader(
            self.datasets[split],
            num_workers=self.config.workers,
            persistent_workers=self.config.workers > 0,
            collate_fn=self.format.collate,
            **batching,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.datasets["train"]
        sampler = EpochSeededSampler(len(dataset), self.seed)
        if not self.format.grouped:
            return self._loader("train", sampler)
        groups = [int(h > w) for h, w in map(dataset.image_size, range(len(dataset)))]
        return self._loader(
            "train", batches=GroupedBatches(sampler, groups, self.config.batch_size)
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        full = isinstance(self.datasets["test"], MultiClipVideos)
        return self._loader("test", batch_size=1 if full else None)
