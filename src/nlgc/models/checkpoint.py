"""A checkpoint read once and converted once, and its tensors loaded into a model.

The one place that detects a file's source (:mod:`nlgc.models.sources`): a zoo name, URL, file
or state dict is resolved (downloaded once), read without running its code, its source taken
from its zoo record or detected from its tensors, its tensors converted to nlgc's names. Below
the registry: building networks is :mod:`nlgc.models.registry`'s, rebuilding the network a file
holds is :func:`nlgc.models.from_checkpoint.load_model`'s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from nlgc.models.preprocessing import Preprocessing
from nlgc.models.sources import WeightsSource, detect_source, torchvision
from nlgc.models.sources.native import read_metadata
from nlgc.models.weights import (
    LoadReport,
    load_converted,
    nlgc_layout,
    read_weights_file,
    state_dict_of,
)
from nlgc.models.zoo import ZooEntry, resolve_checkpoint

NATIVE = torchvision.SOURCE  # nlgc's own checkpoints: torchvision's layout, nlgc's names


@dataclass
class Checkpoint:
    """A checkpoint read once and converted once: its tensors under nlgc's names (``state``),
    the file's keys left out (``ignored``: a detector's neck and heads), its ``source`` (the
    zoo entry's, else detected from the tensors: the one place that detects), the file's own
    tensors (``raw``), a name for messages (``where``), its zoo ``entry`` and, for nlgc's own
    training checkpoints, the ``metadata`` naming their network."""

    state: dict
    ignored: list[str]
    source: WeightsSource
    raw: dict
    where: str
    entry: ZooEntry | None = None
    metadata: dict | None = None

    @property
    def source_name(self) -> str:
        return "nlgc" if self.metadata else self.source.name

    @property
    def preprocessing(self) -> Preprocessing | None:
        if self.metadata:  # a run started from released weights normalised so; else ImageNet
            saved = self.metadata["preprocessing"]
            return Preprocessing.from_dict(saved) if saved else None
        return self.entry.preprocessing if self.entry else self.source.preprocessing


def open_checkpoint(checkpoint: str | os.PathLike | Mapping | Checkpoint) -> Checkpoint:
    """A zoo name, URL, file or state dict, read and converted: a :class:`Checkpoint` (one
    already opened is returned as it is)."""
    if isinstance(checkpoint, Checkpoint):
        return checkpoint
    checkpoint, entry = resolve_checkpoint(checkpoint)
    if isinstance(checkpoint, Mapping):
        data, where = dict(checkpoint), "the state dict"
    else:
        data = read_weights_file(checkpoint)  # read once
        where = entry.name if entry else os.fspath(checkpoint)
        native = read_metadata(data)
        if native is not None:  # nlgc's own layout: nothing to convert
            metadata, state = native
            return Checkpoint(state, [], NATIVE, state, where, metadata=metadata)
    raw = state_dict_of(data)
    source = entry.source if entry else detect_source(raw)  # detected once
    refusal = source.refusal(raw)
    if refusal:
        raise ValueError(f"{where}: {refusal}")
    state, ignored = nlgc_layout(raw, source)  # converted once
    return Checkpoint(state, ignored, source, raw, where, entry)


def load_weights(
    model: nn.Module, checkpoint: str | os.PathLike | Mapping, inflate: bool = False
) -> LoadReport:
    """Load a checkpoint (zoo name, URL, file or state dict) into ``model`` and report what
    happened.

    The file is converted from its source's layout (see :mod:`nlgc.models.sources`:
    torchvision/timm ResNets, timm's byobnet GC networks, GCNet and mmdetection detectors,
    whose neck and heads are ignored, mmaction2, the official Caffe2 ``.pkl`` files,
    PySlowFast). Context-block parameters missing from the file keep their identity
    initialisation; a classifier of another size is reported and re-initialised. Every other
    key must match: otherwise a ValueError lists the missing, unexpected and mis-shaped keys
    and the model is left unchanged. The network must be the one the weights were trained in
    (Caffe2 files need ``stem="caffe2"``, …): :func:`load_model` builds it. ``inflate``: 2D
    kernels fill the model's 3D ones (:func:`inflate_weights`).
    """
    opened = open_checkpoint(checkpoint)
    return load_converted(model, opened.state, opened.ignored, opened.where, inflate=inflate)


def inflate_weights(model: nn.Module, checkpoint: str | os.PathLike | Mapping) -> LoadReport:
    """Load a 2D ResNet checkpoint into a C2D / I3D model, inflating its k×k kernels."""
    return load_weights(model, checkpoint, inflate=True)
