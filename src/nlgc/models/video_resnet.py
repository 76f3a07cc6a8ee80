"""C2D and I3D ResNets for video, the Non-local paper's Table 1 backbones.

C2D ResNet-50 on a (B, 3, 32, 224, 224) clip:

=======  ============================================  ==============
stage    layer                                         output T×H×W
=======  ============================================  ==============
conv1    1×7×7, 64, stride (2, 2, 2)                   16×112×112
pool1    3×3×3 max, stride (2, 2, 2)                   8×56×56
res2     3 bottlenecks [1×1, 1×3×3, 1×1] × 256          8×56×56
pool2    3×1×1 max, stride (2, 1, 1)                   4×56×56
res3     4 bottlenecks, 512                            4×28×28
res4     6 bottlenecks, 1024                           4×14×14
res5     3 bottlenecks, 2048                           4×7×7
         global average pool, dropout 0.5, fc          1×1×1
=======  ============================================  ==============

All C2D kernels are 1×k×k. I3D inflates conv1 to 5×7×7 and one kernel in every other residual
block: the first 1×1 to 3×1×1 (``inflate_style="3x1x1"``) or the 3×3 to 3×3×3 (``"3x3x3"``). With
``stem_temporal_stride=1`` (the official code's 8-frame models) conv1 and pool1 (1×3×3) keep the
frame count, so 8 input frames give the same res2…res5 sizes as 32 frames with stride 2.

The stem's pooling follows one source, chosen with ``stem``: ``"paper"`` (the table above: pool1
3×3×3 and pool2 3×1×1, both padded), ``"mmaction2"`` (mmaction2's ResNet3d,
``mmaction/models/backbones/resnet3d.py``: pool1 1×3×3 with stride (t, 2, 2) and padding
(0, 1, 1), pool2 2×1×1 with stride 2 and no padding) or ``"caffe2"`` (the official models of
video-nonlocal-net: 32×2, ``lib/models/resnet_video_org.py``, pool1 2×3×3 with stride 2 and no
padding, so 224 pixels give 55 after pool1; 8×8 with ``stem_temporal_stride=1``,
``lib/models/resnet_video.py``, pool1 1×3×3 with stride (1, 2, 2), unpadded; pool2 2×1×1 with
stride 2 in both), or ``"mmaction2_c2d"`` (mmaction2's separate ``C2D`` class, ``c2d.py``: 2D
convolutions frame by frame, so ``stem_temporal_stride=1``, then an unpadded 1×3×3 pool1 with
stride (1, 2, 2) and a 2×1×1 pool2), the networks those sources' released weights were trained
in. Everything else (conv1, residual blocks, NL placement after the block's ReLU) is the same.

Module names are the 2D ResNet's (``conv1``, ``bn1``, ``layer1``…``layer4``, ``conv1..3``,
``bn1..3``, ``downsample.0/.1``, ``fc``), so a 2D checkpoint maps onto them key by key
(:func:`nlgc.models.weights.inflate_weights`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nlgc.checks import check_choice
from nlgc.models.plan import Plan
from nlgc.models.resnet import Bottleneck, ResNetBase


@dataclass(frozen=True)
class VideoStem:
    """The pooling of a video stem: pool1 (time kernel and padding for each conv1 temporal
    stride the stem allows, 3×3 in space with stride 2) and pool2 after res2 (time kernel and
    padding, stride 2 in time only)."""

    pool1_time: dict[int, tuple[int, int]]  # stem temporal stride → (time kernel, time padding)
    pool1_space_padding: int
    pool2_time: tuple[int, int]  # (time kernel, time padding)
    note: str = ""  # why a stride is refused

    def pools(self, stride: int) -> tuple[nn.Module, nn.Module]:
        kernel, padding = self.pool1_time[stride]
        space = self.pool1_space_padding
        pool1 = nn.MaxPool3d((kernel, 3, 3), (stride, 2, 2), (padding, space, space))
        kernel, padding = self.pool2_time
        return pool1, nn.MaxPool3d((kernel, 1, 1), (2, 1, 1), (padding, 0, 0))


# Each row is one source's stem (see the module docstring for where it is read from).
STEMS = {
    "paper": VideoStem({2: (3, 1), 1: (1, 0)}, 1, (3, 1)),
    "mmaction2": VideoStem({2: (1, 0), 1: (1, 0)}, 1, (2, 0)),
    "mmaction2_c2d": VideoStem(
        {1: (1, 0)}, 0, (2, 0), "it convolves frame by frame: use stem_temporal_stride=1"
    ),
    "caffe2": VideoStem({2: (2, 0), 1: (1, 0)}, 0, (2, 0)),
}
BASE_WIDTH = 64  # conv1 and res2; each later stage doubles it


class Bottleneck3d(Bottleneck):
    """A Bottleneck with 3D kernels: 1×1×1 (or 3×1×1) → 1×3×3 (or 3×3×3) → 1×1×1.

    The forward pass, the insertion positions and the module names are the 2D Bottleneck's.
    """

    dim = 3


# residual blocks per stage of the video ResNets, and I3D's inflation (the Non-local paper,
# Table 1: one kernel inflated in every other residual block; 1 inflates, 0 does not)
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
I3D_INFLATE = {
    50: ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)),
    101: ((1, 1, 1), (1, 0, 1, 0), tuple(1 - i % 2 for i in range(23)), (0, 1, 0)),
}


class VideoResNet(ResNetBase):
    """C2D / I3D ResNet for clips, optionally with context blocks placed by a Plan.

    Args:
        layers: residual blocks per stage, (3, 4, 6, 3) for R50 and (3, 4, 23, 3) for R101.
        inflate: per stage, per residual block, 1 to inflate one kernel (I3D), 0 not; None for
            C2D (nothing inflated, conv1 1×7×7).
        inflate_style: ``"3x1x1"`` (inflate the first 1×1) or ``"3x3x3"`` (inflate the 3×3).
        num_classes: size of ``fc`` (400 for Kinetics).
        stem_temporal_stride: 2 (32-frame input: conv1 and 3×3×3 pool1 halve T) or 1 (8-frame
            input: conv1 and a 1×3×3 pool1 keep T).
        stem: ``"paper"`` (default), ``"mmaction2"``, ``"mmaction2_c2d"`` or ``"caffe2"``: whose
            pool1/pool2 (see the module's docstring), to run that source's checkpoints as they
            were trained.
        plan: context blocks (built with ``dim=3``).
        dropout: before ``fc``, as in the paper (0.5).
        features_only, out_indices, in_channels: as for the 2D ResNet.

    Shape:
        - Input: (B, in_channels, T, H, W), any T, H, W (fully convolutional).
        - Output: (B, num_classes), or with ``features_only`` a list of (B, C_i, T_i, H_i, W_i).
    """

    def __init__(
        self,
        layers: Sequence[int],
        inflate: Sequence[Sequence[int]] | None = None,
        inflate_style: str = "3x1x1",
        num_classes: int = 400,
        stem_temporal_stride: int = 2,
        stem: str = "paper",
        plan: Plan | None = None,
        dropout: float = 0.5,
        features_only: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        in_channels: int = 3,
    ):
        super().__init__()
        if inflate_style not in ("3x1x1", "3x3x3"):
            raise ValueError(f"inflate_style must be '3x1x1' or '3x3x3', got {inflate_style!r}")
        if stem_temporal_stride not in (1, 2):
            raise ValueError(f"stem_temporal_stride must be 1 or 2, got {stem_temporal_stride}")
        inflate = inflate or [[0] * n for n in layers]
        if [len(i) for i in inflate] != list(layers):
            raise ValueError(f"inflate must give one 0/1 per residual block of {tuple(layers)}")
        self._set_outputs(features_only, out_indices, Bottleneck3d.expansion)
        self.inflate, self.inflate_style = [list(i) for i in inflate], inflate_style

        t = 5 if any(any(i) for i in inflate) else 1  # I3D inflates conv1 to 5×7×7
        s = stem_temporal_stride
        self.stem = check_choice("stem", stem, STEMS)
        if s not in STEMS[stem].pool1_time:
            raise ValueError(
                f"stem={stem!r} takes stem_temporal_stride in {tuple(STEMS[stem].pool1_time)}, "
                f"got {s}" + (f" ({STEMS[stem].note})" if STEMS[stem].note else "")
            )
        base = BASE_WIDTH
        self.conv1 = nn.Conv3d(in_channels, base, (t, 7, 7), (s, 2, 2), (t // 2, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool, self.pool2 = STEMS[stem].pools(s)
        self.inplanes = base
        for index, (depth, inflated) in enumerate(zip(layers, inflate, strict=True)):
            stride = 1 if index == 0 else 2
            setattr(
                self,
                f"layer{index + 1}",
                self._make_layer(base * 2**index, depth, stride, inflated),
            )
        if not features_only:
            self.avgpool = nn.AdaptiveAvgPool3d(1)
            self.dropout = nn.Dropout(dropout)
            self.fc = nn.Linear(self.inplanes, num_classes)
        self._finish(plan, dim=3)

    def _make_layer(self, planes, blocks, stride, inflate) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck3d.expansion:
            downsample = nn.Sequential(
                nn.Conv3d(
                    self.inplanes,
                    planes * Bottleneck3d.expansion,
                    1,
                    (1, stride, stride),
                    bias=False,
                ),
                nn.BatchNorm3d(planes * Bottleneck3d.expansion),
            )
        layers = []
        for index in range(blocks):
            style = self.inflate_style if inflate[index] else "none"
            layers.append(
                Bottleneck3d(
                    self.inplanes,
                    planes,
                    stride if index == 0 else 1,
                    downsample if index == 0 else None,
                    inflate=style,
                )
            )
            self.inplanes = planes * Bottleneck3d.expansion
        return nn.Sequential(*layers)

    def _between_stages(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self.pool2(x) if index == 0 else x  # halve T after res2

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))  # (B, num_classes)
