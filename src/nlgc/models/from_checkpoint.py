"""Rebuild the network a checkpoint was trained in: from nlgc's own metadata, from the file's
tensors (which registered model, built as its source builds it, has exactly those), or by name."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

import torch
from torch import nn

from nlgc.blocks import PAIRWISE
from nlgc.models.registry import create_model, list_models
from nlgc.models.weights import (
    CLASSIFIER,
    LoadReport,
    is_caffe2_layout,
    is_mmaction2_layout,
    load_weights,
    nlgc_layout,
    read_weights_file,
    state_dict_of,
)

METADATA_KEY = "nlgc_model"  # {"name": ..., "num_classes": ..., "overrides": {...}}


def model_metadata(name: str, num_classes: int, overrides: dict | None = None) -> dict:
    """What nlgc stores in its checkpoints so that ``load_model`` can rebuild the network."""
    return {"name": name, "num_classes": num_classes, "overrides": dict(overrides or {})}


def load_model(
    checkpoint: str | os.PathLike | Mapping | None = None, name: str | None = None, **kwargs
) -> tuple[nn.Module, LoadReport]:
    """The network a checkpoint was trained in, with its weights, and a load report.

    ``checkpoint`` is a file (nlgc, torchvision, timm, mmdetection/GCNet, mmaction2, official
    Caffe2 ``.pkl``) or a state dict; ``name`` and ``kwargs`` (``create_model`` overrides)
    choose the network where the file cannot tell. Without a name: nlgc's training checkpoints
    name their model; otherwise the registered models whose state-dict keys and shapes are the
    file's (after converting its layout) fit, built the way that source builds them
    (``stem="mmaction2"`` for mmaction2 files; ``stem="caffe2"`` with pooling before φ/g and the
    1/√C' scale for Caffe2 files). One fit is built and loaded; several (mmaction2's embedded
    Gaussian and dot product have the same tensors, so do Caffe2's 32×2 and 8×8 models, told
    apart by ``stem_temporal_stride=2`` or ``1``) or none raise a ValueError that lists what
    fits. The number of classes is read from the file's classifier. ``report.model_name`` is
    the registered name, ``report.options`` the overrides used. With neither a checkpoint nor a
    name the call fails; with a name only, the fresh model is returned.
    """
    if checkpoint is None:
        if name is None:
            raise ValueError("give a model name (--model) or a checkpoint (--checkpoint)")
        return create_model(name, **kwargs), LoadReport(model_name=name, options=kwargs)
    if isinstance(checkpoint, Mapping):
        raw, where = dict(checkpoint), "the state dict"
    else:
        data, where = read_weights_file(checkpoint), os.fspath(checkpoint)  # read once
        meta = (data.get("hyper_parameters") or {}).get(METADATA_KEY)  # a Lightning checkpoint
        if meta:
            model = create_model(meta["name"], meta["num_classes"], **meta["overrides"])
            prefix = "model."  # the Classifier's submodule
            state = {
                k.removeprefix(prefix): v
                for k, v in data["state_dict"].items()
                if k.startswith(prefix)
            }
            report = load_weights(model, state)
            report.model_name, report.options = meta["name"], meta["overrides"]
            return model, report
        raw = state_dict_of(data)
    if (
        is_caffe2_layout(raw)
        and "res_conv1_bn_rm" not in raw
        and any("nonlocal_conv3" in k for k in raw)
    ):
        raise ValueError(
            f"{where} is a Caffe2 'affine' NL model: its res3 NL blocks attend within temporal "
            "groups (res_stage_nonlocal_group), a network nlgc does not build"
        )
    state, _ = nlgc_layout(raw)
    fc = state.get("fc.weight")  # every source's classifier, once its layout is converted
    if fc is not None and "num_classes" not in kwargs:
        kwargs = {**kwargs, "num_classes": fc.shape[0]}
    if name is None:
        name, options = _the_one_fit(state, source_options(raw), kwargs, where)
        kwargs = {**options, **kwargs}
    else:
        kwargs = {**source_options(raw), **kwargs}
    model = create_model(name, **kwargs)
    report = load_weights(model, raw)
    report.model_name, report.options = name, kwargs
    return model, report


def source_options(raw: Mapping) -> dict:
    """How the file's source builds its networks, as create_model overrides."""
    if is_mmaction2_layout(raw):
        conv1 = raw.get("backbone.conv1.conv.weight", raw.get("conv1.conv.weight"))
        if conv1 is not None and conv1.dim() == 4:  # the C2D class: 2D convolutions
            return {"stem": "mmaction2_c2d", "stem_temporal_stride": 1}
        return {"stem": "mmaction2"}
    if is_caffe2_layout(raw):
        non_local = any(k.startswith("nonlocal_conv") for k in raw)
        return {
            "stem": "caffe2",
            **({"pool_position": "before", "scale": True} if non_local else {}),
        }
    return {}


# the NL models' default pairwise function (embedded Gaussian, no option) first, then the others
_PAIRWISE = ({}, *({"pairwise": p} for p in PAIRWISE if p != "embedded_gaussian"))
# Caffe2's 32×2 (resnet_video_org) and 8×8 (resnet_video) models have the same tensors
_CAFFE2_CLIPS = ({"stem_temporal_stride": 2}, {"stem_temporal_stride": 1})


@functools.lru_cache(maxsize=1024)
def _signature_of(name: str, options: tuple) -> frozenset | None:
    """The (key, shape) pairs of a registered model built with ``options`` (on the meta
    device: no memory, no init), classifier and BN counters aside; None if it cannot be built."""
    try:
        with torch.device("meta"):
            model = create_model(name, **dict(options))
    except (ValueError, TypeError):
        return None
    return _signature(model.state_dict())


def _signature(state: Mapping) -> frozenset:
    return frozenset(
        (k, tuple(v.shape))
        for k, v in state.items()
        if k not in CLASSIFIER and not k.endswith("num_batches_tracked")
    )


def _the_one_fit(state: dict, source: dict, given: dict, where: str) -> tuple[str, dict]:
    wanted = _signature(state)
    kind = "video" if state.get("conv1.weight", torch.empty(0)).dim() == 5 else "image"
    fits = []
    clips = _CAFFE2_CLIPS if source.get("stem") == "caffe2" else ({},)
    for name in list_models(modality=kind):
        for pairwise in _PAIRWISE if name.startswith("nl") else ({},):
            for clip in clips:
                options = {**source, **pairwise, **clip, **given}
                options.pop("num_classes", None)
                key = tuple(sorted(options.items()))
                if (name, key) not in fits and _signature_of(name, key) == wanted:
                    fits.append((name, key))
    if len(fits) == 1:
        return fits[0][0], dict(fits[0][1])
    described = [f"{n}({', '.join(f'{k}={v!r}' for k, v in o)})" for n, o in fits]
    if fits:
        raise ValueError(
            f"{where} fits several networks with the same tensors: {', '.join(described)}; "
            "pass the name and the options that differ (e.g. pairwise=...)"
        )
    raise ValueError(
        f"{where} does not say which model it holds, and its tensors fit no registered model: "
        "give its name with --model (or name=...)"
    )
