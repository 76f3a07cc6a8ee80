"""Data: reading images and videos (only the frames a clip needs), datasets, built-in tasks."""

from nlgc.data.folders import ImageFolder, MultiClipVideos, VideoFolder
from nlgc.data.video import VideoIndex, probe_video, read_frames

__all__ = [
    "ImageFolder",
    "MultiClipVideos",
    "VideoFolder",
    "VideoIndex",
    "probe_video",
    "read_frames",
]
