"""Loading checkpoints into nlgc models: torchvision/timm ResNets and released GCNet weights.

Files are read with ``torch.load(weights_only=True)`` (no code runs), safetensors, or, for the
official Caffe2 ``.pkl`` files, an unpickler that admits numpy arrays only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from nlgc.blocks import ContextBlock
from nlgc.models.caffe2_pickle import read_caffe2_blobs

CLASSIFIER = ("fc.weight", "fc.bias")
_WRAPPERS = ("state_dict", "model", "model_state", "module")
_SHOWN = 12  # keys listed per category in an error message


@dataclass
class LoadReport:
    """What :func:`load_weights` did, key by key."""

    loaded: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # absent from the file: kept as initialised
    replaced: list[str] = field(default_factory=list)  # classifier of another size, re-initialised
    ignored: list[str] = field(default_factory=list)  # file keys outside the backbone
    model_name: str = ""  # set by nlgc.load_model: the registered network it built
    options: dict = field(default_factory=dict)  # and the create_model overrides it used

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.model_name:
            lines[0] += f" into {self.model_name}" + (f" {self.options}" if self.options else "")
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


def _block_prefixes(model: nn.Module) -> tuple[str, ...]:
    return tuple(f"{name}." for name, m in model.named_modules() if isinstance(m, ContextBlock))


def _listing(title: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN]) + (f", … ({len(keys)} in all)" if len(keys) > _SHOWN else "")
    return f"\n  {title} ({len(keys)}): {shown}"


# mmaction2 (mmcv ConvModule) names → ours, applied in order after ``backbone.`` is removed.
_MMACTION2_RULES = [
    (r"^cls_head\.fc_cls\.", "fc."),
    (r"^conv1\.conv\.", "conv1."),
    (r"^conv1\.bn\.", "bn1."),
    (r"\.conv([123])\.conv\.", r".conv\1."),
    (r"\.conv([123])\.bn\.", r".bn\1."),
    (r"\.downsample\.conv\.", ".downsample.0."),
    (r"\.downsample\.bn\.", ".downsample.1."),
    (r"\.non_local_block\.(g|phi)\.0\.conv\.", r".non_local_block.\1."),  # sub-sampled
    (r"\.non_local_block\.(g|theta|phi)\.conv\.", r".non_local_block.\1."),
    (r"\.non_local_block\.conv_out\.conv\.", ".non_local_block.out."),
    (r"\.non_local_block\.conv_out\.bn\.", ".non_local_block.norm."),
]


def is_mmaction2_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """mmaction2 checkpoints wrap every conv in a ConvModule: ``conv1.conv.weight``."""
    return any(k.removeprefix("backbone.") == "conv1.conv.weight" for k in state)


def convert_mmaction2(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmaction2 ResNet3d / NonLocal3d keys → nlgc's VideoResNet keys.

    Its W_z conv (``conv_out``) has no bias because BN follows; ours has one, set to zero here,
    which computes the same function. mmaction2 pools after φ/g and does not scale θᵀφ when
    ``use_scale=False``: build the model with ``pool_position="after"`` and ``scale=False``
    (the defaults of nlgc's video NL configurations).
    """
    converted = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            key = key.removeprefix("backbone.")
        elif not key.startswith("cls_head."):
            continue
        for pattern, replacement in _MMACTION2_RULES:
            key = re.sub(pattern, replacement, key)
        if value.dim() == 4 and key.endswith("weight"):  # mmaction2's C2D: 2D convs, T = 1
            value = value.unsqueeze(2)
        converted[key] = value
    for key in list(converted):
        bias = key.removesuffix("weight") + "bias"
        if key.endswith(".non_local_block.out.weight") and bias not in converted:
            converted[bias] = converted[key].new_zeros(converted[key].shape[0])
    return converted


_TIMM_BYOBNET_RULES = (  # timm byobnet "T" ResNets (gcresnet50t) → nlgc ResNet(stem="tiered")
    (r"^stem\.conv1\.conv\.", "conv1.0."),
    (r"^stem\.conv1\.bn\.", "conv1.1."),
    (r"^stem\.conv2\.conv\.", "conv1.3."),
    (r"^stem\.conv2\.bn\.", "conv1.4."),
    (r"^stem\.conv3\.conv\.", "conv1.6."),
    (r"^stem\.conv3\.bn\.", "bn1."),
    (r"^stages\.(\d)\.", lambda m: f"layer{int(m.group(1)) + 1}."),
    (r"\.conv(\d)_(1x1|kxk)\.conv\.", r".conv\1."),
    (r"\.conv(\d)_(1x1|kxk)\.bn\.", r".bn\1."),
    (r"\.shortcut\.conv\.", ".downsample.0."),
    (r"\.shortcut\.bn\.", ".downsample.1."),
    (r"\.attn\.conv_attn\.", ".context_block_after_conv2.conv_mask."),
    (r"\.attn\.mlp_add\.fc1\.", ".context_block_after_conv2.channel_add_conv.0."),
    (r"\.attn\.mlp_add\.norm\.", ".context_block_after_conv2.channel_add_conv.1."),
    (r"\.attn\.mlp_add\.fc2\.", ".context_block_after_conv2.channel_add_conv.3."),
    (r"^head\.fc\.", "fc."),
)


def is_timm_byobnet_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """timm's byobnet networks name their stem ``stem.conv1.conv`` and blocks ``stages.i.j``."""
    return "stem.conv1.conv.weight" in state and any(k.startswith("stages.") for k in state)


def convert_timm_byobnet(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm byobnet keys (``stem.conv1.conv``, ``stages.0.0.conv2_kxk.bn``, ``attn.mlp_add.fc1``,
    ``head.fc``) → nlgc's ResNet with ``stem="tiered"`` and GC after conv2; timm's
    ``LayerNorm2d`` weights (C',) become the (C', 1, 1) of our LayerNorm."""
    converted = {}
    for key, value in state.items():
        for pattern, replacement in _TIMM_BYOBNET_RULES:
            key = re.sub(pattern, replacement, key)
        if ".channel_add_conv.1." in key:
            value = value.view(-1, 1, 1)
        converted[key] = value
    return converted


_CAFFE2_BN = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}
_BLOCK = r"^(res|nonlocal_conv)(?P<stage>\d)_(?P<index>\d+)_"
_BN = r"_bn_(?P<bn>s|b|rm|riv)$"
_CAFFE2_RULES = (  # blob name → VideoResNet key (video-nonlocal-net's resnet_helper names)
    (r"^conv1_w$", "conv1.weight"),
    (r"^res_conv1" + _BN, "bn1.{bn}"),
    (_BLOCK + r"branch2(?P<conv>[abc])_w$", "layer{stage}.{index}.conv{conv}.weight"),
    (_BLOCK + r"branch2(?P<conv>[abc])" + _BN, "layer{stage}.{index}.bn{conv}.{bn}"),
    (_BLOCK + r"branch1_w$", "layer{stage}.{index}.downsample.0.weight"),
    (_BLOCK + r"branch1" + _BN, "layer{stage}.{index}.downsample.1.{bn}"),
    (
        _BLOCK + r"(?P<part>theta|phi|g|out)_(?P<wb>w|b)$",
        "layer{stage}.{index}.non_local_block.{part}.{wb}",
    ),
    (_BLOCK[:-1] + _BN, "layer{stage}.{index}.non_local_block.norm.{bn}"),
    (r"^pred_(?P<wb>w|b)$", "fc.{wb}"),
)
_CAFFE2_SKIPPED = re.compile(r"_momentum$|^lr$|^model_iter$|_shape\dd$")  # solver state
_BN_EPS = 1e-5


def is_caffe2_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """The official Caffe2 models name their blobs ``conv1_w``, ``res_conv1_bn_s``, …"""
    return "conv1_w" in state and "res_conv1_bn_s" in state


def _caffe2_key(name: str) -> str | None:
    for pattern, template in _CAFFE2_RULES:
        match = re.match(pattern, name)
        if match is None:
            continue
        fields = {k: v for k, v in match.groupdict().items() if v is not None}
        if "stage" in fields:  # res2…res5 = layer1…layer4
            fields["stage"] = int(fields["stage"]) - 1
        if "conv" in fields:
            fields["conv"] = "abc".index(fields["conv"]) + 1
        if "bn" in fields:
            fields["bn"] = _CAFFE2_BN[fields["bn"]]
        if "wb" in fields:
            fields["wb"] = "weight" if fields["wb"] == "w" else "bias"
        return template.format(**fields)
    return None


def convert_caffe2(blobs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official Caffe2 blobs (video-nonlocal-net, read by ``read_caffe2_blobs``) → VideoResNet
    keys. Solver state (``*_momentum``, ``lr``, ``model_iter``) is dropped, unknown blobs are
    kept under their own names (so that loading reports them). Caffe2's BN is ``_s``/``_b`` with
    running ``_rm``/``_riv`` (the variance, despite the name); a frozen affine BN (``_s``/``_b``
    only) becomes BN with mean 0 and variance 1 − ε, which computes x·s + b."""
    converted = {}
    for name, value in blobs.items():
        if _CAFFE2_SKIPPED.search(name):
            continue
        key = _caffe2_key(name) or name
        converted[key] = value.flatten(1) if key == "fc.weight" else value
    for key in [k for k in converted if k.endswith(".weight") and converted[k].dim() == 1]:
        prefix = key.removesuffix("weight")
        if prefix + "running_mean" not in converted:
            converted[prefix + "running_mean"] = torch.zeros_like(converted[key])
            converted[prefix + "running_var"] = torch.full_like(converted[key], 1 - _BN_EPS)
    return converted


def nlgc_layout(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A checkpoint's tensors under nlgc's names (mmaction2, Caffe2 and timm byobnet files
    converted, mmdetection's ``backbone.`` kept), and the keys left out (its neck and heads)."""
    if is_mmaction2_layout(state):
        state = convert_mmaction2(state)
    elif is_caffe2_layout(state):
        state = convert_caffe2(state)
    elif is_timm_byobnet_layout(state):
        state = convert_timm_byobnet(state)
    if not any(k.startswith("backbone.") for k in state):
        return dict(state), []
    ignored = sorted(k for k in state if not k.startswith("backbone."))
    backbone = {
        k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
    }
    return backbone, ignored


def inflate_state_dict(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """2D → 3D: where ``target`` has a t×k×k kernel and ``state`` the k×k one, the 2D kernel
    repeated t times along time and divided by t (so a clip of identical frames gives the 2D
    response); every other tensor (BN, fc) is copied."""
    inflated = {}
    for key, value in state.items():
        goal = target.get(key)
        if goal is not None and value.dim() == 4 and goal.dim() == 5:
            t = goal.shape[2]
            value = value.unsqueeze(2).repeat(1, 1, t, 1, 1) / t
        inflated[key] = value
    return inflated


def inflate_weights(
    model: nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor]
) -> LoadReport:
    """Load a 2D ResNet checkpoint (torchvision layout) into a C2D / I3D model by inflation."""
    state = dict(source) if isinstance(source, Mapping) else read_state_dict(source)
    return load_weights(model, inflate_state_dict(state, model.state_dict()))


def load_weights(
    model: nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor]
) -> LoadReport:
    """Load a checkpoint into ``model`` and report what happened.

    Accepts torchvision/timm-layout ResNet checkpoints (context-block parameters missing from the
    file keep their identity initialisation; a classifier of another size is reported and
    re-initialised) and mmdetection/GCNet checkpoints (``backbone.`` prefix, keys such as
    ``layer3.5.context_block.conv_mask.weight``; the neck and heads are ignored), mmaction2
    video checkpoints (converted by :func:`convert_mmaction2`), timm's byobnet GC-ResNets
    (``gcresnet50t``, converted by :func:`convert_timm_byobnet`) and the official Caffe2 ``.pkl``
    files (converted by :func:`convert_caffe2`; build the model with ``stem="caffe2"``, or use
    :func:`nlgc.load_model`, which does). Every backbone
    key must match: otherwise a ValueError lists the missing, unexpected and mis-shaped keys and
    the model is left unchanged.
    """
    state = dict(source) if isinstance(source, Mapping) else read_state_dict(source)
    state, ignored = nlgc_layout(state)
    report = LoadReport(ignored=ignored)

    target = model.state_dict()
    blocks = _block_prefixes(model)
    merged, missing, mismatched = {}, [], []
    for key, current in target.items():
        if key in state and state[key].shape == current.shape:
            merged[key] = state[key]
            report.loaded.append(key)
        elif key in CLASSIFIER and key in state:  # another number of classes: a fresh layer
            merged[key] = current
            report.replaced.append(key)
        elif key in state:
            mismatched.append(f"{key} {tuple(state[key].shape)}→{tuple(current.shape)}")
        elif key.startswith(blocks) or key in CLASSIFIER:  # not in the file: keep as built
            merged[key] = current
            report.kept.append(key)
        elif key.endswith("num_batches_tracked"):  # older torchvision files lack these
            merged[key] = current
        else:
            missing.append(key)
    unexpected = [k for k in state if k not in target and k not in CLASSIFIER]
    report.ignored += [k for k in CLASSIFIER if k in state and k not in target]
    if missing or unexpected or mismatched:
        where = "the state dict" if isinstance(source, Mapping) else os.fspath(source)
        message = f"{where} does not match the model:"
        for title, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", mismatched),
        ):
            if keys:
                message += _listing(title, keys)
        raise ValueError(message)
    model.load_state_dict(merged, strict=True)
    return report


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
