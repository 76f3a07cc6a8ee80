"""Video input speed: clips per second per DataLoader worker, full-decode reader vs clip reader.

python benchmarks/video_input.py            # writes benchmarks/results/video_input_cpu.md

Kinetics-like videos are generated (10 s, 30 fps, 340×256, H.264 with B-frames, GOP 250 and 30:
a panning texture with moving shapes and sensor noise). Each reader loads clips as VideoFolder
does (random starts, short side resized to 224, centre crop): 32×2 and 8×8 sampling.

- old: v0.1's VideoFolder: decode and convert every frame (``read_video``), pick the clip,
  resize in float.
- new: ``read_frames``: seek to the keyframe before the clip, decode to its last frame (the
  decoder skipping non-reference frames the clip does not use), convert only its frames, resize
  them as uint8 (PyTorch's uint8 kernel: faster here than FFmpeg's scaler doing conversion and
  resize in one pass, 19 vs 27 ms for 32 frames); decoder threads 1 (as in DataLoader workers)
  and FFmpeg's automatic choice.
- decoding floor: that decoding alone, nothing converted: what no exact reader gets under.

Peak memory: in a fresh worker process per row, the peak resident set (VmHWM, reset after the
imports through /proc/self/clear_refs) above the resident set after the imports. The last
table runs a DataLoader with 2 workers on the new reader.
"""

from __future__ import annotations

import argparse
import bisect
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nlgc.clips import clip_indices, resize_and_crop, resize_short_side
from nlgc.data.io import read_video, write_video
from nlgc.data.video import probe_video, read_frames

RESULTS = Path(__file__).parent / "results" / "video_input_cpu.md"
SAMPLINGS = {"32×2": (32, 2), "8×8": (8, 8)}


def kinetics_like(path: Path, gop: int, seconds: int = 10, fps: int = 30) -> None:
    """A 340×256 video whose frames all differ: a panning texture, moving discs and noise."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (64, 96, 3)).astype(np.float32)
    texture = np.kron(texture, np.ones((8, 8, 1), np.float32))  # 512×768 blocky texture
    yy, xx = np.mgrid[:256, :340]
    frames = np.empty((seconds * fps, 256, 340, 3), np.uint8)
    for t in range(len(frames)):
        frame = texture[t // 3 : t // 3 + 256, t : t + 340].copy()
        for k in range(3):
            cy, cx = 128 + 90 * np.sin(t / 20 + k), 170 + 140 * np.cos(t / 30 + 2 * k)
            frame[(yy - cy) ** 2 + (xx - cx) ** 2 < 900] = (80 * k, 200, 255 - 80 * k)
        frame += rng.normal(0, 4, frame.shape)
        frames[t] = frame.clip(0, 255)
    write_video(path, frames, fps=fps, gop=gop)


def old_clip(path, clip_len, interval, start, size=224, threads=None):
    """v0.1's VideoFolder.load: every frame decoded and converted, then a float resize."""
    video = read_video(path)  # (3, T, H, W) uint8, the whole video
    index = clip_indices(start, clip_len, interval, video.shape[1])
    frames = resize_short_side(video[:, index].transpose(0, 1).float() / 255, size)
    top, left = (frames.shape[-2] - size) // 2, (frames.shape[-1] - size) // 2
    return frames[..., top : top + size, left : left + size].clamp(0, 1).transpose(0, 1)


def new_clip(path, clip_len, interval, start, size=224, threads=1):
    """VideoFolder.load: only the clip's frames decoded and converted, resized as uint8."""
    index = clip_indices(start, clip_len, interval, probe_video(path).num_frames)
    return resize_and_crop(read_frames(path, index, threads), size)


def decode_floor(path, clip_len, interval, start, size=None, threads=1):
    """Only the decoding that no exact reader can skip: from the keyframe before the clip to its
    last frame, unwanted non-reference frames skipped, nothing converted or resized."""
    import av

    index = probe_video(path)
    wanted = sorted(set(clip_indices(start, clip_len, interval, index.num_frames)))
    wanted_pts = {index.pts[i] for i in wanted}
    key = bisect.bisect_right(index.keyframes, index.pts[wanted[0]]) - 1
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = threads
        container.seek(index.keyframes[key], stream=stream)
        for packet in container.demux(stream):
            keep = packet.pts is None or packet.pts in wanted_pts
            stream.codec_context.skip_frame = "DEFAULT" if keep else "NONREF"
            for frame in packet.decode():
                if frame.pts >= index.pts[wanted[-1]]:
                    return


READERS = {
    "old (full decode)": (old_clip, None),
    "new, 1 thread": (new_clip, 1),
    "new, auto threads": (new_clip, 0),
    "decoding floor, 1 thread": (decode_floor, 1),
}


def resident_kb(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process from /proc/self/status, in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(reader, threads, path, clip_len, interval, clips, queue):
    """In a fresh process: median seconds per clip and peak RSS growth (MB)."""
    torch.set_num_threads(1)  # as in a DataLoader worker
    read = READERS[reader][0]
    frames = probe_video(path).num_frames
    starts = np.random.default_rng(1).integers(0, frames - clip_len * interval + 1, clips)
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    base = resident_kb("VmRSS")
    read(path, clip_len, interval, 0, threads=threads)  # warm-up (and the probe's cache)
    seconds = []
    for start in starts:
        begin = time.perf_counter()
        read(path, clip_len, interval, int(start), threads=threads)
        seconds.append(time.perf_counter() - begin)
    queue.put((statistics.median(seconds), (resident_kb("VmHWM") - base) / 1024))


def in_fresh_process(*args):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=measure, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


class Clips(torch.utils.data.Dataset):
    def __init__(self, path, clip_len, interval, count):
        self.path, self.clip_len, self.interval = path, clip_len, interval
        frames = probe_video(path).num_frames
        self.starts = np.random.default_rng(2).integers(0, frames - clip_len * interval + 1, count)

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, i):
        return new_clip(self.path, self.clip_len, self.interval, int(self.starts[i]), threads=1)


def loader_rate(path, clip_len, interval, count, workers=2) -> float:
    loader = torch.utils.data.DataLoader(
        Clips(path, clip_len, interval, count),
        batch_size=1,
        num_workers=workers,
        multiprocessing_context="spawn",
        prefetch_factor=4,
    )
    iterator = iter(loader)
    next(iterator)  # workers started
    begin = time.perf_counter()
    n = sum(1 for _ in iterator)
    return n / (time.perf_counter() - begin)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=12, help="clips per measurement")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    videos = {}
    for gop in (250, 30):
        videos[gop] = folder / f"kinetics_like_gop{gop}.mp4"
        kinetics_like(videos[gop], gop)
    lines = [
        "Clips per second per worker (1 torch thread), 10 s 30 fps 340×256 H.264, 224² crops.",
        "Peak RSS: a worker's resident-set growth while it loads clips.",
        "",
        "| GOP | sampling | reader | ms/clip (median) | clips/s | × old | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    rates = {}
    print("\n".join(lines), flush=True)
    for gop, path in videos.items():
        for sampling, (clip_len, interval) in SAMPLINGS.items():
            old = None
            for reader, (_, threads) in READERS.items():
                seconds, memory = in_fresh_process(
                    reader, threads, path, clip_len, interval, args.clips
                )
                old = old or seconds
                rates[gop, sampling, reader] = 1 / seconds
                line = (
                    f"| {gop} | {sampling} | {reader} | {1000 * seconds:.0f} | "
                    f"{1 / seconds:.1f} | {old / seconds:.1f}× | {memory:.0f} |"
                )
                lines.append(line)
                print(line, flush=True)
    lines += [
        "",
        "DataLoader, 2 workers (spawn), new reader with 1 decoder thread each:",
        "",
        "| GOP | sampling | clips/s | one worker's clips/s | ratio |",
        "|---|---|---|---|---|",
    ]
    print("\n".join(lines[-5:]), flush=True)
    for gop, path in videos.items():
        for sampling, (clip_len, interval) in SAMPLINGS.items():
            rate = loader_rate(path, clip_len, interval, 4 * args.clips)
            single = rates[gop, sampling, "new, 1 thread"]
            line = f"| {gop} | {sampling} | {rate:.1f} | {single:.1f} | {rate / single:.2f} |"
            lines.append(line)
            print(line, flush=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
