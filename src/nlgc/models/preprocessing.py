"""The input a network's weights were trained on, and the transforms that make it: resize,
centre crop, normalise, clip sampling. ``predict``, ``analyze``, training from released weights
and the data readers all call these (with :mod:`nlgc.clips` below them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from nlgc.checks import check_choice
from nlgc.clips import clip_indices, clip_starts, resize_and_crop, resize_to_fit

CROPS = ("center", "three_crop", "whole")


@dataclass(frozen=True)
class Preprocessing:
    """Normalisation, sizes and clip sampling, as the weights' source evaluates them.

    Args:
        mean, std: per channel (R, G, B order), on pixels in [0, ``pixel_max``].
        pixel_max: 1.0 when mean/std are given for [0, 1] (torchvision, timm), 255.0 for 0–255
            (mmaction2, Caffe2).
        input_size: the side of the crop the network sees (``whole``: the longest side).
        resize: the short side an image or frame is resized to before cropping.
        crop: ``"center"`` (one crop), ``"three_crop"`` (left/centre/right, the video
            models' test protocol) or ``"whole"`` (no crop: the image resized, its aspect ratio
            kept, to fit ``input_size`` × ``resize``: mmsegmentation's test ``Resize`` with
            ``keep_ratio``, e.g. Cityscapes' (2048, 1024)).
        interpolation: of the resize (``"bilinear"``, ``"bicubic"``).
        clip_len, frame_interval, num_clips: video only: frames per clip, the step between
            them, and the clips per video averaged at test time.
    """

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    pixel_max: float = 1.0
    input_size: int = 224
    resize: int = 256
    crop: str = "center"
    interpolation: str = "bilinear"
    clip_len: int | None = None
    frame_interval: int | None = None
    num_clips: int | None = None

    def __post_init__(self):
        check_choice("crop", self.crop, CROPS)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values, std > 0; got {self.mean}, {self.std}")

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, …) RGB in [0, 1] → the network's input."""
        if pixels.dim() < 3 or pixels.shape[1] != 3:
            raise ValueError(f"pixels must be (B, 3, ...) RGB, got shape {tuple(pixels.shape)}")
        shape = (1, 3) + (1,) * (pixels.dim() - 2)
        mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device).view(shape)
        std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device).view(shape)
        return (pixels * self.pixel_max - mean) / std

    def resize_crop(self, pixels: torch.Tensor) -> torch.Tensor:
        """(3, [T,] H, W) uint8 → short side resized to ``resize`` (``interpolation``), centre
        crop of ``input_size``: (3, [T,] S, S) uint8; ``whole``: (3, H', W') uint8, fit into
        (``input_size``, ``resize``) with the aspect ratio kept."""
        if self.crop == "whole":
            return resize_to_fit(pixels, (self.input_size, self.resize), self.interpolation)
        return resize_and_crop(pixels, self.resize, self.input_size, self.interpolation)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """(3, [T,] H, W) uint8 pixels → the network's input, (3, [T,] S, S) float (``whole``:
        (3, H', W')): cropped (:meth:`resize_crop`) and normalised (:meth:`normalize`)."""
        return self.normalize(self.resize_crop(pixels).float().unsqueeze(0) / 255)[0]

    def centre_clip(self, num_frames: int) -> list[int]:
        """The frame indices of a video's centre clip: ``clip_len`` frames every
        ``frame_interval`` (8 and 8 where the weights give none), looped if the video is short."""
        length, interval = self.clip_len or 8, self.frame_interval or 8
        start = clip_starts(num_frames, length * interval, 1)[0]
        return clip_indices(start, length, interval, num_frames)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Preprocessing:
        tuples = {k: tuple(v) for k, v in values.items() if k in ("mean", "std")}
        return cls(**{**values, **tuples})


IMAGENET = Preprocessing()  # torchvision's V1 weights: resize 256, centre crop 224, bilinear
# the video models' test on 0–255 pixels: short side 256, three 256 crops of 10 clips of 32×2
KINETICS_TEST = Preprocessing(
    pixel_max=255.0,
    input_size=256,
    resize=256,
    crop="three_crop",
    clip_len=32,
    frame_interval=2,
    num_clips=10,
)
# mmsegmentation's data_preprocessor on 0–255 RGB pixels, its Cityscapes test Resize (2048, 1024)
SEGMENTATION = Preprocessing(
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375),
    pixel_max=255.0,
    input_size=2048,
    resize=1024,
    crop="whole",
)
