"""mmsegmentation's training pipeline on tensors: random resize (a ratio of a base scale),
random crop with the ``cat_max_ratio`` rule, horizontal flip, photometric distortion; then,
after normalisation as mmsegmentation's ``SegDataPreProcessor`` does, padding to the crop
(pixels 0 in normalised space, labels the ignore index). It runs where the batch is (on the
GPU in training), every draw from one ``torch.Generator`` so that a step's augmentation follows
from its seed.

The steps follow mmsegmentation 1.x / mmcv 2.x (``RandomResize``, ``RandomCrop``,
``RandomFlip``, ``PhotoMetricDistortion``, ``SegDataPreProcessor``'s padding); they work on
float pixels in 0–255 throughout where mmcv rounds to uint8 after each step, and hue and
saturation go through kornia's HSV where mmcv uses OpenCV's (H in 0–180: the hue shift of
±18 is ±36°).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nlgc.clips import keep_ratio_size
from nlgc.data.segmentation import IGNORE_INDEX


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _coin(generator: torch.Generator) -> bool:
    return bool(torch.randint(2, (), generator=generator))


def resize_pair(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]):
    """(3, H, W) float image bilinear, (H, W) mask nearest, both to ``size`` (H, W)."""
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return image, mask


@dataclass(frozen=True)
class TrainPipeline:
    """mmsegmentation's training augmentation of one (image, label map).

    Args:
        scale: the base scale (long side, short side) ``RandomResize`` fits an image into
            (Cityscapes (2048, 1024), ADE20K (2048, 512)).
        ratio_range: the base scale is multiplied by a ratio drawn uniformly from it.
        crop_size: (h, w) of the random crop (and of the padding after it).
        cat_max_ratio: a crop is drawn again (up to 10 times) while one class covers this
            fraction of its labelled pixels or more, or it holds fewer than two classes.
        flip: the probability of a horizontal flip.
        photometric: brightness, contrast, saturation and hue distortion.
    """

    scale: tuple[int, int] = (2048, 1024)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    crop_size: tuple[int, int] = (512, 1024)
    cat_max_ratio: float = 0.75
    flip: float = 0.5
    photometric: bool = True

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator):
        """(3, H, W) uint8 or 0–255 float image and (H, W) class ids → (3, h, w) float image
        in 0–255 and (h, w) int64 labels, at most ``crop_size`` (:func:`pad_to` it after
        normalising)."""
        image = image.float()
        ratio = _uniform(generator, *self.ratio_range)
        scale = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        image, mask = resize_pair(image, mask, keep_ratio_size(*image.shape[-2:], scale))
        image, mask = self.crop(image, mask, generator)
        if float(torch.rand((), generator=generator)) < self.flip:
            image, mask = image.flip(-1), mask.flip(-1)
        if self.photometric:
            image = photometric_distortion(image, generator)
        return image, mask

    def crop(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator):
        """A random ``crop_size`` window (the whole side where the image is smaller), drawn
        again while it fails the ``cat_max_ratio`` rule, 10 draws at most."""
        height, width = mask.shape
        crop_h, crop_w = min(self.crop_size[0], height), min(self.crop_size[1], width)

        def draw() -> tuple[int, int]:
            top = int(torch.randint(height - crop_h + 1, (), generator=generator))
            left = int(torch.randint(width - crop_w + 1, (), generator=generator))
            return top, left

        top, left = draw()
        if self.cat_max_ratio < 1:
            for _ in range(10):
                window = mask[top : top + crop_h, left : left + crop_w]
                counts = torch.bincount(window[window != IGNORE_INDEX].flatten())
                counts = counts[counts > 0]
                if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                    break
                top, left = draw()
        window = (slice(top, top + crop_h), slice(left, left + crop_w))
        return image[(slice(None), *window)], mask[window]


def photometric_distortion(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """mmsegmentation's ``PhotoMetricDistortion`` of a (3, H, W) image in 0–255: brightness
    ±32, then contrast ×[0.5, 1.5] first or last (a coin), saturation ×[0.5, 1.5] and hue
    ±18 (OpenCV's half-degrees) in between, each step applied with probability ½, clipped to
    0–255 after each."""
    from kornia.color import hsv_to_rgb, rgb_to_hsv

    def contrast(x: torch.Tensor) -> torch.Tensor:
        return (x * _uniform(generator, 0.5, 1.5)).clamp(0, 255) if _coin(generator) else x

    if _coin(generator):
        image = (image + _uniform(generator, -32, 32)).clamp(0, 255)
    contrast_first = _coin(generator)
    if contrast_first:
        image = contrast(image)
    saturate, shift_hue = _coin(generator), _coin(generator)
    alpha = _uniform(generator, 0.5, 1.5) if saturate else 1.0
    delta = int(torch.randint(-18, 18, (), generator=generator)) if shift_hue else 0
    if saturate or shift_hue:
        hue, saturation, value = rgb_to_hsv(image[None] / 255)[0]
        saturation = (saturation * alpha).clamp(0, 1)
        hue = torch.remainder(hue + delta * math.pi / 90, 2 * math.pi)
        image = (hsv_to_rgb(torch.stack([hue, saturation, value])[None])[0] * 255).clamp(0, 255)
    if not contrast_first:
        image = contrast(image)
    return image


def pad_to(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]):
    """Pad bottom and right to at least ``size`` (h, w): pixels with 0 (mmsegmentation pads
    the normalised image: 0 is the mean colour), labels with 255."""
    bottom, right = max(size[0] - image.shape[-2], 0), max(size[1] - image.shape[-1], 0)
    if not (bottom or right):
        return image, mask
    image = F.pad(image, (0, right, 0, bottom), value=0.0)
    return image, F.pad(mask, (0, right, 0, bottom), value=IGNORE_INDEX)
