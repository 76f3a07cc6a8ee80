"""The Non-local paper's official Caffe2 code (facebookresearch/video-nonlocal-net) and the
Caffe2-format files of PySlowFast's model zoo, which use the same blob names.

Blobs ``conv1_w``, ``res_conv1_bn_s``, ``res4_1_branch2a_w``, ``nonlocal_conv3_1_theta_w``,
``pred_w`` (``lib/models/resnet_helper.py``, ``nonlocal_helper.py``), read from the ``.pkl`` by
:func:`nlgc.models.caffe2_pickle.read_caffe2_blobs` (numpy arrays only, nothing runs). BN is
``_s``/``_b`` with running ``_rm``/``_riv`` (the variance, despite the name); a frozen "affine"
BN (``_s``/``_b`` only) becomes BN with mean 0 and variance 1 − ε, which computes x·s + b.
Solver state (``*_momentum``, ``lr``, ``model_iter``) is dropped; unknown blobs keep their names
(so that loading reports them).

Networks: ``stem="caffe2"``, NL blocks max-pooling before φ/g with the 1/√C' scale; the 32×2
models (``resnet_video_org.py``) with ``stem_temporal_stride=2``, the 8×8 ones
(``resnet_video.py``) with ``1``: the same tensors, so a file alone cannot tell them apart. The
"affine" NL models (frozen BN, 32×4 and 128×1) attend within groups of 4 frames in res3
(``add_nonlocal_group``): the registered model made for the ``"caffe2_affine"`` kind.
"""

from __future__ import annotations

import re
from dataclasses import replace

import torch

from nlgc.models.preprocessing import KINETICS_TEST
from nlgc.models.sources.base import State, WeightsSource

_BN = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}
_BLOCK = r"^(res|nonlocal_conv)(?P<stage>\d)_(?P<index>\d+)_"
_BN_BLOB = r"_bn_(?P<bn>s|b|rm|riv)$"
_RULES = (  # blob name → VideoResNet key
    (r"^conv1_w$", "conv1.weight"),
    (r"^res_conv1" + _BN_BLOB, "bn1.{bn}"),
    (_BLOCK + r"branch2(?P<conv>[abc])_w$", "layer{stage}.{index}.conv{conv}.weight"),
    (_BLOCK + r"branch2(?P<conv>[abc])" + _BN_BLOB, "layer{stage}.{index}.bn{conv}.{bn}"),
    (_BLOCK + r"branch1_w$", "layer{stage}.{index}.downsample.0.weight"),
    (_BLOCK + r"branch1" + _BN_BLOB, "layer{stage}.{index}.downsample.1.{bn}"),
    (
        _BLOCK + r"(?P<part>theta|phi|g|out)_(?P<wb>w|b)$",
        "layer{stage}.{index}.non_local_block.{part}.{wb}",
    ),
    (_BLOCK[:-1] + _BN_BLOB, "layer{stage}.{index}.non_local_block.norm.{bn}"),
    (r"^pred_(?P<wb>w|b)$", "fc.{wb}"),
)
_SKIPPED = re.compile(r"_momentum$|^lr$|^model_iter$|_shape\dd$")  # solver state
_BN_EPS = 1e-5


def detect(state: State) -> bool:
    return "conv1_w" in state and "res_conv1_bn_s" in state


def _key(name: str) -> str | None:
    for pattern, template in _RULES:
        match = re.match(pattern, name)
        if match is None:
            continue
        fields = {k: v for k, v in match.groupdict().items() if v is not None}
        if "stage" in fields:  # res2…res5 = layer1…layer4
            fields["stage"] = int(fields["stage"]) - 1
        if "conv" in fields:
            fields["conv"] = "abc".index(fields["conv"]) + 1
        if "bn" in fields:
            fields["bn"] = _BN[fields["bn"]]
        if "wb" in fields:
            fields["wb"] = "weight" if fields["wb"] == "w" else "bias"
        return template.format(**fields)
    return None


def convert(blobs: State) -> dict:
    converted = {}
    for name, value in blobs.items():
        if _SKIPPED.search(name):
            continue
        key = _key(name) or name
        converted[key] = value.flatten(1) if key == "fc.weight" else value
    for key in [k for k in converted if k.endswith(".weight") and converted[k].dim() == 1]:
        prefix = key.removesuffix("weight")
        if prefix + "running_mean" not in converted:
            converted[prefix + "running_mean"] = torch.zeros_like(converted[key])
            converted[prefix + "running_var"] = torch.full_like(converted[key], 1 - _BN_EPS)
    return converted


def _non_local(blobs: State) -> bool:
    return any(k.startswith("nonlocal_conv") for k in blobs)


def build_options(blobs: State) -> dict:
    non_local = {"pool_position": "before", "scale": True} if _non_local(blobs) else {}
    return {"stem": "caffe2", **non_local}


def is_affine(blobs: State) -> bool:
    """Frozen BN converted to affine layers (``modify_caffe2_ftvideo.py``): no running stats."""
    return "res_conv1_bn_rm" not in blobs


def checkpoint_kind(blobs: State) -> str | None:
    """The "affine" files (frozen BN) are the models whose res3 NL blocks attend within groups
    of 4 frames (``add_nonlocal_group``)."""
    return "caffe2_affine" if is_affine(blobs) else None


# lib/core/config.py: MODEL.MEAN 114.75, MODEL.STD 57.375 for every channel on 0–255 pixels,
# RGB (MODEL.USE_BGR False); test: short side 256, fully-convolutional 256 crops, 10 clips × 3
CAFFE2_32X2 = replace(KINETICS_TEST, mean=(114.75,) * 3, std=(57.375,) * 3)

SOURCE = WeightsSource(
    name="caffe2",
    title="official Caffe2 .pkl (conv1_w, res4_1_branch2a_w, nonlocal_conv3_1_theta_w, pred_w)",
    detect=detect,
    convert=convert,
    build_options=build_options,
    alternatives=({"stem_temporal_stride": 2}, {"stem_temporal_stride": 1}),
    checkpoint_kind=checkpoint_kind,
    preprocessing=CAFFE2_32X2,
)
