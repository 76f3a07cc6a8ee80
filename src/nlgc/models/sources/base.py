"""What nlgc knows about one source of released weights, as one record."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from nlgc.models.preprocessing import Preprocessing

State = Mapping[str, torch.Tensor]
Rules = Sequence[tuple[str, str | Callable[[re.Match], str]]]


def renamed(key: str, rules: Rules) -> str:
    """``key`` with every (pattern, replacement) of ``rules`` applied in order."""
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def with_zero_biases(state: dict, weight_suffix: str) -> dict:
    """``state`` with a zero bias beside every ``…{weight_suffix}`` weight that has none: a
    conv a norm follows (mmcv's ConvModule) becomes nlgc's conv with bias (which that norm
    makes irrelevant at 0)."""
    for key in [k for k in state if k.endswith(weight_suffix)]:
        bias = key.removesuffix("weight") + "bias"
        if bias not in state:
            state[bias] = state[key].new_zeros(state[key].shape[0])
    return state


def _nothing(state: State) -> dict:
    return {}


def _no_refusal(state: State) -> str | None:
    return None


@dataclass(frozen=True)
class WeightsSource:
    """One source's facts: how to recognise its files, rename their tensors, build its networks.

    Args:
        name: short name (``"mmaction2"``), shown in load reports and the zoo.
        title: one line: the project and the file layout.
        detect: whether a file's tensors are in this source's layout.
        convert: the file's tensors under nlgc's names (``backbone.`` kept where the file has
            it; :func:`nlgc.models.weights.nlgc_layout` strips it and lists what it drops).
        build_options: the ``create_model`` overrides that build the network as this source
            builds it (its stem, pooling position, scale), read from the file's tensors.
        alternatives: option sets whose networks have this source's tensors but compute
            differently (Caffe2's 32×2 and 8×8 stems): tried one by one when a file is matched
            to a network by its tensors, and named in the error when several fit.
        checkpoint_kind: a name for files of this source whose networks compute differently
            from others with the same tensors (Caffe2's "affine" files: ``"caffe2_affine"``),
            else None; the registered models made for that kind (``only_for``) are fitted
            first (see :func:`nlgc.load_model`).
        refusal: why a file of this source cannot be built, or None.
        preprocessing: the input convention of the source's networks, used where a zoo entry
            does not give its own.
        whole: its files hold whole networks whose ``backbone.`` is nlgc's too (segmentors):
            loading keeps every key instead of taking the backbone out of a detector.
        task: the task of its networks where it is not classification (``"segmentation"``):
            a file is matched against that task's registered models.
    """

    name: str
    title: str
    detect: Callable[[State], bool]
    convert: Callable[[State], dict] = dict
    build_options: Callable[[State], dict] = _nothing
    alternatives: tuple[dict, ...] = ({},)
    checkpoint_kind: Callable[[State], str | None] = lambda state: None
    refusal: Callable[[State], str | None] = _no_refusal
    preprocessing: Preprocessing | None = None
    whole: bool = False
    task: str | None = None
