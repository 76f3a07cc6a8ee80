"""Rebuild the network a checkpoint was trained in: from a zoo name, from nlgc's own metadata,
or from the file's tensors (which registered model, built as its source builds it, has exactly
those).

A file is opened once (:func:`~nlgc.models.checkpoint.open_checkpoint`: read, its source
detected, its tensors converted); then the network is built
(:func:`~nlgc.models.registry.create_model`) and loaded. A zoo name goes straight to
:func:`~nlgc.models.registry.create_pretrained`: its record names its source.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

import torch
from torch import nn

from nlgc.blocks import PAIRWISE
from nlgc.models.checkpoint import Checkpoint, open_checkpoint
from nlgc.models.registry import (
    create_model,
    create_pretrained,
    labelled,
    list_models,
    model_spec,
    option_names,
)
from nlgc.models.sources import WeightsSource
from nlgc.models.weights import (
    CLASSIFIER,
    LoadReport,
    load_converted,
)
from nlgc.models.zoo import list_weights, weights_entry


def load_model(
    checkpoint: str | os.PathLike | Mapping | None = None, name: str | None = None, **kwargs
) -> tuple[nn.Module, LoadReport]:
    """The network a checkpoint was trained in, with its weights, and a load report.

    ``checkpoint`` is a zoo name (``"nl_i3d_resnet50.mmaction2_eg_32x2_k400"``, see
    ``nlgc weights list``; downloaded into the cache once), a URL, a file (nlgc, torchvision,
    timm, GCNet/mmdetection, mmaction2, Caffe2 ``.pkl``, PySlowFast) or a state dict; ``name``
    and ``kwargs`` (``create_model`` overrides) choose the network where the file cannot tell.
    A zoo name builds its record's network and loads it
    (:func:`~nlgc.models.registry.create_pretrained`). Otherwise, without a name: nlgc's
    training checkpoints name their model; other files are fitted: the registered models
    whose state-dict keys and shapes are the file's (after converting its layout), built the
    way that source builds them. One fit is built and loaded; several (mmaction2's embedded
    Gaussian and dot product have the same tensors, so do Caffe2's 32×2 and 8×8 models, told
    apart by ``stem_temporal_stride=2`` or ``1``) or none raise a ValueError that lists what
    fits. The number of classes is read from the file's classifier.

    The model carries ``preprocessing`` (:class:`~nlgc.models.preprocessing.Preprocessing`, the
    zoo entry's or its source's input convention; for nlgc's own checkpoints the one the run
    normalised with when it started from released weights, else None: ImageNet's) and
    ``class_names`` (a list where the zoo entry's source publishes them, else None).
    ``report.model_name`` is the registered name, ``report.options`` the overrides used,
    ``report.source`` the weights source.
    """
    if checkpoint is None:
        if name is None:
            raise ValueError("give a model name (--model) or a checkpoint (--checkpoint)")
        model = labelled(create_model(name, **kwargs), None, None)
        return model, LoadReport(model_name=name, options=kwargs)
    if isinstance(checkpoint, str) and checkpoint in list_weights():
        entry = weights_entry(checkpoint)
        if name in (None, entry.model):
            return create_pretrained(entry, **kwargs)
        kwargs = {**entry.options, **kwargs}  # another network from a released file
    opened = open_checkpoint(checkpoint)
    if opened.metadata:
        name, kwargs = opened.metadata["name"], dict(opened.metadata["overrides"])
        kwargs["num_classes"] = opened.metadata["num_classes"]
    # every source's classifier, once converted (a segmentor's: its conv_seg)
    fc = opened.state.get("fc.weight", opened.state.get("decode_head.conv_seg.weight"))
    if fc is not None and "num_classes" not in kwargs:
        kwargs = {**kwargs, "num_classes": fc.shape[0]}
    built_as = opened.source.build_options(opened.raw)
    if name is None:
        kind = opened.source.checkpoint_kind(opened.raw)
        name, options = _the_one_fit(opened, built_as, kwargs, kind)
        kwargs = {**options, **kwargs}
    else:
        kwargs = {**built_as, **kwargs}
    model = create_model(name, **kwargs)
    report = load_converted(model, opened.state, opened.ignored, opened.where)
    report.model_name, report.source = name, opened.source_name
    report.options = opened.metadata["overrides"] if opened.metadata else kwargs
    return labelled(model, opened.preprocessing, None), report


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


def _pairwise_choices(name: str) -> tuple[dict, ...]:
    """The option sets of a model's pairwise function that may fit a file: its default first,
    then every other one (where its blocks take ``pairwise``)."""
    if "pairwise" not in option_names(name):
        return ({},)
    default = {"embedded_gaussian"}  # NonLocalBlock's default: no option
    return ({}, *({"pairwise": p} for p in PAIRWISE if p not in default))


def fitting_models(
    state: dict, source: WeightsSource, built_as: dict, given: dict, kind: str | None = None
) -> list[tuple[str, tuple]]:
    """Every (registered name, sorted options) whose network has exactly ``state``'s tensors,
    built as the source builds it (``built_as``, each of its ``alternatives``) with ``given``:
    of the models made for the checkpoint ``kind``, if any fits; else of the general ones."""
    wanted = _signature(state)
    video = state.get("conv1.weight", torch.empty(0)).dim() == 5
    names = list_models(task=source.task or ("video" if video else "classification"))
    fits = []
    for only_for in dict.fromkeys((kind, None)):
        for name in (n for n in names if model_spec(n).only_for == only_for):
            for pairwise in _pairwise_choices(name):
                for alternative in source.alternatives:
                    options = {**built_as, **pairwise, **alternative, **given}
                    options.pop("num_classes", None)
                    key = tuple(sorted(options.items()))
                    if (name, key) not in fits and _signature_of(name, key) == wanted:
                        fits.append((name, key))
        if fits:
            return fits
    return fits


def _the_one_fit(
    opened: Checkpoint, built_as: dict, given: dict, kind: str | None
) -> tuple[str, dict]:
    fits = fitting_models(opened.state, opened.source, built_as, given, kind)
    where = opened.where
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
