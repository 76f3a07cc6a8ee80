"""Data for training: image folders, video folders, or the built-in long-range task."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nlgc.data.annotations import kinetics_classes, read_annotations, read_label_map
from nlgc.data.folders import ImageFolder, MultiClipVideos, VideoClips, VideoFolder, list_classes
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

    @functools.cached_property
    def classes(self) -> list[str]:
        """Class names: the built-in task's, the label map's, a Kinetics CSV's sorted labels,
        ``num_classes`` indices, or the train folders' names."""
        hp = self.config
        if hp.kind == "synthetic":
            return list(PairsDataset.classes)
        if hp.label_map:
            return read_label_map(self._path(hp.label_map))
        if hp.format == "kinetics_csv":
            return kinetics_classes(self._path(hp.train_list))
        if hp.format != "folders":
            if hp.num_classes is None:
                raise ValueError(
                    f"data.format={hp.format!r} needs data.label_map or data.num_classes"
                )
            return [str(i) for i in range(hp.num_classes)]
        return list_classes(hp.root, "train")

    def _path(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else Path(self.config.root) / path

    def _folder(self, split: str, train: bool):
        hp = self.config
        if hp.kind == "images":
            return ImageFolder(hp.root, split, hp.size, self.classes, hp.skip_corrupt)
        clips = {
            "clip_len": hp.clip_len,
            "frame_interval": hp.frame_interval,
            "size": hp.size,
            "random_start": train,
            "threads": 1 if hp.workers > 0 else 0,
            "train_scale": hp.train_scale,
            "multiscale": hp.multiscale_crop,
            "multiscale_gap": hp.multiscale_gap,
            "resize": hp.resize,
        }
        if hp.format == "folders":
            return VideoFolder(
                hp.root, split, classes=self.classes, skip_corrupt=hp.skip_corrupt, **clips
            )
        lists = {"train": hp.train_list, "val": hp.val_list, "test": hp.test_list or hp.val_list}
        annotations = read_annotations(
            self._path(lists[split]),
            hp.format,
            hp.root,
            self.classes,
            len(self.classes),
            hp.skip_corrupt,
        )
        return VideoClips(annotations, self.classes, multi_label=hp.multi_label, **clips)

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
        test_split = "test" if (Path(hp.root) / "test").is_dir() or hp.test_list else "val"
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
