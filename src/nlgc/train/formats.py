"""Data formats as a table: each ``data.kind`` is one :class:`DataFormat` entry, its class
names and its datasets per split, read from the :class:`~nlgc.train.datamodule.DataModule`
(its :class:`~nlgc.train.config.DataConfig` and seed). Adding a format is its reader in
:mod:`nlgc.data` and one entry here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch.utils.data import Dataset

from nlgc.data.annotations import kinetics_classes, read_annotations, read_label_map
from nlgc.data.coco import CocoDetection, num_classes_of, read_instances
from nlgc.data.folders import ImageFolder, MultiClipVideos, VideoClips, VideoFolder, list_classes
from nlgc.data.segmentation import LAYOUTS, SegmentationDataset
from nlgc.data.synthetic import PairsDataset, PairsInstances, PairsMasks, partner_classes
from nlgc.models.label_sets import class_names

if TYPE_CHECKING:
    from nlgc.train.datamodule import DataModule


def _synthetic_datasets(data: DataModule, stage: str | None) -> dict[str, Dataset | None]:
    """The built-in long-range task: train, val and test drawn with seeds seed, +1, +2; per
    image (``synthetic``: clips with ``frames``), per pixel (``synthetic_masks``) or per object
    (``synthetic_instances``)."""
    hp = data.config

    def make(count: int, seed: int, split: str) -> PairsDataset:
        size = max(64, hp.size)
        per_image = {"synthetic_masks": PairsMasks, "synthetic_instances": PairsInstances}
        if hp.kind in per_image:
            return per_image[hp.kind](count, seed, size, split, hp.source, tuple(hp.kinds))
        return PairsDataset(count, seed, size, hp.frames, split, hp.source, tuple(hp.kinds))

    return {
        "train": make(hp.count, data.seed, "train"),
        "val": make(hp.val_count, data.seed + 1, "val"),
        "test": make(hp.test_count, data.seed + 2, "test"),
    }


def _folder_classes(data: DataModule) -> list[str]:
    """The label map's names, a Kinetics CSV's sorted labels, ``num_classes`` indices, or the
    train folders' names."""
    hp = data.config
    if hp.label_map:
        return read_label_map(data.path(hp.label_map))
    if hp.format == "kinetics_csv":
        return kinetics_classes(data.path(hp.train_list))
    if hp.format != "folders":
        if hp.num_classes is None:
            raise ValueError(f"data.format={hp.format!r} needs data.label_map or data.num_classes")
        return [str(i) for i in range(hp.num_classes)]
    return list_classes(hp.root, "train")


def _splits(data: DataModule, stage: str | None, split_data) -> dict[str, Dataset | None]:
    """train (when fitting), val, and test (when testing; ``val`` where there is no test
    split), each ``split_data(data, split, train)``."""
    hp = data.config
    test_split = "test" if (Path(hp.root) / "test").is_dir() or hp.test_list else "val"
    return {
        "train": split_data(data, "train", True) if stage in (None, "fit") else None,
        "val": split_data(data, "val", False),
        "test": split_data(data, test_split, False) if stage in (None, "test") else None,
    }


def _image_split(data: DataModule, split: str, train: bool) -> Dataset:
    hp = data.config
    return ImageFolder(hp.root, split, hp.size, data.classes, hp.skip_corrupt)


def _video_split(data: DataModule, split: str, train: bool) -> Dataset:
    """Clips of a class-per-folder split or of an annotation list (``data.format``)."""
    hp = data.config
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
            hp.root, split, classes=data.classes, skip_corrupt=hp.skip_corrupt, **clips
        )
    lists = {"train": hp.train_list, "val": hp.val_list, "test": hp.test_list or hp.val_list}
    annotations = read_annotations(
        data.path(lists[split]),
        hp.format,
        hp.root,
        data.classes,
        len(data.classes),
        hp.skip_corrupt,
    )
    return VideoClips(annotations, data.classes, multi_label=hp.multi_label, **clips)


def _video_datasets(data: DataModule, stage: str | None) -> dict[str, Dataset | None]:
    """Video splits; with ``full_video_test`` the test split gives whole videos."""
    datasets = _splits(data, stage, _video_split)
    hp = data.config
    if hp.full_video_test and datasets["test"] is not None:
        protocol = hp.video_test
        datasets["test"] = MultiClipVideos(datasets["test"], protocol.clips, protocol.short_side)
    return datasets


def _coco_files(data: DataModule, split: str) -> tuple[Path, Path]:
    """A split's instances file and image folder: ``data.annotations[split]`` and
    ``data.images[split]`` (relative to ``data.root``), by default COCO's layout
    (``annotations/instances_{split}2017.json``, ``{split}2017/``)."""
    hp = data.config
    instances = (hp.annotations or {}).get(split, f"annotations/instances_{split}2017.json")
    return data.path(instances), data.path((hp.images or {}).get(split, f"{split}2017"))


def _coco_classes(data: DataModule) -> list[str]:
    """Category names by id as torchvision counts them: 0 background, ``N/A`` in the gaps."""
    instances = read_instances(_coco_files(data, "train" if data.has_train else "val")[0])
    names = ["N/A"] * num_classes_of(instances)
    names[0] = "__background__"
    for category in instances["categories"]:
        names[category["id"]] = category["name"]
    return names


def _coco_datasets(data: DataModule, stage: str | None) -> dict[str, Dataset | None]:
    """train (crowds and empty images left out), val, and test (``val`` unless
    ``data.annotations`` names a test file): COCO has no labelled test split."""
    hp = data.config
    test = "test" if "test" in (hp.annotations or {}) else "val"

    def split(name: str, train: bool) -> CocoDetection:
        return CocoDetection(*_coco_files(data, name), train, hp.skip_corrupt)

    return {
        "train": split("train", True) if stage in (None, "fit") else None,
        "val": split("val", False),
        "test": split(test, False) if stage in (None, "test") else None,
    }


def _segmentation_classes(data: DataModule) -> list[str]:
    """The dataset's label set (Cityscapes' 19 train ids, ADE20K's 150, VOC's 21) or, for
    ``masks`` folders, the label map's names or ``num_classes`` indices."""
    hp = data.config
    label_set = LAYOUTS[hp.kind].classes
    if label_set:
        return class_names(label_set)
    if hp.label_map:
        return read_label_map(data.path(hp.label_map))
    if hp.num_classes is None:
        raise ValueError("data.kind=masks needs data.label_map or data.num_classes")
    return [str(i) for i in range(hp.num_classes)]


def _segmentation_datasets(data: DataModule, stage: str | None) -> dict[str, Dataset | None]:
    """train, val, and test (``val`` where the dataset has no labelled test split)."""
    hp = data.config
    labelled_test = LAYOUTS[hp.kind].labelled_test and (Path(hp.root) / "test").is_dir()

    def split(name: str) -> SegmentationDataset:
        return SegmentationDataset(hp.kind, hp.root, name, len(data.classes))

    return {
        "train": split("train") if stage in (None, "fit") else None,
        "val": split("val"),
        "test": split("test" if labelled_test else "val") if stage in (None, "test") else None,
    }


def detection_batch(items: list) -> tuple[list, list]:
    """(image, target) items → (images, targets): images of different sizes stay a list
    (detection and segmentation)."""
    images, targets = zip(*items, strict=True)
    return list(images), list(targets)


@dataclass(frozen=True)
class DataFormat:
    """One ``data.kind``: its class names and its datasets per split (None where a stage does
    not need one), each from the :class:`DataModule` (its config and seed); whether it reads
    files under ``data.root`` and annotation lists (``data.format`` other than ``folders``)."""

    classes: Callable[[DataModule], list[str]]
    datasets: Callable[[DataModule, str | None], dict[str, Dataset | None]]
    reads_root: bool = True
    annotation_lists: bool = False
    collate: Callable | None = None  # items → a batch; None: torch's default
    grouped: bool = False  # training batches grouped by aspect ratio (``image_size(i)``)


# data.kind → how its data is read (the keys of DataConfig each kind uses: see its docstring)
DATA_FORMATS = {
    "synthetic": DataFormat(
        lambda data: list(PairsDataset.classes), _synthetic_datasets, reads_root=False
    ),
    "synthetic_masks": DataFormat(
        lambda data: partner_classes(data.config.kinds, data.config.source, "background"),
        _synthetic_datasets,
        reads_root=False,
        collate=detection_batch,
    ),
    "synthetic_instances": DataFormat(
        lambda data: partner_classes(data.config.kinds, data.config.source),
        _synthetic_datasets,
        reads_root=False,
        collate=detection_batch,
    ),
    "images": DataFormat(_folder_classes, lambda data, stage: _splits(data, stage, _image_split)),
    "videos": DataFormat(_folder_classes, _video_datasets, annotation_lists=True),
    "coco": DataFormat(_coco_classes, _coco_datasets, collate=detection_batch, grouped=True),
    **{
        kind: DataFormat(_segmentation_classes, _segmentation_datasets, collate=detection_batch)
        for kind in LAYOUTS
    },
}
