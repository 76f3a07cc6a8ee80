"""The detection task in one import: detectors are registered models
(``nlgc.create_model("mask_rcnn_gc_r4_resnet50_fpn")``, :mod:`nlgc.models.detection`), COCO-format
data (:mod:`nlgc.data.coco`) and COCO AP by pycocotools (:mod:`nlgc.evaluation.coco`)::

    from nlgc.detection import evaluate_coco
    evaluate_coco("annotations/instances_val2017.json", "test_results.bbox.json", "bbox")["AP"]
"""

from nlgc.data.coco import CocoDetection, read_instances
from nlgc.evaluation.coco import STATS, coco_results, evaluate_coco, write_results
from nlgc.models.detection import DetectorArchitecture, build_detector

__all__ = [
    "STATS",
    "CocoDetection",
    "DetectorArchitecture",
    "build_detector",
    "coco_results",
    "evaluate_coco",
    "read_instances",
    "write_results",
]
