"""COCO-format instance data: an instances JSON file and its image folder → torchvision's
detection targets.

Reads COCO's layout (``annotations/instances_{train,val}2017.json`` with ``{train,val}2017/``)
or any instances file and image folder. Objects are polygons, RLE (compressed or not) or, for
Faster R-CNN, boxes alone; a target is torchvision's: ``boxes`` (N, 4) x1y1x2y2 float,
``labels`` (N,) the category ids as they are (gaps included: COCO's 1…90; background 0, as
torchvision counts them), ``masks`` (N, H, W) uint8, ``image_id``, ``area``, ``iscrowd``.
For training, crowd regions are left out of the targets (COCO's evaluation ignores them) and
images without any other object are dropped, as torchvision's references do; evaluation keeps
every image. Bad input is one message naming the file or annotation id; with ``skip_corrupt``
a bad annotation is skipped and counted instead.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from nlgc.data.io import read_image

_REQUIRED = ("images", "annotations", "categories")


def read_instances(path: str | os.PathLike) -> dict:
    """An instances file's dictionary, checked to be COCO's format (its three lists, each
    image's id and file name, each category's id and name, each annotation's fields)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no instances file at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a JSON file: {error}") from error
    missing = [k for k in _REQUIRED if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(
            f"{path} is not a COCO instances file: it lacks {missing} (it needs 'images', "
            "'annotations' and 'categories' lists)"
        )
    for kind, fields in (
        ("images", ("id", "file_name")),
        ("categories", ("id", "name")),
        ("annotations", ("id", "image_id", "category_id")),
    ):
        for item in data[kind]:
            absent = [f for f in fields if f not in item]
            if absent:
                raise ValueError(f"{path}: an entry of '{kind}' lacks {absent}: {item}")
    return data


def num_classes_of(instances: Mapping) -> int:
    """torchvision's count: background 0 and every category id up to the largest."""
    return max(c["id"] for c in instances["categories"]) + 1


class CocoDetection(Dataset):
    """Images and torchvision targets of one instances file.

    Args:
        instances: the instances file.
        images: the folder its ``file_name`` entries are relative to.
        train: leave crowd regions out and drop images without objects.
        skip_corrupt: skip (and count in ``skipped``) annotations that are not valid instead
            of raising.
        transform: ``(image, target) → (image, target)`` (``torchvision.transforms.v2``
            with ``tv_tensors``: boxes and masks move with the image).

    Items: (image (3, H, W) uint8, target dict).
    """

    def __init__(
        self,
        instances: str | os.PathLike,
        images: str | os.PathLike,
        train: bool = False,
        skip_corrupt: bool = False,
        transform=None,
    ):
        self.path, self.images = Path(instances), Path(images)
        self.data = read_instances(self.path)
        self.train, self.skip_corrupt, self.transform = train, skip_corrupt, transform
        self.categories = {c["id"]: c["name"] for c in self.data["categories"]}
        self.skipped: list[int] = []
        by_image = defaultdict(list)
        image_ids = {image["id"] for image in self.data["images"]}
        for annotation in self.data["annotations"]:
            problem = self._problem(annotation, image_ids)
            if problem and not skip_corrupt:
                raise ValueError(f"{self.path}: annotation {annotation['id']} {problem}")
            if problem:
                self.skipped.append(annotation["id"])
            elif not (train and annotation.get("iscrowd", 0)):
                by_image[annotation["image_id"]].append(annotation)
        self.objects = by_image
        self.entries = [
            image for image in self.data["images"] if not train or by_image.get(image["id"])
        ]

    def _problem(self, annotation: Mapping, image_ids: set) -> str | None:
        """Why an annotation cannot be used, or None."""
        if annotation["category_id"] not in self.categories:
            return (
                f"has category_id {annotation['category_id']}, which is not in 'categories' "
                f"({sorted(self.categories)})"
            )
        if annotation["image_id"] not in image_ids:
            return f"refers to image_id {annotation['image_id']}, which is not in 'images'"
        box = annotation.get("bbox")
        if box is None or len(box) != 4 or box[2] <= 0 or box[3] <= 0:
            return f"has an empty or malformed bbox {box} (x, y, width, height)"
        segmentation = annotation.get("segmentation")
        if isinstance(segmentation, list):
            short = [p for p in segmentation if len(p) < 6 or len(p) % 2]
            if short or not segmentation:
                return "has a polygon with fewer than 3 points (6 coordinates)"
        return None

    @property
    def num_classes(self) -> int:
        return num_classes_of(self.data)

    def image_size(self, index: int) -> tuple[int, int]:
        """(height, width) from the instances file (no decoding): aspect-ratio grouping."""
        entry = self.entries[index]
        return entry["height"], entry["width"]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int):
        entry = self.entries[index]
        path = self.images / entry["file_name"]
        if not path.is_file():
            raise FileNotFoundError(
                f"image {path} of {self.path} (image id {entry['id']}) is missing"
            )
        image = read_image(path)
        height, width = image.shape[1:]
        objects = self.objects.get(entry["id"], [])
        target = {
            "boxes": _boxes(objects, width, height),
            "labels": torch.tensor([o["category_id"] for o in objects], dtype=torch.int64),
            "masks": _masks(objects, height, width),
            "image_id": int(entry["id"]),
            "area": torch.tensor([float(o.get("area", 0.0)) for o in objects]),
            "iscrowd": torch.tensor([int(o.get("iscrowd", 0)) for o in objects]),
        }
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target


def _boxes(objects: list, width: int, height: int) -> torch.Tensor:
    """(N, 4) x1y1x2y2 boxes, clipped to the image."""
    boxes = torch.tensor([o["bbox"] for o in objects], dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return boxes


def _masks(objects: list, height: int, width: int) -> torch.Tensor:
    """(N, H, W) uint8 masks of polygons or RLE (pycocotools); a box-only object fills its
    box."""
    from pycocotools import mask as mask_api

    masks = np.zeros((len(objects), height, width), dtype=np.uint8)
    for i, obj in enumerate(objects):
        segmentation = obj.get("segmentation")
        if not segmentation:
            x, y, w, h = (round(v) for v in obj["bbox"])
            masks[i, y : y + h, x : x + w] = 1
            continue
        if isinstance(segmentation, list):  # polygons
            rle = mask_api.merge(mask_api.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
            rle = mask_api.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        masks[i] = mask_api.decode(rle)
    return torch.from_numpy(masks)
