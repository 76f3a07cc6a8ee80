"""Classification (images and video clips): a registered nlgc model, its loss and metrics."""

from __future__ import annotations

import dataclasses
import logging

import torch
import torch.nn.functional as F
import torchmetrics
from kornia import augmentation as K

from nlgc.evaluation.video import view_scores
from nlgc.models import create_model, modality
from nlgc.models.preprocessing import IMAGENET, Preprocessing
from nlgc.models.sources.native import METADATA_KEY, PREPROCESSING_KEY, model_metadata
from nlgc.train.base import TrainingModule
from nlgc.train.config import ModelConfig, OptimConfig, VideoTest
from nlgc.train.recipes import augmentation

log = logging.getLogger(__name__)


class Classifier(TrainingModule):
    """Image or video classification with any registered model.

    Args:
        model: the registered model and its options; ``num_classes`` decides the head.
        optim: optimiser (cosine schedule over the trainer's epochs), label smoothing and the
            batch augmentation (kornia, on the device, then ImageNet normalisation).
        video_test: the crops of the multi-clip video test: test batches of whole videos,
            (B, clips, C, T, H, W) from ``nlgc.data.MultiClipVideos``, are scored over every
            clip × crop and the probabilities averaged (the Non-local paper's test).
        seed: augmentation and every training step draw from seeds made of (seed, step, rank),
            so a run resumed from a checkpoint repeats an uninterrupted one exactly.
    """

    def __init__(
        self,
        model: ModelConfig,
        num_classes: int,
        optim: OptimConfig | None = None,
        video_test: VideoTest | None = None,
        seed: int = 0,
        multi_label: bool = False,
    ):
        super().__init__()
        self.multi_label, self.freeze_bn_stats = multi_label, model.freeze_bn_stats
        self.normalization: Preprocessing | None = None  # set by init_from; else ImageNet's
        self.optim = optim or OptimConfig()
        self.video_test = video_test or VideoTest()
        self.seed = seed
        self.save_hyperparameters(
            {
                "model": dataclasses.asdict(model),
                "optim": dataclasses.asdict(self.optim),
                "video_test": dataclasses.asdict(self.video_test),
                "seed": seed,
                "multi_label": multi_label,
                METADATA_KEY: model_metadata(model.name, num_classes, model.overrides),
            }
        )
        self.model = create_model(model.name, num_classes, **model.overrides)
        self.video = modality(model.name) == "video"
        self.memory_format = torch.contiguous_format
        if model.channels_last:
            self.memory_format = torch.channels_last_3d if self.video else torch.channels_last
            rank = 5 if self.video else 4  # a video model's 4-D parameters stay as they are
            for parameter in self.model.parameters():
                if parameter.dim() == rank:
                    parameter.data = parameter.data.contiguous(memory_format=self.memory_format)
        # top-5 only where it says something: with 5 classes or fewer it is always 1
        self.top_k = (1, 5) if num_classes > 5 else (1,)
        self.metrics = torch.nn.ModuleDict(self._metrics(num_classes))
        self.confusion = torchmetrics.ConfusionMatrix("multiclass", num_classes=num_classes)
        self.augmentation = augmentation(self.optim.augment, self.video)

    def _metrics(self, num_classes: int) -> dict:
        """Per split: top-k and mean class accuracy (test: of videos and of their clips), or
        mean average precision for multi-label data."""
        if self.multi_label:
            return {
                f"{split}_mAP": torchmetrics.classification.MultilabelAveragePrecision(num_classes)
                for split in ("val", "test")
            }
        metrics = {}
        for split in ("val", "test", "test_clip"):
            for k in self.top_k:
                metrics[f"{split}_top{k}"] = torchmetrics.Accuracy(
                    "multiclass", num_classes=num_classes, top_k=k
                )
            metrics[f"{split}_mean_class_accuracy"] = torchmetrics.Accuracy(
                "multiclass", num_classes=num_classes, average="macro"
            )
        return metrics

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.memory_format is not torch.contiguous_format:  # model.channels_last
            x = x.contiguous(memory_format=self.memory_format)
        return self.model(x)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 or [0, 1] batches → augmented (training only) and normalised floats. Batches of
        multi-clip videos (B, clips, C, T, H, W) have their channels at dim 2."""
        x, y = batch
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        if self.trainer.training and self.augmentation is not None:
            for layer in self.augmentation.modules():
                if isinstance(layer, K.RandomResizedCrop):
                    layer.size = tuple(x.shape[-2:])
            devices = [x.device] if x.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self._step_seed())
                x = self.augmentation(x)
        normalization = self.normalization or IMAGENET
        if x.dim() == 6:  # (B, clips, C, T, H, W): normalise the clips as one batch
            return normalization.normalize(x.flatten(0, 1)).unflatten(0, x.shape[:2]), y
        return normalization.normalize(x), y

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.multi_label:  # y: (B, classes) multi-hot
            return F.binary_cross_entropy_with_logits(logits, y)
        return F.cross_entropy(logits, y, label_smoothing=self.optim.label_smoothing)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = self._loss(logits, y)
        best = logits.argmax(-1)
        hit = y.gather(1, best[:, None])[:, 0] > 0 if self.multi_label else best == y
        metrics = {"train/loss": loss, "train/top1": hit.float().mean()}
        self.log_dict(metrics, prog_bar=True, sync_dist=True)
        return loss

    def _evaluate(self, split: str, logits: torch.Tensor, y: torch.Tensor, loss=True) -> None:
        """Update and log ``split``'s metrics with (B, classes) logits (or log-probabilities)."""
        names = ["mAP"] if self.multi_label else [f"top{k}" for k in self.top_k]
        names += [] if self.multi_label else ["mean_class_accuracy"]
        logged = {}
        for name in names:
            metric = self.metrics[f"{split}_{name}"]
            metric(logits, y.long() if self.multi_label else y)
            logged[
                f"{split.replace('_clip', '/clip')}/{name}".replace("test/clip/", "test/clip_")
            ] = metric
        if loss:
            self.log(f"{split}/loss", self._loss(logits, y), sync_dist=True)
        self.log_dict(logged, prog_bar=split == "val")

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self._evaluate("val", self(x), y)

    def test_step(self, batch, batch_idx):
        """Clips: clip-level metrics. Whole videos (B, clips, C, T, H, W): the Non-local paper's
        multi-view test: every view scored (``test/clip_*``), the softmax averaged over the
        clips × crops of a video (``test/top1``, ``test/top5``, ``test/mean_class_accuracy``)."""
        x, y = batch
        if x.dim() == 6:
            crops = self.video_test.crops
            views = [view_scores(self.model, v, crops, multi_label=self.multi_label) for v in x]
            scores = torch.stack([v.mean(0) for v in views])  # (B, classes), views averaged
            if self.multi_label:  # mean sigmoid scores: their logits for the loss and mAP
                logits = scores.clamp(1e-6, 1 - 1e-6).logit()
            else:
                per_view = torch.cat(views)
                labels = torch.cat([y_i.repeat(len(v)) for y_i, v in zip(y, views, strict=True)])
                self._evaluate("test_clip", per_view.clamp_min(1e-12).log(), labels, loss=False)
                logits = scores.clamp_min(1e-12).log()
        else:
            logits = self(x)
        if not self.multi_label:
            self.confusion.update(logits.argmax(-1), y)
        self._evaluate("test", logits, y)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.normalization is not None:
            checkpoint[PREPROCESSING_KEY] = self.normalization.as_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if checkpoint.get(PREPROCESSING_KEY):
            self.normalization = Preprocessing.from_dict(checkpoint[PREPROCESSING_KEY])

    def on_test_epoch_start(self) -> None:
        self.confusion.reset()
