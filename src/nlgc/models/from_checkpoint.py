"""Rebuild the network a checkpoint was trained in: from nlgc's own metadata, from a zoo name,
or from the file's tensors (which registered model, built as its source builds it, has exactly
those).

A file is read once, its source detected once (:mod:`nlgc.models.sources`), its tensors
converted once; then the network is built and loaded.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping

import torch
from torch import nn

from nlgc.blocks import PAIRWISE
from nlgc.models.download import cache_dir, download, fetch
from nlgc.models.preprocessing import Preprocessing
from nlgc.models.registry import create_model, list_models
from nlgc.models.sources import WeightsSource, detect_source
from nlgc.models.sources.native import read_metadata
from nlgc.models.weights import (
    CLASSIFIER,
    LoadReport,
    load_converted,
    nlgc_layout,
    read_weights_file,
    state_dict_of,
)
from nlgc.models.zoo import ZooEntry, default_entry, list_weights, weights_entry


def load_model(
    checkpoint: str | os.PathLike | Mapping | None = None, name: str | None = None, **kwargs
) -> tuple[nn.Module, LoadReport]:
    """The network a checkpoint was trained in, with its weights, and a load report.

    ``checkpoint`` is a zoo name (``"nl_i3d_resnet50.mmaction2_eg_32x2_k400"``, see
    ``nlgc weights list``; downloaded into the cache once), a URL, a file (nlgc, torchvision,
    timm, GCNet/mmdetection, mmaction2, Caffe2 ``.pkl``, PySlowFast) or a state dict; ``name``
    and ``kwargs`` (``create_model`` overrides) choose the network where the file cannot tell.
    Without a name: nlgc's training checkpoints name their model; otherwise the registered
    models whose state-dict keys and shapes are the file's (after converting its layout) fit,
    built the way that source builds them. One fit is built and loaded; several (mmaction2's
    embedded Gaussian and dot product have the same tensors, so do Caffe2's 32×2 and 8×8
    models, told apart by ``stem_temporal_stride=2`` or ``1``) or none raise a ValueError that
    lists what fits. The number of classes is read from the file's classifier.

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
        model = create_model(name, **kwargs)
        return _labelled(model, None, None), LoadReport(model_name=name, options=kwargs)
    checkpoint, entry = resolve_checkpoint(checkpoint)
    if entry is not None:
        name, kwargs = name or entry.model, {**entry.options, **kwargs}
    if isinstance(checkpoint, Mapping):
        data, where = dict(checkpoint), "the state dict"
    else:
        data, where = read_weights_file(checkpoint), os.fspath(checkpoint)  # read once
        native = read_metadata(data)
        if native is not None:
            meta, state = native
            model = create_model(meta["name"], meta["num_classes"], **meta["overrides"])
            report = load_converted(model, state, [], where)
            report.model_name, report.options, report.source = (
                meta["name"],
                meta["overrides"],
                "nlgc",
            )
            model = _labelled(model, None, None)
            if meta["preprocessing"]:  # a run started from released weights normalised so
                model.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
            return model, report
    raw = state_dict_of(data)
    source = detect_source(raw)  # detected once
    refusal = source.refusal(raw)
    if refusal:
        raise ValueError(f"{where}: {refusal}")
    state, ignored = nlgc_layout(raw, source)  # converted once
    fc = state.get("fc.weight")  # every source's classifier, once its layout is converted
    if fc is not None and "num_classes" not in kwargs:
        kwargs = {**kwargs, "num_classes": fc.shape[0]}
    name = name or source.model_for(raw)
    if name is None:
        name, options = _the_one_fit(state, source, source.build_options(raw), kwargs, where)
        kwargs = {**options, **kwargs}
    else:
        kwargs = {**source.build_options(raw), **kwargs}
    model = create_model(name, **kwargs)
    report = load_converted(model, state, ignored, where)
    report.model_name, report.options, report.source = name, kwargs, source.name
    return _labelled(model, entry, source), report


def resolve_checkpoint(checkpoint):
    """(a local file or the state dict itself, the zoo entry or None) for a zoo name, a URL
    (downloaded into the cache once), a path or a state dict."""
    if isinstance(checkpoint, str) and checkpoint in list_weights():
        entry = weights_entry(checkpoint)
        return fetch(entry), entry
    if isinstance(checkpoint, str) and re.match(r"https?://", checkpoint):
        return _downloaded(checkpoint), None
    return checkpoint, None


def pretrained_model(name: str, tag: str | bool, **overrides) -> nn.Module:
    """``create_model(name, pretrained=tag)``: the zoo entry's network with its weights."""
    entry = default_entry(name, tag)
    model, _ = load_model(entry.name, **overrides)
    return model


def _labelled(model: nn.Module, entry: ZooEntry | None, source: WeightsSource | None):
    """The model with the input convention and class names of its weights (None if unknown)."""
    model.preprocessing = entry.preprocessing if entry else (source and source.preprocessing)
    names = entry.class_names() if entry else None
    fc = getattr(model, "fc", None)
    model.class_names = (
        names if names and fc is not None and fc.out_features == len(names) else None
    )
    return model


def _downloaded(url: str):
    """A URL's file in the cache (downloaded once), hash-checked where its name carries one."""
    filename = url.rsplit("/", 1)[-1]
    path = cache_dir() / filename
    if not path.is_file():
        match = re.search(r"-([0-9a-f]{8,64})\.[a-z]+$", filename)
        download(url, path, match.group(1) if match else None)
    return path


# the NL models' default pairwise function (embedded Gaussian, no option) first, then the others
_PAIRWISE = ({}, *({"pairwise": p} for p in PAIRWISE if p != "embedded_gaussian"))


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


def _the_one_fit(
    state: dict, source: WeightsSource, built_as: dict, given: dict, where: str
) -> tuple[str, dict]:
    wanted = _signature(state)
    kind = "video" if state.get("conv1.weight", torch.empty(0)).dim() == 5 else "image"
    fits = []
    for name in list_models(modality=kind, fit_by_tensors=True):
        for pairwise in _PAIRWISE if name.startswith("nl") else ({},):
            for alternative in source.alternatives:
                options = {**built_as, **pairwise, **alternative, **given}
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
