"""Kinetics-style loading against training: clips/s of the loader from list files and from
rawframes, beside one NL-I3D R50 training step, on this machine.

python benchmarks/kinetics_loader.py        # writes benchmarks/results/kinetics_loader_cpu.md

Eight Kinetics-like videos are generated (10 s, 30 fps, 340×256, H.264, GOP 250; see
``video_input.py``), listed in mmaction2's list format and extracted to rawframes
(``img_00001.jpg`` …, JPEG quality 95) with their list. The loader is nlgc's: ``VideoClips``
from ``read_annotations``, random clip starts, the Caffe2 recipe's scale jitter (short side in
[256, 320], random 224 crop), a DataLoader with 2 workers (1 decoder and 1 torch thread each),
batch 1. The training step is ``nl_i3d_resnet50`` (the paper's stem for 32×2, stride 1 for
8×8), forward, backward and SGD step on one 224² clip, 2 torch threads, median of 3 after one
warm-up step. Training is the bottleneck where its clips/s is below the loader's.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from video_input import kinetics_like

import nlgc
from nlgc.data.annotations import read_annotations
from nlgc.data.folders import VideoClips
from nlgc.data.io import read_video

RESULTS = Path(__file__).parent / "results" / "kinetics_loader_cpu.md"
SAMPLINGS = {"8×8": (8, 8), "32×2": (32, 2)}
VIDEOS, CLIPS, WORKERS = 8, 24, 2


def build_set(root: Path) -> None:
    (root / "videos").mkdir(parents=True)
    videos, frames = [], []
    for i in range(VIDEOS):
        path = root / "videos" / f"v{i}.mp4"
        kinetics_like(path, gop=250)
        pixels = read_video(path)  # (3, T, H, W)
        folder = root / "rawframes" / f"v{i}"
        folder.mkdir(parents=True)
        for t in range(pixels.shape[1]):
            image = Image.fromarray(pixels[:, t].permute(1, 2, 0).numpy())
            image.save(folder / f"img_{t + 1:05d}.jpg", quality=95)
        videos.append(f"videos/v{i}.mp4 {i % 2}")
        frames.append(f"rawframes/v{i} {pixels.shape[1]} {i % 2}")
    (root / "videos.txt").write_text("\n".join(videos) + "\n")
    (root / "rawframes.txt").write_text("\n".join(frames) + "\n")


def one_thread(worker: int) -> None:
    torch.set_num_threads(1)


def loader_rate(root: Path, fmt: str, clip_len: int, interval: int) -> float:
    kind = "list" if fmt == "videos" else "rawframes"
    annotations = read_annotations(root / f"{fmt}.txt", kind, root, num_classes=2)
    clips = VideoClips(
        annotations * (CLIPS // VIDEOS),
        ["a", "b"],
        clip_len=clip_len,
        frame_interval=interval,
        size=224,
        random_start=True,
        threads=1,
        train_scale=(256, 320),
    )
    loader = torch.utils.data.DataLoader(
        clips,
        batch_size=1,
        num_workers=WORKERS,
        multiprocessing_context="spawn",
        prefetch_factor=4,
        worker_init_fn=one_thread,
    )
    iterator = iter(loader)
    next(iterator)  # workers started
    begin = time.perf_counter()
    count = sum(1 for _ in iterator)
    return count / (time.perf_counter() - begin)


def step_seconds(clip_len: int, stride: int) -> float:
    torch.manual_seed(0)
    model = nlgc.create_model("nl_i3d_resnet50", stem_temporal_stride=stride).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(1, 3, clip_len, 224, 224), torch.tensor([0])
    times = []
    for _ in range(4):
        begin = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - begin)
    return statistics.median(times[1:])


def main() -> None:
    torch.set_num_threads(2)
    root = Path(tempfile.mkdtemp())
    build_set(root)
    lines = [
        f"{WORKERS} DataLoader workers, batch 1, {CLIPS} clips per row; scale jitter [256, 320] + "
        "random 224 crop; one nl_i3d_resnet50 training step on a 224² clip with 2 torch threads.",
        "",
        "| sampling | loader from list file (clips/s) | loader from rawframes (clips/s) | "
        "training step (s/clip) | training (clips/s) |",
        "|---|---|---|---|---|",
    ]
    for name, (clip_len, interval) in SAMPLINGS.items():
        videos = loader_rate(root, "videos", clip_len, interval)
        frames = loader_rate(root, "rawframes", clip_len, interval)
        step = step_seconds(clip_len, 1 if clip_len == 8 else 2)
        lines.append(f"| {name} | {videos:.1f} | {frames:.1f} | {step:.2f} | {1 / step:.2f} |")
        print(lines[-1], flush=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
