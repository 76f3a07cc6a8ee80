"""COCO-format data (polygons, RLE, crowds, gaps in the category ids), pycocotools' AP, and a
detector trained and tested through nlgc fit / test on a small set made from a photograph."""

import json

import numpy as np
import pytest
import torch
from helpers import photograph
from PIL import Image

from nlgc.data.coco import CocoDetection
from nlgc.detection import STATS, coco_results, evaluate_coco
from nlgc.train import run
from nlgc.train.datamodule import EpochSeededSampler, GroupedBatches

mask_api = pytest.importorskip("pycocotools.mask")
pytest.importorskip("torchvision")
from pycocotools.coco import COCO  # noqa: E402


def rle(mask: np.ndarray) -> dict:
    encoded = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": encoded["size"], "counts": encoded["counts"].decode("ascii")}


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, zeros first."""
    flat = mask.astype(np.uint8).flatten(order="F")
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return {"size": list(mask.shape), "counts": np.diff(np.concatenate([[0], changes])).tolist()}


def write_coco_set(root, split="train") -> dict:
    """Three crops of the photograph (landscape, portrait, one with only a crowd region), with
    a polygon, compressed and uncompressed RLE, a box-only object and category ids 1 and 3."""
    pixels = photograph()
    crops = {1: pixels[0:120, 0:160], 2: pixels[100:240, 200:300], 3: pixels[300:380, 100:220]}
    folder = root / f"{split}2017"
    folder.mkdir(parents=True)
    images = []
    for image_id, crop in crops.items():
        Image.fromarray(np.ascontiguousarray(crop)).save(folder / f"{image_id:04d}.png")
        images.append(
            {
                "id": image_id,
                "file_name": f"{image_id:04d}.png",
                "height": crop.shape[0],
                "width": crop.shape[1],
            }
        )
    ellipse = np.zeros((140, 100), bool)
    yy, xx = np.mgrid[:140, :100]
    ellipse[((yy - 70) / 40) ** 2 + ((xx - 50) / 25) ** 2 <= 1] = True
    square = np.zeros((120, 160), bool)
    square[60:100, 90:150] = True
    crowd = np.zeros((80, 120), bool)
    crowd[10:70, 10:110] = True
    annotations = [
        {
            "id": 11,
            "image_id": 1,
            "category_id": 1,
            "bbox": [20, 10, 40, 50],
            "area": 1000.0,
            "iscrowd": 0,
            "segmentation": [[20, 10, 60, 10, 60, 60, 20, 60, 40, 30]],
        },
        {
            "id": 12,
            "image_id": 1,
            "category_id": 3,
            "bbox": [90, 60, 60, 40],
            "area": 2400.0,
            "iscrowd": 0,
            "segmentation": uncompressed_rle(square),
        },
        {
            "id": 13,
            "image_id": 1,
            "category_id": 3,
            "bbox": [5, 80, 30, 30],
            "area": 900.0,
            "iscrowd": 0,
        },
        {
            "id": 21,
            "image_id": 2,
            "category_id": 1,
            "bbox": [25, 30, 50, 80],
            "area": 3100.0,
            "iscrowd": 0,
            "segmentation": rle(ellipse),
        },
        {
            "id": 31,
            "image_id": 3,
            "category_id": 1,
            "bbox": [10, 10, 100, 60],
            "area": 6000.0,
            "iscrowd": 1,
            "segmentation": uncompressed_rle(crowd),
        },
    ]
    categories = [{"id": 1, "name": "face"}, {"id": 3, "name": "tie"}]
    instances = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(instances))
    return instances


@pytest.fixture
def coco_root(tmp_path):
    root = tmp_path / "coco"
    for split in ("train", "val"):
        write_coco_set(root, split)
    return root


def test_targets_are_pycocotools_masks_and_torchvision_boxes(coco_root):
    train = CocoDetection(
        coco_root / "annotations/instances_train2017.json", coco_root / "train2017", train=True
    )
    val = CocoDetection(coco_root / "annotations/instances_val2017.json", coco_root / "val2017")
    assert len(train) == 2 and len(val) == 3  # image 3 has only a crowd region: not trained on
    assert train.num_classes == 4 and train.image_size(1) == (140, 100)
    reference = COCO(str(coco_root / "annotations/instances_train2017.json"))
    image, target = train[0]
    assert image.shape == (3, 120, 160) and image.dtype == torch.uint8
    assert target["labels"].tolist() == [1, 3, 3] and target["image_id"] == 1
    assert torch.equal(target["boxes"][0], torch.tensor([20.0, 10.0, 60.0, 60.0]))
    for mask, annotation in zip(target["masks"], reference.loadAnns([11, 12]), strict=False):
        assert torch.equal(mask, torch.from_numpy(reference.annToMask(annotation)))
    assert target["masks"][2].sum() == 900  # a box-only object fills its box
    _, with_rle = train[1]
    assert torch.equal(
        with_rle["masks"][0], torch.from_numpy(reference.annToMask(reference.loadAnns(21)[0]))
    )
    _, crowded = val[2]
    assert crowded["iscrowd"].tolist() == [1]  # evaluation keeps crowds (COCOeval ignores them)


def test_bad_annotations_are_named_or_skipped_and_counted(coco_root, tmp_path):
    path = coco_root / "annotations/instances_train2017.json"
    instances = json.loads(path.read_text())
    cases = {
        "polygon with fewer than 3 points": {"segmentation": [[1, 1, 5, 5]]},
        "empty or malformed bbox": {"bbox": [3, 3, 0, 10]},
        "category_id 7, which is not in 'categories'": {"category_id": 7},
    }
    for message, change in cases.items():
        broken = json.loads(json.dumps(instances))
        broken["annotations"][0].update(change)
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=f"annotation 11 .*{message.split(',')[0]}"):
            CocoDetection(bad, coco_root / "train2017", train=True)
        skipping = CocoDetection(bad, coco_root / "train2017", train=True, skip_corrupt=True)
        assert skipping.skipped == [11] and skipping[0][1]["labels"].tolist() == [3, 3]
    (tmp_path / "not_coco.json").write_text(json.dumps({"images": []}))
    with pytest.raises(
        ValueError, match=r"not a COCO instances file: it lacks \['annotations', 'categories'\]"
    ):
        CocoDetection(tmp_path / "not_coco.json", coco_root)
    (coco_root / "train2017" / "0002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"image .*0002.png .*image id 2\) is missing"):
        CocoDetection(path, coco_root / "train2017", train=True)[1]


def detections_of(instances: dict, jitter: float, seed: int = 0) -> list[dict]:
    generator = np.random.default_rng(seed)
    found = []
    for a in instances["annotations"]:
        if a.get("iscrowd"):
            continue
        box = (np.array(a["bbox"]) + generator.normal(0, jitter, 4)).tolist()
        found.append(
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "bbox": box,
                "score": float(generator.uniform(0.3, 1)),
            }
        )
    return found


def test_evaluate_coco_is_cocoeval_by_name(coco_root):
    path = coco_root / "annotations/instances_val2017.json"
    instances = json.loads(path.read_text())
    perfect = evaluate_coco(path, detections_of(instances, 0.0))
    assert list(perfect) == list(STATS) and perfect["AP"] == pytest.approx(1.0)
    noisy = detections_of(instances, 6.0, seed=1)
    ours = evaluate_coco(instances, noisy, "bbox")
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(path))
    reference = COCOeval(gt, gt.loadRes(noisy), "bbox")
    reference.evaluate(), reference.accumulate(), reference.summarize()
    assert list(ours.values()) == [float(v) for v in reference.stats]
    assert 0 < ours["AP"] < 1
    assert evaluate_coco(path, [])["AP"] == 0.0


def test_detector_outputs_become_coco_results_that_score_perfectly(coco_root):
    path = coco_root / "annotations/instances_val2017.json"
    val = CocoDetection(path, coco_root / "val2017")
    _, target = val[0]
    keep = target["iscrowd"] == 0
    output = {
        "boxes": target["boxes"][keep],
        "labels": target["labels"][keep],
        "scores": torch.linspace(0.9, 0.5, int(keep.sum())),
        "masks": target["masks"][keep][:, None].float(),
    }
    found = coco_results(target["image_id"], output)
    assert found["segm"][0]["segmentation"]["counts"] and found["bbox"][0]["bbox"] == [
        20.0,
        10.0,
        40.0,
        50.0,
    ]
    gt = json.loads(path.read_text())
    gt["images"] = gt["images"][:1]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] == 1]
    assert evaluate_coco(gt, found["bbox"], "bbox")["AP"] == pytest.approx(1.0)
    assert evaluate_coco(gt, found["segm"], "segm")["AP"] == pytest.approx(1.0)


def test_grouped_batches_keep_aspect_ratios_together_and_cover_every_item():
    groups = [0, 1, 0, 0, 1, 1, 0, 1, 0]
    batches = GroupedBatches(EpochSeededSampler(9, seed=3), groups, 2)
    drawn = list(batches)
    assert len(drawn) == len(batches) == 5
    assert sorted(i for b in drawn for i in b) == list(range(9))
    assert all(len({groups[i] for i in b}) == 1 for b in drawn[:-1])
    batches.set_epoch(1)
    assert list(batches) != drawn  # a new order each epoch


def test_fit_and_test_a_detector_on_coco_data(coco_root, tmp_path):
    config = {
        "out": str(tmp_path / "run"),
        "model": {"name": "mask_rcnn_gc_tiny_resnet_fpn"},
        "data": {
            "kind": "coco",
            "root": str(coco_root),
            "batch_size": 2,
            "min_size": 96,
            "max_size": 128,
        },
        "optim": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "augment": "flip"},
        "trainer": {
            "max_epochs": 1,
            "accelerator": "cpu",
            "devices": 1,
            "enable_model_summary": False,
        },
    }
    fitted = run.fit(config, progress=False)
    assert np.isfinite(fitted["train/loss"]) and "train/loss_mask" in fitted
    assert "val/bbox/AP" in fitted and "val/segm/AP75" in fitted
    tested = run.evaluate(config, "test", progress=False)
    for iou_type in ("bbox", "segm"):
        assert {f"{iou_type}/{name}" for name in STATS} <= set(tested)
        written = json.loads((tmp_path / "run" / f"test_results.{iou_type}.json").read_text())
        assert all(r["image_id"] in (1, 2, 3) and r["category_id"] in range(4) for r in written)
        assert (
            tested[f"{iou_type}/AP"]
            == evaluate_coco(coco_root / "annotations/instances_val2017.json", written, iou_type)[
                "AP"
            ]
        )
    saved = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert saved["bbox/AP"] == tested["bbox/AP"]


def test_a_flip_mirrors_the_image_boxes_and_masks_together(coco_root):
    from nlgc.train.detector import _flipped

    image, target = CocoDetection(
        coco_root / "annotations/instances_train2017.json", coco_root / "train2017"
    )[0]
    flipped, moved = _flipped(image, target)
    width = image.shape[-1]
    assert torch.equal(flipped, image.flip(-1)) and torch.equal(
        moved["masks"], target["masks"].flip(-1)
    )
    expected = torch.stack(
        [
            width - target["boxes"][:, 2],
            target["boxes"][:, 1],
            width - target["boxes"][:, 0],
            target["boxes"][:, 3],
        ],
        1,
    )
    assert torch.equal(moved["boxes"], expected)
    assert moved["labels"] is target["labels"]
