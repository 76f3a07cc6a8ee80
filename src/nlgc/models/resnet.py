"""2D ResNet / ResNeXt with torchvision's state-dict layout and places for context blocks.

Module names are torchvision's (``conv1``, ``bn1``, ``layer1``…``layer4``, ``conv1..3``,
``bn1..3``, ``downsample.0/.1``, ``fc``), so torchvision and timm ResNet checkpoints load with no
renaming. Blocks from a :class:`~nlgc.models.plan.Plan` become extra submodules of the residual
blocks (``layer3.5.context_block``, …), as in mmdetection's GCNet checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from nlgc.checks import check_choice
from nlgc.models.plan import STAGES, InsertionPoints, Plan, apply_plan


class BasicBlock(InsertionPoints, nn.Module):
    """ResNet-18/34 residual block: 3×3 → 3×3, expansion 1."""

    expansion = 1
    positions = ("after_conv1", "after_conv3", "after_add", "after_block")

    def __init__(
        self,
        inplanes,
        planes,
        stride=1,
        downsample=None,
        groups=1,
        base_width=64,
        activation: type[nn.Module] = nn.ReLU,
        dilation: int = 1,
    ):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and width_per_group=64")
        # dilated in conv1 only, as mmsegmentation's BasicBlock
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = activation(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self._init_insertions()

    def channels_at(self, position: str) -> int:
        return self.conv1.out_channels if position == "after_conv1" else self.conv2.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self._run("after_conv1", self.relu(self.bn1(self.conv1(x))))
        out = self._run_then_add("after_conv3", self.bn2(self.conv2(out)), identity)  # last BN
        out = self._run("after_add", out)
        return self._run("after_block", self.relu(out))


def block_conv(
    dim: int,
    inplanes: int,
    planes: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    time: int = 1,
    dilation: int = 1,
) -> nn.Module:
    """The residual blocks' convolution: k×k (2D, ``dilation`` apart) or time×k×k (3D, strided
    in space only), padded to keep the size, no bias (a BN follows)."""
    if dim == 2:
        padding = dilation * (kernel // 2)
        return nn.Conv2d(
            inplanes, planes, kernel, stride, padding, dilation, groups=groups, bias=False
        )
    return nn.Conv3d(
        inplanes,
        planes,
        (time, kernel, kernel),
        (1, stride, stride),
        (time // 2, kernel // 2, kernel // 2),
        groups=groups,
        bias=False,
    )


class Bottleneck(InsertionPoints, nn.Module):
    """ResNet-50+ residual block: 1×1 → 3×3 (stride, groups, dilation) → 1×1, expansion 4
    (ResNet v1.5); ``activation`` ReLU (torchvision) or SiLU (timm's "ts" byobnets).

    ``dim`` (class attribute) is 2 here and 3 in :class:`~nlgc.models.video_resnet.Bottleneck3d`,
    whose ``inflate`` gives conv1 (``"3x1x1"``) or conv2 (``"3x3x3"``) a temporal size of 3.
    """

    expansion = 4
    dim = 2
    positions = ("after_conv1", "after_conv2", "after_conv3", "after_add", "after_block")

    def __init__(
        self,
        inplanes,
        planes,
        stride=1,
        downsample=None,
        groups=1,
        base_width=64,
        inflate="none",
        activation: type[nn.Module] = nn.ReLU,
        dilation: int = 1,
    ):
        super().__init__()
        check_choice("inflate", inflate, ("none", "3x1x1", "3x3x3") if self.dim == 3 else ("none",))
        if dilation != 1 and self.dim == 3:
            raise ValueError("dilation applies to 2D residual blocks only")
        width = int(planes * (base_width / 64.0)) * groups
        dim, norm = self.dim, (nn.BatchNorm2d, nn.BatchNorm3d)[self.dim - 2]
        self.conv1 = block_conv(dim, inplanes, width, 1, time=3 if inflate == "3x1x1" else 1)
        self.bn1 = norm(width)
        time = 3 if inflate == "3x3x3" else 1
        self.conv2 = block_conv(dim, width, width, 3, stride, groups, time, dilation)
        self.bn2 = norm(width)
        self.conv3 = block_conv(dim, width, planes * self.expansion, 1)
        self.bn3 = norm(planes * self.expansion)
        self.relu = activation(inplace=True)  # named relu in every network (no tensors)
        self.downsample = downsample
        self._init_insertions()

    def channels_at(self, position: str) -> int:
        if position in ("after_conv1", "after_conv2"):
            return self.conv1.out_channels
        return self.conv3.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self._run("after_conv1", self.relu(self.bn1(self.conv1(x))))
        out = self._run("after_conv2", self.relu(self.bn2(self.conv2(out))))
        out = self._run_then_add("after_conv3", self.bn3(self.conv3(out)), identity)
        out = self._run("after_add", out)
        return self._run("after_block", self.relu(out))


class ResNetBase(nn.Module):
    """What the 2D and video ResNets share: stage access, outputs, init and the forward pass.

    Subclasses build ``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1``…``layer4`` (or fewer, and
    ``avgpool``/``fc`` unless ``features_only``), calling ``_set_outputs`` first and
    ``_finish(plan, dim)`` last.
    """

    def _set_outputs(
        self,
        features_only: bool,
        out_indices: Sequence[int],
        expansion: int,
        base: int = 64,
        num_stages: int = 4,
        widths: Sequence[int] | None = None,
        strides: Sequence[int] = (1, 2, 2, 2),
    ):
        out_indices = tuple(out_indices)
        if not out_indices or any(i not in range(num_stages) for i in out_indices):
            raise ValueError(
                f"out_indices must be a subset of {tuple(range(num_stages))}, got {out_indices}"
            )
        self.features_only, self.out_indices = features_only, out_indices
        self.feature_info = [
            {
                "stage": stage,
                "module": f"layer{i + 1}",
                "channels": widths[i] if widths else base * 2**i * expansion,
                "stride": 4 * math.prod(strides[: i + 1]),
            }
            for i, stage in enumerate(STAGES)
            if i in out_indices
        ]

    def _finish(self, plan: Plan | None, dim: int) -> None:
        """torchvision's initialisation of the backbone, then the plan's blocks (which keep
        their own identity initialisation)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.plan = plan or Plan()
        apply_plan(self.stages(), self.plan, dim=dim)

    def stages(self) -> dict[str, nn.Sequential]:
        """c2…c5 → layer1…layer4 (the stages the network has)."""
        layers = (getattr(self, f"layer{i}", None) for i in range(1, 5))
        return {s: layer for s, layer in zip(STAGES, layers, strict=True) if layer is not None}

    def _between_stages(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return x

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_conv(x) if hasattr(self, "final_conv") else x  # timm's num_features
        return self.fc(torch.flatten(self.avgpool(x), 1))  # (B, num_classes)

    def forward(self, x: torch.Tensor):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # stride 4 in space
        features = []
        for index, layer in enumerate(self.stages().values()):
            x = layer(x)  # (B, C_i, [T_i,] H/s_i, W/s_i)
            if self.features_only and index in self.out_indices:
                features.append(x)
            x = self._between_stages(index, x)
        return features if self.features_only else self._logits(x)


class ResNet(ResNetBase):
    """ResNet / ResNeXt for images, optionally with context blocks placed by a Plan.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: residual blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50; fewer than 4
            entries build only the first stages (``(1, 1)``: c2 and c3, stride 8, the demo's
            network with a 51-pixel receptive field).
        num_classes: size of ``fc``.
        groups, width_per_group: ResNeXt cardinality and width (32, 4 for 32×4d).
        plan: where context blocks go (default: none, the plain ResNet).
        features_only: return the feature maps of ``out_indices`` instead of logits, with no
            ``avgpool``/``fc`` (for an FPN in a detection framework).
        out_indices: which of c2…c5 (0…3, mmdetection's convention) ``features_only`` returns;
            default all.
        in_channels: input image channels.
        base_channels: width of the stem and of c2 (64 in every standard ResNet; smaller for
            quick experiments, e.g. 16 in the demo's ``tiny_resnet``).
        stem: ``"torchvision"`` (7×7 conv, stride 2, then a 3×3 max pool), ``"deep"``
            (mmsegmentation's ResNetV1c: 3×3 convs of 1/2, 1/2 and 1 × base channels with
            strides 2, 1, 1, then the max pool; ``conv1`` a Sequential as for the tiered stems),
            ``"tiered"``
            (timm's "T" ResNets, byobnet ``stem_type="tiered"``, ``stem_pool=""``: 3×3 convs of
            3/8, 1/2 and 1 × base channels with strides 2, 1, 2 and no max pool; ``conv1`` is
            then a Sequential of those convs and the first two BN + activation) or
            ``"tiered_maxpool"`` (byobnet's ``stem_pool="maxpool"``: strides 2, 1, 1, then a
            3×3 max pool with stride 2).
        widths: output channels of each stage; default base_channels · 2^i · expansion
            (timm's ``gcresnet33ts``: 256, 512, 1536, 1536).
        group_size: channels per group of the 3×3 convolutions (timm's ``gs=32``; groups =
            width / group_size in each stage), instead of ``groups``/``width_per_group``.
        activation: ``"relu"`` or ``"silu"`` (timm's "ts" networks), in the stem and blocks.
        head_channels: a 1×1 conv + BN + activation to this width before the pooling (timm's
            ``num_features``, module ``final_conv``); default none.
        strides, dilations: per stage (c2…c5), the first residual block's stride and the 3×3
            convolutions' dilation; default (1, 2, 2, 2) and (1, 1, 1, 1). Output stride 8:
            ``strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)``; 16: ``(1, 2, 2, 1), (1, 1, 1, 2)``
            (mmsegmentation's ``*_d8`` / ``*_d16`` models).
        contract_dilation: the first block of a dilated stage uses half the dilation
            (mmsegmentation's ``contract_dilation=True``; torchvision's
            ``replace_stride_with_dilation`` does the same).

    Shape:
        - Input: (B, in_channels, H, W).
        - Output: (B, num_classes), or with ``features_only`` a list of (B, C_i, H/s_i, W/s_i)
          with the channels and strides listed in ``feature_info``.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        num_classes: int = 1000,
        groups: int = 1,
        width_per_group: int = 64,
        plan: Plan | None = None,
        features_only: bool = False,
        out_indices: Sequence[int] | None = None,
        in_channels: int = 3,
        base_channels: int = 64,
        stem: str = "torchvision",
        widths: Sequence[int] | None = None,
        group_size: int | None = None,
        activation: str = "relu",
        head_channels: int | None = None,
        strides: Sequence[int] | None = None,
        dilations: Sequence[int] | None = None,
        contract_dilation: bool = False,
    ):
        super().__init__()
        if not 1 <= len(layers) <= 4:
            raise ValueError(f"layers must give 1 to 4 stage depths, got {layers!r}")
        if widths is not None and len(widths) != len(layers):
            raise ValueError(f"widths must give one width per stage {layers!r}, got {widths!r}")
        strides = tuple(strides or (1, 2, 2, 2)[: len(layers)])
        dilations = tuple(dilations or (1,) * len(layers))
        for name, values in (("strides", strides), ("dilations", dilations)):
            if len(values) != len(layers) or not all(isinstance(v, int) and v >= 1 for v in values):
                raise ValueError(
                    f"{name} must give one positive int per stage {tuple(layers)}, got {values}"
                )
        if out_indices is None:
            out_indices = range(len(layers))
        self._set_outputs(
            features_only, out_indices, block.expansion, base_channels, len(layers), widths, strides
        )
        self.groups, self.base_width, self.group_size = groups, width_per_group, group_size
        self.activation = {"relu": nn.ReLU, "silu": nn.SiLU}[
            check_choice("activation", activation, ("relu", "silu"))
        ]
        self.inplanes = base = base_channels
        self.stem = check_choice("stem", stem, ("torchvision", "deep", "tiered", "tiered_maxpool"))
        if stem != "torchvision":
            self.conv1 = self._three_conv_stem(in_channels, base, stem)
        else:
            self.conv1 = nn.Conv2d(in_channels, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = self.activation(inplace=True)
        # registered in the order forward runs them (torchvision's IntermediateLayerGetter
        # runs a backbone's children in order: the detectors' body)
        self.maxpool = nn.Identity() if stem == "tiered" else nn.MaxPool2d(3, 2, 1)
        stages = zip(layers, strides, dilations, strict=True)
        for index, (depth, stride, dilation) in enumerate(stages):
            planes = widths[index] // block.expansion if widths else base * 2**index
            first = dilation // 2 if contract_dilation and dilation > 1 else dilation
            layer = self._make_layer(block, planes, depth, stride, (first, dilation))
            setattr(self, f"layer{index + 1}", layer)
        if not features_only:
            if head_channels:
                self.final_conv = nn.Sequential(
                    nn.Conv2d(self.inplanes, head_channels, 1, bias=False),
                    nn.BatchNorm2d(head_channels),
                    self.activation(inplace=True),
                )
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(head_channels or self.inplanes, num_classes)
        self._finish(plan, dim=2)

    def _three_conv_stem(self, in_channels: int, base: int, stem: str) -> nn.Sequential:
        """Three 3×3 convolutions (the last one's BN is ``bn1``): timm's tiered stems (3/8 and
        1/2 of ``base``) and mmsegmentation's deep stem (1/2 and 1/2)."""
        widths = (base // 2, base // 2) if stem == "deep" else (3 * base // 8, base // 2)
        last_stride = 2 if stem == "tiered" else 1
        return nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 2, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            self.activation(inplace=True),
            nn.Conv2d(widths[0], widths[1], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[1]),
            self.activation(inplace=True),
            nn.Conv2d(widths[1], base, 3, last_stride, 1, bias=False),
        )

    def _grouping(self, planes: int) -> tuple[int, int]:
        """(groups, width_per_group) of a stage's 3×3 convolutions, from ``group_size`` if set:
        torchvision's width int(planes · w/64) · groups is then ``planes``."""
        if self.group_size is None:
            return self.groups, self.base_width
        groups = planes // self.group_size
        if planes % self.group_size or 64 % groups:
            raise ValueError(
                f"group_size={self.group_size} does not divide a stage width of {planes} into "
                "a number of groups that divides 64"
            )
        return groups, 64 // groups

    def _make_layer(
        self, block, planes: int, blocks: int, stride: int = 1, dilation: tuple[int, int] = (1, 1)
    ) -> nn.Sequential:
        """A stage: ``blocks`` residual blocks, the first with ``stride`` and ``dilation[0]``,
        the rest with ``dilation[1]``."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        groups, width = self._grouping(planes)
        kwargs = {"groups": groups, "base_width": width, "activation": self.activation}
        layers = [block(self.inplanes, planes, stride, downsample, dilation=dilation[0], **kwargs)]
        self.inplanes = planes * block.expansion
        layers += [
            block(self.inplanes, planes, dilation=dilation[1], **kwargs) for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)
