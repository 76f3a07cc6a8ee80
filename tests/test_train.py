"""Training: data, the fit/validate/test commands, checkpoints, resume after SIGKILL, DDP."""

import gzip
import json
import logging
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import randomize
from runs import synthetic_config

import nlgc
from nlgc.cli import main
from nlgc.clips import resize_and_crop
from nlgc.data import synthetic
from nlgc.data.folders import ImageFolder, VideoFolder
from nlgc.data.io import read_image, write_video
from nlgc.data.synthetic import (
    OBJECT_EXTENT,
    VAL_ITEMS,
    PairsDataset,
    fashion_files,
    fashion_mnist,
    item_pool,
)
from nlgc.models.from_checkpoint import load_model
from nlgc.train import run
from nlgc.train.base import THREADS_KEY


def test_built_in_task_is_deterministic_and_long_range():
    a, b = PairsDataset(200, seed=3), PairsDataset(200, seed=3)
    assert torch.equal(a.pixels, b.pixels) and (a.labels == b.labels).all()
    assert not torch.equal(a.pixels, PairsDataset(200, seed=4).pixels)
    assert 0.4 < a.labels.mean() < 0.6
    image, _ = a[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.uint8
    pixels = a.pixels.float()
    assert pixels[:, :32, :32].sum() > 0 and pixels[:, 32:, 32:].sum() > 0  # opposite corners
    assert pixels[:, :28, 36:].sum() == 0 and pixels[:, 36:, :28].sum() == 0  # nothing else
    shapes = PairsDataset(50, seed=0, source="shapes", frames=6)
    assert shapes.source == "shapes" and shapes[0][0].shape == (3, 6, 64, 64)
    clip = shapes.pixels[0].float()
    assert clip[:3, 36:, 36:].sum() == 0 and clip[3:, :28, :28].sum() == 0  # one object per half


def test_objects_stay_in_their_corner_squares():
    size, e = 112, OBJECT_EXTENT
    pixels = PairsDataset(300, seed=1, size=size, source="shapes").pixels.clone()
    assert pixels[:, :e, :e].flatten(1).sum(1).min() > 0  # every image has both objects
    assert pixels[:, -e:, -e:].flatten(1).sum(1).min() > 0
    pixels[:, :e, :e] = 0
    pixels[:, -e:, -e:] = 0
    assert pixels.sum() == 0  # and nothing outside the two corner squares


def test_splits_draw_from_disjoint_item_pools():
    for source in ("shapes", "fashion") if fashion_files("test") else ("shapes",):
        sets = {}
        for seed, split in enumerate(("train", "val", "test")):
            data = PairsDataset(400, seed=seed, size=64, split=split, source=source)
            sets[split] = set(data.item_ids.flatten().tolist())
        assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"]
        assert not sets["val"] & sets["test"]
    with pytest.raises(ValueError, match="split must be one of"):
        PairsDataset(4, split="validation")


@pytest.mark.skipif(fashion_files("test") is None, reason="dataset-fashion-mnist not installed")
def test_fashion_pools_partition_the_files():
    pools = {split: item_pool(split) for split in ("train", "val", "test")}
    ids = {split: set(pool[2].tolist()) for split, pool in pools.items()}
    assert len(ids["val"]) == VAL_ITEMS and len(ids["test"]) == 10_000
    assert len(ids["train"] | ids["val"] | ids["test"]) == 70_000  # each item once
    train_images = fashion_mnist("train")[0]
    assert np.array_equal(pools["val"][0], train_images[-VAL_ITEMS:])  # ids name real items
    data = PairsDataset(20, seed=0, size=64, split="val", source="fashion")
    first = train_images[data.item_ids[0, 0]]
    corner = data.pixels[0, :OBJECT_EXTENT, :OBJECT_EXTENT].numpy()
    assert any(
        np.array_equal(corner[y : y + 28, x : x + 28], first) for y in range(3) for x in range(3)
    )


def write_image_folders(root: Path, per_class=4, size=40):
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for label, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = torch.randint(0, 255, (size, size + 8, 3), generator=generator) // (
                    label + 1
                )
                Image.fromarray(pixels.byte().numpy()).save(folder / f"{i}.png")
    return root


def test_idx_files_are_read_once_per_version(tmp_path, monkeypatch):
    def write(values):
        with gzip.open(tmp_path / "labels.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + len(values).to_bytes(4, "big") + bytes(values))

    opened = []
    real_open = gzip.open
    monkeypatch.setattr(gzip, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    write([1, 2, 3])
    first = synthetic._read_idx(tmp_path / "labels.gz")
    again = synthetic._read_idx(tmp_path / "labels.gz")
    assert again.tolist() == [1, 2, 3] and len(opened) == 2  # one write, one read
    assert not first.flags.writeable  # shared between datasets: nobody may change it
    write([4, 5, 6, 7])  # a new version of the file is read anew
    assert synthetic._read_idx(tmp_path / "labels.gz").tolist() == [4, 5, 6, 7]


def test_image_folders_and_their_errors(tmp_path, caplog):
    root = write_image_folders(tmp_path / "data")
    data = ImageFolder(root, "train", size=32)
    assert data.classes == ["cat", "dog"] and len(data) == 8
    image, label = data[5]
    path = data.samples[5][0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and label == 1
    assert torch.equal(image, resize_and_crop(read_image(path), 32))
    assert path.parent.name == "dog"
    with pytest.raises(FileNotFoundError, match="nowhere/train"):
        ImageFolder(tmp_path / "nowhere", "train")
    (root / "train" / "empty").mkdir()
    (root / "val" / "empty").mkdir()
    with pytest.raises(ValueError, match="class 'empty' has no files"):
        ImageFolder(root, "train")
    (root / "train" / "empty").rmdir()
    (root / "val" / "empty").rmdir()
    broken = root / "train" / "dog" / "broken.png"
    broken.write_bytes(b"\x89PNG but not really")
    with pytest.raises(ValueError, match=r"broken\.png"):
        ImageFolder(root, "train", size=32)[len(data)]
    with caplog.at_level(logging.WARNING):
        skipping = ImageFolder(root, "train", size=32, skip_corrupt=True)
    assert skipping.skipped == [broken] and len(skipping) == 8
    assert "skipped 1 unreadable files" in caplog.text


def write_video_folders(root: Path, per_class=2, frames=20):
    for split in ("train", "val"):
        for label, name in enumerate(("up", "down")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                values = [10 * t if label == 0 else 250 - 10 * t for t in range(frames)]
                pixels = (
                    np.full((frames, 40, 48, 3), i, np.uint8)
                    + np.uint8(values)[:, None, None, None]
                )
                write_video(folder / f"{i}.mp4", pixels, fps=10, gop=12, codec="mpeg4")
    return root


def test_video_folders(tmp_path):
    root = write_video_folders(tmp_path / "videos")
    clips = VideoFolder(root, "train", clip_len=4, frame_interval=3, size=32)
    clip, label = clips[0]
    assert clip.shape == (3, 4, 32, 32) and label == 0  # "down" sorts before "up"
    (root / "train" / "up" / "bad.mp4").write_bytes(b"nope")
    with pytest.raises(ValueError, match=r"bad\.mp4"):
        VideoFolder(root, "train", clip_len=4)[len(clips)]
    assert len(VideoFolder(root, "train", clip_len=4, skip_corrupt=True).skipped) == 1


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_fit_validate_test_commands(tmp_path, capsys):
    config = write_config(tmp_path / "run.yaml", synthetic_config(tmp_path / "run"))
    plain = tmp_path / "tiny_resnet.pth"  # "ImageNet" weights of the network without blocks
    torch.save(nlgc.create_model("tiny_resnet", num_classes=10).state_dict(), plain)
    assert main(["fit", "--config", str(config), "--no-progress", "--init-from", str(plain)]) == 0
    out = tmp_path / "run"
    init = json.loads((out / "init_report.json").read_text())
    assert "conv1.weight" in init["copied"] and "fc.weight" in init["left_at_init"]
    assert any("context_block" in k for k in init["left_at_init"]) and not init["inflated"]
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints == ["epoch000.ckpt", "epoch001.ckpt", "last.ckpt"]
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["nlgc_model"]["name"] == "gc_tiny_resnet"
    assert list((out / "logs").rglob("metrics.csv")) and list(
        (out / "tensorboard").rglob("events*")
    )
    assert main(["validate", "--config", str(config), "--no-progress"]) == 0
    assert main(["test", "--config", str(config), "--no-progress"]) == 0
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert {"test/top1", "test/loss"} <= set(metrics)
    assert "test/top5" not in metrics  # two classes: top-5 would always be 1
    matrix = torch.tensor(metrics["confusion_matrix"]["rows_true_cols_predicted"])
    assert matrix.shape == (2, 2) and int(matrix.sum()) == 96
    assert metrics["test/top1"] == pytest.approx(float(matrix.trace() / matrix.sum()))
    model, report = load_model(out / "checkpoints" / "last.ckpt")
    assert report.model_name == "gc_tiny_resnet" and model.fc.out_features == 2
    assert '"test/top1"' in capsys.readouterr().out  # the command prints its metrics


@pytest.mark.slow
def test_mixed_precision_and_gradient_clipping(tmp_path):
    config = synthetic_config(
        tmp_path / "bf16",
        trainer__precision="bf16-mixed",
        trainer__gradient_clip_val=1.0,
        trainer__max_epochs=1,
        model__name="nl_tiny_resnet",
    )
    metrics = run.fit(config, progress=False)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_config_errors_are_explained(tmp_path, capsys):
    bad = write_config(tmp_path / "bad.yaml", {"model": {"name": "tiny_resnet"}, "dataset": {}})
    assert main(["fit", "--config", str(bad)]) == 2
    assert "unknown config sections ['dataset']" in capsys.readouterr().err
    good = write_config(tmp_path / "good.yaml", synthetic_config(tmp_path / "x"))
    assert main(["fit", "--config", str(good), "trainer.max_epochs"]) == 2
    assert "section.key=value" in capsys.readouterr().err
    assert main(["fit", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    no_data = {"kind": "images", "root": str(tmp_path / "no_data")}
    missing = write_config(
        tmp_path / "f.yaml", {**synthetic_config(tmp_path / "y"), "data": no_data}
    )
    assert main(["fit", "--config", str(missing)]) == 2
    assert "no_data/train" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("model: [unclosed\n", "line 2, column 1", "expected ',' or ']'"),
        (
            "model: !!python/object/apply:os.system ['touch pwned']\n",
            "line 1, column 8",
            "could not determine a constructor",
        ),
    ],
)
def test_config_yaml_errors_are_one_line(tmp_path, capsys, monkeypatch, text, position, words):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    assert main(["fit", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"broken.yaml, {position}" in err and words in err
    assert not (tmp_path / "pwned").exists()
    good = write_config(tmp_path / "good.yaml", synthetic_config(tmp_path / "x"))
    assert main(["fit", "--config", str(good), "optim.lr=[1"]) == 2
    assert "override 'optim.lr=[1'" in capsys.readouterr().err


@pytest.mark.slow
def test_skip_corrupt_flag(tmp_path, caplog):
    root = write_image_folders(tmp_path / "data", per_class=3)
    (root / "val" / "cat" / "broken.png").write_bytes(b"garbage")
    config = synthetic_config(tmp_path / "run", trainer__max_epochs=1, model__name="tiny_resnet")
    config["data"] = {"kind": "images", "root": str(root), "size": 32, "batch_size": 2}
    path = write_config(tmp_path / "images.yaml", config)
    with caplog.at_level(logging.WARNING):
        assert main(["validate", "--config", str(path), "--no-progress", "--skip-corrupt"]) == 0
    assert "skipped 1 unreadable files" in caplog.text
    metrics = json.loads((tmp_path / "run" / "validate_metrics.json").read_text())
    (root / "val" / "cat" / "broken.png").unlink()  # the same run on the clean folder
    clean = {**config, "out": str(tmp_path / "clean")}
    assert (
        main(
            [
                "validate",
                "--config",
                str(write_config(tmp_path / "clean.yaml", clean)),
                "--no-progress",
            ]
        )
        == 0
    )
    assert metrics == json.loads((tmp_path / "clean" / "validate_metrics.json").read_text())


def command(config: Path, *extra) -> list[str]:
    return [
        sys.executable,
        "-m",
        "nlgc.cli",
        "fit",
        "--config",
        str(config),
        "--no-progress",
        *extra,
    ]


# The resume tests' processes run one CPU thread and MKL's reproducible code path: a sum split
# over threads rounds by the thread split, and the default thread count follows the CPUs a
# process may use when it starts, which a shared CI machine may change between two processes.
# (Under load here, 36 uninterrupted 2-thread runs gave identical weights; 1 thread, 2 threads
# and MKL_CBWR each give different ones.) What is tested is the resume logic, not the libraries.
ONE_THREAD = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MKL_CBWR": "COMPATIBLE",
}


def differences(resumed: dict, straight: dict) -> dict:
    """{name: max |Δ|} of the tensors that are not equal."""
    return {
        k: (resumed[k].double() - v.double()).abs().max().item()
        for k, v in straight.items()
        if not torch.equal(resumed[k], v)
    }


def final_state(out: Path) -> dict:
    return load_model(out / "checkpoints" / "last.ckpt")[0].state_dict()


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """A 3-epoch run (8 steps an epoch) that nothing interrupts: (its config, final weights,
    fit metrics)."""
    tmp = tmp_path_factory.mktemp("straight")
    config = synthetic_config(
        tmp / "run", data__count=256, trainer__max_epochs=3, model__name="nl_tiny_resnet"
    )
    subprocess.run(command(write_config(tmp / "run.yaml", config)), check=True, env=ONE_THREAD)
    return config, final_state(tmp / "run"), json.loads((tmp / "run/fit_metrics.json").read_text())


# Where the SIGKILL lands (tests/kill_run.py): point, how many times it is reached first. Epoch
# e writes epoch{e}.ckpt, then last.ckpt, each through a temporary file and a rename.
KILL_POINTS = [
    ("train_batch", 3),  # before any checkpoint exists
    ("validation_batch", 2),  # in the first validation
    ("save_checkpoint", 1),  # while the first checkpoint is being built
    ("checkpoint_written", 1),  # epoch000.ckpt written, not yet renamed
    ("after_checkpoint", 1),  # epoch000.ckpt in place, last.ckpt not yet
    ("train_batch", 12),  # in the middle of the second epoch
    ("checkpoint_written", 4),  # last.ckpt of epoch 1 written, not renamed
    ("after_checkpoint", 5),  # the final epoch002.ckpt in place, last.ckpt not yet
    ("after_checkpoint", 6),  # everything saved, before fit_metrics.json
]


@pytest.mark.slow
@pytest.mark.parametrize(("point", "count"), KILL_POINTS, ids=[f"{p}-{n}" for p, n in KILL_POINTS])
def test_resume_after_sigkill_gives_the_same_run(tmp_path, straight_run, point, count):
    config, weights, metrics = straight_run
    path = write_config(tmp_path / "killed.yaml", {**config, "out": str(tmp_path / "killed")})
    killer = Path(__file__).parent / "kill_run.py"
    killed = subprocess.run(
        [sys.executable, str(killer), str(path), point, str(count)], env=ONE_THREAD
    )
    assert killed.returncode == -signal.SIGKILL, "the run ended before the kill point"
    subprocess.run(command(path, "--resume"), check=True, capture_output=True, env=ONE_THREAD)
    resumed = final_state(tmp_path / "killed")
    assert resumed.keys() == weights.keys()
    assert not differences(resumed, weights)
    assert json.loads((tmp_path / "killed" / "fit_metrics.json").read_text()) == metrics
    assert not list((tmp_path / "killed" / "checkpoints").glob(".*.tmp"))  # no debris


@pytest.mark.slow
def test_resume_warns_of_another_cpu_thread_count_and_nothing_else(tmp_path, caplog):
    config = synthetic_config(tmp_path / "run", trainer__max_epochs=1, data__count=64)
    threads = torch.get_num_threads()

    def resume(epochs: int, with_threads: int) -> str:
        caplog.clear()
        torch.set_num_threads(with_threads)
        try:
            with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                trainer = {**config["trainer"], "max_epochs": epochs}
                run.fit({**config, "trainer": trainer}, resume=True, progress=False)
        finally:
            torch.set_num_threads(threads)
        assert not [w for w in caught if "is not empty" in str(w.message)]  # meant, not warned
        return caplog.text

    run.fit(config, progress=False)
    saved = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    assert saved[THREADS_KEY] == threads
    said = resume(2, threads + 1)
    assert f"written with {threads} CPU threads, this run has {threads + 1}" in said
    assert "CPU threads" not in resume(3, threads + 1)  # the same count: nothing to say


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_keeps_ranks_in_step(tmp_path):
    ddp = synthetic_config(
        tmp_path / "ddp", trainer__strategy="ddp", trainer__devices=2, trainer__max_epochs=1
    )
    config = write_config(tmp_path / "ddp.yaml", ddp)
    done = subprocess.run(command(config), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "fit_metrics.json").read_text())
    checksums = metrics["rank_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]


@pytest.mark.slow
def test_video_training_and_the_multi_clip_test(tmp_path):
    root = write_video_folders(tmp_path / "videos")
    config = synthetic_config(
        tmp_path / "video",
        model__name="nl1_c2d_resnet50",
        trainer__max_epochs=1,
        optim__augment="standard",
    )
    config["data"] = {
        "kind": "videos",
        "root": str(root),
        "size": 32,
        "batch_size": 2,
        "clip_len": 4,
        "frame_interval": 2,
    }
    run.fit(config, progress=False)
    metrics = run.evaluate(config, "test", progress=False)
    assert metrics["confusion_matrix"]["classes"] == ["down", "up"]
    assert int(torch.tensor(metrics["confusion_matrix"]["rows_true_cols_predicted"]).sum()) == 4
    # whole videos: the averaged views, and every view (10 clips × 3 crops) on its own
    assert {"test/top1", "test/clip_top1", "test/mean_class_accuracy"} <= set(metrics)
    assert "| down | 2 |" in (tmp_path / "video" / "test_per_class.md").read_text()


@pytest.mark.slow
def test_demo_quick_writes_the_report(tmp_path, capsys):
    from nlgc.train.demo.experiment import NL_EMBEDDED, QUICK_VARIANTS
    from nlgc.train.numerics import ISA_PINS

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    assert main(["demo", "--quick", "--threads", "2", "--out", str(tmp_path / "demo")]) == 0
    assert torch.get_num_threads() == threads  # the demo pins its threads, then restores them
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.utils.deterministic.fill_uninitialized_memory == fill
    printed = capsys.readouterr().out
    assert "report:" in printed and all(label in printed for label in QUICK_VARIANTS)
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["settings"]["training runs at a time"] == 2
    assert metrics["settings"]["torch threads per training run"] == 1
    assert metrics["settings"]["deterministic algorithms"] is True
    assert set(metrics["settings"]["isa pins"]) == set(ISA_PINS)  # as this process has them
    assert metrics["settings"]["cpu"] and metrics["settings"]["cpu capability (aten)"]
    assert metrics["settings"]["fashion-mnist classes"] == [0, 1, 3, 5, 8]
    uniform = {"mask_init": "zeros", "zero_init": False}  # each variant's block options
    expected = {
        "GC": ("gc_demo_resnet", uniform),
        "DNL": ("dnl_demo_resnet", uniform),
        NL_EMBEDDED: ("nl_demo_resnet", {"pairwise": "embedded_gaussian", **uniform}),
    }
    for label, (model, options) in expected.items():
        assert metrics["settings"]["variants"][label] == {"model": model, "options": options}
    assert metrics["settings"]["recipe"]["mask_hold_epochs"] == 2
    assert set(metrics["variants"]["0"]) == set(QUICK_VARIANTS)
    for variant in metrics["variants"]["0"].values():  # top-1 is the confusion matrix's diagonal
        matrix = torch.tensor(variant["confusion_matrix"]["rows_true_cols_predicted"])
        assert int(matrix.sum()) == 500  # the quick demo's test pairs
        assert variant["test/top1"] == pytest.approx(float(matrix.trace() / matrix.sum()))
    table1 = metrics["gcnet_table1"]
    assert list(table1) == ["embedded_gaussian"]  # the quick demo's one NL variant
    page = (tmp_path / "demo" / "report.html").read_text()
    for pairwise, name in [("embedded_gaussian", "embedded Gaussian")]:
        row = table1[pairwise]
        assert row["block"] == "layer2.0.non_local_block_after_conv1" and row["samples"] == 200
        assert row["positions"] == 14 * 14 and 0 < row["input"] <= 0.5
        ours = [row[k] for k in ("input", "output", "attention")]  # None: a dead block's maps
        cells = [name, *("none (all maps 0)" if v is None else f"{v:.4g}" for v in ours)]
        cells += [f"{row['gcnet'][k]:.4g}" for k in ("input", "output", "attention")]
        assert "<tr><td>" + "</td><td>".join(cells) + "</td></tr>" in page  # a Table 1 row
    decomposition = metrics["decomposition"]
    assert set(decomposition) == {"NL embedded Gaussian", "DNL"}
    shares = decomposition["NL embedded Gaussian"]
    assert shares["unary_share"] + shares["pairwise_share"] == pytest.approx(1)
    assert decomposition["DNL"]["unary_share"] is None  # its terms are apart by design
    assert "Pairwise / unary decomposition" in page and "<tr><td>DNL</td>" in page
    assert f"<tr><td>NL embedded Gaussian</td><td>{shares['unary_share']:.4g}</td>" in page
    # heatmaps of the NL and DNL blocks, their term maps, GC's context masks, complexity chart
    assert page.count("<img") == 2 + 2 + 1 + 1
    assert "GCNet Table 1" in page and metrics["data"] in page and "Failed runs" in page
    summary = (tmp_path / "demo" / "summary.md").read_text().splitlines()
    assert summary[0].startswith("nlgc demo (quick), seeds 0") and "| 0 |" in summary[4]
    digest = (tmp_path / "demo" / "overview.md").read_text().splitlines()
    assert digest[0] == summary[0] and digest[2].startswith("| variant | test top-1 |")
    failed = [f"{label} seed {seed}" for seed, label, *_ in metrics["failures"]]
    assert digest[-1] == f"Failed runs: {len(failed)} of 3" + (
        f" ({', '.join(failed)})." if failed else "."
    )


@pytest.mark.slow
def test_the_demo_trains_to_the_same_weights_however_many_runs_at_a_time(tmp_path):
    import dataclasses

    from nlgc.train.demo.experiment import CLASSIFICATION, Experiment
    from nlgc.train.demo.runner import checkpoint_of, train_all

    settings = {"count": 64, "val_count": 32, "test_count": 32, "epochs": 1, "batch_size": 32}
    task = dataclasses.replace(CLASSIFICATION, settings={"quick": settings, "default": settings})
    experiment = Experiment.of(False, (0,), task)
    weights = []
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        train_all(out, (0,), ["baseline", "GC"], experiment.config, jobs)
        weights.append(
            [load_model(checkpoint_of(out, 0, v))[0].state_dict() for v in ("baseline", "GC")]
        )
    untrained = nlgc.create_model("gc_demo_resnet", num_classes=2).state_dict()
    assert not torch.equal(weights[0][1]["fc.weight"], untrained["fc.weight"])  # it trained
    for one, two in zip(*weights, strict=True):
        assert one.keys() == two.keys()
        assert all(torch.equal(one[k], two[k]) for k in one)


def test_the_demo_trains_without_the_nan_fill_to_the_same_weights():
    from nlgc import create_model
    from nlgc.train.demo.runner import reproducible

    def train(fill: bool) -> dict:
        torch.manual_seed(0)
        model = create_model("nl_demo_resnet", num_classes=2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
        images, labels = torch.randn(4, 3, 48, 48), torch.tensor([0, 1, 1, 0])
        with reproducible(1):
            assert torch.utils.deterministic.fill_uninitialized_memory is False
            torch.utils.deterministic.fill_uninitialized_memory = fill
            for _ in range(3):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(images), labels).backward()
                optimizer.step()
        return model.state_dict()

    before = torch.utils.deterministic.fill_uninitialized_memory
    filled, unfilled = train(True), train(False)
    assert torch.utils.deterministic.fill_uninitialized_memory == before  # restored
    assert all(torch.equal(filled[key], unfilled[key]) for key in filled)
    untrained = create_model("nl_demo_resnet", num_classes=2).fc.weight
    assert not torch.equal(filled["fc.weight"], untrained)


def test_a_failed_concatenation_run_is_diagnosed_by_its_live_pairs():
    from nlgc.analysis.diagnosis import diagnose

    model = nlgc.create_model("nl_demo_resnet", num_classes=2, pairwise="concatenation")
    block = next(m for m in model.modules() if isinstance(m, nlgc.NonLocalBlock))
    randomize(block, std=0.5)  # W_z ≠ 0: the block adds something
    images = torch.randn(4, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    partly = diagnose(model.eval(), images, OBJECT_EXTENT)
    share = float(re.search(r"([0-9.]+)% of its \(query, key\) pairs pass the ReLU", partly)[1])
    assert 0 < share < 100 and "did not use it" in partly
    with torch.no_grad():
        block.concat_project.weight.fill_(1.0)
        block.theta.bias.fill_(-1e4)  # w_fᵀ[θ_i, φ_j] < 0 for every pair
    assert "the ReLU of f is dead" in diagnose(model, images, OBJECT_EXTENT)


def test_demo_runs_drop_lightnings_info_lines_but_not_its_warnings():
    import logging

    from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

    from nlgc.train.run import without_lightning_info

    lines = []

    class Kept(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    kept, log = Kept(), logging.getLogger("lightning.pytorch.utilities.rank_zero")
    log.addHandler(kept)  # the logger Lightning's rank_zero_info writes to
    try:
        with without_lightning_info(), pytest.warns(UserWarning, match="a real warning"):
            rank_zero_info("GPU available: False, used: False")
            rank_zero_warn("a real warning")
        rank_zero_info("after the block")
    finally:
        log.removeHandler(kept)
    assert lines == ["after the block"]


def test_item_share_is_the_attention_on_the_two_objects_corner_squares():
    from nlgc.analysis.capture import BlockRecord
    from nlgc.analysis.diagnosis import item_share

    def share(attention, side=(14, 14)):
        record = BlockRecord("SimplifiedNonLocal", False, key_spatial=side)
        record._attention.append(attention)
        return item_share(record, 112, OBJECT_EXTENT)

    # c3 of a 112-px canvas: 8-px cells; the corner squares of side 30 hold the cells whose
    # centres (4, 12, 20, 28 px) lie below 30 (and above 82): 4 × 4 at each corner
    assert share(torch.full((2, 196), 1 / 196)) == pytest.approx((32 / 196, 32 / 196))
    on_item, centre, edge = (torch.zeros(1, 14, 14) for _ in range(3))
    on_item[0, 13, 13], centre[0, 7, 7], edge[0, 0, 4] = 1, 1, 1  # cell 4: centre at 36 px
    assert share(on_item.flatten(1))[0] == 1 and share(centre.flatten(1))[0] == 0
    assert share(edge.flatten(1))[0] == 0
    rows = torch.stack([on_item.flatten(), centre.flatten()])[None]  # (B, Q, N): NL's rows
    assert share(rows)[0] == pytest.approx(0.5)
    sub_sampled = torch.zeros(1, 7, 7)
    sub_sampled[0, 1, 1] = 1  # 16-px cells: centre 24 px, inside the square
    assert share(sub_sampled.flatten(1), side=(7, 7)) == pytest.approx((1.0, 8 / 49))


def test_the_seed_summary_has_a_std_only_over_several_seeds():
    from nlgc.train.demo.experiment import CRITERION
    from nlgc.train.demo.tables import overview, summary_table

    def scores(baseline, gc):
        return {"baseline": {"test/top1": baseline}, "GC": {"test/top1": gc}}

    one = summary_table({0: scores(0.5, 0.8)}, ["baseline", "GC"], CRITERION)
    assert one.rows[1][:2] == ["GC", "0.800"] and one.rows[1][2] == "+30.0"  # no "± nan"
    two = summary_table({0: scores(0.5, 0.8), 1: scores(0.5, 0.55)}, ["baseline", "GC"], CRITERION)
    # margins +30 and +5 points: mean +17.5, sample std 17.7; the +5 seed fails (< 10 points)
    assert two.rows[1][1:] == ["0.675 ± 0.177", "+17.5 ± 17.7", "+5.0", "1/2"]
    digest = overview(
        {0: scores(0.5, 0.8), 1: scores(0.5, 0.55)}, ["baseline", "GC"], CRITERION, "header"
    ).splitlines()
    assert digest[0] == "header" and "| GC | 0.675 ± 0.177 |" in digest[-3]
    assert digest[-1] == "Failed runs: 1 of 2 (GC seed 1)."


@pytest.mark.parametrize("path", sorted(Path(__file__).parent.parent.glob("configs/*.yaml")))
def test_every_shipped_config_builds(path, tmp_path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and len(first) > 20  # documented in one line
    on_cpu = ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.strategy=auto"]
    config = run.load_config(path, [f"out={tmp_path}", *on_cpu, "trainer.precision=32-true"])
    module, _, trainer, _ = run.build(config, progress=False)
    assert module.model.fc.out_features == (config.model.num_classes or 2)
    assert trainer.max_epochs == config.trainer["max_epochs"]


def test_config_sections_are_dataclasses_checked_on_reading(tmp_path, capsys):
    config = synthetic_config(tmp_path / "run")
    config["data"]["video_test"] = {"clips": 4, "crops": 1, "short_side": 128}
    module, data, _, out = run.build(config, progress=False)
    assert data.config.video_test is module.video_test  # one object for the video test
    assert (module.video_test.clips, module.video_test.crops) == (4, 1) and out == tmp_path / "run"
    for section, key, value, words in [
        ("data", "clips", 3, "unknown data keys ['clips']"),
        ("data", "video_test", {"crops": 2}, "data.video_test.crops must be one of (1, 3), got 2"),
        ("optim", "optimiser", "sgd", "unknown optim keys ['optimiser']"),
        ("optim", "augment", "rotate", "optim.augment must be one of"),
        ("model", "ratio", 0.25, "unknown model keys ['ratio']"),
    ]:
        bad = synthetic_config(tmp_path / "bad")
        bad[section][key] = value
        assert main(["fit", "--config", str(write_config(tmp_path / "bad.yaml", bad))]) == 2
        assert words in capsys.readouterr().err


def test_the_demo_says_loudly_when_it_runs_on_drawn_shapes(tmp_path, monkeypatch, capsys):
    from nlgc.train.demo.experiment import FASHION, announce_data

    monkeypatch.setenv("NLGC_FASHION_MNIST", str(tmp_path))  # a folder without the idx files
    line = announce_data()
    warning = capsys.readouterr().err
    assert "DRAWN SHAPES" in line and str(tmp_path) in line and "WARNING" in warning
    assert "apt-get install dataset-fashion-mnist" in warning
    assert PairsDataset(4, size=64).source == "shapes"  # what the demo's data then is
    if fashion_files("test", root=Path("/usr/share/datasets/fashion-mnist")) is not None:
        monkeypatch.delenv("NLGC_FASHION_MNIST")
        assert announce_data().startswith(FASHION) and not capsys.readouterr().err


def test_blocks_lr_mult_scales_the_context_blocks_alone():
    from nlgc.blocks import ContextBlock
    from nlgc.train.base import NORMS, parameter_groups
    from nlgc.train.config import OptimConfig

    model = nlgc.create_model("gc_demo_resnet")
    hp = OptimConfig(lr=0.01, weight_decay=0.05, no_decay=("norm", "bias"), blocks_lr_mult=4)
    groups = parameter_groups(model, hp)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert len(lr_of) == sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    in_blocks = {
        id(p) for m in model.modules() if isinstance(m, ContextBlock) for p in m.parameters()
    }
    assert in_blocks and all(
        lr_of[id(p)] == (0.04 if id(p) in in_blocks else 0.01) for p in model.parameters()
    )
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            exempt = isinstance(module, NORMS) or name == "bias"
            assert decay_of[id(p)] == (0.0 if exempt else 0.05), name
    with pytest.raises(ValueError, match=r"optim\.blocks_lr_mult must be > 0, got 0"):
        OptimConfig(blocks_lr_mult=0)


def test_gate_lr_mult_and_hold_set_the_concatenation_gate_alone():
    """θ, φ and w_f of NL concatenation (in front of its ReLU) learn at gate_lr_mult · lr and
    are held for gate_hold_epochs; the block's g, W_z and BN keep blocks_lr_mult · lr and no
    hold; other pairwise functions have no gate."""
    from nlgc.train.base import parameter_groups
    from nlgc.train.config import OptimConfig

    hp = OptimConfig(lr=0.01, blocks_lr_mult=4, gate_lr_mult=0.25, gate_hold_epochs=2)
    model = nlgc.create_model("nl_demo_resnet", pairwise="concatenation")
    groups = parameter_groups(model, hp)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    hold_of = {id(p): g["hold_epochs"] for g in groups for p in g["params"]}
    block = next(m for m in model.modules() if isinstance(m, nlgc.NonLocalBlock))
    gate = [*block.theta.parameters(), *block.phi.parameters(), block.concat_project.weight]
    assert {id(p) for p in block.gate_parameters()} == {id(p) for p in gate}
    assert all(lr_of[id(p)] == 0.0025 and hold_of[id(p)] == 2 for p in gate)
    rest = [p for p in block.parameters() if all(p is not q for q in gate)]
    assert rest and all(lr_of[id(p)] == 0.04 and hold_of[id(p)] == 0 for p in rest)
    assert nlgc.NonLocalBlock(8, pairwise="dot_product").gate_parameters() == []
    default = {g["lr"] for g in parameter_groups(model, OptimConfig(lr=0.01, blocks_lr_mult=4))}
    assert default == {0.01, 0.04}
    with pytest.raises(ValueError, match=r"optim\.gate_lr_mult must be > 0 or null, got -1"):
        OptimConfig(gate_lr_mult=-1)
    with pytest.raises(ValueError, match=r"optim\.gate_hold_epochs must be >= 0, got -1"):
        OptimConfig(gate_hold_epochs=-1)


def test_mask_lr_mult_sets_the_masks_alone():
    """The masks of uniform-start blocks (SNL's and GC's W_k, NL embedded Gaussian's φ, DNL's φ
    and w_m, with their biases) learn at mask_lr_mult · lr and are held for mask_hold_epochs;
    the rest of each block keeps blocks_lr_mult · lr and no hold."""
    from nlgc.blocks.base import ContextBlock
    from nlgc.train.base import parameter_groups
    from nlgc.train.config import OptimConfig

    hp = OptimConfig(lr=0.01, blocks_lr_mult=4, mask_lr_mult=0.5, mask_hold_epochs=2)
    mask_modules = {  # network → its blocks' mask modules, by name
        "gc_demo_resnet": ("conv_mask",),
        "snl_demo_resnet": ("conv_mask",),
        "nl_demo_resnet": ("phi",),
        "dnl_demo_resnet": ("phi", "conv_mask"),
    }
    for name, modules in mask_modules.items():
        model = nlgc.create_model(name, mask_init="zeros")
        groups = parameter_groups(model, hp)
        setting = {id(p): (g["lr"], g["hold_epochs"]) for g in groups for p in g["params"]}
        blocks = [m for m in model.modules() if isinstance(m, ContextBlock)]
        masks = [p for b in blocks for m in modules for p in getattr(b, m).parameters()]
        assert masks and all(setting[id(p)] == (0.005, 2) for p in masks), name
        rest = [p for b in blocks for p in b.parameters() if all(p is not q for q in masks)]
        assert rest and all(setting[id(p)] == (0.04, 0) for p in rest), name
    default = parameter_groups(model, OptimConfig(lr=0.01, blocks_lr_mult=4))
    assert {g["lr"] for g in default} == {0.01, 0.04}
    with pytest.raises(ValueError, match=r"optim\.mask_lr_mult must be > 0 or null, got 0"):
        OptimConfig(mask_lr_mult=0)


def test_held_masks_keep_their_start_for_mask_hold_epochs_then_learn(tmp_path):
    from nlgc.train.config import OptimConfig

    config = synthetic_config(
        tmp_path / "held",
        model__overrides={"mask_init": "zeros"},
        data__count=64,  # 2 steps an epoch
        optim__mask_hold_epochs=1,
        optim__blocks_lr_mult=4,
        trainer__max_epochs=2,
    )
    run.fit(config, progress=False)

    def weights(epoch: int, name: str) -> list[torch.Tensor]:
        """``name`` of every GC block in the checkpoint of ``epoch`` (gc_tiny_resnet has 3)."""
        path = tmp_path / "held" / "checkpoints" / f"epoch{epoch:03d}.ckpt"
        state = torch.load(path, weights_only=True)["state_dict"]
        return [v for k, v in state.items() if k.endswith(f"context_block.{name}")]

    masks, last_convs = weights(0, "conv_mask.weight"), weights(0, "channel_add_conv.3.weight")
    assert len(masks) == len(last_convs) == 3
    assert all(torch.equal(mask, torch.zeros_like(mask)) for mask in masks)
    assert all(conv.abs().max() > 0 for conv in last_convs)  # the rest of each block learned
    assert all(mask.abs().max() > 0 for mask in weights(1, "conv_mask.weight"))  # then the masks
    with pytest.raises(ValueError, match=r"optim\.mask_hold_epochs must be >= 0, got -1"):
        OptimConfig(mask_hold_epochs=-1)


def test_release_epochs_ramps_a_held_group_up_after_its_hold():
    """A held group's factor is 0 during its hold, then rises linearly to the schedule's over
    release_epochs; groups that were not held follow the schedule from the first step."""
    from nlgc.train.config import OptimConfig
    from nlgc.train.recipes import held_lr_factor, lr_factor

    hp = OptimConfig(schedule="cosine", warmup_epochs=1, release_epochs=2)
    steps, total = 10.0, 60.0
    held = [held_lr_factor(s, steps, total, hp, hold_epochs=2) for s in range(60)]
    schedule = [lr_factor(s, steps, total, hp) for s in range(60)]
    assert held[:20] == [0.0] * 20
    for step in range(20, 40):  # the release: (step − 19) / 20 of the schedule's rate
        assert held[step] == pytest.approx((step - 19) / 20 * schedule[step])
    assert held[40:] == schedule[40:]
    assert [held_lr_factor(s, steps, total, hp, hold_epochs=0) for s in range(60)] == schedule
    unramped = OptimConfig(schedule="cosine", warmup_epochs=1)
    assert held_lr_factor(20, steps, total, unramped, 2) == lr_factor(20, steps, total, unramped)
    with pytest.raises(ValueError, match=r"optim\.release_epochs must be >= 0, got -1"):
        OptimConfig(release_epochs=-1)


def test_top5_only_where_it_can_miss():
    from nlgc.train.config import ModelConfig
    from nlgc.train.module import Classifier

    two = Classifier(ModelConfig("tiny_resnet"), num_classes=2)
    ten = Classifier(ModelConfig("tiny_resnet"), num_classes=10)
    assert not [name for name in two.metrics if "top5" in name]
    assert {"val_top1", "test_top1", "test_clip_top1", "test_mean_class_accuracy"} <= set(
        two.metrics
    )
    assert {"val_top5", "test_top5", "test_clip_top5"} <= set(ten.metrics)


@pytest.mark.parametrize(
    "name, options, shape",
    [
        ("gc_tiny_resnet", {}, (2, 3, 33, 29)),
        ("gc_i3d_resnet50", {"layers": (1, 1, 1, 1), "inflate": ((1,),) * 4}, (1, 3, 4, 32, 32)),
    ],
)
def test_channels_last_is_the_same_function(name, options, shape):
    """``model.channels_last`` stores the network and its batches channels-last and computes
    what the contiguous network computes (float64, one set of weights)."""
    from nlgc.train.config import ModelConfig
    from nlgc.train.module import Classifier

    torch.manual_seed(0)
    plain = Classifier(ModelConfig(name, overrides=options), num_classes=3).double().eval()
    fast = Classifier(ModelConfig(name, overrides=options, channels_last=True), num_classes=3)
    fast = fast.double().eval()
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(shape, dtype=torch.float64)
    layout = torch.channels_last_3d if fast.video else torch.channels_last
    convs = [m.weight for m in fast.model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    assert convs and all(w.is_contiguous(memory_format=layout) for w in convs)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-10, atol=1e-12)


def test_no_lightning_tips_in_a_run(tmp_path):
    """Lightning logs advertisements ("💡 Tip: … litlogger") and its accelerator inventory ("GPU
    available: False, used: False") on its own handler; a run drops them (and only while it
    runs: the filter is removed after) and keeps what it says about the run."""
    import logging

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("lightning.pytorch")
    logger.addHandler(handler)
    config = synthetic_config(tmp_path / "run", trainer__max_epochs=1, data__count=32)
    try:
        run.fit({**config, "data": {**config["data"], "val_count": 8}}, progress=False)
    finally:
        logger.removeHandler(handler)
    assert any("max_epochs=1` reached" in m for m in seen)  # Lightning spoke about the run
    assert not [m for m in seen if "Tip" in m or "available:" in m]
    assert not logging.getLogger("lightning.pytorch.utilities.rank_zero").filters
