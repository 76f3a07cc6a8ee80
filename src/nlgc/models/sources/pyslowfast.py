"""PySlowFast (facebookresearch/SlowFast) checkpoints trained in PyTorch (``.pyth``): its
``ResNet`` video model with ``i3d``/``c2d`` architecture and ``Nonlocal`` blocks.

PySlowFast's released I3D / I3D-NLN / C2D Kinetics files are Caffe2 ``.pkl`` files with the
official blob names (``CHECKPOINT_TYPE: caffe2`` in ``configs/Kinetics/c2/*.yaml``), read by
:mod:`nlgc.models.sources.caffe2`. What PySlowFast itself saves (``slowfast/utils/checkpoint.py``,
``{"model_state": …}``) names modules ``s1.pathway0_stem.conv``, ``s2.pathway0_res0.branch2.a``,
``branch2.a_bn``, ``branch1``/``branch1_bn``, ``s3.pathway0_nonlocal1.conv_theta`` … ``.bn`` and
``head.projection`` (``slowfast/models/resnet_helper.py``, ``nonlocal_helper.py``, the
renaming in ``slowfast/utils/c2_model_loading.py``): the Caffe2 networks, renamed here. Its NL
blocks max-pool before φ/g and scale by 1/√C' ("softmax" instantiation), as Caffe2's.
"""

from __future__ import annotations

from nlgc.models.sources import caffe2
from nlgc.models.sources.base import State, WeightsSource, renamed

_STAGE = r"^s(\d)\.pathway0_"


_RULES = (
    (r"^s1\.pathway0_stem\.conv\.", "conv1."),
    (r"^s1\.pathway0_stem\.bn\.", "bn1."),
    (_STAGE + r"res(\d+)\.branch2\.([abc])_bn\.", lambda m: _block(m) + f"bn{_abc(m)}."),
    (_STAGE + r"res(\d+)\.branch2\.([abc])\.", lambda m: _block(m) + f"conv{_abc(m)}."),
    (_STAGE + r"res(\d+)\.branch1_bn\.", lambda m: _block(m) + "downsample.1."),
    (_STAGE + r"res(\d+)\.branch1\.", lambda m: _block(m) + "downsample.0."),
    (
        _STAGE + r"nonlocal(\d+)\.conv_(theta|phi|g|out)\.",
        lambda m: _block(m) + f"non_local_block.{m.group(3)}.",
    ),
    (_STAGE + r"nonlocal(\d+)\.bn\.", lambda m: _block(m) + "non_local_block.norm."),
    (r"^head\.projection\.", "fc."),
)


def _block(match) -> str:
    return f"layer{int(match.group(1)) - 1}.{match.group(2)}."


def _abc(match) -> int:
    return "abc".index(match.group(3)) + 1


def detect(state: State) -> bool:
    return "s1.pathway0_stem.conv.weight" in state


def convert(state: State) -> dict:
    return {renamed(k, _RULES): v for k, v in state.items()}


def build_options(state: State) -> dict:
    non_local = any(".pathway0_nonlocal" in k for k in state)
    return {"stem": "caffe2", **({"pool_position": "before", "scale": True} if non_local else {})}


SOURCE = WeightsSource(
    name="pyslowfast",
    title="PySlowFast .pyth (s1.pathway0_stem.conv, s2.pathway0_res0.branch2.a, head.projection)",
    detect=detect,
    convert=convert,
    build_options=build_options,
    alternatives=caffe2.SOURCE.alternatives,
    preprocessing=caffe2.SOURCE.preprocessing,
)
