"""mmaction2's video recognisers: ``ResNet3d`` / ``C2D`` backbones with mmcv ``NonLocal3d``.

Every convolution is an mmcv ``ConvModule`` (``backbone.conv1.conv``, ``conv1.bn``), the
sub-sampled φ/g are ``Sequential(ConvModule, MaxPool)`` (``non_local_block.g.0.conv``), W_z is
``conv_out.conv`` + ``conv_out.bn`` without a bias (BN follows; ours is set to zero, which
computes the same), the classifier ``cls_head.fc_cls``. Networks: ``stem="mmaction2"``
(``mmaction/models/backbones/resnet3d.py``); the separate ``C2D`` class (2D kernels,
``c2d.py``) is ``stem="mmaction2_c2d"`` with ``stem_temporal_stride=1``, its kernels loaded as
1×k×k. NonLocal3d pools after φ/g and does not scale θᵀφ (``use_scale=False``): nlgc's video NL
defaults.
"""

from __future__ import annotations

from dataclasses import replace

from nlgc.models.preprocessing import KINETICS_TEST
from nlgc.models.sources.base import State, WeightsSource, renamed, with_zero_biases

_RULES = (
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
)


def detect(state: State) -> bool:
    return any(k.removeprefix("backbone.") == "conv1.conv.weight" for k in state)


def convert(state: State) -> dict:
    """mmaction2 ResNet3d / NonLocal3d keys → nlgc's VideoResNet keys (head and backbone)."""
    converted = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            key = key.removeprefix("backbone.")
        elif not key.startswith("cls_head."):
            continue
        key = renamed(key, _RULES)
        if value.dim() == 4 and key.endswith("weight"):  # mmaction2's C2D: 2D convs, T = 1
            value = value.unsqueeze(2)
        converted[key] = value
    return with_zero_biases(converted, ".non_local_block.out.weight")


def build_options(state: State) -> dict:
    conv1 = state.get("backbone.conv1.conv.weight", state.get("conv1.conv.weight"))
    if conv1 is not None and conv1.dim() == 4:  # the C2D class: 2D convolutions
        return {"stem": "mmaction2_c2d", "stem_temporal_stride": 1}
    return {"stem": "mmaction2"}


# mmaction2's ActionDataPreprocessor (ImageNet mean/std on 0–255 pixels), its test pipeline:
# short side 256, ThreeCrop 256, 10 clips (configs/recognition/i3d/*.py)
KINETICS_32X2 = replace(KINETICS_TEST, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))

SOURCE = WeightsSource(
    name="mmaction2",
    title="mmaction2 Recognizer3D (backbone.conv1.conv, non_local_block.g.0.conv, cls_head)",
    detect=detect,
    convert=convert,
    build_options=build_options,
    preprocessing=KINETICS_32X2,
)
