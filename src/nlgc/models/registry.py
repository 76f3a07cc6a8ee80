"""Named model configurations: ``create_model(name, num_classes=..., **overrides)``."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from nlgc.models.plan import STAGES, Insertion, Plan
from nlgc.models.resnet import BasicBlock, Bottleneck, ResNet
from nlgc.models.video_resnet import VideoResNet


@dataclass(frozen=True)
class ModelSpec:
    """A named configuration: a builder taking (plan, **model_kwargs), its plan, one line."""

    build: Callable[..., nn.Module]
    plan: Plan
    description: str
    num_classes: int = 1000
    modality: str = "image"  # or "video": input (B, C, H, W) or (B, C, T, H, W)


_REGISTRY: dict[str, ModelSpec] = {}

# Insertion fields and the models' own keyword arguments; every other override is a block option.
_MODEL_KWARGS = {
    "features_only", "out_indices", "in_channels", "stem_temporal_stride", "dropout",
}  # fmt: skip


def register(
    name: str,
    build: Callable[..., nn.Module],
    plan: Plan,
    description: str,
    num_classes: int = 1000,
    modality: str = "image",
) -> None:
    """Add a named configuration; ``build(plan=..., num_classes=..., **kwargs)`` makes it."""
    if name in _REGISTRY:
        raise ValueError(f"a model named {name!r} is already registered")
    _REGISTRY[name] = ModelSpec(build, plan, description, num_classes, modality)


def list_models(pattern: str = "*", modality: str | None = None) -> list[str]:
    """Registered names matching a shell-style pattern, e.g. ``list_models("gc_*")``, of one
    ``modality`` (``"image"`` or ``"video"``) or of both."""
    return sorted(
        name
        for name, spec in _REGISTRY.items()
        if fnmatch.fnmatch(name, pattern) and modality in (None, spec.modality)
    )


def modality(name: str) -> str:
    """``"image"`` or ``"video"``: what the named model takes."""
    return _spec(name).modality


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


def create_model(name: str, num_classes: int | None = None, plan: Plan | None = None, **overrides):
    """Build a registered model.

    Args:
        name: see :func:`list_models`.
        num_classes: classifier size; default 1000 for image and 400 (Kinetics) for video
            models.
        plan: replace the configuration's plan entirely.
        **overrides: the model's own arguments (``features_only``, ``out_indices``,
            ``in_channels``, and for video ``stem_temporal_stride``, ``dropout``), Insertion
            fields applied to every insertion (``stages``, ``indices``, ``position``) and block
            options (``ratio``, ``pooling``, ``fusion``, ``layer_norm``, ``pairwise``,
            ``sub_sample``, …), e.g. the GCNet ablations
            ``create_model("gc_resnet50", pooling="avg", fusion=("mul",))``.
    """
    spec = _spec(name)
    model_kwargs = {k: overrides.pop(k) for k in list(overrides) if k in _MODEL_KWARGS}
    plan = plan if plan is not None else spec.plan
    if overrides:
        plan = plan.with_overrides(**overrides)
    num_classes = spec.num_classes if num_classes is None else num_classes
    return spec.build(plan=plan, num_classes=num_classes, **model_kwargs)


def _resnet(block, layers, groups=1, width_per_group=64, base_channels=64):
    def build(**kwargs):
        return ResNet(block, layers, groups=groups, width_per_group=width_per_group,
                      base_channels=base_channels, **kwargs)  # fmt: skip

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


# A small ResNet (one BasicBlock per stage, 16–128 channels) for CPU demos and quick experiments;
# the NL/SNL block goes after c3's only block (8×8 positions at 64×64 input).
_TINY = _resnet(BasicBlock, (1, 1, 1, 1), base_channels=16)
register("tiny_resnet", _TINY, Plan(), "tiny ResNet (1 BasicBlock per stage, 16–128 channels)")
for _block, _text in (("nl", "an embedded-Gaussian NL block"), ("snl", "an SNL block")):
    register(f"{_block}_tiny_resnet", _TINY, Plan((Insertion(_block, ("c3",), (0,)),)),
             f"tiny ResNet + {_text} after c3")  # fmt: skip
_GC_TINY = Plan((Insertion("gc", ("c3", "c4", "c5"), options={"ratio": 1 / 4}),))
register("gc_tiny_resnet", _TINY, _GC_TINY,
         "tiny ResNet + GC blocks (r=1/4) in every residual block of c3–c5")  # fmt: skip

# Video (Non-local paper, Table 1): I3D inflates one kernel in every other residual block.
_INFLATE = {
    50: ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)),
    101: ((1, 1, 1), (1, 0, 1, 0), tuple(1 - i % 2 for i in range(23)), (0, 1, 0)),
}
_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
# mmaction2's non-local I3D settings: embedded Gaussian, pooling after φ/g, no 1/√d scale, BN.
_NL_VIDEO = {"sub_sample": True}
_NL5_C4 = {50: (1, 3, 5), 101: (6, 13, 20)}


def _video(depth, inflate_style=None):
    def build(**kwargs):
        inflate = _INFLATE[depth] if inflate_style else None
        return VideoResNet(_DEPTHS[depth], inflate, inflate_style or "3x1x1", **kwargs)

    return build


def _nl_plan(depth: int, blocks: int) -> Plan:
    """1 block: before the last of res4; 5: res3 {1, 3} + res4 {1, 3, 5} (R101 {6, 13, 20});
    10: every residual block of res3 and res4 (R50)."""
    if blocks == 1:
        return Plan((Insertion("nl", ("c4",), "before_last", options=_NL_VIDEO),))
    if blocks == 5:
        return Plan(
            (
                Insertion("nl", ("c3",), (1, 3), options=_NL_VIDEO),
                Insertion("nl", ("c4",), _NL5_C4[depth], options=_NL_VIDEO),
            )
        )
    return Plan((Insertion("nl", ("c3", "c4"), "all", options=_NL_VIDEO),))


for _depth in (50, 101):
    _backbones = {
        "c2d": (_video(_depth), "C2D"),
        "i3d": (_video(_depth, "3x1x1"), "I3D 3×1×1"),
        "i3d3x3x3": (_video(_depth, "3x3x3"), "I3D 3×3×3"),
    }
    for _kind, (_build, _title) in _backbones.items():
        _arch = f"{_kind}_resnet{_depth}"
        _title = f"{_title} ResNet-{_depth} (video)"
        _variants = {
            "": (Plan(), ""),
            "nl_": (_nl_plan(_depth, 5), " + 5 non-local blocks (res3, res4)"),
            "nl1_": (_nl_plan(_depth, 1), " + 1 non-local block before the last of res4"),
            "gc_": (_VARIANTS["gc"][0], " + 3D GC blocks in every bottleneck of res3–res5"),
        }
        if _depth == 50:
            _variants["nl10_"] = (_nl_plan(_depth, 10), " + 10 non-local blocks (res3, res4)")
        for _prefix, (_plan, _text) in _variants.items():
            register(_prefix + _arch, _build, _plan, _title + _text, 400, "video")
