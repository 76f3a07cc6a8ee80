"""`nlgc demo --task segmentation`: its per-pixel data, its networks and the whole run."""

import dataclasses
import json

import pytest
import torch

import nlgc
from nlgc.cli import main
from nlgc.data.synthetic import OBJECT_EXTENT, PairsInstances, PairsMasks, partner_classes
from nlgc.train.demo.experiment import PARTNER_KINDS

FAR = 112 - OBJECT_EXTENT  # the second item's corner square starts here


def test_pairs_masks_label_every_item_pixel_by_the_other_items_kind():
    masks = PairsMasks(40, seed=3, size=112, split="val", source="shapes")
    instances = PairsInstances(40, seed=3, size=112, split="val", source="shapes")
    assert masks.classes == (
        "background",
        "partner disc",
        "partner square",
        "partner cross",
        "partner ring",
    )
    seen = set()
    for index in range(40):
        image, target = masks[index]
        objects = instances[index]
        assert torch.equal(image, objects[0])  # the detection task's images
        mask = target["mask"]
        assert mask.dtype == torch.int64 and mask.shape == (112, 112)
        assert torch.equal(mask > 0, image[0] > 0)  # every item pixel, nothing else
        top, bottom = masks.item_kinds[index].tolist()
        assert set(mask[:OBJECT_EXTENT, :OBJECT_EXTENT].unique().tolist()) == {0, 1 + bottom}
        assert set(mask[FAR:, FAR:].unique().tolist()) == {0, 1 + top}  # the other item's kind
        seen.add((top, bottom))
        assert target["name"] == f"val_{index:05d}"
    assert seen == {(0, 2), (0, 3), (1, 2), (1, 3)}  # every pairing of the two halves


def test_the_plain_demo_segmentor_cannot_see_the_other_item():
    """The FCN head on the demo ResNet: no logit of one item's corner square depends on any
    pixel of the other's (receptive field 99 px; the squares are 53 px apart)."""
    model = nlgc.create_model("fcn_demo_seg", 3, channels=8, auxiliary=False).eval()
    x = torch.randn(1, 3, 112, 112, requires_grad=True)
    model(x)[..., :OBJECT_EXTENT, :OBJECT_EXTENT].sum().backward()
    reach = x.grad.abs().sum(1)[0]
    far = 112 - OBJECT_EXTENT
    assert reach[:OBJECT_EXTENT, :OBJECT_EXTENT].gt(0).all()
    assert reach[far:, far:].eq(0).all()
    assert reach[far - 1, far - 1] > 0  # the field ends just before the other square


@pytest.mark.parametrize("name", ["nonlocal_demo_seg", "gcnet_demo_seg", "dnlnet_demo_seg"])
def test_demo_segmentor_heads_start_acting_when_asked(name):
    """zero_init=False: the head's block changes its input from the first step (the demo's
    acting start); the default is mmsegmentation's identity start."""
    x = torch.randn(2, 3, 112, 112)
    seen = {}
    for zero_init in (True, False):
        torch.manual_seed(0)
        model = nlgc.create_model(name, 3, channels=16, auxiliary=False, zero_init=zero_init)
        block = getattr(model.decode_head, model.decode_head.block_name)
        block.register_forward_hook(lambda m, i, o: seen.update(x=i[0], y=o))
        model.eval()(x)
        changed = not torch.allclose(seen["x"], seen["y"])
        assert changed != zero_init


def test_label_maps_are_drawn_for_up_to_six_classes(tmp_path):
    from nlgc.analysis.plots import plot_label_maps

    images = [torch.rand(3, 16, 16) for _ in range(2)]
    maps = {"truth": torch.randint(0, 3, (2, 16, 16)), "prediction": torch.zeros(2, 16, 16)}
    path = plot_label_maps(images, maps, ["a", "b", "c"], tmp_path / "maps.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="classes: 1 to 6 names expected, got 7"):
        plot_label_maps(images, maps, list("abcdefg"), tmp_path / "seven.png")


@pytest.mark.slow
def test_segmentation_demo_writes_its_report(tmp_path, monkeypatch, capsys):
    """The whole run on a few tiny images: per-seed and per-class tables, the failed runs
    named, the predictions figure, GCNet's Table 1 on the NL head, metrics.json."""
    import nlgc.train.demo as demo

    task = demo.TASKS["segmentation"]
    tiny = {"count": 48, "val_count": 8, "test_count": 8, "epochs": 1, "batch_size": 16}
    small = dataclasses.replace(task, settings={"quick": tiny, "default": tiny})
    monkeypatch.setitem(demo.TASKS, "segmentation", small)
    out = tmp_path / "demo"
    command = ["demo", "--task", "segmentation", "--out", str(out)]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "nlgc demo --task segmentation (default)" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["task"] == "segmentation"
    runs = metrics["variants"]["0"]
    assert set(runs) == set(task.variants) == {"FCN", "NL embedded Gaussian", "GC", "DNL"}
    for scores in runs.values():
        assert 0 <= scores["mIoU"] <= 1
        assert set(scores["IoU"]) == set(partner_classes(PARTNER_KINDS, "auto", "background"))
    assert list(metrics["gcnet_table1"]) == ["embedded_gaussian"]  # the NL head's block
    for name in ("predictions.png", "summary.md", "overview.md", "report.html"):
        assert (out / name).is_file(), name
    summary = (out / "summary.md").read_text()
    assert "| seed | FCN | NL embedded Gaussian | GC | DNL |" in summary
    report = (out / "report.html").read_text()
    assert "Test IoU per class" in report and "each variant&#x27;s prediction" in report
