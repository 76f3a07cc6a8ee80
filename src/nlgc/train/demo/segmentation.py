"""``nlgc demo --task segmentation``: a fact about the other item, per pixel.

Every pixel of the two Fashion-MNIST items is labelled with the other item's kind ("partner
K": the top-left item is a T-shirt/top or trouser, the bottom-right one a sandal or bag, drawn
independently), the rest "background" (:class:`~nlgc.data.synthetic.PairsMasks`). The
networks are mmsegmentation's FCN head and its NL, GC and DNL heads
(:mod:`nlgc.models.segmentation`) on the demo's two-stage ResNet, the head on C3 (stride 8, 32
channels, no auxiliary head). The FCN's receptive field is 99 px: the logits of one item's
square depend on no pixel of the other's (a test checks the gradient), so it can find the items
but not name their classes; a context head can. Scored by test mIoU over the five classes, with
the demos' shared recipe (``RECIPE``: masks at the blocks' 4 ×, not the image demo's 1 ×), acting
start and margin.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nlgc.analysis import plots
from nlgc.analysis.inputs import Sample
from nlgc.analysis.report import Report, Table
from nlgc.data.synthetic import partner_classes
from nlgc.models.preprocessing import SEGMENTATION
from nlgc.train.demo.experiment import (
    ACTING,
    MARGIN,
    NL_EMBEDDED,
    PARTNER_KINDS,
    RECIPE,
    SIZE,
    UNIFORM,
    DemoTask,
    Experiment,
    ProbeImages,
    first_test_items,
)
from nlgc.train.demo.tables import Criterion, Results, mean_std

HEAD = {"channels": 32, "auxiliary": False}  # the heads' width; no auxiliary FCN head on C2
# label → (registered segmentor, options): FCN is the plain network; the NL head is
# mmsegmentation's (embedded Gaussian, 1/√C'), named as the image demo's NL row for Table 1
VARIANTS = {
    "FCN": ("fcn_demo_seg", dict(HEAD)),
    NL_EMBEDDED: ("nonlocal_demo_seg", {**HEAD, **ACTING}),
    "GC": ("gcnet_demo_seg", {**HEAD, **UNIFORM, **ACTING}),
    "DNL": ("dnlnet_demo_seg", {**HEAD, **ACTING}),
}
QUICK_VARIANTS = ("FCN", NL_EMBEDDED)  # one round of two runs: ≤ 2 minutes
SETTINGS = {  # quick: ≤ 2 minutes; default: ≤ 10 minutes on 2 idle CPU cores
    "quick": {"count": 2400, "val_count": 200, "test_count": 300, "epochs": 8, "batch_size": 32},
    "default": {
        "count": 4400,
        "val_count": 300,
        "test_count": 1000,
        "epochs": 9,
        "batch_size": 64,
    },
}
CRITERION = Criterion("mIoU", "test mIoU", MARGIN, baseline="FCN")
SEED_TABLE = "Test mIoU per seed (each item's pixels: the kind of the other item, 54+ px away)"
SHOWN_IMAGES = 4  # test images whose predictions the report draws


# whole 112² images: no resize, no crop, no colour distortion (flipped half the time)
DATA = {
    "kind": "synthetic_masks",
    "kinds": PARTNER_KINDS,
    "scale": (SIZE, SIZE),
    "ratio_range": (1.0, 1.0),
    "crop_size": (SIZE, SIZE),
    "cat_max_ratio": 1.0,
    "photometric": False,
}


def probe_images(experiment: Experiment) -> ProbeImages:
    """The first TABLE1_IMAGES test images of the first seed, normalised as the segmentors
    take them, with their label maps."""
    test_set, items = first_test_items(experiment)
    samples = [Sample.from_pixels(target["name"], image, SEGMENTATION) for image, target in items]
    return ProbeImages(
        torch.stack([s.tensor for s in samples]),
        samples[:6],
        test_set.source,
        torch.stack([target["mask"] for _, target in items]),
    )


def class_iou_table(results: Results, labels: list[str], classes: list[str]) -> Table:
    """Per variant: the test IoU of each class, mean ± std over the seeds."""
    rows = [
        [label, *(mean_std([r[label]["IoU"][c] for r in results.values()], 3) for c in classes)]
        for label in labels
    ]
    return Table(
        f"Test IoU per class, mean ± std over seeds {', '.join(map(str, results))}",
        ["variant", *classes],
        rows,
    )


def predictions_report(
    results: Results, models: dict[str, torch.nn.Module], images: ProbeImages, out: Path
) -> Report:
    """The per-class IoU table and, for the first test images, the ground truth beside each
    variant's predicted label map (first seed)."""
    shown = images.batch[:SHOWN_IMAGES]
    classes = partner_classes(PARTNER_KINDS, images.source, "background")
    maps = {"ground truth": images.masks[:SHOWN_IMAGES]}
    with torch.no_grad():
        for label, model in models.items():
            maps[label] = model.eval()(shown).argmax(1)
    path = plots.plot_label_maps(
        [s.display for s in images.samples[:SHOWN_IMAGES]],
        maps,
        classes,
        out / "predictions.png",
    )
    caption = "Test images, their label maps and each variant's prediction (first seed)"
    table = class_iou_table(results, list(models), classes)
    return Report(tables=[table], figures=[(caption, path)])


SEGMENTATION_TASK = DemoTask(
    "segmentation",
    VARIANTS,
    QUICK_VARIANTS,
    SETTINGS,
    RECIPE,
    CRITERION,
    SEED_TABLE,
    DATA,
    probe_images,
    predictions_report,
)
