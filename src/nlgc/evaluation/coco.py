"""COCO AP as the papers report it: pycocotools' ``COCOeval``, its twelve numbers by name, and
detections in COCO's results format.

GCNet's and the Non-local paper's detection tables are ``COCOeval(...).stats`` of val2017: AP
over IoU 0.50:0.95, AP50, AP75, AP of small / medium / large objects, and the average recalls
with 1, 10, 100 detections and by size. pycocotools is imported here only.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from nlgc.checks import check_choice
from nlgc.common import write_text_atomic

STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IOU_TYPES = ("bbox", "segm")


def _pycocotools():
    try:
        from pycocotools import mask
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as error:
        raise ImportError(
            "COCO evaluation needs pycocotools: pip install 'nlgc[detection]'"
        ) from error
    return COCO, COCOeval, mask


def coco_ground_truth(annotations: str | os.PathLike | Mapping):
    """A ``pycocotools.coco.COCO`` of an instances file or of its dictionary (not modified)."""
    COCO, _, _ = _pycocotools()
    if isinstance(annotations, Mapping):
        gt = COCO()
        gt.dataset = copy.deepcopy(dict(annotations))
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
        return gt
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(os.fspath(annotations))


def evaluate_coco(
    annotations: str | os.PathLike | Mapping,
    results: str | os.PathLike | Sequence[Mapping],
    iou_type: str = "bbox",
) -> dict[str, float]:
    """pycocotools' COCOeval of ``results`` (COCO's results format: a list of
    ``{image_id, category_id, score, bbox | segmentation}``, or its JSON file) against the
    instances ``annotations`` (a file or its dictionary), as the twelve numbers of
    ``COCOeval.stats`` by name (:data:`STATS`). No detections at all: every number 0.
    pycocotools writes −1 where the ground truth has no object of a size. For ``segm``, an
    object given by its box alone is its box."""
    check_choice("iou_type", iou_type, IOU_TYPES)
    _, COCOeval, _ = _pycocotools()
    gt = annotations if hasattr(annotations, "loadRes") else coco_ground_truth(annotations)
    if iou_type == "segm":
        _box_outlines(gt)
    if not isinstance(results, (str, os.PathLike)):
        results = copy.deepcopy(list(results))  # pycocotools' loadRes adds to the dicts
        if not results:
            return dict.fromkeys(STATS, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        detections = gt.loadRes(results if isinstance(results, list) else os.fspath(results))
        evaluation = COCOeval(gt, detections, iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(value) for name, value in zip(STATS, evaluation.stats, strict=True)}


def _box_outlines(gt) -> None:
    """A box-only ground-truth object's mask is its box (as the data reader trains it):
    pycocotools' segm evaluation needs a segmentation on every object."""
    for annotation in gt.anns.values():
        if not annotation.get("segmentation"):
            x, y, w, h = annotation["bbox"]
            annotation["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]


def coco_results(image_id: int, output: Mapping[str, torch.Tensor]) -> dict[str, list[dict]]:
    """One image's detections (a torchvision detector's output: ``boxes`` x1y1x2y2, ``labels``
    = category ids, ``scores``, and for Mask R-CNN ``masks`` (N, 1, H, W) probabilities) in
    COCO's results format: ``{"bbox": [...], "segm": [...]}``, masks thresholded at 0.5 and
    run-length encoded (as torchvision's references do)."""
    _, _, mask_api = _pycocotools()
    boxes = output["boxes"].detach().cpu().double()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
    labels, scores = output["labels"].tolist(), output["scores"].detach().cpu().tolist()
    common = [
        {"image_id": int(image_id), "category_id": int(label), "score": float(score)}
        for label, score in zip(labels, scores, strict=True)
    ]
    found = {"bbox": [{**c, "bbox": box} for c, box in zip(common, xywh, strict=True)]}
    if "masks" in output:
        binary = (output["masks"][:, 0] > 0.5).cpu().numpy().astype(np.uint8)
        rles = [mask_api.encode(np.asfortranarray(m)) for m in binary]
        for rle in rles:  # JSON-safe: text counts, int sizes
            rle["counts"], rle["size"] = (
                rle["counts"].decode("ascii"),
                [int(v) for v in rle["size"]],
            )
        found["segm"] = [{**c, "segmentation": r} for c, r in zip(common, rles, strict=True)]
    return found


def write_results(path: str | os.PathLike, results: Sequence[Mapping]) -> None:
    """COCO's results format as a JSON file (atomically)."""
    write_text_atomic(path, json.dumps(list(results)))
