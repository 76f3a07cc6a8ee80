"""Networks with context blocks: ResNet/ResNeXt backbones, plans, named configurations."""

from nlgc.blocks import BLOCK_TYPES
from nlgc.models import catalog  # noqa: F401  (registers every named model)
from nlgc.models.checkpoint import inflate_weights, load_weights
from nlgc.models.from_checkpoint import load_model
from nlgc.models.plan import (
    POSITIONS,
    STAGES,
    Insertion,
    Plan,
    apply_plan,
    without_blocks,
)
from nlgc.models.registry import (
    create_model,
    default_plan,
    describe,
    list_models,
    modality,
    model_spec,
    option_names,
    register,
)
from nlgc.models.resnet import BasicBlock, Bottleneck, ResNet
from nlgc.models.video_resnet import Bottleneck3d, VideoResNet
from nlgc.models.zoo import ZOO, list_weights, weights_entry

__all__ = [
    "BLOCK_TYPES",
    "POSITIONS",
    "STAGES",
    "ZOO",
    "BasicBlock",
    "Bottleneck",
    "Bottleneck3d",
    "Insertion",
    "Plan",
    "ResNet",
    "VideoResNet",
    "apply_plan",
    "create_model",
    "default_plan",
    "describe",
    "inflate_weights",
    "list_models",
    "list_weights",
    "load_model",
    "load_weights",
    "modality",
    "model_spec",
    "option_names",
    "register",
    "weights_entry",
    "without_blocks",
]
