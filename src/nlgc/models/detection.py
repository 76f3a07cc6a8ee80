"""Detectors: torchvision's own Mask R-CNN and Faster R-CNN on an nlgc ResNet backbone.

The model is ``torchvision.models.detection.MaskRCNN`` (or ``FasterRCNN``) around a
``BackboneWithFPN``: ``.body`` (torchvision's ``IntermediateLayerGetter`` over the nlgc ResNet:
C2–C5 keyed ``'0'``…``'3'``), ``.fpn`` and ``.out_channels = 256``, built as torchvision's
``maskrcnn_resnet50_fpn`` builds it. The state-dict keys are torchvision's
(``backbone.body.layer3.5.conv1.weight``, ``backbone.fpn.inner_blocks.0.0.weight``,
``roi_heads.mask_predictor…``), so torchvision's checkpoints load; the context blocks add their
own keys (``backbone.body.layer3.0.context_block.conv_mask.weight``) and start as identities.

Norms, as the sources do it: with a pretrained backbone (``weights_backbone``) torchvision
freezes every BatchNorm (``FrozenBatchNorm2d``: statistics *and* affine parameters fixed) and
the stages before ``trainable_backbone_layers`` (default 3: c3–c5 train); without one all of
it trains with BatchNorm. ``norm`` chooses explicitly: ``"bn"`` (BatchNorm, statistics updated
in training), ``"frozen"`` (torchvision's FrozenBatchNorm2d; mmdetection's ``norm_eval=True``
with ``requires_grad=False``, GCNet's "fixBN" rows) or ``"syncbn"`` (SyncBatchNorm, GCNet's
SyncBN rows; statistics synchronised across processes under DDP). The context blocks are
never frozen: their parameters train even inside a frozen stage, and their own norms (the NL
block's BN, the GC block's LayerNorm) are left as built.

torchvision is imported only here, when a detector is built: the rest of nlgc does not need it.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field

from torch import nn

from nlgc.blocks import ContextBlock
from nlgc.checks import check_choice, check_positive_int
from nlgc.models.checkpoint import load_weights
from nlgc.models.plan import Plan

HEADS = ("mask_rcnn", "faster_rcnn")
NORMS = ("bn", "frozen", "syncbn")
_STAGE_LAYERS = ("layer4", "layer3", "layer2", "layer1", "conv1")  # torchvision's freezing order


def _torchvision():
    try:
        from torchvision.models import detection
        from torchvision.ops import FrozenBatchNorm2d
    except ImportError as error:
        raise ImportError(
            "nlgc's detectors are torchvision's: pip install 'nlgc[detection]' (torchvision, "
            "pycocotools), with the torchvision release that matches your torch"
        ) from error
    return detection, FrozenBatchNorm2d


def _head_class(head: str):
    detection, _ = _torchvision()
    return {"mask_rcnn": detection.MaskRCNN, "faster_rcnn": detection.FasterRCNN}[head]


def detector_options(head: str) -> tuple[str, ...]:
    """The keyword arguments torchvision's detector class takes (``min_size``, ``max_size``,
    ``box_score_thresh``, ``box_detections_per_img``, …), Mask R-CNN's including Faster R-CNN's."""
    names = []
    for cls in _head_class(head).__mro__:
        if cls.__name__ not in ("MaskRCNN", "FasterRCNN"):
            continue
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            keyword = parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
            if keyword and name not in ("self", "backbone", "num_classes", *names):
                names.append(name)
    return tuple(names)


@dataclass(frozen=True)
class DetectorArchitecture:
    """A detector over a backbone :class:`~nlgc.models.registry.Architecture`, registered like
    any architecture: ``build(plan, num_classes, **options)`` puts the plan's blocks into the
    backbone. Options: the backbone's own (``base_channels``, …), ``norm``,
    ``trainable_backbone_layers``, ``weights_backbone`` and torchvision's detector arguments."""

    head: str
    backbone: object  # an Architecture of a 4-stage 2D ResNet
    title: str
    num_classes: int = 91  # COCO's 90 category ids + background, as torchvision counts them
    modality: str = "image"
    task: str = "detection"
    defaults: dict = field(default_factory=dict)  # options unless given (the demo's sizes)

    def option_names(self) -> tuple[str, ...]:
        own = (
            "norm",
            "frozen_eps",
            "trainable_backbone_layers",
            "weights_backbone",
            "trained",
            "fpn_channels",
            "head_channels",
        )
        return (*self.backbone.feature_option_names(), *own, *detector_options(self.head))

    def build(self, plan: Plan, num_classes: int, **options) -> nn.Module:
        options = {**self.defaults, **options}
        return build_detector(self.head, self.backbone, plan, num_classes, **options)


def build_detector(
    head: str,
    backbone: object,
    plan: Plan,
    num_classes: int = 91,
    norm: str | None = None,
    frozen_eps: float = 1e-5,
    trainable_backbone_layers: int | None = None,
    weights_backbone: str | None = None,
    trained: bool = False,
    fpn_channels: int = 256,
    head_channels: int | None = None,
    **options,
) -> nn.Module:
    """torchvision's ``head`` detector on ``backbone`` (an Architecture) with ``plan``'s blocks,
    as ``torchvision.models.detection.maskrcnn_resnet50_fpn`` builds its own.

    Args:
        weights_backbone: a zoo name, URL or file of any source nlgc reads (torchvision / timm
            classification weights, GCNet / mmdetection detectors' ``backbone.*``) loaded into
            the body before its norms are frozen; the context blocks keep their identity start.
        norm: ``"bn"``, ``"frozen"`` or ``"syncbn"`` (see the module); default ``"frozen"``
            with ``weights_backbone``, else ``"bn"`` (torchvision's choice).
        frozen_eps: the ε of the frozen norms (torchvision's COCO_V1 detectors were trained
            with 0: its ``overwrite_eps(model, 0.0)``).
        trained: the whole detector's trained weights will be loaded (a zoo entry's
            ``pretrained=``): torchvision's rules for trained weights, as with
            ``weights_backbone``.
        trainable_backbone_layers: 0–5 stages from the top that train (torchvision's meaning);
            default 3 with ``weights_backbone``, else all 5 (as torchvision, which warns when a
            value is given without pretrained weights and trains all).
        fpn_channels: the FPN's width (torchvision's 256), which the RPN and the RoI heads take.
        head_channels: the width of the box head's two fully connected layers and of the mask
            head's convolutions; None for torchvision's (1024 and 256). Small detectors for the
            CPU (the demo's) use small ones.
        **options: the backbone's options, then torchvision's detector arguments.
    """
    check_choice("head", head, HEADS)
    _, frozen_norm = _torchvision()
    from torchvision.models.detection.backbone_utils import BackboneWithFPN

    body, head_options = backbone.build_features(plan, options)
    if len(body.feature_info) != 4:
        raise ValueError(f"an FPN detector needs a 4-stage backbone, got {backbone.title}")
    trained = trained or weights_backbone is not None
    if weights_backbone is not None:
        load_weights(body, weights_backbone)
    norm = check_choice("norm", norm or ("frozen" if trained else "bn"), NORMS)
    if norm == "frozen":
        _freeze_norms(body, frozen_norm, frozen_eps)
    elif norm == "syncbn":
        body = nn.SyncBatchNorm.convert_sync_batchnorm(body)
    _freeze_stages(body, _trainable_layers(trained, trainable_backbone_layers))
    layers = {info["module"]: str(i) for i, info in enumerate(body.feature_info)}
    channels = [info["channels"] for info in body.feature_info]
    check_positive_int("fpn_channels", fpn_channels)
    with_fpn = BackboneWithFPN(body, layers, channels, out_channels=fpn_channels)
    if head_channels is not None:
        head_options = {
            **_narrow_heads(head, fpn_channels, head_channels, num_classes),
            **head_options,
        }
        num_classes = None  # torchvision's rule: the predictors given, the classes are theirs
    return _head_class(head)(with_fpn, num_classes=num_classes, **head_options)


def _narrow_heads(head: str, fpn_channels: int, width: int, num_classes: int) -> dict:
    """torchvision's RoI heads (two fully connected layers and a box predictor; four 3×3
    convolutions, a deconvolution and a mask predictor) ``width`` wide instead of 1024 / 256."""
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    check_positive_int("head_channels", width)
    heads = {
        "box_head": TwoMLPHead(fpn_channels * 7**2, width),  # RoIAlign's 7 × 7 (torchvision's)
        "box_predictor": FastRCNNPredictor(width, num_classes),
    }
    if head == "mask_rcnn":
        heads["mask_head"] = MaskRCNNHeads(fpn_channels, (width,) * 4, 1)
        heads["mask_predictor"] = MaskRCNNPredictor(width, width, num_classes)
    return heads


def _trainable_layers(trained: bool, given: int | None) -> int:
    """torchvision's ``_validate_trainable_layers(trained, given, 5, 3)``."""
    if not trained and given is not None:
        warnings.warn(
            "trainable_backbone_layers has no effect without weights_backbone: all 5 train "
            "(torchvision's rule)",
            stacklevel=3,
        )
        given = 5
    given = (3 if trained else 5) if given is None else given
    if isinstance(given, bool) or not isinstance(given, int) or not 0 <= given <= 5:
        raise ValueError(f"trainable_backbone_layers must be an int in [0, 5], got {given!r}")
    return given


def _context_parameters(module: nn.Module) -> set[int]:
    return {id(p) for m in module.modules() if isinstance(m, ContextBlock) for p in m.parameters()}


def _freeze_stages(body: nn.Module, trainable: int) -> None:
    """torchvision's freezing: parameters outside the top ``trainable`` stages (and, with 5,
    the stem's BN) stop training; every context block's parameters keep training."""
    layers = list(_STAGE_LAYERS[:trainable]) + (["bn1"] if trainable == 5 else [])
    blocks = _context_parameters(body)
    for name, parameter in body.named_parameters():
        if not name.startswith(tuple(layers)) and id(parameter) not in blocks:
            parameter.requires_grad_(False)


def _freeze_norms(module: nn.Module, frozen_norm: type[nn.Module], eps: float) -> None:
    """Every BatchNorm2d under ``module`` outside the context blocks → FrozenBatchNorm2d with
    its statistics and affine parameters (torchvision's ``norm_layer=FrozenBatchNorm2d``)."""
    for name, child in module.named_children():
        if isinstance(child, ContextBlock):
            continue
        if type(child) is nn.BatchNorm2d:
            frozen = frozen_norm(child.num_features, eps=eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            _freeze_norms(child, frozen_norm, eps)
