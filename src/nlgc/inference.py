"""Inference on files: top-k classes of images and videos, label maps of images, read with the
weights' own preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nlgc.data.io import find_media, is_video, read_image
from nlgc.data.video import probe_video, read_frames
from nlgc.models.preprocessing import IMAGENET, SEGMENTATION, Preprocessing


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


@dataclass(frozen=True)
class Segmentation:
    """One image's label map, written to ``written``: its largest classes (name or index,
    share of the pixels)."""

    path: str
    written: str
    largest: list[tuple[str, float]]

    def __str__(self) -> str:
        shares = ", ".join(f"{name} {share:.0%}" for name, share in self.largest)
        return f"{self.path} -> {self.written} ({shares})"


@torch.no_grad()
def segment(model: nn.Module, paths: list[str | Path], out: str | Path) -> list[Segmentation]:
    """The label map of every image under ``paths``, run whole with the model's
    ``preprocessing`` (mmsegmentation's where it has none) and resized back to the image's
    size: ``out/{image stem}.png``, a palette PNG whose pixels are the class ids and whose
    colours are the label set's (Cityscapes', ADE20K's, VOC's; generated for other classes)."""
    from PIL import Image

    from nlgc.common import write_atomic
    from nlgc.evaluation.segmentation import resize_logits
    from nlgc.models.label_sets import palette_of

    preprocessing = getattr(model, "preprocessing", None) or SEGMENTATION
    names = getattr(model, "class_names", None)
    model.eval()
    results = []
    for path in find_media(paths):
        if is_video(path):
            raise ValueError(f"a segmentor labels images, but {path} is a video")
        pixels = read_image(path)
        logits = model(preprocessing(pixels).unsqueeze(0))
        logits = resize_logits(logits, pixels.shape[-2:], model)  # back to the image's size
        labels = logits.argmax(1)[0]
        image = Image.fromarray(labels.to(torch.uint8).numpy())
        colours = palette_of(names, logits.shape[1])
        image.putpalette([v for colour in colours for v in colour])  # grey → palette image
        written = Path(out) / f"{Path(path).stem}.png"
        write_atomic(written, lambda tmp, image=image: image.save(tmp, format="PNG"))
        counts = torch.bincount(labels.flatten(), minlength=logits.shape[1]) / labels.numel()
        shares, ids = counts.topk(min(3, len(counts)))
        largest = [
            (names[i] if names else str(i), float(v))
            for v, i in zip(shares, ids.tolist(), strict=True)
        ]
        results.append(Segmentation(str(path), str(written), [x for x in largest if x[1] > 0]))
    return results
