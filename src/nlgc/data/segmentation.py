"""Semantic segmentation data: images with their label maps, as Cityscapes, ADE20K, Pascal VOC
and plain folders lay them out, each label map read into class ids (255 ignored).

========== ====================================================== ===============================
kind       images                                                 label maps
========== ====================================================== ===============================
cityscapes ``leftImg8bit/{split}/{city}/*_leftImg8bit.png``       ``gtFine/{split}/{city}/*_gtFine
                                                                  _labelTrainIds.png``, else
                                                                  ``*_labelIds.png`` mapped by the
                                                                  official id → train id table
ade20k     ``images/{training,validation}/*.jpg``                 ``annotations/…/*.png``: 0
                                                                  ignored, 1–150 → 0–149
                                                                  (``reduce_zero_label``)
voc        ``JPEGImages/{id}.jpg``, ids in                        ``SegmentationClass/{id}.png``
           ``ImageSets/Segmentation/{split}.txt``                 (palette indices, 255 border)
masks      ``{split}/images/*``                                   ``{split}/masks/{stem}.png``
========== ====================================================== ===============================

Bad input is one ``ValueError`` naming the file: an image without its label map, a label map
whose size differs from its image's or that holds a value that is neither a class nor the
ignore index, an empty split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from nlgc.data.io import IMAGE_SUFFIXES, read_image

IGNORE_INDEX = 255

# Cityscapes' label ids → train ids (cityscapesScripts helpers/labels.py): the 19 evaluated
# classes; every other id (void, rare classes, license plate) is ignored
_CITYSCAPES_TRAIN_IDS = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}


def _lookup(pairs: dict[int, int]) -> np.ndarray:
    """A 256-entry table: file value → class id, ``IGNORE_INDEX`` where ``pairs`` is silent."""
    table = np.full(256, IGNORE_INDEX, dtype=np.int64)
    for value, label in pairs.items():
        table[value] = label
    return table


CITYSCAPES_LABEL_IDS = _lookup(_CITYSCAPES_TRAIN_IDS)
# mmsegmentation's reduce_zero_label: 0 (other) ignored, 1…254 → 0…253, 255 stays ignored
REDUCE_ZERO_LABEL = _lookup({v: v - 1 for v in range(1, 255)})


@dataclass(frozen=True)
class Sample:
    """One labelled image: its file, its label map's file, the table from the label map's
    values to class ids (None: the values are the ids) and the name its prediction gets."""

    image: Path
    mask: Path
    table: np.ndarray | None
    name: str


def _expect(image: Path, mask: Path) -> Path:
    if not mask.is_file():
        raise ValueError(f"image {image} has no label map: expected {mask}")
    return mask


def _cityscapes(root: Path, split: str) -> list[Sample]:
    samples = []
    for image in sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")):
        stem = image.name[: -len("_leftImg8bit.png")]
        folder = root / "gtFine" / split / image.parent.name
        train_ids, label_ids = (
            folder / f"{stem}_gtFine_{k}.png" for k in ("labelTrainIds", "labelIds")
        )
        name = f"{image.parent.name}/{image.stem}"
        if train_ids.is_file():
            samples.append(Sample(image, train_ids, None, name))
        else:  # label ids, mapped by the official table
            samples.append(Sample(image, _expect(image, label_ids), CITYSCAPES_LABEL_IDS, name))
    return samples


def _ade20k(root: Path, split: str) -> list[Sample]:
    folder = {"train": "training", "val": "validation"}.get(split, split)
    images = sorted((root / "images" / folder).glob("*.jpg"))
    masks = root / "annotations" / folder
    return [
        Sample(i, _expect(i, masks / f"{i.stem}.png"), REDUCE_ZERO_LABEL, i.stem) for i in images
    ]


def _voc(root: Path, split: str) -> list[Sample]:
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise ValueError(f"no VOC split list at {listing}")
    ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    samples = []
    for name in ids:
        image = root / "JPEGImages" / f"{name}.jpg"
        if not image.is_file():
            raise ValueError(f"{listing} names {name!r}, but there is no image {image}")
        samples.append(
            Sample(image, _expect(image, root / "SegmentationClass" / f"{name}.png"), None, name)
        )
    return samples


def _folders(root: Path, split: str) -> list[Sample]:
    images = sorted(
        p for p in (root / split / "images").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES
    )
    masks = root / split / "masks"
    return [Sample(i, _expect(i, masks / f"{i.stem}.png"), None, i.stem) for i in images]


@dataclass(frozen=True)
class SegmentationLayout:
    """A dataset's layout: ``samples(root, split)`` lists a split's labelled images; ``classes``
    names its label set (``nlgc.models.label_sets``; "" where the config names the classes);
    ``labelled_test``: whether its ``test`` split has labels (else ``nlgc test`` scores ``val``)."""

    samples: Callable[[Path, str], list[Sample]]
    classes: str
    labelled_test: bool


LAYOUTS = {
    "cityscapes": SegmentationLayout(_cityscapes, "cityscapes", labelled_test=False),
    "ade20k": SegmentationLayout(_ade20k, "ade20k", labelled_test=False),
    "voc": SegmentationLayout(_voc, "voc", labelled_test=False),
    "masks": SegmentationLayout(_folders, "", labelled_test=True),
}


def read_label_map(sample: Sample, num_classes: int, size: tuple[int, int]) -> torch.Tensor:
    """``sample``'s label map as (H, W) int64 class ids (``IGNORE_INDEX`` ignored), checked
    against its image's ``size`` (H, W) and the ``num_classes``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(sample.mask) as image:
            if image.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(
                    f"label map {sample.mask} must hold one class id per pixel (a grey or "
                    f"palette PNG), got mode {image.mode}"
                )
            values = np.asarray(image).astype(np.int64)
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(f"cannot read label map {sample.mask}: {error}") from error
    if values.shape != size:
        raise ValueError(
            f"label map {sample.mask} is {values.shape[1]}×{values.shape[0]} but its image "
            f"{sample.image} is {size[1]}×{size[0]} (width × height)"
        )
    if sample.table is not None:
        values = sample.table[np.clip(values, 0, 255)]
    bad = np.unique(values[(values != IGNORE_INDEX) & ((values < 0) | (values >= num_classes))])
    if bad.size:
        raise ValueError(
            f"label map {sample.mask} holds values {bad[:8].tolist()} that are neither classes "
            f"0–{num_classes - 1} nor the ignore index {IGNORE_INDEX}"
        )
    return torch.from_numpy(values)


class SegmentationDataset(Dataset):
    """A split of a segmentation dataset: items are ((3, H, W) uint8 RGB image, target) with
    target ``{"mask": (H, W) int64 class ids, "name": the prediction's file name}``.

    Args:
        kind: the layout (:data:`LAYOUTS`).
        root: the dataset's folder.
        split: ``train``, ``val`` or ``test`` (ADE20K's ``training`` / ``validation``).
        num_classes: the label set's size; a label map value outside it (and not 255) is an error.
    """

    def __init__(self, kind: str, root: str | Path, split: str, num_classes: int):
        self.root, self.split, self.num_classes = Path(root), split, num_classes
        self.samples = LAYOUTS[kind].samples(self.root, split)
        if not self.samples:
            raise ValueError(f"the {kind} split {split!r} under {self.root} has no images")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        sample = self.samples[index]
        image = read_image(sample.image)
        mask = read_label_map(sample, self.num_classes, tuple(image.shape[1:]))
        return image, {"mask": mask, "name": sample.name}

    def image_size(self, index: int) -> tuple[int, int]:
        """(H, W) of an item's image, read from its header."""
        from PIL import Image

        with Image.open(self.samples[index].image) as image:
            return image.height, image.width
