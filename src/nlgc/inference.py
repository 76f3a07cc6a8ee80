"""Inference on files: top-k classes of images and videos, read with the weights' own
preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nlgc.data.io import find_media, is_video, read_image
from nlgc.data.video import probe_video, read_frames
from nlgc.models.preprocessing import IMAGENET, Preprocessing


@dataclass(frozen=True)
class Prediction:
    """One input's ``top`` classes: (index, name or "", probability), most likely first."""

    path: str
    top: list[tuple[int, str, float]]

    def __str__(self) -> str:
        lines = [self.path]
        lines += [f"  {p:6.1%}  {i:4d}  {name}" for i, name, p in self.top]
        return "\n".join(lines)


def model_input(path: Path, preprocessing: Preprocessing, video: bool) -> torch.Tensor:
    """(3, [T,] S, S) float input of one file, transformed by the weights' ``preprocessing``; a
    video's centre clip (:meth:`~nlgc.models.preprocessing.Preprocessing.centre_clip`)."""
    if is_video(path) != video:
        kind = "a video" if video else "an image"
        raise ValueError(f"the model is {kind} model, but {path} is not {kind}")
    if video:
        pixels = read_frames(path, preprocessing.centre_clip(probe_video(path).num_frames))
    else:
        pixels = read_image(path)
    return preprocessing(pixels)


@torch.no_grad()
def predict(
    model: nn.Module, paths: list[str | Path], video: bool, top: int = 5
) -> list[Prediction]:
    """The ``top`` classes of every image or video under ``paths``, one at a time, with the
    model's ``preprocessing`` (ImageNet's convention without one) and ``class_names``."""
    preprocessing = getattr(model, "preprocessing", None) or IMAGENET
    names = getattr(model, "class_names", None)
    model.eval()
    predictions = []
    for path in find_media(paths):
        x = model_input(path, preprocessing, video).unsqueeze(0)
        probabilities = model(x).softmax(-1)[0]
        values, indices = probabilities.topk(min(top, probabilities.numel()))
        top_k = [
            (int(i), names[int(i)] if names else "", float(v))
            for v, i in zip(values, indices, strict=True)
        ]
        predictions.append(Prediction(str(path), top_k))
    return predictions
