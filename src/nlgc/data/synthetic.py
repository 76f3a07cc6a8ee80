"""Built-in data that needs no download: a task where the label depends on far-apart content.

Each image holds two 28×28 objects in opposite corners of the canvas; the label says whether
they are of the same kind (1) or not (0), balanced. A network has to relate content across the
whole image to solve it, the situation non-local and global-context blocks are made for: the
objects lie in the corner squares of side ``OBJECT_EXTENT``, so on a 112-pixel canvas no window
narrower than 112 − 2·30 + 2 = 54 pixels touches both, and a network whose receptive field is
smaller (the demo's two-stage ResNet: 51) followed by global average pooling and a linear layer
scores a sum f(first) + g(second), which cannot tell "same" from "different" (for classes a ≠ b
it would need f(a) + g(a) and f(b) + g(b) above a threshold that f(a) + g(b) and f(b) + g(a) stay
under, but both pairs have the same total).

Objects are Fashion-MNIST items when Debian's ``dataset-fashion-mnist`` is installed, drawn
shapes otherwise. Train, validation and test draw their objects from disjoint pools: Fashion-MNIST
train items 0–49,999, train items 50,000–59,999 and the t10k items. Videos show the first object
in the first half of the frames and the second object, at the other corner, in the second half.
Everything is generated from a seed. :class:`PartnerPairs` asks for a fact about the other
object per object: its class is the other object's kind. :class:`PairsMasks` labels every pixel
of an object with it (the rest "background"); :class:`PairsInstances` makes each object an
instance of it, with its box and mask, for detectors.
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_MNIST_ENV = "NLGC_FASHION_MNIST"  # or a folder of the four idx .gz files named here
# All ten Fashion-MNIST classes: "same class or not" then needs a fine comparison of two objects
# a whole canvas apart (a tiny ResNet reaches ~80% in a few CPU epochs, not 100%).
DEFAULT_KINDS = tuple(range(10))
SHAPE_KINDS = 4  # drawn shapes when Fashion-MNIST is missing
CLASS_NAMES = ("different", "same")
SPLITS = ("train", "val", "test")
VAL_ITEMS = 10_000  # the last Fashion-MNIST train items form the validation pool
JITTER = 3  # objects move by 0…2 pixels from their corner
OBJECT_EXTENT = 28 + JITTER - 1  # the corner square (side 30) an object lies in


def _read_idx(path: Path) -> np.ndarray:
    """The array of an idx ``.gz`` file, read-only; decompressed once per process and version
    of the file (the demo builds its datasets 16 times a seed)."""
    stat = path.stat()
    return _decoded_idx(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _decoded_idx(path: str, mtime_ns: int, size: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_root() -> Path:
    """Where Fashion-MNIST is read from: ``$NLGC_FASHION_MNIST`` if set, else Debian's folder."""
    return Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST)


def fashion_files(split: str = "train", root: Path | None = None) -> tuple[Path, Path] | None:
    """The (images, labels) idx files of a Fashion-MNIST split, or None if they are missing."""
    root = Path(root) if root is not None else fashion_root()
    prefix = "train" if split == "train" else "t10k"
    files = (root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz")
    return files if all(f.exists() for f in files) else None


def fashion_mnist(split: str = "train", root: Path | None = None):
    """(images (N, 28, 28) uint8, labels (N,)) of a Fashion-MNIST file pair (``"train"``, 60,000
    items, or ``"test"``, the 10,000 t10k items), or None if not installed."""
    files = fashion_files(split, root)
    return None if files is None else tuple(_read_idx(f) for f in files)


def item_pool(split: str, root: Path | None = None):
    """(images, labels, ids) of the Fashion-MNIST items ``split`` draws from, or None.

    ``ids`` number every item once across both files (train 0–59,999, t10k 60,000–69,999), so
    the pools of the three splits are disjoint sets of ids.
    """
    file = "test" if split == "test" else "train"
    items = fashion_mnist(file, root)
    if items is None:
        return None
    ids = np.arange(len(items[1])) + (60_000 if file == "test" else 0)
    keep = {"train": slice(None, -VAL_ITEMS), "val": slice(-VAL_ITEMS, None)}.get(
        split, slice(None)
    )
    return items[0][keep], items[1][keep], ids[keep]


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
        size: canvas side S (≥ 64; 112 in the demo, see the module's docstring).
        frames: 0 for images, else the number of frames T of each clip.
        split: ``"train"``, ``"val"`` or ``"test"``: which pool of items the objects come from
            (Fashion-MNIST train items 0–49,999, 50,000–59,999, t10k; for shapes, pools drawn
            with different seeds).
        source: ``"auto"`` (Fashion-MNIST if installed, else shapes), ``"fashion"``, ``"shapes"``.
    """

    classes = CLASS_NAMES

    def __init__(
        self, count, seed=0, size=64, frames=0, split="train", source="auto", kinds=DEFAULT_KINDS
    ):
        if size < 64:
            raise ValueError(f"size must be at least 64 (two 28-pixel objects apart), got {size}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        rng = np.random.default_rng(seed)
        kinds = tuple(sorted(kinds))
        items = None if source == "shapes" else item_pool(split)
        if items is None and source == "fashion":
            raise FileNotFoundError(
                f"Fashion-MNIST not found in {fashion_root()}: "
                "apt-get install dataset-fashion-mnist"
            )
        if items is not None:
            keep = np.isin(items[1], kinds)
            pool, pool_labels = items[0][keep], np.searchsorted(kinds, items[1][keep])
            pool_ids = items[2][keep]
            self.source = "fashion-mnist"
        else:
            kinds = tuple(range(SHAPE_KINDS))
            pool_rng = np.random.default_rng([SPLITS.index(split), 7919])  # one pool per split
            pool, pool_labels = drawn_shapes(4000, pool_rng, SHAPE_KINDS)
            pool_ids = np.arange(len(pool)) + 100_000 * SPLITS.index(split)
            self.source = "shapes"
        by_kind = [np.flatnonzero(pool_labels == k) for k in range(len(kinds))]
        self.kinds = kinds
        self.labels, first_kind, second_kind = self._draw_kinds(rng, count, len(kinds))
        first = np.array([rng.choice(by_kind[k]) for k in first_kind])
        second = np.array([rng.choice(by_kind[k]) for k in second_kind])
        jitter = rng.integers(0, JITTER, (count, 4))
        self.item_ids = np.stack([pool_ids[first], pool_ids[second]], 1)  # (count, 2)
        self.item_kinds = np.stack([first_kind, second_kind], 1)  # (count, 2): indices in kinds
        self.size, self.frames = size, frames
        shape = (count, frames, size, size) if frames else (count, size, size)
        canvas = np.zeros(shape, np.uint8)
        far = size - OBJECT_EXTENT
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

    @staticmethod
    def _draw_kinds(rng: np.random.Generator, count: int, kinds: int):
        """(labels, first kinds, second kinds) of ``count`` pairs, kinds as indices: a label per
        pair (1: same kind), the first object's kind, the second's (another for label 0)."""
        labels = rng.integers(0, 2, count)
        first = rng.integers(0, kinds, count)
        offsets = rng.integers(1, kinds, count)  # a different kind for "different"
        return labels, first, np.where(labels == 1, first, (first + offsets) % kinds)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        gray = self.pixels[index]
        rgb = gray.unsqueeze(0).expand(3, *gray.shape)  # (3, [T,] S, S)
        return rgb.contiguous(), int(self.labels[index])


FASHION_NAMES = (
    "T-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
SHAPE_NAMES = ("disc", "square", "cross", "ring")


def partner_classes(kinds, source: str = "auto", background: str = "__background__") -> list[str]:
    """The classes of :class:`PartnerPairs`: ``background`` (torchvision's name by default),
    then "partner NAME" for each kind (Fashion-MNIST class ids ``kinds``, or the drawn shapes
    where Fashion-MNIST is missing or ``source`` is ``"shapes"``)."""
    fashion = source != "shapes" and fashion_files("test") is not None
    names = [FASHION_NAMES[k] for k in sorted(kinds)] if fashion else list(SHAPE_NAMES)
    return [background, *(f"partner {name}" for name in names)]


class PartnerPairs(PairsDataset):
    """The demo's canvases (no clips) with a fact about the other object as each object's
    class: the first half of ``kinds`` appear in the top-left corner, the second half in the
    bottom-right one (drawn independently), and each object is of class "partner K", K the
    other object's kind. The two halves are disjoint, so an object's own appearance says
    nothing about its class (chance: 1 in len(kinds) / 2).

    ``masks`` (count, 2, S, S) bool: each object's pixels (value > 0 in its corner square);
    ``categories`` (count, 2): each object's class id, 1…len(kinds) (0 is the background).

    Why not "same kind or not" as the image task: a context that is one vector per image (GC,
    SNL) hands every object the other object's kind at once but must be compared with the
    object's own for "same"; in the demo's detector no context variant, and in its segmentor
    no GC head, learned that comparison within a run (docs/demo.md).
    """

    def __init__(self, count, seed=0, size=64, split="train", source="auto", kinds=DEFAULT_KINDS):
        super().__init__(count, seed, size, 0, split, source, kinds)
        self.split = split
        far = size - OBJECT_EXTENT
        corners = torch.zeros(2, size, size, dtype=torch.bool)
        corners[0, :OBJECT_EXTENT, :OBJECT_EXTENT] = True
        corners[1, far:, far:] = True
        self.masks = (self.pixels[:, None] > 0) & corners  # (count, 2, S, S)
        self.categories = torch.from_numpy(1 + self.item_kinds[:, ::-1].copy())  # (count, 2)

    @staticmethod
    def _draw_kinds(rng: np.random.Generator, count: int, kinds: int):
        """No label per pair (0: never the same kind); the first object's kind from the first
        half, the second's from the second half, independently."""
        if kinds < 2 or kinds % 2:
            raise ValueError(f"kinds: an even number of kinds (two halves) expected, got {kinds}")
        half = kinds // 2
        first, second = rng.integers(0, half, count), half + rng.integers(0, half, count)
        return np.zeros(count, np.int64), first, second


class PairsMasks(PartnerPairs):
    """:class:`PartnerPairs` per pixel: items are (3, S, S) uint8 and ``{"mask": (S, S) int64,
    "name": str}``, as the segmentation readers give them: every pixel of an object labelled
    with its class (the other object's kind, 1…len(kinds)), the rest 0 ("background");
    ``classes`` are :func:`partner_classes` with "background" first."""

    def __init__(self, count, seed=0, size=64, split="train", source="auto", kinds=DEFAULT_KINDS):
        super().__init__(count, seed, size, split, source, kinds)
        self.classes = tuple(partner_classes(self.kinds, self.source, "background"))

    def __getitem__(self, index: int):
        rgb, _ = super().__getitem__(index)
        categories = self.categories[index].view(2, 1, 1)
        mask = (self.masks[index] * categories).sum(0)  # the corner squares do not overlap
        return rgb, {"mask": mask, "name": f"{self.split}_{index:05d}"}


class PairsInstances(PartnerPairs):
    """:class:`PartnerPairs` as a COCO-format detection task, each object an instance. Items
    are (3, S, S) uint8 and torchvision's target (``boxes`` (2, 4) x1y1x2y2 from the objects'
    pixels, ``labels`` (2,) category ids 1…len(kinds), ``masks`` (2, S, S) uint8, ``image_id``,
    ``area``, ``iscrowd``); ``data`` is the split's COCO instances dictionary (masks as RLE),
    which pycocotools scores against; ``classes`` its categories (:func:`partner_classes`)."""

    def __init__(self, count, seed=0, size=64, split="train", source="auto", kinds=DEFAULT_KINDS):
        super().__init__(count, seed, size, split, source, kinds)
        self.classes = tuple(partner_classes(self.kinds, self.source))
        self.boxes = torch.stack([_box(m) for m in self.masks.flatten(0, 1)]).reshape(-1, 2, 4)

    def image_size(self, index: int) -> tuple[int, int]:
        return self.size, self.size

    def __getitem__(self, index: int):
        rgb, _ = super().__getitem__(index)
        masks = self.masks[index]
        target = {
            "boxes": self.boxes[index],
            "labels": self.categories[index],
            "masks": masks.to(torch.uint8),
            "image_id": index,
            "area": masks.sum((1, 2)).float(),
            "iscrowd": torch.zeros(2, dtype=torch.int64),
        }
        return rgb, target

    @functools.cached_property
    def data(self) -> dict:
        """COCO's instances dictionary of the split: images, two annotations each (bbox
        [x, y, w, h], RLE segmentation, area), the categories."""
        from pycocotools import mask as mask_api

        images, annotations = [], []
        for index in range(len(self)):
            image = {"id": index, "file_name": f"{index:05d}.png"}
            images.append({**image, "height": self.size, "width": self.size})
            masks = np.asfortranarray(self.masks[index].permute(1, 2, 0).numpy().astype(np.uint8))
            rles = mask_api.encode(masks)
            for mask, rle, box, category in zip(
                self.masks[index], rles, self.boxes[index], self.categories[index], strict=True
            ):
                x1, y1, x2, y2 = box.tolist()
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": index,
                        "category_id": int(category),
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "segmentation": {**rle, "counts": rle["counts"].decode("ascii")},
                        "area": float(mask.sum()),
                        "iscrowd": 0,
                    }
                )
        categories = [{"id": i, "name": n} for i, n in enumerate(self.classes) if i]
        return {"images": images, "annotations": annotations, "categories": categories}


def _box(mask: torch.Tensor) -> torch.Tensor:
    """The x1y1x2y2 box (float, pixel edges) of a (H, W) mask's true pixels."""
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    if len(rows) == 0:
        raise ValueError("an object of the canvas has no pixel above 0")
    return torch.tensor([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=torch.float32)
