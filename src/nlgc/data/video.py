"""Reading only the frames a clip needs from a video file (PyAV), never the whole video.

:func:`probe_video` demuxes the file once, without decoding, and keeps the presentation
timestamp (pts) of every frame and which frames are keyframes (cached per file): frame ``i`` of
a full decode is the frame with the ``i``-th smallest pts. This holds for variable frame rates,
B-frames (decode order ≠ display order) and streams whose first pts is not 0.

:func:`read_frames` then sweeps forward once through the file: for each wanted frame it seeks
to the keyframe at or before it (unless the decoder is already past that keyframe or nearly at
it), decodes up to the frame, converts only the wanted frames to RGB and stops after the last
one. Unwanted frames that no other frame refers to are not even decoded. A seek that lands past
the wanted frame is repeated from the keyframe before. Streams without usable timestamps are
decoded sequentially from the start (still converting only the wanted frames), so the result is
always that of a full decode (:func:`nlgc.data.io.read_video`) at the same indices.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

READ_ERRORS = (OSError, ValueError, IndexError)
# A seek restarts the decoder and its thread pipeline: worth it only when it skips more frames.
SEEK_AHEAD = 8


class _SeekMissed(Exception):
    """A seek landed after a wanted frame, or a frame's pts is not in the index."""


@dataclass(frozen=True)
class VideoIndex:
    """What the container says about a video stream, read once per file.

    Attributes:
        num_frames: frames a full decode gives.
        pts: sorted presentation timestamps, one per frame (``None`` if the stream has none).
        keyframes: pts of the keyframes, sorted (seek targets).
        time_base: seconds per pts unit.
        duration: seconds from the first frame to the end of the last one.
    """

    num_frames: int
    pts: tuple[int, ...] | None
    keyframes: tuple[int, ...]
    time_base: Fraction
    duration: float

    @property
    def fps(self) -> float:
        return self.num_frames / self.duration if self.duration > 0 else 0.0


def probe_video(path: str | Path) -> VideoIndex:
    """The :class:`VideoIndex` of a video file, from its packets (no decoding). Cached per file
    (path, size and modification time); raises a ValueError naming the file if it is unreadable."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as error:
        raise ValueError(f"cannot read video {path}: {error}") from error
    return _probe(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _probe(path: str, size: int, mtime_ns: int) -> VideoIndex:
    import av

    packets = []  # (pts, duration, keyframe) of every frame, in decode order
    try:
        with av.open(path) as container:
            stream = _video_stream(container, path)
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:
                    packets.append((packet.pts, packet.duration, packet.is_keyframe))
            time_base = Fraction(stream.time_base or 0)
            rate = stream.average_rate or stream.guessed_rate
            pts = [p[0] for p in packets]
            timed = bool(time_base) and None not in pts and len(set(pts)) == len(pts)
            count = len(packets)
            if packets and not timed:  # the packets cannot name frames: count by decoding, once
                container.seek(0)
                count = sum(1 for _ in container.decode(stream))
    except (av.error.FFmpegError, *READ_ERRORS) as error:
        raise ValueError(f"cannot read video {path}: {error}") from error
    if count == 0:
        raise ValueError(f"cannot read video {path}: it has no video frames")
    if not timed:
        duration = float(count / rate) if rate else 0.0
        return VideoIndex(count, None, (), Fraction(0), duration)
    pts.sort()
    last = max(packets, key=lambda p: p[0])
    step = last[1] or (pts[-1] - pts[0]) / max(len(pts) - 1, 1)
    return VideoIndex(
        num_frames=len(pts),
        pts=tuple(pts),
        keyframes=tuple(sorted(p[0] for p in packets if p[2])),
        time_base=time_base,
        duration=float((pts[-1] - pts[0] + step) * time_base),
    )


def _video_stream(container, path):
    if not container.streams.video:
        raise ValueError(f"cannot read video {path}: it has no video stream")
    return container.streams.video[0]


def read_frames(path: str | Path, indices: Sequence[int], threads: int = 0) -> torch.Tensor:
    """Frames ``indices`` (any order, repeats allowed) of a video as (3, len(indices), H, W)
    uint8 RGB, decoding only from the keyframe before each wanted frame up to the last one.

    Args:
        path: a video file PyAV can open.
        indices: frame numbers in ``[0, num_frames)`` of :func:`probe_video`.
        threads: decoder threads (0: FFmpeg chooses, 1: none, e.g. in many DataLoader workers).
    """
    index = probe_video(path)
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("indices must name at least one frame")
    bad = [i for i in indices if not 0 <= i < index.num_frames]
    if bad:
        raise ValueError(
            f"indices must lie in [0, {index.num_frames}) for {path}, got {sorted(set(bad))[:5]}"
        )
    import av

    wanted = sorted(set(indices))
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            stream.thread_type = "AUTO" if threads != 1 else "SLICE"
            stream.codec_context.thread_count = threads
            try:
                if index.pts is None:
                    raise _SeekMissed
                frames = _read_by_seeking(container, stream, index, wanted)
            except _SeekMissed:
                container.seek(0)
                frames = _read_sequentially(container, stream, wanted)
    except (av.error.FFmpegError, *READ_ERRORS) as error:
        raise ValueError(f"cannot read video {path}: {error}") from error
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise ValueError(f"cannot read video {path}: frames {missing[:5]} did not decode")
    return torch.from_numpy(np.stack([frames[i] for i in indices])).permute(3, 0, 1, 2)


def _read_by_seeking(container, stream, index: VideoIndex, wanted: list[int]) -> dict:
    """One forward sweep: seek to the keyframe at or before each wanted frame unless the decoder
    is already past it or at most SEEK_AHEAD frames before it; where a seek lands after the
    frame, seek to the keyframe before."""
    frame_of = {pts: i for i, pts in enumerate(index.pts)}
    wanted_set, frames = set(wanted), {}
    wanted_pts = frozenset(index.pts[i] for i in wanted)
    decoder, decoded = None, None  # decoded: pts of the last frame the decoder gave
    for target in wanted:
        if target in frames:
            continue
        key = bisect.bisect_right(index.keyframes, index.pts[target]) - 1
        ahead = frame_of[index.keyframes[max(key, 0)]] - frame_of[decoded] if decoder else 0
        if ahead > SEEK_AHEAD:
            decoder = None  # seeking skips the frames up to the target's keyframe
        while target not in frames:
            if decoder is None:
                if key < 0:  # no keyframe before it: only decoding from the start is exact
                    raise _SeekMissed
                container.seek(index.keyframes[key], stream=stream, any_frame=False)
                decoder, decoded = _decode(container, stream, wanted_pts), None
            for frame in decoder:
                i = frame_of.get(frame.pts)
                if i is None:
                    raise _SeekMissed
                if decoded is None and i > target:
                    break  # the seek landed past the target
                decoded = frame.pts
                if i in wanted_set and i not in frames:
                    frames[i] = _to_rgb(frame)
                if i >= target:
                    break
            if target not in frames:
                decoder, key = None, key - 1
    return frames


def _read_sequentially(container, stream, wanted: list[int]) -> dict:
    wanted_set, frames = set(wanted), {}
    for i, frame in enumerate(_decode(container, stream)):
        if i in wanted_set:
            frames[i] = _to_rgb(frame)
        if i >= wanted[-1]:
            break
    return frames


def _decode(container, stream, wanted_pts: frozenset = frozenset()):
    """The decoded frames from the container's position on. Given the pts of the wanted frames,
    the decoder skips every other frame that no frame refers to (FFmpeg's ``skip_frame`` =
    NONREF, set per packet): exact, since nothing depends on a non-reference frame."""
    context = stream.codec_context
    for packet in container.demux(stream):
        keep = not wanted_pts or packet.pts is None or packet.pts in wanted_pts
        context.skip_frame = "DEFAULT" if keep else "NONREF"
        yield from packet.decode()


def _to_rgb(frame) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a decoded frame: the only colour conversion a read makes."""
    return frame.to_ndarray(format="rgb24")
