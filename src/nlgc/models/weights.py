"""Loading checkpoints into nlgc models, whatever source's layout they are in.

What each source names its tensors lives in :mod:`nlgc.models.sources`; this module reads
files, loads converted tensors key by key with a report, and inflates 2D weights to 3D. Files
are read with ``torch.load(weights_only=True)`` (no code runs), safetensors, or, for the
official Caffe2 ``.pkl`` files, an unpickler that admits numpy arrays only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from nlgc.blocks import ContextBlock
from nlgc.models.caffe2_pickle import read_caffe2_blobs
from nlgc.models.sources import WeightsSource

# the tensors sized by the number of classes: a classifier's fc, a torchvision detector's box
# and mask predictors, a segmentor's conv_seg; of another size in a file, they are
# re-initialised (fine-tuning)
CLASSIFIER = (
    "fc.weight",
    "fc.bias",
    *(
        f"{layer}.{kind}"
        for layer in (
            "roi_heads.box_predictor.cls_score",
            "roi_heads.box_predictor.bbox_pred",
            "roi_heads.mask_predictor.mask_fcn_logits",
            "decode_head.conv_seg",
            "auxiliary_head.conv_seg",
        )
        for kind in ("weight", "bias")
    ),
)
_WRAPPERS = ("state_dict", "model", "model_state", "module")
_SHOWN = 12  # keys listed per category in an error message


@dataclass
class LoadReport:
    """What loading a checkpoint did, key by key."""

    loaded: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # absent from the file: kept as initialised
    replaced: list[str] = field(default_factory=list)  # classifier of another size, re-initialised
    ignored: list[str] = field(default_factory=list)  # file keys outside the backbone
    model_name: str = ""  # set by nlgc.load_model: the registered network it built
    options: dict = field(default_factory=dict)  # and the create_model overrides it used
    source: str = ""  # and the weights source whose layout the file was in

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.model_name:
            lines[0] += f" into {self.model_name}" + (f" {self.options}" if self.options else "")
        if self.source:
            lines[0] += f" from a {self.source} file"
        if self.kept:
            lines.append(f"kept {len(self.kept)} tensors absent from the file as initialised")
        if self.replaced:
            lines.append(f"replaced the classifier ({', '.join(self.replaced)}): new size")
        if self.ignored:
            lines.append(f"ignored {len(self.ignored)} keys the model does not use")
        return "; ".join(lines)


def read_weights_file(path: str | os.PathLike) -> dict:
    """What a weights file holds, read without running any of its code: an official Caffe2
    ``.pkl``'s blobs under Caffe2 names, a ``.safetensors`` file's tensors, else a PyTorch
    checkpoint dictionary (weights-only unpickling)."""
    path = os.fspath(path)
    if path.endswith(".pkl"):
        return read_caffe2_blobs(path)
    if path.endswith(".safetensors"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        try:
            from safetensors.torch import load_file
        except ImportError as error:
            raise ImportError("reading .safetensors needs: pip install safetensors") from error
        return load_file(path)
    return read_checkpoint(path)


def state_dict_of(data: Mapping) -> dict[str, torch.Tensor]:
    """The tensors of a file's dictionary, unwrapped from ``{"state_dict": ...}`` and
    ``module.``."""
    for wrapper in _WRAPPERS:
        if isinstance(data.get(wrapper), Mapping):
            data = data[wrapper]
            break
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (see ``read_weights_file``), unwrapped (``state_dict_of``)."""
    return state_dict_of(read_weights_file(path))


def block_prefixes(model: nn.Module) -> tuple[str, ...]:
    return tuple(f"{name}." for name, m in model.named_modules() if isinstance(m, ContextBlock))


def _listing(title: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN]) + (f", … ({len(keys)} in all)" if len(keys) > _SHOWN else "")
    return f"\n  {title} ({len(keys)}): {shown}"


def nlgc_layout(
    state: Mapping[str, torch.Tensor], source: WeightsSource, whole: bool = False
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A checkpoint's tensors under nlgc's names, converted by its ``source``, and the keys
    left out: a detector's neck and heads beside its ``backbone.`` (for a backbone), or none
    with ``whole`` (for a detector) or a source whose files are whole networks (segmentors)."""
    state = source.convert(state)
    if whole or source.whole or not any(k.startswith("backbone.") for k in state):
        return dict(state), []
    ignored = sorted(k for k in state if not k.startswith("backbone."))
    backbone = {
        k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
    }
    return backbone, ignored


def inflated_kernel(kernel: torch.Tensor, time: int) -> torch.Tensor:
    """A k×k kernel (out, in, k, k) as (out, in, time, k, k): repeated along time and divided by
    ``time`` (so a clip of identical frames gives the 2D response)."""
    return kernel.unsqueeze(2).repeat(1, 1, time, 1, 1) / time


@dataclass
class StateMatch:
    """Where every tensor of a model's state dict is found in a checkpoint already under nlgc's
    names: the one key walk that loading (strict) and initialisation (lenient) share."""

    merged: dict[str, torch.Tensor] = field(default_factory=dict)  # what to load
    copied: list[str] = field(default_factory=list)  # the file's tensor, same shape
    inflated: list[str] = field(default_factory=list)  # the file's k×k kernel → t×k×k
    resized: list[str] = field(default_factory=list)  # classifier of another size: model's own
    kept: list[str] = field(default_factory=list)  # block / classifier / counter not in the file
    # in the file with another shape: key → (file's shape, model's shape)
    mismatched: dict[str, tuple[tuple, tuple]] = field(default_factory=dict)
    missing: dict[str, tuple] = field(default_factory=dict)  # not in the file: key → model's shape
    unexpected: list[str] = field(default_factory=list)  # file keys the model has no place for


def match_state(
    model: nn.Module, state: Mapping[str, torch.Tensor], inflate: bool = False
) -> StateMatch:
    """Match ``state`` to ``model`` key by key; with ``inflate``, a 2D kernel (out, in, k, k)
    fills a 3D one (out, in, t, k, k) by :func:`inflated_kernel`."""
    match, blocks, target = StateMatch(), block_prefixes(model), model.state_dict()
    for key, current in target.items():
        value = state.get(key)
        if value is not None and value.shape == current.shape:
            match.merged[key] = value
            match.copied.append(key)
        elif inflate and value is not None and _inflatable(value, current):
            match.merged[key] = inflated_kernel(value, current.shape[2])
            match.inflated.append(key)
        elif value is not None and key in CLASSIFIER:
            match.merged[key] = current
            match.resized.append(key)
        elif value is not None:
            match.mismatched[key] = (tuple(value.shape), tuple(current.shape))
        elif key.startswith(blocks) or key in CLASSIFIER or key.endswith("num_batches_tracked"):
            match.merged[key] = current  # older torchvision files lack the BN counters
            match.kept.append(key)
        else:
            match.missing[key] = tuple(current.shape)
    match.unexpected = [key for key in state if key not in target]
    return match


def _inflatable(value: torch.Tensor, current: torch.Tensor) -> bool:
    """A 2D kernel (out, in, k, k) for a 3D one (out, in, t, k, k)."""
    return value.dim() == 4 and current.dim() == 5 and value.shape == current[:, :, 0].shape


def load_converted(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    ignored: list[str],
    where: str,
    inflate: bool = False,
) -> LoadReport:
    """Load tensors already under nlgc's names (``nlgc_layout``) into ``model``, key by key
    (see :func:`nlgc.models.from_checkpoint.load_weights`); ``where`` names them in errors."""
    match = match_state(model, state, inflate)
    unexpected = [key for key in match.unexpected if key not in CLASSIFIER]
    if match.missing or unexpected or match.mismatched:
        mismatched = [f"{key} {got}→{want}" for key, (got, want) in match.mismatched.items()]
        message = f"{where} does not match the model:"
        for title, keys in (
            ("missing", list(match.missing)),
            ("unexpected", unexpected),
            ("shape mismatch", mismatched),
        ):
            if keys:
                message += _listing(title, keys)
        raise ValueError(message)
    model.load_state_dict(match.merged, strict=True)
    return LoadReport(
        loaded=match.copied + match.inflated,
        kept=[key for key in match.kept if not key.endswith("num_batches_tracked")],
        replaced=match.resized,
        ignored=list(ignored) + [key for key in match.unexpected if key in CLASSIFIER],
    )


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A whole checkpoint dictionary (weights-only unpickling), for its metadata."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"cannot read {path} as a weights-only PyTorch file: {error}") from error
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dictionary")
    return dict(checkpoint)
