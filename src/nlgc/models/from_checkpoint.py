"""Rebuild a model from a checkpoint: nlgc's own (which name their model), the official Caffe2
``.pkl`` files (whose blobs tell the network), or any state dict with a model name."""

from __future__ import annotations

import os
import re

from torch import nn

from nlgc.models.registry import create_model
from nlgc.models.weights import (
    is_caffe2_layout,
    load_weights,
    read_checkpoint,
    read_state_dict,
)

METADATA_KEY = "nlgc_model"  # {"name": ..., "num_classes": ..., "overrides": {...}}


def model_metadata(name: str, num_classes: int, overrides: dict | None = None) -> dict:
    """What nlgc stores in its checkpoints so that ``load_model`` can rebuild the network."""
    return {"name": name, "num_classes": num_classes, "overrides": dict(overrides or {})}


def load_model(
    checkpoint: str | os.PathLike | None = None, name: str | None = None, **kwargs
) -> tuple[nn.Module, str]:
    """The model of ``checkpoint`` (or a fresh registered ``name``) and its name.

    nlgc's training checkpoints carry the model's name and options, and the official Caffe2
    ``.pkl`` files (video-nonlocal-net's 32×2 models) show theirs in their blobs (built with
    ``stem="caffe2"`` and the NL options of that code: pooling before φ/g, the 1/√C' scale);
    for another file (a state dict, a torchvision/mmdetection/mmaction2 checkpoint) give
    ``name`` too. The number of classes is read from the file's classifier when it has one.
    """
    if checkpoint is None:
        if name is None:
            raise ValueError("give a model name (--model) or a checkpoint (--checkpoint)")
        return create_model(name, **kwargs), name
    if os.fspath(checkpoint).endswith(".pkl"):
        state = read_state_dict(checkpoint)
        if name is None and is_caffe2_layout(state):
            name, caffe2_options = caffe2_model(state, checkpoint)
            kwargs = {**caffe2_options, **kwargs}
        return _build_and_load(state, checkpoint, name, kwargs), name
    data = read_checkpoint(checkpoint)
    meta = (data.get("hyper_parameters") or {}).get(METADATA_KEY)  # a Lightning checkpoint
    if meta:
        model = create_model(meta["name"], meta["num_classes"], **meta["overrides"])
        prefix = "model."  # the Classifier's submodule
        state = {
            k.removeprefix(prefix): v for k, v in data["state_dict"].items() if k.startswith(prefix)
        }
        load_weights(model, state)
        return model, meta["name"]
    if name is None:
        raise ValueError(
            f"{checkpoint} does not say which model it holds: give its name with --model"
        )
    return _build_and_load(read_state_dict(checkpoint), checkpoint, name, kwargs), name


def _build_and_load(state: dict, path, name: str | None, kwargs: dict) -> nn.Module:
    if name is None:
        raise ValueError(f"{path} does not say which model it holds: give its name with --model")
    heads = ("fc.weight", "cls_head.fc_cls.weight", "head.fc.weight", "pred_w")
    fc = next((state[k] for k in heads if k in state), None)
    if fc is not None and "num_classes" not in kwargs:
        kwargs = {**kwargs, "num_classes": fc.shape[0]}
    model = create_model(name, **kwargs)
    load_weights(model, state)
    return model


def caffe2_model(blobs: dict, path) -> tuple[str, dict]:
    """The registered name and options of an official Caffe2 32×2 model, from its blobs.

    R50 or R101 from the number of res4 blocks, I3D when conv1 has a temporal kernel, NL when
    it has ``nonlocal_conv*`` blobs; raises ValueError when the file is none of those.
    """
    res4 = {int(m.group(1)) for k in blobs if (m := re.match(r"res4_(\d+)_branch2a_w$", k))}
    depth = {6: 50, 23: 101}.get(len(res4))
    if depth is None:
        raise ValueError(
            f"{path}: a Caffe2 model with {len(res4)} res4 blocks; nlgc builds the 32×2 "
            "ResNet-50 (6) and ResNet-101 (23) of video-nonlocal-net's resnet_video_org.py"
        )
    arch = "i3d" if blobs["conv1_w"].shape[2] > 1 else "c2d"
    non_local = any(k.startswith("nonlocal_conv") for k in blobs)
    name = f"{'nl_' if non_local else ''}{arch}_resnet{depth}"
    options = {"stem": "caffe2"}
    if non_local:
        options.update(pool_position="before", scale=True)
    return name, options
