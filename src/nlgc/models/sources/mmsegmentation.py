"""mmsegmentation's segmentors (``EncoderDecoder``): a ResNetV1c ``backbone.``, a
``decode_head.`` and an ``auxiliary_head.``, kept whole (nlgc's segmentors have the same three).

ResNetV1c's deep stem is ``backbone.stem.{0,1,3,4,6,7}`` (three conv + BN pairs): nlgc's
``conv1.{0,1,3,4,6}`` and ``bn1``. The heads' module names are nlgc's
(:mod:`nlgc.models.segmentation`) but for mmcv's ``NonLocal2d`` in the NL head:
``nl_block.{g,theta,phi}.conv`` → ``g``, ``theta``, ``phi``; ``conv_out.conv`` (no bias: a
norm follows) → ``out`` (bias 0); ``conv_out.bn`` → ``norm``. The GC and DNL blocks carry
mmcv's and mmsegmentation's names already.
"""

from nlgc.models.preprocessing import SEGMENTATION  # SegDataPreProcessor, BGR → RGB
from nlgc.models.sources.base import State, WeightsSource, renamed, with_zero_biases

_STEM = {"0": "conv1.0", "1": "conv1.1", "3": "conv1.3", "4": "conv1.4", "6": "conv1.6", "7": "bn1"}
_NL = r"^decode_head\.nl_block\."
_RULES = (
    (r"^backbone\.stem\.(\d)\.", lambda m: f"backbone.{_STEM[m.group(1)]}."),
    (_NL + r"(g|theta|phi)\.conv\.", r"decode_head.nl_block.\1."),
    (_NL + r"conv_out\.conv\.", "decode_head.nl_block.out."),
    (_NL + r"conv_out\.bn\.", "decode_head.nl_block.norm."),
)


_V1C_RULES = ((r"^stem\.(\d)\.", lambda m: f"{_STEM[m.group(1)]}."),)


def detect(state: State) -> bool:
    return "decode_head.conv_seg.weight" in state


def convert(state: State) -> dict:
    converted = {renamed(key, _RULES): value for key, value in state.items()}
    return with_zero_biases(converted, "decode_head.nl_block.out.weight")


SOURCE = WeightsSource(
    name="mmsegmentation",
    title="mmsegmentation EncoderDecoder (backbone.stem.0, decode_head.conv_seg, auxiliary_head)",
    detect=detect,
    convert=convert,
    preprocessing=SEGMENTATION,
    whole=True,
    task="segmentation",
)

# mmcv's ImageNet ResNetV1c (pretrain/third_party/resnet{50,101}_v1c-*.pth): a classifier with
# the deep stem, the backbone mmsegmentation's *_d8 models start from
IMAGENET_V1C = WeightsSource(
    name="resnet_v1c",
    title="mmcv ImageNet ResNetV1c (stem.0 … stem.7, layer1 …, fc)",
    detect=lambda state: "stem.0.weight" in state and "layer1.0.conv1.weight" in state,
    convert=lambda state: {renamed(key, _V1C_RULES): value for key, value in state.items()},
    build_options=lambda state: {"stem": "deep"},
    preprocessing=SEGMENTATION,
)
