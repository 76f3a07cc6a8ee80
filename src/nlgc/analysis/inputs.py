"""The inputs of an analysis: images and clips read from files, resized and normalised."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from nlgc.clips import uniform_indices
from nlgc.data.io import find_media, is_video, read_image
from nlgc.data.video import probe_video, read_frames
from nlgc.models.preprocessing import IMAGENET, Preprocessing


@dataclass
class Sample:
    """One input: ``tensor`` as the model takes it, ``display`` in [0, 1] for pictures.

    Images are (3, H, W), clips (3, T, H, W).
    """

    name: str
    tensor: torch.Tensor
    display: torch.Tensor

    @property
    def is_video(self) -> bool:
        return self.tensor.dim() == 4

    @classmethod
    def from_pixels(
        cls, name: str, pixels: torch.Tensor, preprocessing: Preprocessing | None = None
    ) -> Sample:
        """A sample from (3, [T,] H, W) uint8 pixels, normalised as ``preprocessing`` says
        (the weights' own convention), ImageNet's mean/std without one."""
        display = pixels.float() / 255
        tensor = (preprocessing or IMAGENET).normalize(display.unsqueeze(0))[0]
        return cls(name, tensor, display)


def read_samples(
    paths: list[str | Path],
    size: int,
    frames: int,
    video: bool,
    most: int = 16,
    preprocessing: Preprocessing | None = None,
) -> list[Sample]:
    """The images and videos under ``paths`` (files or folders, at most ``most``) as samples:
    short side resized to ``size`` and centre-cropped; videos as ``frames`` frames spread
    evenly over the whole video; transformed with ``preprocessing`` (a loaded model's
    ``model.preprocessing``: its interpolation and normalisation) or ImageNet's, at ``size``.
    ``video`` says what the model takes; other inputs are a ValueError naming them."""
    transform = replace(preprocessing or IMAGENET, resize=size, input_size=size)
    samples = []
    for path in find_media(paths)[:most]:
        if is_video(path) != video:
            kind = "a video" if video else "an image"
            raise ValueError(f"the model is {kind} model, but {path} is not {kind}")
        if video:
            pixels = read_frames(path, uniform_indices(probe_video(path).num_frames, frames))
        else:
            pixels = read_image(path)
        samples.append(Sample.from_pixels(path.name, transform.resize_crop(pixels), transform))
    return samples
