"""Semantic segmentation scored as the papers score it: intersection and union per class summed
over the whole dataset (not a mean of per-image scores), as mmsegmentation's ``IoUMetric``.

``aAcc`` = Σ correct pixels / Σ labelled pixels; per class IoU = Σ intersection / Σ union and
Acc = Σ intersection / Σ labelled; ``mIoU`` and ``mAcc`` their means over the classes that
occur (a class with no union anywhere is NaN and left out, as ``np.nanmean`` does). Pixels
labelled ``ignore_index`` (255) count nowhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nlgc.checks import check_choice, check_positive_int
from nlgc.clips import keep_ratio_size


def intersect_and_union(
    prediction: torch.Tensor, label: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """(4, num_classes) float64: per class the pixels of intersection, union, prediction and
    label of one image (or batch): (…) class ids of the same shape each."""
    if prediction.shape != label.shape:
        raise ValueError(
            f"prediction and label must have the same shape, got {tuple(prediction.shape)} and "
            f"{tuple(label.shape)}"
        )
    keep = label != ignore_index
    prediction, label = prediction[keep].long(), label[keep].long()
    if label.numel() and (label.min() < 0 or label.max() >= num_classes):
        bad = sorted({int(v) for v in label.unique() if not 0 <= v < num_classes})
        raise ValueError(
            f"label values {bad[:8]} are neither classes 0–{num_classes - 1} nor the ignore "
            f"index {ignore_index}"
        )
    intersect = torch.bincount(label[prediction == label], minlength=num_classes)
    area_prediction = torch.bincount(prediction.clamp(0, num_classes - 1), minlength=num_classes)
    area_label = torch.bincount(label, minlength=num_classes)
    union = area_prediction + area_label - intersect
    return torch.stack([intersect, union, area_prediction, area_label]).double()


class SegmentationScores:
    """Dataset-level IoU: :meth:`update` with each image's prediction and label, then
    :meth:`compute`.

    Args:
        num_classes: the classes' count (label ids 0 … num_classes − 1).
        class_names: for the per-class table (default the ids).
        ignore_index: the label of pixels that count nowhere.
    """

    def __init__(self, num_classes: int, class_names=None, ignore_index: int = 255):
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.class_names = list(class_names or map(str, range(num_classes)))
        if len(self.class_names) != num_classes:
            raise ValueError(f"class_names must have {num_classes} names, got {len(class_names)}")
        self.ignore_index = ignore_index
        self.totals = torch.zeros(4, num_classes, dtype=torch.float64)

    def reset(self) -> None:
        self.totals.zero_()

    def update(self, prediction: torch.Tensor, label: torch.Tensor) -> None:
        self.totals += intersect_and_union(
            prediction.cpu(), label.cpu(), self.num_classes, self.ignore_index
        )

    def compute(self) -> dict:
        """``aAcc``, ``mIoU``, ``mAcc`` (fractions) and per class ``IoU`` / ``Acc`` by name."""
        intersect, union, _, label = self.totals
        iou = (intersect / union).tolist()  # NaN where a class never occurs
        accuracy = (intersect / label).tolist()

        def mean(values):
            present = [v for v in values if not math.isnan(v)]
            return sum(present) / len(present) if present else float("nan")

        return {
            "aAcc": float(intersect.sum() / label.sum()) if label.sum() else float("nan"),
            "mIoU": mean(iou),
            "mAcc": mean(accuracy),
            "IoU": dict(zip(self.class_names, iou, strict=True)),
            "Acc": dict(zip(self.class_names, accuracy, strict=True)),
        }


@dataclass(frozen=True)
class SegmentationTest:
    """How a segmentor is run on a whole test image (mmsegmentation's test pipeline and
    ``test_cfg``).

    Args:
        scale: (long side, short side) the image is resized into with its aspect ratio kept
            (Cityscapes (2048, 1024), ADE20K (2048, 512)); None: its own size.
        mode: ``"whole"`` (one forward pass) or ``"slide"`` (windows of ``crop_size`` every
            ``stride``, overlapping logits averaged: the 769×769 Cityscapes models).
        crop_size, stride: (h, w) of the windows and of their step (``slide`` only).
        ratios: scales of ``scale`` for multi-scale testing (mmsegmentation's ``img_ratios``,
            e.g. (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)).
        flip: also the mirrored image, its output mirrored back.

    With several ratios or the flip the class probabilities (softmax) are averaged at the
    image's size, as mmsegmentation's ``aug_test`` does; else the logits are returned.
    """

    scale: tuple[int, int] | None = None
    mode: str = "whole"
    crop_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    ratios: tuple[float, ...] = (1.0,)
    flip: bool = False

    def __post_init__(self):
        check_choice("mode", self.mode, ("whole", "slide"))
        if self.mode == "slide" and not (self.crop_size and self.stride):
            raise ValueError(
                f"slide inference needs crop_size and stride (h, w), got {self.crop_size} and "
                f"{self.stride}"
            )
        if not self.ratios or min(self.ratios) <= 0:
            raise ValueError(f"ratios must be positive scales, got {self.ratios}")

    def logits(self, model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised pixels → (B, classes, H, W): logits, or the mean class
        probabilities over the ratios and flips."""
        size = tuple(pixels.shape[-2:])
        views = [(r, f) for r in self.ratios for f in ((False, True) if self.flip else (False,))]
        total = None
        for ratio, flip in views:
            resized = self._resized(pixels, ratio)
            out = self._forward(model, resized.flip(-1) if flip else resized)
            out = resize_logits(out.flip(-1) if flip else out, size, model)
            if len(views) > 1:
                out = out.softmax(1)
            total = out if total is None else total + out
        return total / len(views)

    def _resized(self, pixels: torch.Tensor, ratio: float) -> torch.Tensor:
        if self.scale is None and ratio == 1:
            return pixels
        height, width = pixels.shape[-2:]
        scale = self.scale or (max(height, width), min(height, width))
        target = keep_ratio_size(height, width, (int(scale[0] * ratio), int(scale[1] * ratio)))
        return F.interpolate(pixels, size=target, mode="bilinear", align_corners=False)

    def _forward(self, model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        if self.mode == "whole":
            return model(pixels)
        return slide(model, pixels, self.crop_size, self.stride)


def resize_logits(logits: torch.Tensor, size, model: nn.Module) -> torch.Tensor:
    """(B, classes, h, w) → (B, classes, *size), bilinear with the model's ``align_corners``."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    align = getattr(model, "align_corners", False)
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=align)


def slide(
    model: nn.Module, pixels: torch.Tensor, crop_size: tuple[int, int], stride: tuple[int, int]
) -> torch.Tensor:
    """mmsegmentation's ``slide_inference``: (B, 3, H, W) → (B, classes, H, W), the logits of
    ``crop_size`` windows every ``stride`` (the last one of a row or column moved back to end
    at the border), averaged where they overlap."""
    (crop_h, crop_w), (step_h, step_w) = crop_size, stride
    height, width = pixels.shape[-2:]
    rows = max(height - crop_h + step_h - 1, 0) // step_h + 1
    cols = max(width - crop_w + step_w - 1, 0) // step_w + 1
    total = count = None
    for row in range(rows):
        for col in range(cols):
            bottom, right = min(row * step_h + crop_h, height), min(col * step_w + crop_w, width)
            top, left = max(bottom - crop_h, 0), max(right - crop_w, 0)
            logits = model(pixels[:, :, top:bottom, left:right])
            if total is None:
                total = logits.new_zeros(*logits.shape[:2], height, width)
                count = logits.new_zeros(1, 1, height, width)
            total[:, :, top:bottom, left:right] += logits
            count[:, :, top:bottom, left:right] += 1
    return total / count
