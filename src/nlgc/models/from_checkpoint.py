"""Rebuild a model from a checkpoint: nlgc's own (which name their model) or any state dict."""

from __future__ import annotations

import os

from torch import nn

from nlgc.models.registry import create_model
from nlgc.models.weights import load_weights, read_checkpoint, read_state_dict

METADATA_KEY = "nlgc_model"  # {"name": ..., "num_classes": ..., "overrides": {...}}


def model_metadata(name: str, num_classes: int, overrides: dict | None = None) -> dict:
    """What nlgc stores in its checkpoints so that ``load_model`` can rebuild the network."""
    return {"name": name, "num_classes": num_classes, "overrides": dict(overrides or {})}


def load_model(
    checkpoint: str | os.PathLike | None = None, name: str | None = None, **kwargs
) -> tuple[nn.Module, str]:
    """The model of ``checkpoint`` (or a fresh registered ``name``) and its name.

    nlgc's training checkpoints carry the model's name and options; for another file (a state
    dict, a torchvision/mmdetection/mmaction2 checkpoint) give ``name`` too. The number of
    classes is read from the file's ``fc.weight`` when it has one.
    """
    if checkpoint is None:
        if name is None:
            raise ValueError("give a model name (--model) or a checkpoint (--checkpoint)")
        return create_model(name, **kwargs), name
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
    state = read_state_dict(checkpoint)
    fc = state.get("fc.weight", state.get("cls_head.fc_cls.weight"))
    if fc is not None and "num_classes" not in kwargs:
        kwargs["num_classes"] = fc.shape[0]
    model = create_model(name, **kwargs)
    load_weights(model, state)
    return model, name
