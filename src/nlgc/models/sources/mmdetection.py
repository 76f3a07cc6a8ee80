"""GCNet's official code and mmdetection: detectors whose ``backbone.`` is nlgc's ResNet.

Keys ``backbone.layer3.5.context_block.conv_mask.weight`` … (the GC block is mmcv's
``ContextBlock``: ``conv_mask``, ``channel_add_conv.0/.1/.3``), beside the neck and heads, which
nlgc does not build: loading keeps the backbone and reports the rest as ignored.
"""

from nlgc.models.preprocessing import IMAGENET
from nlgc.models.sources.base import WeightsSource

SOURCE = WeightsSource(
    name="mmdetection",
    title="GCNet / mmdetection detector (backbone.layerN.i.context_block.*, neck, heads)",
    detect=lambda state: "backbone.conv1.weight" in state,
    preprocessing=IMAGENET,
)
