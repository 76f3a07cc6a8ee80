"""``nlgc demo --task detection``: a long-range task per object.

Each canvas holds two Fashion-MNIST items in opposite corners, a T-shirt/top or a trouser in the
top-left one, a sandal or a bag in the bottom-right one, drawn independently; each item is an
instance of category "partner K", K the other item's kind
(:class:`~nlgc.data.synthetic.PairsInstances`, scored by pycocotools as COCO is). The networks
are torchvision's Mask R-CNN on the demo's four-stage ResNet (``mask_rcnn_demo_fpn``): plain;
one NL block before the last residual block of c4 (the Non-local paper's COCO placement); GC
blocks (r = 1/4) in every residual block of c3–c5 (GCNet's); SNL blocks in the same places
(the all-SNL row GCNet did not report); one DNL block at the NL's place. The class and mask
logits of a box around one item read no pixel of the other item's corner square (a test checks
the gradient): the plain detector can find and outline the items but can only guess their
category (1 in 2); a context block can read it. Scored by test box AP (AP@[.5:.95]), with the
demos' shared recipe (masks at the blocks' 4 ×; each held attention released over one epoch),
acting start and margin.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nlgc.analysis import plots
from nlgc.analysis.inputs import Sample
from nlgc.analysis.report import Report, Table
from nlgc.data.synthetic import partner_classes
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

# label → (registered detector, options): the NL row is named as the image demo's, for Table 1;
# every block's attention starts uniform and is held (the recipe's 2 epochs), as in the image
# demo: SNL's and GC's masks, and NL's φ and DNL's φ and unary mask, without which the NL and
# DNL blocks acted as a bias on 7 seeds of 10 (docs/demo.md, "The detection demo")
_UNIFORM = {**UNIFORM, **ACTING}
VARIANTS = {
    "plain": ("mask_rcnn_demo_fpn", {}),
    NL_EMBEDDED: ("mask_rcnn_nl_demo_fpn", dict(_UNIFORM)),
    "all-GC": ("mask_rcnn_gc_r4_demo_fpn", dict(_UNIFORM)),
    "all-SNL": ("mask_rcnn_snl_c3c5_demo_fpn", dict(_UNIFORM)),
    "DNL": ("mask_rcnn_dnl_demo_fpn", dict(_UNIFORM)),
}
# the shared recipe, but each held attention released over one epoch (optim.release_epochs):
# released at the schedule's full rate, φ's first Adam steps sharpened NL's attention at once
# and undid the use of the context the detector had learned during the hold (docs/demo.md,
# "The release of the hold")
RECIPE_DETECTION = {**RECIPE, "release_epochs": 1.0}
QUICK_VARIANTS = ("plain", "all-SNL")  # one round of two runs: ≤ 2 minutes
SETTINGS = {  # quick: ≤ 2 minutes; default: ≤ 10 minutes on 2 idle CPU cores
    "quick": {"count": 1000, "val_count": 50, "test_count": 200, "epochs": 3, "batch_size": 16},
    "default": {
        "count": 1200,
        "val_count": 100,
        "test_count": 300,
        "epochs": 4,
        "batch_size": 16,
    },
}
CRITERION = Criterion("bbox/AP", "test box AP", MARGIN, baseline="plain")
SEED_TABLE = "Test box AP per seed (each item's category: the kind of the other item, 54+ px away)"
SHOWN_IMAGES = 4  # test images whose detections the report draws
SHOWN_SCORE = 0.5  # detections drawn from this score up
AP_COLUMNS = {
    "box AP": "bbox/AP",
    "box AP50": "bbox/AP50",
    "mask AP": "segm/AP",
    "mask AP50": "segm/AP50",
}


# whole 112² images (the detector's resize keeps them), no flips (the recipe's augment: none)
DATA = {"kind": "synthetic_instances", "kinds": PARTNER_KINDS, "min_size": SIZE, "max_size": SIZE}


def probe_images(experiment: Experiment) -> ProbeImages:
    """The first TABLE1_IMAGES test images of the first seed in [0, 1] (the detectors normalise
    them themselves), with their targets."""
    test_set, items = first_test_items(experiment)
    samples = [Sample.from_pixels(f"test {i}", image) for i, (image, _) in enumerate(items)]
    return ProbeImages(
        torch.stack([s.display for s in samples]),
        samples[:6],
        test_set.source,
        targets=[target for _, target in items],
    )


def ap_table(results: Results, labels: list[str]) -> Table:
    """Per variant: box and mask AP and AP50, mean ± std over the seeds."""
    rows = [
        [
            label,
            *(
                mean_std([r[label][key] for r in results.values()], 3)
                for key in AP_COLUMNS.values()
            ),
        ]
        for label in labels
    ]
    return Table(
        f"Test AP (pycocotools) per variant, mean ± std over seeds {', '.join(map(str, results))}",
        ["variant", *AP_COLUMNS],
        rows,
    )


def detections_report(
    results: Results, models: dict[str, torch.nn.Module], images: ProbeImages, out: Path
) -> Report:
    """The AP table and, for the first test images, the ground truth beside each variant's
    detections scored ≥ SHOWN_SCORE (first seed)."""
    shown = images.batch[:SHOWN_IMAGES]
    found = {
        "ground truth": [
            {**t, "scores": torch.ones(len(t["labels"]))} for t in images.targets[:SHOWN_IMAGES]
        ]
    }
    with torch.no_grad():
        for label, model in models.items():
            found[label] = [
                {k: v[d["scores"] >= SHOWN_SCORE] for k, v in d.items()}
                for d in model.eval()(list(shown))
            ]
    path = plots.plot_detections(
        [s.display for s in images.samples[:SHOWN_IMAGES]],
        found,
        partner_classes(PARTNER_KINDS),
        out / "predictions.png",
    )
    caption = (
        f"Test images, their instances and each variant's detections scored ≥ {SHOWN_SCORE} "
        "(boxes, masks, class and score; first seed)"
    )
    return Report(tables=[ap_table(results, list(models))], figures=[(caption, path)])


DETECTION_TASK = DemoTask(
    "detection",
    VARIANTS,
    QUICK_VARIANTS,
    SETTINGS,
    RECIPE_DETECTION,
    CRITERION,
    SEED_TABLE,
    DATA,
    probe_images,
    detections_report,
)
