"""timm's byobnet GC networks (``gcresnet50t``, ``gcresnext26ts``, ``gcresnext50ts``,
``gcresnet33ts``; ``timm/models/byobnet.py``). timm's ResNet family has torchvision's keys and is
read by :mod:`nlgc.models.sources.torchvision`.

byobnet names ``stem.conv1.conv``, ``stages.0.0.conv2_kxk.bn``, ``attn.mlp_add.fc1``,
``final_conv.conv``, ``head.fc``; timm's ``LayerNorm2d`` weights (C',) become the (C', 1, 1) of
nlgc's LayerNorm.
"""

from __future__ import annotations

from nlgc.models.preprocessing import Preprocessing
from nlgc.models.sources.base import State, WeightsSource, renamed

_RULES = (
    (r"^stem\.conv1\.conv\.", "conv1.0."),
    (r"^stem\.conv1\.bn\.", "conv1.1."),
    (r"^stem\.conv2\.conv\.", "conv1.3."),
    (r"^stem\.conv2\.bn\.", "conv1.4."),
    (r"^stem\.conv3\.conv\.", "conv1.6."),
    (r"^stem\.conv3\.bn\.", "bn1."),
    (r"^stages\.(\d)\.", lambda m: f"layer{int(m.group(1)) + 1}."),
    (r"\.conv(\d)_(1x1|kxk)\.conv\.", r".conv\1."),
    (r"\.conv(\d)_(1x1|kxk)\.bn\.", r".bn\1."),
    (r"\.shortcut\.conv\.", ".downsample.0."),
    (r"\.shortcut\.bn\.", ".downsample.1."),
    (r"\.attn\.conv_attn\.", ".context_block_after_conv2.conv_mask."),
    (r"\.attn\.mlp_add\.fc1\.", ".context_block_after_conv2.channel_add_conv.0."),
    (r"\.attn\.mlp_add\.norm\.", ".context_block_after_conv2.channel_add_conv.1."),
    (r"\.attn\.mlp_add\.fc2\.", ".context_block_after_conv2.channel_add_conv.3."),
    (r"^final_conv\.conv\.", "final_conv.0."),
    (r"^final_conv\.bn\.", "final_conv.1."),
    (r"^head\.fc\.", "fc."),
)


def detect(state: State) -> bool:
    return "stem.conv1.conv.weight" in state and any(k.startswith("stages.") for k in state)


def convert(state: State) -> dict:
    converted = {}
    for key, value in state.items():
        key = renamed(key, _RULES)
        converted[key] = value.view(-1, 1, 1) if ".channel_add_conv.1." in key else value
    return converted


# timm's _cfgr for these networks: 256 px, crop_pct 0.9, bicubic, ImageNet mean/std
BYOBNET = Preprocessing(input_size=256, resize=284, interpolation="bicubic")

SOURCE = WeightsSource(
    name="timm",
    title="timm byobnet (stem.conv1.conv, stages.i.j.conv2_kxk, attn.mlp_add, head.fc)",
    detect=detect,
    convert=convert,
    preprocessing=BYOBNET,
)
