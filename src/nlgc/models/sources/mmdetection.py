"""GCNet's official code and mmdetection: detectors whose ``backbone.`` is nlgc's ResNet.

Keys ``backbone.layer3.5.context_block.conv_mask.weight`` … (the GC block is mmcv's
``ContextBlock``: ``conv_mask``, ``channel_add_conv.0/.1/.3``, nlgc's own names) and mmcv's
``NonLocal2d`` plugin, ``backbone.layer3.0.nonlocal_block.{g,theta,phi}.conv``,
``conv_out.conv`` / ``conv_out.bn`` (``g.0.conv`` with ``sub_sample``, ``concat_project.conv``),
renamed to nlgc's ``g``, ``theta``, ``phi``, ``out``, ``norm``, ``concat_project``; the neck and
heads, which nlgc's backbone does not hold, are reported as ignored. Build the network with the
same ``plugins=`` list (:mod:`nlgc.models.plugins`): its blocks carry mmdetection's names.
"""

from nlgc.models.preprocessing import IMAGENET
from nlgc.models.sources.base import State, WeightsSource, renamed

_NL = r"(\.nonlocal_block\w*)\."
_RULES = (
    (_NL + r"(g|phi)\.0\.conv\.", r"\1.\2."),  # sub_sample: Sequential(ConvModule, MaxPool)
    (_NL + r"(g|theta|phi|concat_project)\.conv\.", r"\1.\2."),
    (_NL + r"conv_out\.conv\.", r"\1.out."),
    (_NL + r"conv_out\.(bn|norm)\.", r"\1.norm."),
)


def convert(state: State) -> dict:
    return {renamed(key, _RULES): value for key, value in state.items()}


SOURCE = WeightsSource(
    name="mmdetection",
    title="GCNet / mmdetection detector (backbone.layerN.i.context_block.*, nonlocal_block.*)",
    detect=lambda state: "backbone.conv1.weight" in state,
    convert=convert,
    preprocessing=IMAGENET,
)
