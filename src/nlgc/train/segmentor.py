"""Semantic segmentation: a registered segmentor (FCN / NL / GC / DNL head on a dilated ResNet),
mmsegmentation's training augmentation and loss, and dataset-level mIoU on the validation and
test splits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from nlgc.common import write_atomic
from nlgc.data.segmentation import IGNORE_INDEX
from nlgc.data.segmentation_pipeline import TrainPipeline, pad_to
from nlgc.evaluation.segmentation import SegmentationScores, SegmentationTest
from nlgc.models import create_model
from nlgc.models.checkpoint import open_checkpoint
from nlgc.models.initialise import InitReport, initialise_from
from nlgc.models.preprocessing import SEGMENTATION
from nlgc.models.sources.native import METADATA_KEY, model_metadata
from nlgc.train.base import TrainingModule
from nlgc.train.config import ModelConfig, OptimConfig


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mmsegmentation's ``CrossEntropyLoss`` (``avg_non_ignore=False``): the cross-entropy of
    every labelled pixel summed, divided by all pixels, ignored ones included.
    (B, classes, H, W) logits, (B, H, W) labels."""
    losses = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="none")
    return losses.sum() / labels.numel()


class Segmentor(TrainingModule):
    """Semantic segmentation with a registered segmentor.

    Args:
        model: the registered segmentor and its options (``auxiliary_weight``: the auxiliary
            head's loss weight, mmsegmentation's 0.4).
        classes: the data's class names (their count is the segmentor's outputs).
        optim: optimizer and schedule (mmsegmentation's: SGD 0.01, poly 0.9 to 1e-4).
        seed: every training step draws its augmentation from seeds made of (seed, step, rank).
        pipeline: the training augmentation (random resize, crop, flip, photometric distortion).
        test: how a whole validation / test image is run (resize, whole / slide, ratios, flip).

    Batches are (list of (3, H, W) uint8 images, list of ``{"mask", "name"}``). Training logs
    ``train/loss`` and its terms ``train/loss_decode``, ``train/loss_auxiliary`` (with an
    auxiliary head); validation and
    test log ``mIoU``, ``aAcc``, ``mAcc`` (``val/…`` in validation) over the whole split.
    """

    def __init__(
        self,
        model: ModelConfig,
        classes: list[str],
        optim: OptimConfig | None = None,
        seed: int = 0,
        pipeline: TrainPipeline | None = None,
        test: SegmentationTest | None = None,
    ):
        super().__init__()
        self.optim, self.seed, self.classes = optim or OptimConfig(), seed, list(classes)
        self.freeze_bn_stats = model.freeze_bn_stats
        self.auxiliary_weight = model.auxiliary_weight
        self.pipeline, self.test = pipeline or TrainPipeline(), test or SegmentationTest()
        self.save_hyperparameters(
            {
                "model": dataclasses.asdict(model),
                "optim": dataclasses.asdict(self.optim),
                "seed": seed,
                METADATA_KEY: model_metadata(model.name, len(classes), model.overrides),
            }
        )
        self.model = create_model(model.name, len(classes), **model.overrides)
        self.scores = SegmentationScores(len(classes), classes)
        self.predictions_to: Path | None = None  # set by ``nlgc test``: where label PNGs go

    def initialise(self, checkpoint: str) -> InitReport:
        """``model.init_from``: a whole segmentor's file (mmsegmentation's, nlgc's) starts the
        whole network (fine-tuning; a ``conv_seg`` of other classes re-created); an ImageNet
        file (mmsegmentation's ResNetV1c) the backbone, the heads keeping their initialisation."""
        opened = open_checkpoint(checkpoint)  # read once
        whole = any(k.startswith("decode_head.") for k in opened.state)
        return initialise_from(self.model if whole else self.model.backbone, opened)

    def forward(self, pixels: torch.Tensor):
        return self.model(pixels)

    def _normalized(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) pixels in 0–255 → the network's input."""
        return SEGMENTATION.normalize(pixels / 255)

    def training_step(self, batch, batch_idx):
        images, targets = batch
        generator = torch.Generator().manual_seed(self._step_seed())
        pairs = []
        for image, target in zip(images, targets, strict=True):
            image, mask = self.pipeline(image, target["mask"], generator)
            normalized = self._normalized(image[None])[0]  # then padded, as mmsegmentation
            pairs.append(pad_to(normalized, mask, self.pipeline.crop_size))
        pixels = torch.stack([p[0] for p in pairs])
        labels = torch.stack([p[1] for p in pairs])
        outputs = self.model(pixels)  # (logits, auxiliary logits), or logits without auxiliary
        logits, auxiliary = outputs if isinstance(outputs, tuple) else (outputs, None)
        terms = {"loss_decode": segmentation_loss(logits, labels)}
        if auxiliary is not None:
            terms["loss_auxiliary"] = self.auxiliary_weight * segmentation_loss(auxiliary, labels)
        loss = sum(terms.values())
        logged = {f"train/{k}": v for k, v in terms.items()}
        self.log_dict({"train/loss": loss, **logged}, prog_bar=True, sync_dist=True)
        return loss

    def _score(self, batch) -> None:
        """Each image run whole (``test``) at its own size, scored against its label map; in
        a test, its prediction written where ``predictions_to`` says."""
        images, targets = batch
        for image, target in zip(images, targets, strict=True):
            pixels = self._normalized(image[None].float())
            prediction = self.test.logits(self.model, pixels).argmax(1)[0]
            self.scores.update(prediction, target["mask"])
            if self.predictions_to is not None:
                write_label_png(self.predictions_to / f"{target['name']}.png", prediction)

    def validation_step(self, batch, batch_idx):
        self._score(batch)

    def test_step(self, batch, batch_idx):
        self._score(batch)

    def on_validation_epoch_start(self) -> None:
        self.scores.reset()

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val/")

    def on_test_epoch_end(self) -> None:
        self._log_scores("")

    def _log_scores(self, prefix: str) -> None:
        """The split's totals summed over the processes, its mIoU, aAcc and mAcc logged."""
        totals = self.scores.totals.to(self.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(totals)
        self.scores.totals = totals.cpu()
        if self.trainer.sanity_checking:
            return
        computed = self.scores.compute()
        metrics = {f"{prefix}{k}": computed[k] for k in ("mIoU", "aAcc", "mAcc")}
        self.log_dict(metrics, prog_bar=bool(prefix), rank_zero_only=False, sync_dist=False)


def write_label_png(path: Path, labels: torch.Tensor) -> None:
    """(H, W) class ids as a grey PNG (values 0–255), written atomically."""
    from PIL import Image

    array = labels.to(torch.uint8).cpu().numpy()
    write_atomic(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))
