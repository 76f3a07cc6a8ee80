"""Named model configurations: ``create_model(name, num_classes=..., **overrides)``."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from nlgc.models.plan import STAGES, Insertion, Plan
from nlgc.models.resnet import BasicBlock, Bottleneck, ResNet


@dataclass(frozen=True)
class ModelSpec:
    """A named configuration: a builder taking (plan, **model_kwargs), its plan, one line."""

    build: Callable[..., nn.Module]
    plan: Plan
    description: str


_REGISTRY: dict[str, ModelSpec] = {}

# Insertion fields and the models' own keyword arguments; every other override is a block option.
_MODEL_KWARGS = {"num_classes", "features_only", "out_indices", "in_channels"}


def register(name: str, build: Callable[..., nn.Module], plan: Plan, description: str) -> None:
    if name in _REGISTRY:
        raise ValueError(f"a model named {name!r} is already registered")
    _REGISTRY[name] = ModelSpec(build, plan, description)


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, e.g. ``list_models("gc_*")``."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def describe(name: str) -> str:
    return _spec(name).description


def default_plan(name: str) -> Plan:
    return _spec(name).plan


def _spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        close = [n for n in _REGISTRY if name.split("_")[-1] in n][:8]
        raise ValueError(
            f"unknown model {name!r}; similar: {close or 'none'} (see nlgc.list_models())"
        )
    return _REGISTRY[name]


def create_model(name: str, num_classes: int = 1000, plan: Plan | None = None, **overrides):
    """Build a registered model.

    Args:
        name: see :func:`list_models`.
        num_classes: classifier size.
        plan: replace the configuration's plan entirely.
        **overrides: the model's own arguments (``features_only``, ``out_indices``,
            ``in_channels``, …), Insertion fields applied to every insertion (``stages``,
            ``indices``, ``position``) and block options (``ratio``, ``pooling``, ``fusion``,
            ``layer_norm``, ``pairwise``, ``sub_sample``, …), e.g. the GCNet ablations
            ``create_model("gc_resnet50", pooling="avg", fusion=("mul",))``.
    """
    spec = _spec(name)
    model_kwargs = {k: overrides.pop(k) for k in list(overrides) if k in _MODEL_KWARGS}
    plan = plan if plan is not None else spec.plan
    if overrides:
        plan = plan.with_overrides(**overrides)
    return spec.build(plan=plan, num_classes=num_classes, **model_kwargs)


def _resnet(block, layers, groups=1, width_per_group=64):
    def build(**kwargs):
        return ResNet(block, layers, groups=groups, width_per_group=width_per_group, **kwargs)

    return build


_ARCHS = {
    "resnet18": (_resnet(BasicBlock, (2, 2, 2, 2)), "ResNet-18"),
    "resnet34": (_resnet(BasicBlock, (3, 4, 6, 3)), "ResNet-34"),
    "resnet50": (_resnet(Bottleneck, (3, 4, 6, 3)), "ResNet-50"),
    "resnet101": (_resnet(Bottleneck, (3, 4, 23, 3)), "ResNet-101"),
    "resnet152": (_resnet(Bottleneck, (3, 8, 36, 3)), "ResNet-152"),
    "resnext50_32x4d": (_resnet(Bottleneck, (3, 4, 6, 3), 32, 4), "ResNeXt-50 32×4d"),
    "resnext101_32x4d": (_resnet(Bottleneck, (3, 4, 23, 3), 32, 4), "ResNeXt-101 32×4d"),
}

_C3_C5 = ("c3", "c4", "c5")
_VARIANTS = {
    "gc": (
        Plan((Insertion("gc", _C3_C5, options={"ratio": 1 / 16}),)),
        "GC blocks (r=1/16, att pooling, add fusion) after conv3 of every bottleneck of c3–c5 "
        "(GCNet's default)",
    ),
    "gc_{}_r4": (
        Plan((Insertion("gc", _C3_C5, options={"ratio": 1 / 4}),)),
        "GC blocks with r=1/4 in every bottleneck of c3–c5 (GCNet)",
    ),
    "nl": (
        Plan((Insertion("nl", ("c4",), "before_last"),)),
        "one embedded-Gaussian non-local block in c4, right before its last residual block "
        "(the Non-local paper's COCO setting)",
    ),
    "snl": (
        Plan((Insertion("snl", ("c4",), "before_last"),)),
        "one simplified non-local block at the NL position in c4 (GCNet)",
    ),
    "se": (
        Plan((Insertion("se", STAGES, options={"ratio": 1 / 16}),)),
        "SE (r=1/16) after conv3 of every residual block (SE-ResNet)",
    ),
}

for _arch, (_build, _title) in _ARCHS.items():
    register(_arch, _build, Plan(), f"{_title}, torchvision layout")
for _arch in ("resnet50", "resnet101", "resnext101_32x4d"):
    _build, _title = _ARCHS[_arch]
    for _variant, (_plan, _text) in _VARIANTS.items():
        _name = _variant.format(_arch) if "{}" in _variant else f"{_variant}_{_arch}"
        register(_name, _build, _plan, f"{_title} + {_text}")
