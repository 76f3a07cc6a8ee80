"""Networks with context blocks: ResNet/ResNeXt backbones, plans, named configurations."""

from nlgc.models.plan import BLOCK_TYPES, POSITIONS, STAGES, Insertion, Plan, apply_plan
from nlgc.models.registry import create_model, default_plan, describe, list_models, register
from nlgc.models.resnet import BasicBlock, Bottleneck, ResNet

__all__ = [
    "BLOCK_TYPES",
    "POSITIONS",
    "STAGES",
    "BasicBlock",
    "Bottleneck",
    "Insertion",
    "Plan",
    "ResNet",
    "apply_plan",
    "create_model",
    "default_plan",
    "describe",
    "list_models",
    "register",
]
