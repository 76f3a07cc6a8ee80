"""Segmentation data (Cityscapes, ADE20K, VOC and mask-folder layouts made from a photograph),
mmsegmentation's training pipeline, whole / sliding-window / multi-scale / flip inference, and
a segmentor trained and tested through ``nlgc fit`` / ``nlgc test``."""

import json

import numpy as np
import pytest
import torch
from helpers import photograph
from PIL import Image

import nlgc
from nlgc.clips import keep_ratio_size
from nlgc.data.segmentation import CITYSCAPES_LABEL_IDS, SegmentationDataset
from nlgc.data.segmentation_pipeline import TrainPipeline, pad_to
from nlgc.evaluation.segmentation import SegmentationScores, SegmentationTest, slide

CLASSES = 5


def scene(seed: int, size=(48, 64)) -> tuple[np.ndarray, np.ndarray]:
    """A crop of the photograph and its labels: the grey level in ``CLASSES`` bands, so that
    every pixel's class follows from its colour."""
    pixels = photograph()
    top, left = 40 * seed, 30 * seed
    crop = np.ascontiguousarray(pixels[top : top + size[0], left : left + size[1]])
    labels = (crop.astype(np.int64).sum(-1) * CLASSES // 768).astype(np.uint8)
    return crop, labels


def save(path, array, palette=False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if palette:  # VOC's label maps are palette PNGs: the ids are the pixels
        image.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
        assert image.mode == "P"
    image.save(path)


def cityscapes(root, train_ids: bool) -> None:
    """Two cities' images with ``*_labelTrainIds.png`` or ``*_labelIds.png`` (ids 7, 8, 11,
    12, 13 are the train ids 0–4; id 0 'unlabeled' marks an ignored band)."""
    to_id = np.array([7, 8, 11, 12, 13])
    for index, city in enumerate(("aachen", "bonn")):
        crop, labels = scene(index)
        labels[:4] = 255  # an ignored top band
        stem = f"{city}_000000_00001{index}"
        save(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png", crop)
        if train_ids:
            save(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelTrainIds.png", labels)
        else:
            ids = np.where(labels == 255, 0, to_id[np.minimum(labels, 4)]).astype(np.uint8)
            save(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png", ids)


def test_cityscapes_label_ids_are_mapped_to_train_ids_as_the_official_table(tmp_path):
    cityscapes(tmp_path / "a", train_ids=True)
    cityscapes(tmp_path / "b", train_ids=False)
    with_train_ids = SegmentationDataset("cityscapes", tmp_path / "a", "val", 19)
    with_label_ids = SegmentationDataset("cityscapes", tmp_path / "b", "val", 19)
    assert len(with_train_ids) == len(with_label_ids) == 2
    for index in range(2):
        image, target = with_train_ids[index]
        _, mapped = with_label_ids[index]
        assert torch.equal(target["mask"], mapped["mask"])
        assert image.shape == (3, 48, 64) and image.dtype == torch.uint8
        assert (target["mask"][:4] == 255).all()
    assert with_train_ids[1][1]["name"] == "bonn/bonn_000000_000011_leftImg8bit"
    # the official table: 26 car → 13, 33 bicycle → 18, -1/0 unlabeled and 34 plate ignored
    assert CITYSCAPES_LABEL_IDS[[26, 33, 0, 6, 9, 34]].tolist() == [13, 18, 255, 255, 255, 255]


def test_ade20k_reduces_the_zero_label_and_voc_reads_palette_indices(tmp_path):
    crop, labels = scene(1)
    save(tmp_path / "ade/images/validation/ADE_val_00000001.jpg", crop)
    save(tmp_path / "ade/annotations/validation/ADE_val_00000001.png", labels)
    _image, target = SegmentationDataset("ade20k", tmp_path / "ade", "val", 150)[0]
    expected = torch.from_numpy(labels.astype(np.int64) - 1)
    expected[expected < 0] = 255  # 0 "other" is ignored, 1–150 → 0–149
    assert torch.equal(target["mask"], expected) and target["name"] == "ADE_val_00000001"

    voc = tmp_path / "voc"
    voc_labels = labels.copy()
    voc_labels[:, :3] = 255  # VOC's object borders
    save(voc / "JPEGImages/2007_000032.jpg", crop)
    save(voc / "SegmentationClass/2007_000032.png", voc_labels, palette=True)
    (voc / "ImageSets/Segmentation").mkdir(parents=True)
    (voc / "ImageSets/Segmentation/val.txt").write_text("2007_000032\n")
    _, target = SegmentationDataset("voc", voc, "val", 21)[0]
    assert torch.equal(target["mask"], torch.from_numpy(voc_labels.astype(np.int64)))


def test_bad_input_is_one_message_naming_the_file(tmp_path):
    crop, labels = scene(0)
    root = tmp_path / "masks"
    save(root / "train/images/a.png", crop)
    save(root / "train/images/b.png", crop)
    save(root / "train/masks/a.png", labels)
    with pytest.raises(
        ValueError, match=r"image .*b\.png has no label map: expected .*masks/b\.png"
    ):
        SegmentationDataset("masks", root, "train", CLASSES)
    save(root / "train/masks/b.png", labels[:40])
    data = SegmentationDataset("masks", root, "train", CLASSES)
    with pytest.raises(
        ValueError, match=r"label map .*b\.png is 64×40 but its image .*b\.png is 64×48"
    ):
        data[1]
    beyond = sorted({int(v) for v in labels.flatten()} - {0, 1})
    assert beyond
    with pytest.raises(
        ValueError,
        match=rf"label map .*a\.png holds values \{beyond}\ that are neither classes 0–1",
    ):
        SegmentationDataset("masks", root, "train", 2)[0]
    save(root / "train/masks/b.png", np.dstack([labels] * 3))
    with pytest.raises(
        ValueError, match=r"label map .*b\.png must hold one class id per pixel .* got mode RGB"
    ):
        data[1]
    (root / "val/images").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"the masks split 'val' under .*masks has no images"):
        SegmentationDataset("masks", root, "val", CLASSES)


def test_keep_ratio_resize_is_mmcvs_rescale_size():
    # mmcv.rescale_size((w, h), (2048, 1024)): the factor min(2048 / long, 1024 / short)
    assert keep_ratio_size(1024, 2048, (2048, 1024)) == (1024, 2048)
    assert keep_ratio_size(512, 683, (2048, 512)) == (512, 683)
    assert keep_ratio_size(375, 500, (1024, 512)) == (512, 683)
    assert keep_ratio_size(300, 1200, (2048, 512)) == (512, 2048)


def test_the_training_pipeline_crops_flips_and_pads_image_and_labels_together():
    crop, labels = scene(2, size=(40, 56))
    image, mask = torch.from_numpy(crop).permute(2, 0, 1), torch.from_numpy(labels).long()
    # a ratio of 1 on the image's own scale: no resampling, so labels follow pixels exactly
    pipeline = TrainPipeline((56, 40), (1.0, 1.0), (24, 32), 1.0, 0.5, photometric=False)
    flips = 0
    for seed in range(8):
        out, out_mask = pipeline(image, mask, torch.Generator().manual_seed(seed))
        assert out.shape == (3, 24, 32) and out_mask.shape == (24, 32)
        assert torch.equal(out_mask, out.sum(0).round().long() * CLASSES // 768)
        again = pipeline(image, mask, torch.Generator().manual_seed(seed))
        assert torch.equal(again[0], out) and torch.equal(again[1], out_mask)
        matches = [
            torch.equal(out, image[:, t : t + 24, u : u + 32].float())
            for t in range(17)
            for u in range(25)
        ]
        flips += not any(matches)
    assert 0 < flips < 8  # some crops mirrored, some not
    big = TrainPipeline((56, 40), (1.0, 1.0), (64, 80), 1.0, 0.0, photometric=False)
    out, out_mask = big(image, mask, torch.Generator().manual_seed(0))
    assert torch.equal(out, image.float()) and torch.equal(out_mask, mask)  # a smaller image
    out, out_mask = pad_to(out - 100, out_mask, (64, 80))  # after normalisation: 0 pads
    assert out.shape == (3, 64, 80) and (out[:, 40:] == 0).all() and (out[:, :, 56:] == 0).all()
    assert torch.equal(out[:, :40, :56], image.float() - 100)
    assert (out_mask[40:] == 255).all() and (out_mask[:, 56:] == 255).all()
    assert torch.equal(pad_to(image.float(), mask, (40, 56))[1], mask)


def test_the_crop_is_drawn_again_while_one_class_covers_cat_max_ratio():
    mask = torch.zeros(64, 64, dtype=torch.long)
    mask[:, 48:] = 1  # class 1 in a strip at the right: most crops see class 0 alone
    image = torch.zeros(3, 64, 64)
    strict = TrainPipeline((64, 64), (1.0, 1.0), (16, 16), 0.75, 0.0, photometric=False)
    loose = TrainPipeline((64, 64), (1.0, 1.0), (16, 16), 1.0, 0.0, photometric=False)

    def share_of_mixed(pipeline):
        crops = [pipeline(image, mask, torch.Generator().manual_seed(s))[1] for s in range(200)]
        return sum(len(c.unique()) > 1 for c in crops) / len(crops)

    assert share_of_mixed(strict) > 0.7 and share_of_mixed(loose) < 0.45


def test_photometric_distortion_keeps_pixels_in_range_and_changes_them():
    image = torch.from_numpy(scene(0)[0]).permute(2, 0, 1)
    mask = torch.zeros(48, 64, dtype=torch.long)
    pipeline = TrainPipeline((64, 48), (1.0, 1.0), (48, 64), 1.0, 0.0, photometric=True)
    changed = 0
    for seed in range(6):
        out, out_mask = pipeline(image, mask, torch.Generator().manual_seed(seed))
        assert out.min() >= 0 and out.max() <= 255 and torch.equal(out_mask, mask)
        changed += not torch.allclose(out, image.float(), atol=1.0)
    assert changed >= 4


class WindowMean(torch.nn.Module):
    """A 'segmentor' whose output depends on the window it sees: pixels plus the window's mean
    (and a 1×1 map to two classes)."""

    def forward(self, x):
        out = x[:, :2] + x.mean(dim=(2, 3), keepdim=True)[:, :2]
        return torch.cat([out, -out.sum(1, keepdim=True)], 1)


def test_sliding_window_inference_is_mmsegmentations():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 45, 70, dtype=torch.float64)
    crop, stride = (20, 32), (13, 21)
    # written out: window starts every stride, the last one moved back to end at the border
    tops = sorted({min(r * 13, 45 - 20) for r in range(-(-(45 - 20) // 13) + 1)})
    lefts = sorted({min(c * 21, 70 - 32) for c in range(-(-(70 - 32) // 21) + 1)})
    total, count = torch.zeros(2, 3, 45, 70, dtype=torch.float64), torch.zeros(45, 70)
    for t in tops:
        for u in lefts:
            total[:, :, t : t + 20, u : u + 32] += WindowMean()(x[:, :, t : t + 20, u : u + 32])
            count[t : t + 20, u : u + 32] += 1
    torch.testing.assert_close(
        slide(WindowMean(), x, crop, stride), total / count, rtol=0, atol=1e-12
    )
    # windows larger than the image: one pass of the whole image
    whole = slide(WindowMean(), x, (64, 96), (40, 60))
    torch.testing.assert_close(whole, WindowMean()(x), rtol=0, atol=1e-12)


def test_multi_scale_and_flip_average_the_class_probabilities():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 48, dtype=torch.float64)
    model = WindowMean()
    plain = SegmentationTest()
    torch.testing.assert_close(plain.logits(model, x), model(x))
    test = SegmentationTest(scale=(48, 32), ratios=(0.5, 1.0), flip=True)
    expected = 0
    for size in ((16, 24), (32, 48)):
        resized = torch.nn.functional.interpolate(x, size=size, mode="bilinear")
        for flip in (False, True):
            out = model(resized.flip(-1) if flip else resized)
            out = torch.nn.functional.interpolate(
                out.flip(-1) if flip else out, size=(32, 48), mode="bilinear"
            )
            expected = expected + out.softmax(1) / 4
    torch.testing.assert_close(test.logits(model, x), expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="slide inference needs crop_size and stride"):
        SegmentationTest(mode="slide")


def masks_dataset(root, splits=("train", "val")) -> None:
    for split in splits:
        for index in range(3):
            crop, labels = scene(index + (3 if split == "val" else 0), size=(40, 48))
            save(root / split / "images" / f"{split}{index}.png", crop)
            save(root / split / "masks" / f"{split}{index}.png", labels)
    (root / "classes.txt").write_text("\n".join(f"band{i}" for i in range(CLASSES)) + "\n")


def test_a_segmentor_trains_and_tests_through_nlgc_fit_and_test(tmp_path):
    from nlgc.train import run

    masks_dataset(tmp_path / "data")
    # an ImageNet ResNetV1c file in mmcv's layout (stem.0 … stem.7, fc), as the configs start from
    small = {"layers": [1, 1, 1, 1], "base_channels": 8}
    imagenet = nlgc.create_model("resnet50", stem="deep", num_classes=10, **small).state_dict()
    stem = {"conv1.0.": "stem.0.", "conv1.1.": "stem.1.", "conv1.3.": "stem.3."}
    stem |= {"conv1.4.": "stem.4.", "conv1.6.": "stem.6.", "bn1.": "stem.7."}
    v1c = {}
    for key, value in imagenet.items():
        prefix = next((p for p in stem if key.startswith(p)), None)
        v1c[stem[prefix] + key.removeprefix(prefix) if prefix else key] = value
    torch.save({"state_dict": v1c}, tmp_path / "resnet50_v1c.pth")
    config = {
        "seed": 0,
        "out": str(tmp_path / "run"),
        "model": {
            "name": "nonlocal_resnet50_d8",
            "overrides": {**small, "channels": 16},
            "init_from": str(tmp_path / "resnet50_v1c.pth"),
        },
        "data": {
            "kind": "masks",
            "root": str(tmp_path / "data"),
            "label_map": "classes.txt",
            "batch_size": 2,
            "crop_size": [32, 32],
            "scale": [48, 40],
            "segmentation_test": {"mode": "slide", "crop_size": [32, 32], "stride": [16, 16]},
        },
        "optim": {"lr": 0.01, "weight_decay": 5e-4, "schedule": "poly", "min_lr": 1e-4},
        "trainer": {"max_steps": 3, "accelerator": "cpu", "log_every_n_steps": 1},
    }
    fitted = run.fit(config, progress=False)
    started = json.loads((tmp_path / "run/init_report.json").read_text())
    assert started["source"] == "resnet_v1c" and not started["left_at_init"]
    assert "conv1.6.weight" in started["copied"] and started["ignored"] == ["fc.bias", "fc.weight"]
    assert {"train/loss", "train/loss_decode", "train/loss_auxiliary", "val/mIoU"} <= set(fitted)
    metrics = run.evaluate(config, "test", progress=False)
    written = json.loads((tmp_path / "run/test_metrics.json").read_text())
    assert set(written["IoU"]) == {f"band{i}" for i in range(CLASSES)}
    # the written label PNGs, scored again against the label maps, give the reported numbers
    scores = SegmentationScores(CLASSES)
    for index in range(3):
        predicted = np.asarray(Image.open(tmp_path / f"run/test_predictions/val{index}.png"))
        assert predicted.shape == (40, 48) and predicted.max() < CLASSES
        labels = np.asarray(Image.open(tmp_path / f"data/val/masks/val{index}.png"))
        scores.update(
            torch.from_numpy(predicted.astype(np.int64)), torch.from_numpy(labels.astype(np.int64))
        )
    recomputed = scores.compute()
    for key in ("mIoU", "aAcc", "mAcc"):
        assert metrics[key] == pytest.approx(recomputed[key], abs=1e-6) == written[key]
    # a whole segmentor's weights (this run's) start the whole of the next one: fine-tuning
    model = {**config["model"], "init_from": str(tmp_path / "run/checkpoints/last.ckpt")}
    trainer = {**config["trainer"], "max_steps": 1}
    run.fit({**config, "out": str(tmp_path / "next"), "model": model, "trainer": trainer})
    started = json.loads((tmp_path / "next/init_report.json").read_text())
    assert {"decode_head.conv_seg.weight", "backbone.conv1.0.weight"} <= set(started["copied"])
    assert not started["left_at_init"] and not started["ignored"]


def published_rows() -> list[dict]:
    """docs/segmentation.md's table of mmsegmentation's published rows, as dictionaries."""
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "segmentation.md").read_text()
    part = text.split("## mmsegmentation's published rows as configs")[1].split("\n## ")[0]
    keys = ("config", "model", "dataset", "crop", "iterations", "miou", "ms", "tag")
    rows = [line for line in part.splitlines() if line.startswith("| `")]
    return [
        dict(zip(keys, (c.strip(" `") for c in r.strip("|").split("|")), strict=True)) for r in rows
    ]


def test_mmsegmentation_published_rows_are_the_configs_and_the_zoo():
    from pathlib import Path

    import nlgc
    from nlgc.models.zoo import weights_entry
    from nlgc.train.run import load_config

    rows = published_rows()
    folder = Path(__file__).parent.parent / "configs" / "segmentation"
    assert sorted(r["config"] for r in rows) == sorted(p.name for p in folder.glob("*.yaml"))
    assert len(rows) == 6
    for row in rows:
        config = load_config(folder / row["config"])
        data, optim, trainer = config.data, config.optim, config.trainer
        height, width = (int(v) for v in row["crop"].split("×"))
        assert (config.model.name, data.kind, data.crop_size) == (
            row["model"],
            row["dataset"],
            (height, width),
        )
        assert config.model.num_classes == {"cityscapes": 19, "ade20k": 150}[data.kind]
        assert config.model.auxiliary_weight == 0.4 and not config.model.overrides
        assert config.model.init_from.endswith("/pretrain/third_party/resnet50_v1c-2cccc1ad.pth")
        assert (data.scale, data.ratio_range, data.cat_max_ratio, data.photometric) == (
            (2048, 1024 if data.kind == "cityscapes" else 512),
            (0.5, 2.0),
            0.75,
            True,
        )
        assert data.segmentation_test.mode == "whole" and data.segmentation_test.scale == data.scale
        assert (optim.optimizer, optim.lr, optim.momentum, optim.weight_decay) == (
            "sgd",
            0.01,
            0.9,
            5e-4,
        )
        assert (optim.schedule, optim.poly_power, optim.min_lr, optim.no_decay) == (
            "poly",
            0.9,
            1e-4,
            (),
        )
        assert trainer["max_steps"] == int(row["iterations"]) and trainer["sync_batchnorm"]
        assert trainer["devices"] * data.batch_size == (8 if data.kind == "cityscapes" else 16)
        entry = weights_entry(f"{row['model']}.{row['tag']}")  # the zoo reports the same mIoU
        ms = f", ms+flip {row['ms']}" if row["ms"] != "-" else ""
        assert entry.accuracy == f"mIoU {row['miou']}{ms}"
        assert set(config.model.overrides) <= set(nlgc.models.option_names(row["model"]))
