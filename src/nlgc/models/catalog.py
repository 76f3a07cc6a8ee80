"""Every named model: the architectures, the variants (which blocks go where) and the rows.

A name reads ``<variant>_<architecture>`` (``gc_r4_resnet50``: GC blocks with r = 1/4 in
ResNet-50). Adding a model is one row of :data:`MODELS`; ``nlgc models`` lists them with their
lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from nlgc.models.detection import DetectorArchitecture
from nlgc.models.plan import STAGES, Insertion, Plan
from nlgc.models.registry import Architecture, register
from nlgc.models.resnet import BasicBlock, Bottleneck, ResNet
from nlgc.models.segmentation import SegmentorArchitecture
from nlgc.models.video_resnet import DEPTHS, I3D_INFLATE, VideoResNet


@dataclass(frozen=True)
class Variant:
    """Which blocks go where, and one line saying so; ``only_for``: see
    :func:`~nlgc.models.registry.register`."""

    plan: Plan
    text: str
    only_for: str | None = None


def _resnet(title: str, block, layers, **defaults) -> Architecture:
    return Architecture(ResNet, title, {"block": block, "layers": layers, **defaults})


def _video(title: str, depth: int, inflate_style: str | None = None) -> Architecture:
    inflate = {"inflate": I3D_INFLATE[depth], "inflate_style": inflate_style}
    return Architecture(
        VideoResNet,
        title,
        {"layers": DEPTHS[depth], **(inflate if inflate_style else {})},
        num_classes=400,
        modality="video",
        task="video",
    )


RESNET18 = _resnet("ResNet-18", BasicBlock, (2, 2, 2, 2))
RESNET34 = _resnet("ResNet-34", BasicBlock, (3, 4, 6, 3))
RESNET50 = _resnet("ResNet-50", Bottleneck, (3, 4, 6, 3))
RESNET101 = _resnet("ResNet-101", Bottleneck, (3, 4, 23, 3))
RESNET50T = _resnet(
    "ResNet-50-T (timm byobnet: tiered 24-32-64 3×3 stem, no max pool)",
    Bottleneck,
    (3, 4, 6, 3),
    stem="tiered",
)
_TS = {"activation": "silu", "stem": "tiered_maxpool", "group_size": 32}  # timm byobnet "ts"
RESNEXT26TS = _resnet(
    "ResNeXt-26-TS (timm byobnet: tiered stem + max pool, SiLU, 3×3 group size 32)",
    Bottleneck,
    (2, 2, 2, 2),
    **_TS,
)
RESNEXT50TS = _resnet(
    "ResNeXt-50-TS (timm byobnet: tiered stem + max pool, SiLU, 3×3 group size 32)",
    Bottleneck,
    (3, 4, 6, 3),
    **_TS,
)
RESNET33TS = _resnet(
    "ResNet-33-TS (timm byobnet: tiered stem, SiLU, widths 256-512-1536-1536, 1280-wide 1×1 "
    "head conv)",
    Bottleneck,
    (2, 3, 3, 2),
    stem="tiered",
    activation="silu",
    widths=(256, 512, 1536, 1536),
    head_channels=1280,
)
RESNET152 = _resnet("ResNet-152", Bottleneck, (3, 8, 36, 3))
RESNEXT50 = _resnet("ResNeXt-50 32×4d", Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4)
RESNEXT101 = _resnet("ResNeXt-101 32×4d", Bottleneck, (3, 4, 23, 3), groups=32, width_per_group=4)
# one BasicBlock per stage, 16–128 channels: for CPU demos and quick experiments
TINY = _resnet("tiny ResNet", BasicBlock, (1, 1, 1, 1), base_channels=16)
# two stages (c2, c3: stride 8, receptive field 51 px), 16–32 channels: the demo's network, which
# cannot relate objects more than 51 px apart without a context block
DEMO = _resnet("two-stage demo ResNet", BasicBlock, (1, 1), base_channels=16)
C2D50 = _video("C2D ResNet-50 (video)", 50)
I3D50 = _video("I3D 3×1×1 ResNet-50 (video)", 50, "3x1x1")
I3D333_50 = _video("I3D 3×3×3 ResNet-50 (video)", 50, "3x3x3")
C2D101 = _video("C2D ResNet-101 (video)", 101)
I3D101 = _video("I3D 3×1×1 ResNet-101 (video)", 101, "3x1x1")
I3D333_101 = _video("I3D 3×3×3 ResNet-101 (video)", 101, "3x3x3")

_C3_C5 = ("c3", "c4", "c5")
# mmaction2's non-local I3D settings: embedded Gaussian, pooling after φ/g, no 1/√d scale, BN.
_NL_VIDEO = {"sub_sample": True}
PLAIN = Variant(Plan(), "no context blocks, torchvision layout")
GC = Variant(
    Plan((Insertion("gc", _C3_C5, options={"ratio": 1 / 16}),)),
    "GC blocks (r=1/16, att pooling, add fusion) after conv3 of every bottleneck of c3–c5 "
    "(GCNet's default)",
)
GC_TIMM = Variant(
    Plan(
        (
            Insertion(
                "gc",
                STAGES,
                position="after_conv2",
                options={"ratio": 1 / 8, "layer_norm_eps": 1e-6},
            ),
        )
    ),
    "GC blocks (timm 'gca': att pooling, add fusion, r=1/8, LayerNorm ε=1e-6) after the 3×3 "
    "conv of every bottleneck of c2–c5 (timm's gcresnet50t)",
)
GC_R4 = Variant(
    Plan((Insertion("gc", _C3_C5, options={"ratio": 1 / 4}),)),
    "GC blocks with r=1/4 in every residual block of c3–c5 (GCNet)",
)
NL = Variant(
    Plan((Insertion("nl", ("c4",), "before_last"),)),
    "one embedded-Gaussian non-local block in c4, right before its last residual block "
    "(the Non-local paper's COCO setting)",
)
DNL = Variant(
    Plan((Insertion("dnl", ("c4",), "before_last"),)),
    "one disentangled non-local block at the NL position in c4 (DNL)",
)
SNL = Variant(
    Plan((Insertion("snl", ("c4",), "before_last"),)),
    "one simplified non-local block at the NL position in c4 (GCNet)",
)
SNL_C3C5 = Variant(
    Plan((Insertion("snl", _C3_C5, position="after_conv3"),)),
    "SNL blocks after conv3 of every bottleneck of c3–c5, where GCNet puts GC blocks (the "
    "all-SNL row GCNet did not report)",
)
SE = Variant(
    Plan((Insertion("se", STAGES, options={"ratio": 1 / 16}),)),
    "SE (r=1/16) after conv3 of every residual block (SE-ResNet)",
)
NL_AFTER_C3 = Variant(  # 8×8 positions at 64×64 input
    Plan((Insertion("nl", ("c3",), (0,)),)), "an embedded-Gaussian NL block after c3"
)
SNL_AFTER_C3 = Variant(Plan((Insertion("snl", ("c3",), (0,)),)), "an SNL block after c3")
# the demo's context blocks: all in c3's residual block, between its two 3×3 convolutions
_MID_C3 = {"stages": ("c3",), "indices": (0,), "position": "after_conv1"}
NL_MID_C3 = Variant(
    Plan((Insertion("nl", **_MID_C3),)), "an embedded-Gaussian NL block inside c3's block"
)
DNL_MID_C3 = Variant(
    Plan((Insertion("dnl", **_MID_C3),)), "a disentangled non-local block inside c3's block"
)
SNL_MID_C3 = Variant(Plan((Insertion("snl", **_MID_C3),)), "an SNL block inside c3's block")
GC_MID_C3 = Variant(
    Plan((Insertion("gc", **_MID_C3, options={"ratio": 1 / 4}),)),
    "a GC block (r=1/4) inside c3's block",
)
NL1_VIDEO = Variant(
    Plan((Insertion("nl", ("c4",), "before_last", options=_NL_VIDEO),)),
    "1 non-local block before the last of res4",
)
NL5_VIDEO_50 = Variant(
    Plan(
        (
            Insertion("nl", ("c3",), (1, 3), options=_NL_VIDEO),
            Insertion("nl", ("c4",), (1, 3, 5), options=_NL_VIDEO),
        )
    ),
    "5 non-local blocks (res3 {1, 3}, res4 {1, 3, 5})",
)
NL5_VIDEO_101 = Variant(
    Plan(
        (
            Insertion("nl", ("c3",), (1, 3), options=_NL_VIDEO),
            Insertion("nl", ("c4",), (6, 13, 20), options=_NL_VIDEO),
        )
    ),
    "5 non-local blocks (res3 {1, 3}, res4 {6, 13, 20})",
)
NL10_VIDEO_50 = Variant(
    Plan((Insertion("nl", ("c3", "c4"), "all", options=_NL_VIDEO),)),
    "10 non-local blocks (every residual block of res3 and res4)",
)
NL5_GROUPED_VIDEO_50 = Variant(
    Plan(
        (
            Insertion("nl", ("c3",), (1, 3), options={**_NL_VIDEO, "temporal_group": 4}),
            Insertion("nl", ("c4",), (1, 3, 5), options=_NL_VIDEO),
        )
    ),
    "5 non-local blocks (res3 {1, 3} attending within groups of 4 frames, res4 {1, 3, 5}): the "
    "official Caffe2 'affine' 32×4 and 128×1 models (res_stage_nonlocal_group)",
    only_for="caffe2_affine",
)
GC_VIDEO = Variant(GC.plan, "3D GC blocks in every bottleneck of res3–res5")

# Every named model: (name, architecture, variant). `nlgc models` lists them with their lines.
MODELS = [
    ("resnet18", RESNET18, PLAIN),
    ("resnet34", RESNET34, PLAIN),
    ("resnet50", RESNET50, PLAIN),
    ("resnet101", RESNET101, PLAIN),
    ("resnet152", RESNET152, PLAIN),
    ("resnext50_32x4d", RESNEXT50, PLAIN),
    ("resnext101_32x4d", RESNEXT101, PLAIN),
    ("gc_resnet50", RESNET50, GC),
    ("gc_r4_resnet50", RESNET50, GC_R4),
    ("gc_resnet50t", RESNET50T, GC_TIMM),
    ("gc_resnext26ts", RESNEXT26TS, GC_TIMM),
    ("gc_resnext50ts", RESNEXT50TS, GC_TIMM),
    ("gc_resnet33ts", RESNET33TS, GC_TIMM),
    ("nl_resnet50", RESNET50, NL),
    ("dnl_resnet50", RESNET50, DNL),
    ("snl_resnet50", RESNET50, SNL),
    ("snl_c3c5_resnet50", RESNET50, SNL_C3C5),
    ("se_resnet50", RESNET50, SE),
    ("gc_resnet101", RESNET101, GC),
    ("gc_r4_resnet101", RESNET101, GC_R4),
    ("nl_resnet101", RESNET101, NL),
    ("snl_resnet101", RESNET101, SNL),
    ("snl_c3c5_resnet101", RESNET101, SNL_C3C5),
    ("se_resnet101", RESNET101, SE),
    ("gc_resnext101_32x4d", RESNEXT101, GC),
    ("gc_r4_resnext101_32x4d", RESNEXT101, GC_R4),
    ("nl_resnext101_32x4d", RESNEXT101, NL),
    ("snl_resnext101_32x4d", RESNEXT101, SNL),
    ("snl_c3c5_resnext101_32x4d", RESNEXT101, SNL_C3C5),
    ("se_resnext101_32x4d", RESNEXT101, SE),
    ("tiny_resnet", TINY, PLAIN),
    ("nl_tiny_resnet", TINY, NL_AFTER_C3),
    ("snl_tiny_resnet", TINY, SNL_AFTER_C3),
    ("gc_tiny_resnet", TINY, GC_R4),
    ("demo_resnet", DEMO, PLAIN),
    ("nl_demo_resnet", DEMO, NL_MID_C3),
    ("dnl_demo_resnet", DEMO, DNL_MID_C3),
    ("snl_demo_resnet", DEMO, SNL_MID_C3),
    ("gc_demo_resnet", DEMO, GC_MID_C3),
    ("c2d_resnet50", C2D50, PLAIN),
    ("nl_c2d_resnet50", C2D50, NL5_VIDEO_50),
    ("nl1_c2d_resnet50", C2D50, NL1_VIDEO),
    ("nl10_c2d_resnet50", C2D50, NL10_VIDEO_50),
    ("gc_c2d_resnet50", C2D50, GC_VIDEO),
    ("i3d_resnet50", I3D50, PLAIN),
    ("nl_i3d_resnet50", I3D50, NL5_VIDEO_50),
    ("nl_grouped_i3d_resnet50", I3D50, NL5_GROUPED_VIDEO_50),
    ("nl1_i3d_resnet50", I3D50, NL1_VIDEO),
    ("nl10_i3d_resnet50", I3D50, NL10_VIDEO_50),
    ("gc_i3d_resnet50", I3D50, GC_VIDEO),
    ("i3d3x3x3_resnet50", I3D333_50, PLAIN),
    ("nl_i3d3x3x3_resnet50", I3D333_50, NL5_VIDEO_50),
    ("nl1_i3d3x3x3_resnet50", I3D333_50, NL1_VIDEO),
    ("nl10_i3d3x3x3_resnet50", I3D333_50, NL10_VIDEO_50),
    ("gc_i3d3x3x3_resnet50", I3D333_50, GC_VIDEO),
    ("c2d_resnet101", C2D101, PLAIN),
    ("nl_c2d_resnet101", C2D101, NL5_VIDEO_101),
    ("nl1_c2d_resnet101", C2D101, NL1_VIDEO),
    ("gc_c2d_resnet101", C2D101, GC_VIDEO),
    ("i3d_resnet101", I3D101, PLAIN),
    ("nl_i3d_resnet101", I3D101, NL5_VIDEO_101),
    ("nl1_i3d_resnet101", I3D101, NL1_VIDEO),
    ("gc_i3d_resnet101", I3D101, GC_VIDEO),
    ("i3d3x3x3_resnet101", I3D333_101, PLAIN),
    ("nl_i3d3x3x3_resnet101", I3D333_101, NL5_VIDEO_101),
    ("nl1_i3d3x3x3_resnet101", I3D333_101, NL1_VIDEO),
    ("gc_i3d3x3x3_resnet101", I3D333_101, GC_VIDEO),
]

for _name, _arch, _variant in MODELS:
    _text = f"{_arch.title} + {_variant.text}" if _variant.plan.insertions else _arch.title
    register(_name, _arch, _variant.plan, _text, _variant.only_for)

# Detectors: torchvision's Mask R-CNN and Faster R-CNN FPN on every 4-stage 2D ResNet above,
# with the same blocks: mask_rcnn_gc_r4_resnet50_fpn, faster_rcnn_nl_resnet50_fpn, …
_HEADS = {"mask_rcnn": "Mask R-CNN", "faster_rcnn": "Faster R-CNN"}
for _name, _arch, _variant in MODELS:
    if _arch.task != "classification" or len(_arch.defaults["layers"]) != 4:
        continue
    for _head, _title in _HEADS.items():
        _detector = DetectorArchitecture(_head, _arch, f"{_title} FPN on {_arch.title}")
        _text = f"{_detector.title} + {_variant.text}" if _variant.plan.insertions else ""
        register(f"{_head}_{_name}_fpn", _detector, _variant.plan, _text or _detector.title)

# Segmentors: mmsegmentation's FCN / NL / GC / DNL heads on the dilated ResNetV1c (output
# stride 8: the deep stem, strides (1, 2, 1, 1), dilations (1, 1, 2, 4), contract_dilation)
_D8 = {"stem": "deep", "strides": (1, 2, 1, 1), "dilations": (1, 1, 2, 4)}
RESNET50_V1C_D8 = _resnet(
    "ResNetV1c-50-D8", Bottleneck, (3, 4, 6, 3), contract_dilation=True, **_D8
)
RESNET101_V1C_D8 = _resnet(
    "ResNetV1c-101-D8", Bottleneck, (3, 4, 23, 3), contract_dilation=True, **_D8
)
_SEGMENTORS = {
    "fcn": ("fcn", "FCN head"),
    "nonlocal": ("nl", "NL head (embedded Gaussian, reduction 2, 1/√C')"),
    "gcnet": ("gc", "GC head (r = 1/4, att pooling, add fusion)"),
    "dnlnet": ("dnl", "DNL head (temperature 0.05)"),
}
for _name, (_head, _title) in _SEGMENTORS.items():
    for _depth, _arch in ((50, RESNET50_V1C_D8), (101, RESNET101_V1C_D8)):
        _segmentor = SegmentorArchitecture(_head, _arch, f"{_arch.title} + {_title}")
        register(f"{_name}_resnet{_depth}_d8", _segmentor, Plan(), _segmentor.title)
# the same heads on the demo's two-stage ResNet (C3 at stride 8, receptive field 51 px; the FCN
# head's three 3×3 convolutions at stride 8 take it to 99): the segmentation demo's networks
for _name, (_head, _title) in _SEGMENTORS.items():
    _segmentor = SegmentorArchitecture(_head, DEMO, f"{DEMO.title} + {_title}", decode_index=1)
    register(f"{_name}_demo_seg", _segmentor, Plan(), _segmentor.title)

# The detection demo's detectors: torchvision's Mask R-CNN, narrow (FPN and heads 32 wide) and
# sized for 112-pixel images on the CPU, on a four-stage ResNet of bottlenecks (8–64 planes; two
# in c4, for the NL block's place before its last, one elsewhere) whose c4 and c5 stay at stride
# 8 without dilation: the class and mask logits of a box around one of the demo's items (or 6 px
# larger) read no pixel of the other item's corner square (a test checks the gradient), so the
# plain detector cannot relate the two; its context variants are the papers' placements
DEMO_DET = _resnet(
    "four-stage demo ResNet (bottlenecks 1-1-2-1, c4–c5 at stride 8)",
    Bottleneck,
    (1, 1, 2, 1),
    base_channels=8,
    strides=(1, 2, 1, 1),
)
DEMO_DETECTOR = DetectorArchitecture(
    "mask_rcnn",
    DEMO_DET,
    f"Mask R-CNN FPN (32 wide) on the {DEMO_DET.title}",
    defaults={
        "fpn_channels": 32,
        "head_channels": 32,
        "min_size": 112,
        "max_size": 112,
        "rpn_pre_nms_top_n_train": 200,
        "rpn_post_nms_top_n_train": 100,
        "rpn_pre_nms_top_n_test": 100,
        "rpn_post_nms_top_n_test": 50,
        "rpn_batch_size_per_image": 64,
        "box_batch_size_per_image": 32,
        "box_detections_per_img": 20,
    },
)
for _name, _variant in (
    ("", PLAIN),
    ("nl_", NL),
    ("gc_r4_", GC_R4),
    ("snl_c3c5_", SNL_C3C5),
    ("dnl_", DNL),
):
    _text = f"{DEMO_DETECTOR.title} + {_variant.text}" if _variant.plan.insertions else ""
    register(
        f"mask_rcnn_{_name}demo_fpn", DEMO_DETECTOR, _variant.plan, _text or DEMO_DETECTOR.title
    )
