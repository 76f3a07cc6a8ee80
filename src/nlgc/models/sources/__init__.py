"""Where released weights come from: one module per source, each one :class:`WeightsSource`.

A file is matched to the first source in :data:`SOURCES` whose ``detect`` accepts its tensors;
torchvision's layout (nlgc's own) is the fallback. Adding a source is its own module and one
line in :data:`SOURCES`. nlgc's training checkpoints name their network in their metadata
(:mod:`nlgc.models.sources.native`) and need none of this.
"""

from nlgc.models.sources import (
    caffe2,
    mmaction2,
    mmdetection,
    mmsegmentation,
    pyslowfast,
    timm,
    torchvision,
)
from nlgc.models.sources.base import State, WeightsSource

SOURCES: tuple[WeightsSource, ...] = (  # most specific layout first; the fallback last
    mmaction2.SOURCE,
    caffe2.SOURCE,
    pyslowfast.SOURCE,
    timm.SOURCE,
    mmsegmentation.SOURCE,
    mmsegmentation.IMAGENET_V1C,
    mmdetection.SOURCE,
    torchvision.SOURCE,
)


def detect_source(state: State) -> WeightsSource:
    """The source whose layout ``state`` (a file's tensors) is in."""
    return next(source for source in SOURCES if source.detect(state))


__all__ = ["SOURCES", "WeightsSource", "detect_source"]
