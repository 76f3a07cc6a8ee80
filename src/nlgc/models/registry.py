"""Named model configurations: ``create_model(name, num_classes=..., pretrained=..., **overrides)``.

The mechanism only: an :class:`Architecture` (a network class and its defaults) with a
:class:`~nlgc.models.plan.Plan` is a :class:`ModelSpec`, registered under a name. The rows are
in :mod:`nlgc.models.catalog`. ``create_model`` builds, then (``pretrained``) loads its zoo
entry's tensors: weights flow one way, from the zoo record down into the built network.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from torch import nn

from nlgc.checks import check_choice
from nlgc.models.download import fetch
from nlgc.models.plan import Plan
from nlgc.models.plugins import plugin_insertions
from nlgc.models.preprocessing import Preprocessing
from nlgc.models.weights import (
    LoadReport,
    load_converted,
    nlgc_layout,
    read_weights_file,
    state_dict_of,
)
from nlgc.models.zoo import ZooEntry, default_entry


@dataclass(frozen=True)
class Architecture:
    """A backbone without context blocks: ``cls(plan=..., num_classes=..., **defaults)``.

    Every argument of ``cls`` but ``plan`` and ``num_classes`` is an option of the models built
    on it (``create_model("resnet50", base_channels=32)``); ``defaults`` are this
    architecture's values for some of them (depth, width, stem).
    """

    cls: type[nn.Module]
    title: str
    defaults: dict = field(default_factory=dict)
    num_classes: int = 1000
    modality: str = "image"  # or "video": input (B, C, H, W) or (B, C, T, H, W)
    task: str = "classification"  # or "video"; detectors: nlgc.models.detection

    def option_names(self) -> tuple[str, ...]:
        parameters = inspect.signature(self.cls.__init__).parameters
        return tuple(p for p in parameters if p not in ("self", "plan", "num_classes"))

    def build(self, plan: Plan, num_classes: int, **options) -> nn.Module:
        return self.cls(plan=plan, num_classes=num_classes, **{**self.defaults, **options})

    def feature_option_names(self) -> tuple[str, ...]:
        """Its options as a detector's or segmentor's backbone: all but the outputs' choice."""
        return tuple(n for n in self.option_names() if n not in ("features_only", "out_indices"))

    def build_features(self, plan: Plan, options: dict) -> tuple[nn.Module, dict]:
        """(this network with ``plan``'s blocks returning its stage maps (``features_only``),
        the ``options`` that are not its own: the head's)."""
        names = set(self.feature_option_names())
        own = {k: v for k, v in options.items() if k in names}
        body = self.build(plan, 1000, features_only=True, **own)
        return body, {k: v for k, v in options.items() if k not in names}


@dataclass(frozen=True)
class ModelSpec:
    """A named configuration: an architecture, its plan, one line. ``architecture`` is an
    :class:`Architecture` or anything with its ``title``, ``num_classes``, ``modality``,
    ``task``, ``option_names()`` and ``build(plan, num_classes, **options)``
    (:class:`~nlgc.models.detection.DetectorArchitecture`)."""

    architecture: Architecture
    plan: Plan
    description: str
    only_for: str | None = None  # a checkpoint kind (WeightsSource.checkpoint_kind) it is made for

    @property
    def modality(self) -> str:
        return self.architecture.modality

    @property
    def task(self) -> str:
        return self.architecture.task


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    architecture: Architecture,
    plan: Plan,
    description: str,
    only_for: str | None = None,
) -> None:
    """Add a named configuration: ``architecture`` with the blocks of ``plan``. ``only_for``:
    the checkpoint kind of a network whose tensors are exactly another's (only its function
    differs): ``load_model`` fits it to files of that kind only."""
    if name in _REGISTRY:
        raise ValueError(f"a model named {name!r} is already registered")
    _REGISTRY[name] = ModelSpec(architecture, plan, description, only_for)


TASKS = ("classification", "video", "detection", "segmentation")


def list_models(
    pattern: str = "*", modality: str | None = None, task: str | None = None
) -> list[str]:
    """Registered names matching a shell-style pattern, e.g. ``list_models("gc_*")``, of one
    ``modality`` (``"image"`` or ``"video"``) and one ``task`` (``"classification"``,
    ``"video"``, ``"detection"``), or of all."""
    if task is not None:
        check_choice("task", task, TASKS)
    return sorted(
        name
        for name, spec in _REGISTRY.items()
        if fnmatch.fnmatch(name, pattern)
        and modality in (None, spec.modality)
        and task in (None, spec.task)
    )


def model_spec(name: str) -> ModelSpec:
    """The registered configuration called ``name``; a ValueError naming similar ones."""
    if name not in _REGISTRY:
        close = [n for n in _REGISTRY if name.split("_")[-1] in n][:8]
        raise ValueError(
            f"unknown model {name!r}; similar: {close or 'none'} (see nlgc.list_models())"
        )
    return _REGISTRY[name]


def modality(name: str) -> str:
    """``"image"`` or ``"video"``: what the named model takes."""
    return model_spec(name).modality


def describe(name: str) -> str:
    return model_spec(name).description


def default_plan(name: str) -> Plan:
    return model_spec(name).plan


def option_names(name: str, plan: Plan | None = None) -> tuple[str, ...]:
    """Every keyword :func:`create_model` takes for ``name`` (with ``plan``, default its own):
    the network's arguments, then the plan's placement fields and its blocks' options."""
    spec = model_spec(name)
    model_options = spec.architecture.option_names()
    plan_options = (plan if plan is not None else spec.plan).option_names()
    return (*model_options, *(o for o in plan_options if o not in model_options))


def create_model(
    name: str,
    num_classes: int | None = None,
    plan: Plan | None = None,
    pretrained: bool | str = False,
    plugins: Sequence[Mapping] | None = None,
    **overrides,
):
    """Build a registered model: image and video classifiers, detectors
    (``mask_rcnn_gc_r4_resnet50_fpn``: torchvision's, see :mod:`nlgc.models.detection`) and
    segmentors (``nonlocal_resnet50_d8``: :mod:`nlgc.models.segmentation`).

    Args:
        name: see :func:`list_models`.
        pretrained: ``True`` for the model's first released weights in the zoo, a tag
            (``"tv2_in1k"``) for those, False (default) for a fresh network; downloaded once
            into the cache (see :mod:`nlgc.models.download`). With ``num_classes`` of another
            size the classifier is re-initialised for fine-tuning.
        num_classes: classifier size; default 1000 for image and 400 (Kinetics) for video
            models.
        plan: replace the configuration's plan entirely.
        plugins: mmdetection's ``plugins=`` list (``dict(cfg=dict(type="ContextBlock",
            ratio=1/4), stages=(False, True, True, True), position="after_conv3")``; mmcv's
            ``ContextBlock`` and ``NonLocal2d``): blocks added to the plan with mmdetection's
            placement, function and names (:mod:`nlgc.models.plugins`).
        **overrides: the network's own arguments (``features_only``, ``out_indices``,
            ``in_channels``, ``base_channels``, ``stem``, and for video ``stem_temporal_stride``,
            ``dropout``, …), Insertion fields applied to every insertion (``stages``,
            ``indices``, ``position``) and block options (``ratio``, ``pooling``, ``fusion``,
            ``layer_norm``, ``pairwise``, ``sub_sample``, …), e.g. the GCNet ablations
            ``create_model("gc_resnet50", pooling="avg", fusion=("mul",))``. The routing comes
            from the constructors' signatures (:func:`option_names`); an unknown keyword is a
            ValueError naming it and listing the valid ones.
    """
    if pretrained:
        if plan is not None:
            raise ValueError("pretrained weights come with their own plan: pass plan=None")
        if plugins:
            overrides = {**overrides, "plugins": plugins}
        model, _ = create_pretrained(default_entry(name, pretrained), num_classes, **overrides)
        return model
    spec = model_spec(name)
    plan = plan if plan is not None else spec.plan
    if plugins:
        plan = Plan((*plan.insertions, *plugin_insertions(plugins)))
    model_options = spec.architecture.option_names()
    unknown = sorted(set(overrides) - set(option_names(name, plan)))
    if unknown:
        no_blocks = "" if plan.insertions else " (it has no context blocks)"
        raise ValueError(
            f"unknown option(s) {unknown} for model {name!r}{no_blocks}; valid: "
            f"{list(option_names(name, plan))}"
        )
    model_kwargs = {k: v for k, v in overrides.items() if k in model_options}
    plan = plan.with_overrides(**{k: v for k, v in overrides.items() if k not in model_options})
    num_classes = spec.architecture.num_classes if num_classes is None else num_classes
    return spec.architecture.build(plan, num_classes, **model_kwargs)


def create_pretrained(
    entry: ZooEntry, num_classes: int | None = None, **overrides
) -> tuple[nn.Module, LoadReport]:
    """The network of a zoo entry, built with its options (and ``overrides``), then loaded
    with its file's tensors (downloaded once, converted by its source), and a load report.
    A ``num_classes`` other than the weights' re-initialises the classifier (fine-tuning)."""
    options = {**entry.options, **overrides}
    num_classes = num_classes or entry.num_classes
    model = create_model(entry.model, num_classes, **options)
    data = read_weights_file(fetch(entry))
    whole = model_spec(entry.model).task == "detection"  # a detector's file holds all of it
    state, ignored = nlgc_layout(state_dict_of(data), entry.source, whole)
    report = load_converted(model, state, ignored, entry.name)
    report.model_name, report.options, report.source = entry.model, options, entry.source.name
    return labelled(model, entry.preprocessing, entry.class_names()), report


def labelled(
    model: nn.Module, preprocessing: Preprocessing | None, class_names: list[str] | None
) -> nn.Module:
    """``model`` carrying the input convention of its weights (``model.preprocessing``, None:
    ImageNet's) and the names of its outputs (``model.class_names``, None where unknown or of
    another number than its classifier's)."""
    model.preprocessing = preprocessing
    fits = class_names and _num_outputs(model) == len(class_names)
    model.class_names = class_names if fits else None
    return model


def _num_outputs(model: nn.Module) -> int | None:
    """The classes a model scores: its classifier's, a detector's box classifier's or a
    segmentor's ``conv_seg``'s."""
    fc = getattr(model, "fc", None)
    if fc is None:
        roi_heads = getattr(model, "roi_heads", None)
        fc = getattr(getattr(roi_heads, "box_predictor", None), "cls_score", None)
    if fc is None:
        conv_seg = getattr(getattr(model, "decode_head", None), "conv_seg", None)
        return conv_seg.out_channels if isinstance(conv_seg, nn.Conv2d) else None
    return fc.out_features if isinstance(fc, nn.Linear) else None
