"""`nlgc demo --task detection`: its per-object data, its detectors and the whole run."""

import dataclasses
import json

import numpy as np
import pytest
import torch

import nlgc
from nlgc.cli import main
from nlgc.data.synthetic import OBJECT_EXTENT, PairsInstances

pytest.importorskip("torchvision.models.detection")
mask_api = pytest.importorskip("pycocotools.mask")

FAR = 112 - OBJECT_EXTENT  # the second item's corner square starts here


def test_pairs_instances_are_the_two_items_each_labelled_by_the_others_kind():
    instances = PairsInstances(40, seed=5, size=112, split="test", source="shapes")
    assert instances.classes == (
        "__background__",
        "partner disc",
        "partner square",
        "partner cross",
        "partner ring",
    )
    tops, bottoms = set(), set()
    for index in range(40):
        image, target = instances[index]
        masks, boxes = target["masks"].bool(), target["boxes"]
        assert image.shape == (3, 112, 112) and image.dtype == torch.uint8
        assert masks.shape == (2, 112, 112) and boxes.shape == (2, 4)
        assert torch.equal(masks[0] | masks[1], image[0] > 0)  # every item pixel, once
        assert not (masks[0] & masks[1]).any()
        assert masks[0, :OBJECT_EXTENT, :OBJECT_EXTENT].any() and masks[1, FAR:, FAR:].any()
        for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist(), strict=True):
            assert mask[y1:y2, x1:x2].sum() == mask.sum()  # the box holds the item …
            assert mask[y1, x1:x2].any() and mask[y2 - 1, x1:x2].any()  # … and is tight
            assert mask[y1:y2, x1].any() and mask[y1:y2, x2 - 1].any()
        top, bottom = instances.item_kinds[index].tolist()
        tops.add(top), bottoms.add(bottom)
        assert target["labels"].tolist() == [1 + bottom, 1 + top]  # the other item's kind
        assert torch.equal(target["area"], masks.sum((1, 2)).float())
    assert tops == {0, 1} and bottoms == {2, 3}  # the halves of the kinds, both drawn


def test_pairs_instances_take_the_kinds_in_two_halves():
    rng = np.random.default_rng(0)
    labels, top, bottom = PairsInstances._draw_kinds(rng, 500, 6)
    assert set(top.tolist()) == {0, 1, 2} and set(bottom.tolist()) == {3, 4, 5}
    assert not labels.any()  # never the same kind
    with pytest.raises(ValueError, match="an even number of kinds"):
        PairsInstances._draw_kinds(rng, 4, 3)


def test_pairs_instances_coco_file_scores_its_own_targets_perfectly():
    """The split's COCO dictionary decodes to the targets' masks, and pycocotools scores the
    targets themselves (as detections, score 1) at AP 1 for boxes and masks."""
    from nlgc.evaluation.coco import coco_results, evaluate_coco

    data = PairsInstances(6, seed=1, size=112, split="val", source="shapes")
    coco = data.data
    assert [c["name"] for c in coco["categories"]] == list(data.classes[1:])
    assert len(coco["images"]) == 6 and len(coco["annotations"]) == 12
    for annotation in coco["annotations"]:
        target = data[annotation["image_id"]][1]
        item = (annotation["id"] - 1) % 2
        decoded = torch.from_numpy(mask_api.decode(annotation["segmentation"]))
        assert torch.equal(decoded, target["masks"][item])
        x, y, w, h = annotation["bbox"]
        assert [x, y, x + w, y + h] == target["boxes"][item].tolist()
        assert annotation["category_id"] == int(target["labels"][item])
    found = []
    for index in range(6):
        target = data[index][1]
        output = {**target, "scores": torch.ones(2), "masks": target["masks"][:, None].float()}
        found.append(coco_results(index, output))
    for iou_type in ("bbox", "segm"):
        detections = [r for f in found for r in f[iou_type]]
        assert evaluate_coco(coco, detections, iou_type)["AP"] == pytest.approx(1.0)


def _reach(model, box: list[float], head: str) -> torch.Tensor:
    """Which pixels the class logits (head "box") or mask logits ("mask") of ``box`` read:
    (112, 112) gradient magnitudes."""
    x = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    images, _ = model.transform([x[0]])
    features = model.backbone(images.tensors)
    boxes, sizes, heads = [torch.tensor([box])], images.image_sizes, model.roi_heads
    if head == "box":
        pooled = heads.box_roi_pool(features, boxes, sizes)
        logits = heads.box_predictor(heads.box_head(pooled))[0]
    else:
        logits = heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(features, boxes, sizes)))
    (grad,) = torch.autograd.grad(logits.sum(), x)
    return grad[0].abs().sum(0)


@pytest.mark.parametrize("head", ["box", "mask"])
def test_the_plain_demo_detector_cannot_see_the_other_item(head):
    """Class and mask logits of a box around one item (and a box 6 px larger) read none of
    the other item's corner square, and do read all of their own."""
    torch.manual_seed(0)
    model = nlgc.create_model("mask_rcnn_demo_fpn", 3).eval()
    for box, own, other in (
        ([0.0, 0.0, 30.0, 30.0], (slice(0, 30),) * 2, (slice(FAR, 112),) * 2),
        ([0.0, 0.0, 36.0, 36.0], (slice(0, 30),) * 2, (slice(FAR, 112),) * 2),
        ([82.0, 82.0, 112.0, 112.0], (slice(FAR, 112),) * 2, (slice(0, 30),) * 2),
        ([76.0, 76.0, 112.0, 112.0], (slice(FAR, 112),) * 2, (slice(0, 30),) * 2),
    ):
        reach = _reach(model, box, head)
        assert reach[own].gt(0).all(), box
        assert reach[other].eq(0).all(), box


@pytest.mark.parametrize(
    "name",
    [
        "mask_rcnn_nl_demo_fpn",
        "mask_rcnn_gc_r4_demo_fpn",
        "mask_rcnn_snl_c3c5_demo_fpn",
        "mask_rcnn_dnl_demo_fpn",
    ],
)
def test_the_context_detectors_see_the_other_item_when_acting(name):
    torch.manual_seed(0)
    model = nlgc.create_model(name, 3, zero_init=False).eval()
    reach = _reach(model, [0.0, 0.0, 30.0, 30.0], "box")
    assert reach[FAR:, FAR:].gt(0).any()


def test_each_demo_run_trains_with_its_tasks_recipe(tmp_path):
    """The detection demo's runs release their held attention over one epoch and train their
    masks at the blocks' rate; the image demo's masks learn at 1 × the learning rate, with no
    release ramp."""
    from nlgc.train.demo import TASKS
    from nlgc.train.demo.experiment import Experiment

    detection = Experiment.of(False, (0,), TASKS["detection"])
    optim = detection.config("all-SNL", tmp_path, 0).optim
    assert (optim.mask_hold_epochs, optim.release_epochs, optim.mask_lr_mult) == (2, 1, None)
    image = Experiment.of(False, (0,), TASKS["classification"]).config("GC", tmp_path, 0).optim
    assert (image.mask_hold_epochs, image.release_epochs, image.mask_lr_mult) == (2, 0, 1)
    assert detection.report_settings()["recipe"]["release_epochs"] == 1


def test_narrow_heads_are_torchvisions_heads_of_another_width():
    model = nlgc.create_model("mask_rcnn_demo_fpn", 3, fpn_channels=24, head_channels=40)
    heads = model.roi_heads
    assert model.backbone.out_channels == 24
    assert heads.box_head.fc6.in_features == 24 * 7 * 7 and heads.box_head.fc7.out_features == 40
    assert heads.box_predictor.cls_score.out_features == 3  # the classes, as without heads
    assert heads.mask_head[0][0].in_channels == 24 and heads.mask_head[3][0].out_channels == 40
    assert heads.mask_predictor.mask_fcn_logits.out_channels == 3
    for option, value in (("head_channels", 0), ("fpn_channels", -8)):
        with pytest.raises(ValueError, match=option):
            nlgc.create_model("mask_rcnn_demo_fpn", 3, **{option: value})


def test_diagnosis_names_each_block_of_a_network_with_several():
    from nlgc.analysis.diagnosis import diagnose

    torch.manual_seed(0)
    model = nlgc.create_model("mask_rcnn_gc_r4_demo_fpn", 3, zero_init=False).eval()
    images = PairsInstances(2, seed=0, size=112, source="shapes").pixels
    text = diagnose(model, images[:, None].expand(-1, 3, -1, -1).float() / 255, OBJECT_EXTENT)
    names = [n for n, m in model.named_modules() if isinstance(m, nlgc.blocks.ContextBlock)]
    assert len(names) == 4 and all(f"{name}: " in text for name in names)


def test_detections_are_drawn_with_their_classes(tmp_path):
    from nlgc.analysis.plots import plot_detections

    found = {
        "truth": [
            {
                "boxes": torch.tensor([[2.0, 2, 10, 10]]),
                "labels": torch.tensor([1]),
                "scores": torch.ones(1),
                "masks": torch.ones(1, 1, 16, 16),
            }
        ]
        * 2,
        "none": [
            {
                "boxes": torch.zeros(0, 4),
                "labels": torch.zeros(0, dtype=torch.int64),
                "scores": torch.zeros(0),
            }
        ]
        * 2,
    }
    images = [torch.rand(3, 16, 16) for _ in range(2)]
    path = plot_detections(images, found, ["bg", "a", "b"], tmp_path / "found.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="classes: 2 to 6 names expected, got 1"):
        plot_detections(images, found, ["bg"], tmp_path / "one.png")


@pytest.mark.slow
def test_detection_demo_writes_its_report(tmp_path, monkeypatch, capsys):
    """The whole run on a few tiny images: per-seed and AP tables, the failed runs named, the
    detections figure, GCNet's Table 1 on the NL block, the context masks of every block of
    all-GC and all-SNL, metrics.json."""
    import nlgc.train.demo as demo

    task = demo.TASKS["detection"]
    tiny = {"count": 16, "val_count": 4, "test_count": 6, "epochs": 1, "batch_size": 8}
    small = dataclasses.replace(task, settings={"quick": tiny, "default": tiny})
    monkeypatch.setitem(demo.TASKS, "detection", small)
    out = tmp_path / "demo"
    assert main(["demo", "--task", "detection", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "nlgc demo --task detection (default)" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["task"] == "detection"
    runs = metrics["variants"]["0"]
    assert set(runs) == set(task.variants)
    assert set(runs) == {"plain", "NL embedded Gaussian", "all-GC", "all-SNL", "DNL"}
    for scores in runs.values():
        for key in ("bbox/AP", "bbox/AP50", "segm/AP", "segm/AP50"):
            assert -1 <= scores[key] <= 1, key
    assert list(metrics["gcnet_table1"]) == ["embedded_gaussian"]
    assert set(metrics["decomposition"]) == {"NL embedded Gaussian", "DNL"}
    pictures = ("predictions.png", "context_masks_all-gc.png", "context_masks_all-snl.png")
    for name in (*pictures, "summary.md", "overview.md", "report.html"):
        assert (out / name).is_file(), name
    assert not (out / "context_masks.png").exists()  # no variant with one GC or SNL block
    summary = (out / "summary.md").read_text()
    assert "| seed | plain | NL embedded Gaussian | all-GC | all-SNL | DNL |" in summary
    report = (out / "report.html").read_text()
    assert (
        "Test AP (pycocotools) per variant" in report and "each variant&#x27;s detections" in report
    )
    assert "all-SNL: the context masks of its 4 blocks" in report
