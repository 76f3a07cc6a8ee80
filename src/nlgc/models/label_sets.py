"""The label sets of released weights and datasets, by name: class names in output order
(``labels/{name}.txt``) and, for segmentation, the colour of each class
(``labels/{name}.palette``: ``r g b`` per line), as their sources publish them (mmsegmentation's
ADE20K ``'bed '`` without its trailing space)."""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

SIZES = {
    "imagenet1k": 1000,
    "kinetics400": 400,
    "coco91": 91,
    "cityscapes": 19,
    "ade20k": 150,
    "voc": 21,
}


def _lines(filename: str) -> list[str]:
    return resources.files("nlgc.models").joinpath(f"labels/{filename}").read_text().splitlines()


@functools.cache
def class_names(name: str) -> list[str]:
    """The class names of the label set ``name`` (a key of :data:`SIZES`), in order."""
    if name not in SIZES:
        raise ValueError(f"unknown label set {name!r}; known: {sorted(SIZES)}")
    return _lines(f"{name}.txt")


@functools.cache
def palette(name: str) -> list[tuple[int, int, int]]:
    """The RGB colour of each class of a segmentation label set (Cityscapes, ADE20K, VOC)."""
    if name not in SIZES:
        raise ValueError(f"unknown label set {name!r}; known: {sorted(SIZES)}")
    try:
        lines = _lines(f"{name}.palette")
    except FileNotFoundError as error:
        raise ValueError(
            f"the label set {name!r} has no palette (it is not a segmentation one)"
        ) from error
    return [tuple(int(v) for v in line.split()) for line in lines]


def palette_of(names: list[str] | None, num_classes: int) -> list[tuple[int, int, int]]:
    """The colours of a segmentor's classes: its label set's palette where its class names are
    one of the known sets, else ``num_classes`` distinct colours from a fixed generator."""
    for name in SIZES:
        if SIZES[name] == len(names or ()) and _has_palette(name) and class_names(name) == names:
            return palette(name)
    generator = np.random.default_rng(0)
    return [tuple(int(v) for v in generator.integers(0, 256, 3)) for _ in range(num_classes)]


def _has_palette(name: str) -> bool:
    return resources.files("nlgc.models").joinpath(f"labels/{name}.palette").is_file()
