"""Semantic segmentation scored as the papers score it: intersection and union per class summed
over the whole dataset (not a mean of per-image scores), as mmsegmentation's ``IoUMetric``.

``aAcc`` = Σ correct pixels / Σ labelled pixels; per class IoU = Σ intersection / Σ union and
Acc = Σ intersection / Σ labelled; ``mIoU`` and ``mAcc`` their means over the classes that
occur (a class with no union anywhere is NaN and left out, as ``np.nanmean`` does). Pixels
labelled ``ignore_index`` (255) count nowhere.
"""

from __future__ import annotations

import math

import torch

from nlgc.checks import check_positive_int


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
