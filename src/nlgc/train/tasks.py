"""Tasks as a table: each is one :class:`Task` entry naming the models it trains, its data
formats, its LightningModule (the training step with its loss terms, and its metrics) and what
``nlgc test`` writes. ``nlgc fit / validate / test`` look the task up from the config; nothing
in ``nlgc.train`` asks which task it is by an if-chain."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from nlgc.common import write_atomic, write_text_atomic
from nlgc.data.segmentation import LAYOUTS
from nlgc.data.segmentation_pipeline import TrainPipeline
from nlgc.evaluation.coco import write_results
from nlgc.models import model_spec
from nlgc.train.config import RunConfig
from nlgc.train.detector import Detector
from nlgc.train.module import Classifier
from nlgc.train.segmentor import Segmentor


@dataclass(frozen=True)
class Task:
    """One task.

    Args:
        name: as configs and messages say it; its models are ``nlgc.list_models(task=key)``.
        data_kinds: the ``data.kind`` values (:data:`~nlgc.train.formats.DATA_FORMATS`) it reads.
        build_module: ``(run config, DataModule) →`` its LightningModule (training step with
            its loss terms, validation / test metrics) around ``nlgc.create_model``'s network.
        test_outputs: ``(module, data, metrics, out)``: what a test adds to ``metrics`` (and,
            with ``out`` on the main process, writes into the run's folder) beyond
            ``test_metrics.json``.
        predictions_folder: the folder of the run where every process writes its test
            predictions while testing (the module's ``predictions_to``), "" for none.
    """

    name: str
    data_kinds: tuple[str, ...]
    build_module: Callable[[RunConfig, L.LightningDataModule], L.LightningModule]
    test_outputs: Callable[[L.LightningModule, L.LightningDataModule, dict, Path | None], None]
    predictions_folder: str = ""


def write_class_tables(out: Path, classes: list[str], matrix: torch.Tensor) -> None:
    """``out/test_per_class.md`` (items, correct and accuracy of every class, from the test's
    confusion matrix) and ``out/test_confusion.png``."""
    from nlgc.analysis.plots import plot_confusion

    lines = ["| class | test items | correct | accuracy |", "| --- | --- | --- | --- |"]
    for name, row, correct in zip(classes, matrix.sum(1), matrix.diagonal(), strict=True):
        accuracy = f"{float(correct) / float(row):.3f}" if row else "-"
        lines.append(f"| {name} | {int(row)} | {int(correct)} | {accuracy} |")
    write_text_atomic(out / "test_per_class.md", "\n".join(lines) + "\n")
    write_atomic(out / "test_confusion.png", lambda path: plot_confusion(matrix, classes, path))


def confusion_outputs(module: Classifier, data, metrics: dict, out: Path | None) -> None:
    """Single-label classification: the confusion matrix in the metrics; per-class table and
    confusion picture in ``out``. Multi-label data: nothing beyond the metrics (mAP)."""
    if module.multi_label:
        return
    matrix = module.confusion.compute().cpu()
    metrics["confusion_matrix"] = {
        "classes": data.classes,
        "rows_true_cols_predicted": matrix.tolist(),
    }
    if out is not None:
        write_class_tables(out, data.classes, matrix)


def classifier(config: RunConfig, data) -> Classifier:
    """The classification module, its classes the model's or the data's."""
    return Classifier(
        config.model,
        config.model.num_classes or len(data.classes),
        config.optim,
        config.data.video_test,
        config.seed,
        config.data.multi_label,
    )


def detector(config: RunConfig, data) -> Detector:
    """The detection module, its classes the model's or the data's (torchvision's count)."""
    return Detector(
        config.model,
        config.model.num_classes or len(data.classes),
        config.optim,
        config.seed,
        config.data.min_size,
        config.data.max_size,
    )


def segmentor(config: RunConfig, data) -> Segmentor:
    """The segmentation module: the data's classes, its training pipeline and test protocol."""
    hp = config.data
    pipeline = TrainPipeline(
        hp.scale, hp.ratio_range, hp.crop_size, hp.cat_max_ratio, 0.5, hp.photometric
    )
    return Segmentor(
        config.model, data.classes, config.optim, config.seed, pipeline, hp.segmentation_test
    )


def segmentation_outputs(module: Segmentor, data, metrics: dict, out: Path | None) -> None:
    """Per-class IoU and accuracy in the metrics and ``out/test_per_class.md`` (the predicted
    label PNGs are in ``out/test_predictions/``, written during the test)."""
    computed = module.scores.compute()
    metrics["IoU"], metrics["Acc"] = computed["IoU"], computed["Acc"]
    if out is not None:
        lines = ["| class | IoU | Acc |", "| --- | --- | --- |"]
        for name in module.classes:
            lines.append(f"| {name} | {computed['IoU'][name]:.4f} | {computed['Acc'][name]:.4f} |")
        write_text_atomic(out / "test_per_class.md", "\n".join(lines) + "\n")


def detection_outputs(module: Detector, data, metrics: dict, out: Path | None) -> None:
    """The test's detections in COCO's results format: ``test_results.bbox.json`` (and
    ``test_results.segm.json`` for Mask R-CNN), beside ``test_metrics.json``."""
    if out is None:
        return
    for iou_type, results in module.detections.get("test", {}).items():
        write_results(out / f"test_results.{iou_type}.json", results)


# the keys are the registry's tasks: a model's task (nlgc.models.model_spec(name).task) is its
# run's task
TASKS = {
    "classification": Task(
        "image classification", ("images", "synthetic"), classifier, confusion_outputs
    ),
    "video": Task("video classification", ("videos", "synthetic"), classifier, confusion_outputs),
    "detection": Task("detection", ("coco", "synthetic_instances"), detector, detection_outputs),
    "segmentation": Task(
        "semantic segmentation",
        (*LAYOUTS, "synthetic_masks"),
        segmentor,
        segmentation_outputs,
        "test_predictions",
    ),
}


def task_of(config: RunConfig) -> Task:
    """The task of a run: the one that trains its model, checked against its data kind."""
    kind = model_spec(config.model.name).task
    if kind not in TASKS:
        raise ValueError(f"nlgc fit cannot train {kind} models yet ({config.model.name!r})")
    task = TASKS[kind]
    if config.data.kind not in task.data_kinds:
        raise ValueError(
            f"model.name={config.model.name!r} is a {task.name} model: data.kind must be one "
            f"of {task.data_kinds}, got {config.data.kind!r}"
        )
    return task
