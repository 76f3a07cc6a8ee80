"""Detection: a registered detector (torchvision's Mask R-CNN / Faster R-CNN on an nlgc
backbone), its loss terms, and COCO AP by pycocotools on the validation and test splits."""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist

from nlgc.evaluation.coco import coco_results, evaluate_coco
from nlgc.models import create_model
from nlgc.models.sources.native import METADATA_KEY, model_metadata
from nlgc.train.base import TrainingModule
from nlgc.train.config import ModelConfig, OptimConfig


class Detector(TrainingModule):
    """Object detection and instance segmentation with a registered detector.

    Args:
        model: the registered detector and its options (``num_classes``: torchvision's count,
            background 0 and the data's category ids up to the largest).
        num_classes: the detector's classes.
        optim: optimizer, warm-up and schedule (stepped every iteration).
        seed: every training step draws from seeds made of (seed, step, rank).
        min_size, max_size: the detector's resize (mmdetection's (1333, 800) keep-ratio:
            ``min_size=800, max_size=1333``), unless the model's options set them.

    Batches are (list of (3, H, W) uint8 images, list of torchvision targets). Training logs
    every loss term per step (``train/loss_classifier``, ``train/loss_box_reg``,
    ``train/loss_mask``, ``train/loss_objectness``, ``train/loss_rpn_box_reg``) and their sum
    (``train/loss``); validation and test gather the detections of every process and log
    pycocotools' twelve numbers per IoU type (``val/bbox/AP`` …; test: ``bbox/AP``, …,
    ``segm/AP``), against the split's instances file.
    """

    def __init__(
        self,
        model: ModelConfig,
        num_classes: int,
        optim: OptimConfig | None = None,
        seed: int = 0,
        min_size: int = 800,
        max_size: int = 1333,
    ):
        super().__init__()
        self.optim, self.seed = optim or OptimConfig(), seed
        self.freeze_bn_stats = model.freeze_bn_stats
        overrides = {"min_size": min_size, "max_size": max_size, **model.overrides}
        self.save_hyperparameters(
            {
                "model": dataclasses.asdict(model),
                "optim": dataclasses.asdict(self.optim),
                "seed": seed,
                METADATA_KEY: model_metadata(model.name, num_classes, overrides),
            }
        )
        self.model = create_model(model.name, num_classes, **overrides)
        self.detections: dict[str, list[dict]] = {}  # split → COCO results, after an epoch
        self._found: list[dict] = []

    def forward(self, images: list[torch.Tensor]) -> list[dict]:
        return self.model(images)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 images → floats in [0, 1] (the detector normalises and resizes them); in
        training, unless ``optim.augment`` is ``none``, each image flipped horizontally half of
        the time with its boxes and masks, drawn from the step's seed (a resumed run flips as
        the uninterrupted one did)."""
        images, targets = batch
        images = [i.float() / 255 if i.dtype == torch.uint8 else i.float() for i in images]
        if self.trainer.training and self.optim.augment != "none":
            devices = [images[0].device] if images[0].device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self._step_seed())
                flips = torch.rand(len(images)) < 0.5
            pairs = zip(images, targets, flips, strict=True)
            pairs = [_flipped(i, t) if flip else (i, t) for i, t, flip in pairs]
            images, targets = [p[0] for p in pairs], [p[1] for p in pairs]
        return images, targets

    def training_step(self, batch, batch_idx):
        images, targets = batch
        losses = self.model(images, [_training_target(t) for t in targets])
        loss = sum(losses.values())
        terms = {f"train/{name}": value for name, value in losses.items()}
        self.log_dict({"train/loss": loss, **terms}, prog_bar=True, sync_dist=True)
        return loss

    def _detect(self, batch) -> None:
        images, targets = batch
        for target, output in zip(targets, self.model(images), strict=True):
            self._found.append(coco_results(target["image_id"], output))

    def validation_step(self, batch, batch_idx):
        self._detect(batch)

    def test_step(self, batch, batch_idx):
        self._detect(batch)

    def on_validation_epoch_start(self) -> None:
        self._found = []

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val", "val/")

    def on_test_epoch_end(self) -> None:
        self._evaluate("test", "")

    def _evaluate(self, split: str, prefix: str) -> None:
        """Every process's detections, COCOeval on the split's instances, the numbers logged."""
        found = _gathered(self._found)
        self._found = []
        iou_types = ("bbox", "segm") if any("segm" in f for f in found) else ("bbox",)
        results = {t: [r for f in found for r in f.get(t, [])] for t in iou_types}
        self.detections[split] = results
        if self.trainer.sanity_checking:
            return
        instances = self.trainer.datamodule.datasets[split].data
        metrics = {}
        for iou_type, detections in results.items():
            for name, value in evaluate_coco(instances, detections, iou_type).items():
                metrics[f"{prefix}{iou_type}/{name}"] = value
        self.log_dict(metrics, prog_bar=split == "val", rank_zero_only=False, sync_dist=False)


def _flipped(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """The image mirrored left–right, its boxes and masks with it (``transforms.v2`` on
    ``tv_tensors``)."""
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as TF

    size = tuple(image.shape[-2:])
    boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=size)
    masks = tv_tensors.Mask(target["masks"])
    flipped = {"boxes": TF.horizontal_flip(boxes), "masks": TF.horizontal_flip(masks)}
    flipped = {k: v.as_subclass(torch.Tensor) for k, v in flipped.items()}
    return TF.horizontal_flip(image), {**target, **flipped}


def _training_target(target: dict) -> dict:
    """What torchvision's detectors train on: boxes, labels and masks."""
    return {k: target[k] for k in ("boxes", "labels", "masks")}


def _gathered(found: list) -> list:
    """The list of every process (one process: the list itself), in rank order."""
    if not (dist.is_available() and dist.is_initialized()):
        return found
    everything = [None] * dist.get_world_size()
    dist.all_gather_object(everything, found)
    return [item for part in everything for item in part]
