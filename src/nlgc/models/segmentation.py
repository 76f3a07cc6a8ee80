"""Semantic segmentation: mmsegmentation's FCN, NL, GC and DNL heads on dilated ResNets, built on
nlgc's own blocks and their fast paths.

A head (``mmseg/models/decode_heads/{fcn,nl,gc,dnl}_head.py``) takes the backbone's C5 map:
``convs[0]`` (3×3 conv → BN → ReLU) → the context block → ``convs[1]`` → with ``concat_input`` a
3×3 ``conv_cat`` of [input, output] → dropout → a 1×1 ``conv_seg`` to the classes. The FCN head
has no block; the auxiliary FCN head (on C4, one conv, no concatenation) trains with weight 0.4.
The module names are mmsegmentation's (``decode_head.convs.0.conv``, ``decode_head.nl_block``,
``auxiliary_head.conv_seg``), the blocks nlgc's: NL (C' = C / ``reduction``, 1/√C' where
mmcv applies it, W_z + BN), GC (``ratio``, ``pooling_type``, ``fusion_types``) and DNL
(``temperature``, W_z + BN on each term as mmsegmentation's ``DisentangledNonLocal2d``).

The backbone is the ResNetV1c of mmsegmentation's ``*_d8`` models: the deep 3×3 stem, strides
(1, 2, 1, 1) and dilations (1, 1, 2, 4) with ``contract_dilation`` (output stride 8).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nlgc.blocks import DisentangledNonLocal, GlobalContextBlock, NonLocalBlock
from nlgc.checks import check_choice
from nlgc.models.plan import Plan

_FUSIONS = {"channel_add": "add", "channel_mul": "mul"}


def conv_module(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    """mmcv's ConvModule with BN and ReLU: ``conv`` (no bias), ``bn``, ``activate``."""
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
    return nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(cout), activate=nn.ReLU(True)))


def _non_local(
    channels: int, reduction=2, use_scale=True, mode="embedded_gaussian", zero_init=True
):
    return "nl_block", NonLocalBlock(
        channels,
        pairwise=mode,
        reduction=reduction,
        scale=use_scale and mode == "embedded_gaussian",  # mmcv scales the embedded Gaussian
        norm="bn",
        zero_init=zero_init,
        init="paper",
    )


def _global_context(
    channels: int,
    ratio=1 / 4,
    pooling_type="att",
    fusion_types=("channel_add",),
    zero_init=True,
    mask_init="kaiming",
):
    fusion = tuple(_FUSIONS[check_choice("fusion_types", f, _FUSIONS)] for f in fusion_types)
    block = GlobalContextBlock(
        channels, ratio, pooling_type, fusion, mask_init=mask_init, zero_init=zero_init
    )
    return "gc_block", block


def _disentangled(channels: int, reduction=2, use_scale=True, temperature=0.05, zero_init=True):
    block = DisentangledNonLocal(
        channels,
        inter_channels=max(1, channels // reduction),
        temperature=temperature,
        scale=use_scale,
        combine="outputs",  # mmsegmentation: conv_out(pairwise) + conv_out(unary)
        zero_init=zero_init,
    )
    return "dnl_block", block


# head → its context block (None: the plain FCN head) and the block's options
BLOCKS = {"fcn": None, "nl": _non_local, "gc": _global_context, "dnl": _disentangled}


class DecodeHead(nn.Module):
    """mmsegmentation's FCNHead and its NL / GC / DNL heads (module docstring).

    Args:
        in_channels: of the backbone map it reads (``in_index``: 3 = C5, 2 = C4).
        channels: of its convolutions.
        num_classes: of ``conv_seg``.
        block: ``"fcn"`` (no block), ``"nl"``, ``"gc"`` or ``"dnl"``; ``block_options`` are its
            mmsegmentation arguments (``reduction``, ``use_scale``, ``mode``, ``ratio``,
            ``pooling_type``, ``fusion_types``, ``temperature``) and nlgc's ``zero_init`` (the
            identity start, mmcv's; default on) and, for GC, ``mask_init``.
        num_convs: 3×3 convolutions (2 around a block).
        concat_input: the 3×3 ``conv_cat`` of [input, convs' output].
        dropout_ratio: of the ``Dropout2d`` before ``conv_seg``.

    Shape: features (C2…C5 maps) → (B, num_classes, H/8, W/8) at output stride 8.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        in_index: int = 3,
        block: str = "fcn",
        num_convs: int = 2,
        concat_input: bool = True,
        dropout_ratio: float = 0.1,
        **block_options,
    ):
        super().__init__()
        check_choice("block", block, BLOCKS)
        if block != "fcn" and num_convs != 2:
            raise ValueError(f"the {block} head has num_convs=2 (a block between them)")
        self.in_index, self.concat_input = in_index, concat_input
        widths = [in_channels] + [channels] * num_convs
        self.convs = nn.Sequential(*(conv_module(a, b) for a, b in itertools.pairwise(widths)))
        self.block_name = None
        if BLOCKS[block] is not None:
            self.block_name, module = BLOCKS[block](channels, **block_options)
            self.add_module(self.block_name, module)
        elif block_options:
            raise ValueError(f"the FCN head has no block: unknown options {sorted(block_options)}")
        if concat_input:
            self.conv_cat = conv_module(in_channels + channels, channels)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[self.in_index]  # (B, C_in, h, w)
        out = self.convs[0](x)
        if self.block_name is not None:
            out = getattr(self, self.block_name)(out)
        for conv in self.convs[1:]:
            out = conv(out)
        if self.concat_input:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.conv_seg(self.dropout(out))  # (B, classes, h, w)


class EncoderDecoder(nn.Module):
    """mmsegmentation's EncoderDecoder: backbone → decode head, logits resized to the input.

    Shape: (B, 3, H, W) → (B, classes, H, W) (bilinear, ``align_corners``); in training
    (``model.train()``) with an auxiliary head, (logits, auxiliary logits).
    """

    def __init__(
        self,
        backbone: nn.Module,
        decode_head: DecodeHead,
        auxiliary_head: DecodeHead | None = None,
        align_corners: bool = False,
    ):
        super().__init__()
        self.backbone, self.decode_head = backbone, decode_head
        self.auxiliary_head, self.align_corners = auxiliary_head, align_corners

    def _resized(self, logits: torch.Tensor, size) -> torch.Tensor:
        return F.interpolate(logits, size, mode="bilinear", align_corners=self.align_corners)

    def forward(self, x: torch.Tensor):
        features = self.backbone(x)  # C2…C5
        logits = self._resized(self.decode_head(features), x.shape[-2:])
        if self.training and self.auxiliary_head is not None:
            return logits, self._resized(self.auxiliary_head(features), x.shape[-2:])
        return logits


@dataclass(frozen=True)
class SegmentorArchitecture:
    """A segmentor over a backbone :class:`~nlgc.models.registry.Architecture`, registered like
    any architecture (``build(plan, num_classes, **options)``: the plan's blocks go into the
    backbone). Options: the backbone's, the head's (``channels``, ``dropout_ratio``, its
    block's), ``auxiliary`` (the FCN head on the map before, default on) and ``align_corners``.
    The decode head reads the backbone's map ``decode_index`` (3: C5, as mmsegmentation)."""

    head: str
    backbone: object
    title: str
    decode_index: int = 3
    num_classes: int = 19  # Cityscapes
    modality: str = "image"
    task: str = "segmentation"

    def option_names(self) -> tuple[str, ...]:
        backbone = self.backbone.feature_option_names()
        block = {
            "fcn": ("num_convs", "concat_input"),
            "nl": ("reduction", "use_scale", "mode", "zero_init"),
            "gc": ("ratio", "pooling_type", "fusion_types", "zero_init", "mask_init"),
            "dnl": ("reduction", "use_scale", "temperature", "zero_init"),
        }[self.head]
        return (*backbone, "channels", "dropout_ratio", *block, "auxiliary", "align_corners")

    def build(self, plan: Plan, num_classes: int, **options) -> EncoderDecoder:
        backbone, head = self.backbone.build_features(plan, options)
        auxiliary, align_corners = head.pop("auxiliary", True), head.pop("align_corners", False)
        index = self.decode_index
        c4, c5 = (backbone.feature_info[i]["channels"] for i in (index - 1, index))
        decode = DecodeHead(c5, head.pop("channels", 512), num_classes, index, self.head, **head)
        aux = (
            DecodeHead(c4, 256, num_classes, index - 1, "fcn", 1, False, 0.1) if auxiliary else None
        )
        return EncoderDecoder(backbone, decode, aux, align_corners)
