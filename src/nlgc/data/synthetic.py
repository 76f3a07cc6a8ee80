"""Built-in data that needs no download: a task where the label depends on far-apart content.

Each image holds two objects in opposite corners of the canvas; the label says whether they are
of the same kind (1) or not (0), balanced. A network has to relate content across the whole
image to solve it, the situation non-local and global-context blocks are made for. Objects are
Fashion-MNIST items when Debian's ``dataset-fashion-mnist`` is installed, drawn shapes otherwise.
Videos show the first object in the first half of the frames and the second object, at the other
corner, in the second half. Everything is generated from a seed.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# All ten Fashion-MNIST classes: "same class or not" then needs a fine comparison of two objects
# a whole canvas apart (a tiny ResNet reaches ~80% in a few CPU epochs, not 100%).
DEFAULT_KINDS = tuple(range(10))
SHAPE_KINDS = 4  # drawn shapes when Fashion-MNIST is missing
CLASS_NAMES = ("different", "same")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist(split: str = "train", root: Path = FASHION_MNIST):
    """(images (N, 28, 28) uint8, labels (N,)) of Fashion-MNIST, or None if not installed."""
    prefix = "train" if split == "train" else "t10k"
    images, labels = (
        root / f"{prefix}-images-idx3-ubyte.gz",
        root / f"{prefix}-labels-idx1-ubyte.gz",
    )
    if not (images.exists() and labels.exists()):
        return None
    return _read_idx(images), _read_idx(labels)


def drawn_shapes(count: int, rng: np.random.Generator, kinds=SHAPE_KINDS):
    """``count`` 28×28 drawings of ``kinds`` shapes (disc, square, cross, ring) with jitter."""
    yy, xx = np.mgrid[0:28, 0:28]
    images = np.zeros((count, 28, 28), np.uint8)
    labels = rng.integers(0, kinds, count)
    for i, kind in enumerate(labels):
        cy, cx = rng.uniform(11, 17, 2)
        r = rng.uniform(7, 11)
        if kind == 0:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        elif kind == 1:
            mask = (abs(yy - cy) < r * 0.8) & (abs(xx - cx) < r * 0.8)
        elif kind == 2:
            mask = (abs(yy - cy) < 2.5) & (abs(xx - cx) < r) | (abs(xx - cx) < 2.5) & (
                abs(yy - cy) < r
            )
        else:
            mask = abs(np.hypot(yy - cy, xx - cx) - r * 0.7) < 2.5
        images[i][mask] = rng.integers(160, 256)
    return images, labels


class PairsDataset(Dataset):
    """Images (3, S, S) or clips (3, T, S, S), uint8, with label 1 if the two objects match.

    Args:
        count: number of samples.
        seed: everything (objects, positions, labels) follows from it.
        size: canvas side S (≥ 64).
        frames: 0 for images, else the number of frames T of each clip.
        split: ``"train"`` or ``"test"``: which Fashion-MNIST split the objects come from.
        source: ``"auto"`` (Fashion-MNIST if installed, else shapes), ``"fashion"``, ``"shapes"``.
    """

    classes = CLASS_NAMES

    def __init__(
        self, count, seed=0, size=64, frames=0, split="train", source="auto", kinds=DEFAULT_KINDS
    ):
        if size < 64:
            raise ValueError(f"size must be at least 64 (two 28-pixel objects apart), got {size}")
        rng = np.random.default_rng(seed)
        kinds = tuple(sorted(kinds))
        items = None if source == "shapes" else fashion_mnist(split)
        if items is None and source == "fashion":
            raise FileNotFoundError(
                f"Fashion-MNIST not found in {FASHION_MNIST}: apt-get install dataset-fashion-mnist"
            )
        if items is not None:
            keep = np.isin(items[1], kinds)
            pool, pool_labels = items[0][keep], np.searchsorted(kinds, items[1][keep])
            self.source = "fashion-mnist"
        else:
            kinds = tuple(range(SHAPE_KINDS))
            pool, pool_labels = drawn_shapes(4000, rng, SHAPE_KINDS)
            self.source = "shapes"
        by_kind = [np.flatnonzero(pool_labels == k) for k in range(len(kinds))]
        self.labels = rng.integers(0, 2, count)
        first_kind = rng.integers(0, len(kinds), count)
        offsets = rng.integers(1, len(kinds), count)  # a different kind for "different"
        second_kind = np.where(self.labels == 1, first_kind, (first_kind + offsets) % len(kinds))
        first = np.array([rng.choice(by_kind[k]) for k in first_kind])
        second = np.array([rng.choice(by_kind[k]) for k in second_kind])
        jitter = rng.integers(0, 5, (count, 4))
        self.size, self.frames = size, frames
        shape = (count, frames, size, size) if frames else (count, size, size)
        canvas = np.zeros(shape, np.uint8)
        far = size - 28 - 4
        for i in range(count):
            a, b = pool[first[i]], pool[second[i]]
            (ay, ax, by, bx) = jitter[i]
            if frames:
                canvas[i, : frames // 2, ay : ay + 28, ax : ax + 28] = a
                canvas[i, frames // 2 :, far + by : far + by + 28, far + bx : far + bx + 28] = b
            else:
                canvas[i, ay : ay + 28, ax : ax + 28] = a
                canvas[i, far + by : far + by + 28, far + bx : far + bx + 28] = b
        self.pixels = torch.from_numpy(canvas)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        gray = self.pixels[index]
        rgb = gray.unsqueeze(0).expand(3, *gray.shape)  # (3, [T,] S, S)
        return rgb.contiguous(), int(self.labels[index])
