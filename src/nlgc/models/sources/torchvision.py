"""torchvision's ResNets (and timm's ResNet family, which uses the same keys): nlgc's own layout.

Keys ``conv1``, ``bn1``, ``layer1.0.conv1`` … ``fc``: nlgc's ResNet names its modules the same, so
nothing is renamed. This is the fallback source: a file no other source recognises is read as
this layout (and a mismatch is reported key by key).
"""

from nlgc.models.preprocessing import IMAGENET
from nlgc.models.sources.base import WeightsSource

SOURCE = WeightsSource(
    name="torchvision",
    title="torchvision / timm ResNet layout (conv1, bn1, layer1.0.conv1, …, fc)",
    detect=lambda state: True,
    preprocessing=IMAGENET,
)
