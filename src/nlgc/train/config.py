"""A run's configuration: one small dataclass per YAML section, checked when it is built.

    seed: 0
    out: runs/gc_resnet50
    model: {name: gc_resnet50, num_classes: null, overrides: {ratio: 0.0625}}
    data: {kind: images, root: /data/imagenet, size: 224, batch_size: 64, workers: 8,
           video_test: {clips: 10, crops: 3, short_side: 256}}
    optim: {optimizer: sgd, lr: 0.1, weight_decay: 1.0e-4, augment: standard}
    trainer: {max_epochs: 100, devices: auto, strategy: auto, precision: 32-true}

``trainer`` stays a mapping: it is passed to ``lightning.Trainer`` as it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nlgc.checks import check_choice, check_positive_int
from nlgc.data.annotations import FORMATS
from nlgc.data.synthetic import DEFAULT_KINDS
from nlgc.evaluation.segmentation import SegmentationTest
from nlgc.train.formats import DATA_FORMATS
from nlgc.train.recipes import AUGMENTATIONS, OPTIMIZERS, SCHEDULES


def _section(cls, name: str, values: Mapping | None):
    """``cls(**values)`` with unknown keys named (and the known ones listed)."""
    values = dict(values or {})
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {name} keys {unknown}; known: {known}")
    return cls(**values)


def _pair(name: str, value) -> tuple[int, int]:
    """Two positive integers (a [h, w] size or a [long, short] scale)."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise ValueError(f"{name} must be two positive integers, got {value!r}")
    return tuple(check_positive_int(name, v) for v in value)


@dataclass
class VideoTest:
    """The Non-local paper's test on whole videos: ``clips`` clips spread over each video,
    short side resized to ``short_side``, ``crops`` (1 or 3) square crops per clip."""

    clips: int = 10
    crops: int = 3
    short_side: int = 256

    def __post_init__(self):
        check_positive_int("data.video_test.clips", self.clips)
        check_positive_int("data.video_test.short_side", self.short_side)
        check_choice("data.video_test.crops", self.crops, (1, 3))


@dataclass
class ModelConfig:
    """A registered model (``nlgc models``), its classes (default: the data's) and options;
    ``init_from``: weights to start from (a zoo name, URL or file: ImageNet 2D weights are
    inflated into video models, context blocks keep their identity start, the classifier is
    re-created for the data's classes; see :func:`nlgc.models.initialise.initialise_from`);
    ``freeze_bn_stats``: BN running statistics kept during training (mmaction2's
    ``norm_eval``); ``channels_last``: the network and its batches in channels-last memory
    format (the same function; on CPUs and tensor-core GPUs usually faster);
    ``auxiliary_weight``: a segmentor's auxiliary-head loss weight (mmsegmentation's 0.4)."""

    name: str
    num_classes: int | None = None
    overrides: dict = field(default_factory=dict)
    init_from: str | None = None
    freeze_bn_stats: bool = False
    channels_last: bool = False
    auxiliary_weight: float = 0.4

    def __post_init__(self):
        self.overrides = dict(self.overrides or {})
        if not self.auxiliary_weight >= 0:
            raise ValueError(f"model.auxiliary_weight must be >= 0, got {self.auxiliary_weight}")


@dataclass
class DataConfig:
    """Where the data comes from and how it is loaded.

    ``kind``: ``images`` / ``videos`` (class-per-folder under ``root/{train,val[,test]}``, or
    for videos with ``format`` ``list`` / ``rawframes`` / ``kinetics_csv`` / ``slowfast_csv``
    the annotation files ``train_list``/``val_list``/``test_list`` (relative to ``root`` or
    absolute; see :mod:`nlgc.data.annotations`), class names from ``label_map``, labels
    checked against ``num_classes``, ``multi_label`` lists read as multi-hot targets) or
    ``synthetic`` (the built-in task: ``count``/``val_count``/``test_count`` items, ``frames``
    > 0 for clips, objects from ``source`` and the Fashion-MNIST classes ``kinds``; per pixel,
    for segmentors: ``synthetic_masks``, :class:`~nlgc.data.synthetic.PairsMasks`; per object,
    for detectors: ``synthetic_instances``, :class:`~nlgc.data.synthetic.PairsInstances`).
    Videos give clips of ``clip_len`` frames every ``frame_interval`` frames; with
    ``full_video_test`` the test split is scored on whole videos by ``video_test``. Training
    crops of clips:
    ``train_scale`` [low, high] (short side drawn from it, random ``size`` crop: the Non-local
    paper's [256, 320]) or ``multiscale_crop`` (mmaction2's MultiScaleCrop scales, e.g.
    [1, 0.8], width and height scales at most ``multiscale_gap`` apart, after a short side of
    ``resize``), else the centre crop. ``coco``: COCO-format instances (``root`` with COCO's
    layout, ``annotations/instances_{train,val}2017.json`` and ``{train,val}2017/``, or any
    instances file and image folder per split in ``annotations`` / ``images``, e.g.
    ``{train: my/train.json}``), images resized by the detector to ``min_size`` (shorter side)
    within ``max_size`` (mmdetection's (1333, 800) keep-ratio), flipped in training, batches
    grouped by aspect ratio; ``test`` is ``val`` unless ``annotations`` names a test file.
    ``cityscapes``, ``ade20k``, ``voc`` and ``masks`` (``{split}/images`` + ``{split}/masks``,
    classes from ``label_map`` or ``num_classes``): images with label maps
    (:mod:`nlgc.data.segmentation`), trained on ``crop_size`` [h, w] crops after a random
    resize of ``ratio_range`` × ``scale`` [long, short] with ``cat_max_ratio``, flips and
    (``photometric``) colour distortion; validated and tested on whole images as
    ``segmentation_test`` says (:class:`~nlgc.evaluation.segmentation.SegmentationTest`:
    ``scale``, ``mode`` whole / slide, ``crop_size``, ``stride``, ``ratios``, ``flip``);
    ``test`` is ``val`` where the dataset has no labelled test split (Cityscapes, ADE20K, VOC).
    """

    kind: str = "synthetic"
    root: str | None = None
    format: str = "folders"
    train_list: str | None = None
    val_list: str | None = None
    test_list: str | None = None
    label_map: str | None = None
    num_classes: int | None = None
    multi_label: bool = False
    train_scale: tuple[int, int] | None = None
    multiscale_crop: tuple[float, ...] | None = None
    multiscale_gap: int = 1
    resize: int = 256
    size: int = 224
    batch_size: int = 32
    workers: int = 0
    skip_corrupt: bool = False
    clip_len: int = 8
    frame_interval: int = 8
    full_video_test: bool = True
    video_test: VideoTest = field(default_factory=VideoTest)
    count: int = 4000
    val_count: int = 1000
    test_count: int = 1000
    frames: int = 0
    source: str = "auto"
    kinds: tuple[int, ...] = DEFAULT_KINDS
    annotations: dict | None = None
    images: dict | None = None
    min_size: int = 800
    max_size: int = 1333
    crop_size: tuple[int, int] = (512, 1024)
    scale: tuple[int, int] = (2048, 1024)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    photometric: bool = True
    segmentation_test: SegmentationTest = field(default_factory=SegmentationTest)

    def __post_init__(self):
        data_format = DATA_FORMATS[check_choice("data.kind", self.kind, DATA_FORMATS)]
        check_choice("data.format", self.format, ("folders", *FORMATS))
        if self.format != "folders":
            if not data_format.annotation_lists:
                lists = [k for k, f in DATA_FORMATS.items() if f.annotation_lists]
                raise ValueError(
                    f"data.format={self.format!r} needs a data.kind that reads annotation lists "
                    f"({', '.join(lists)}), got {self.kind!r}"
                )
            if not (self.train_list and self.val_list):
                raise ValueError(f"data.format={self.format!r} needs data.train_list and val_list")
        if self.train_scale is not None:
            low, high = self.train_scale
            if not self.size <= low <= high:
                raise ValueError(
                    f"data.train_scale must be [low, high] with size <= low <= high, got "
                    f"{self.train_scale} for size {self.size}"
                )
            self.train_scale = (int(low), int(high))
        if self.multiscale_crop is not None:
            self.multiscale_crop = tuple(float(s) for s in self.multiscale_crop)
        if data_format.reads_root and not self.root:
            raise ValueError(f"data.root is required for data.kind={self.kind!r}")
        for split in (*(self.annotations or {}), *(self.images or {})):
            check_choice("data.annotations / data.images split", split, ("train", "val", "test"))
        for name in ("size", "batch_size", "clip_len", "frame_interval", "min_size", "max_size"):
            check_positive_int(f"data.{name}", getattr(self, name))
        if not isinstance(self.video_test, VideoTest):
            self.video_test = _section(VideoTest, "data.video_test", self.video_test)
        self.crop_size, self.scale = (
            _pair("data.crop_size", self.crop_size),
            _pair("data.scale", self.scale),
        )
        low, high = self.ratio_range
        if not 0 < low <= high:
            raise ValueError(
                f"data.ratio_range must be [low, high] with 0 < low <= high, got {self.ratio_range}"
            )
        self.ratio_range = (float(low), float(high))
        if not 0 < self.cat_max_ratio <= 1:
            raise ValueError(f"data.cat_max_ratio must be in (0, 1], got {self.cat_max_ratio}")
        if not isinstance(self.segmentation_test, SegmentationTest):
            test = dict(self.segmentation_test or {})
            for key in ("scale", "crop_size", "stride"):
                if test.get(key) is not None:
                    test[key] = _pair(f"data.segmentation_test.{key}", test[key])
            test["ratios"] = tuple(float(r) for r in test.get("ratios", (1.0,)))
            self.segmentation_test = _section(SegmentationTest, "data.segmentation_test", test)
        self.kinds = tuple(self.kinds)


NO_DECAY = ("norm", "bias", "blocks")  # parameter groups that may be kept out of weight decay


@dataclass
class OptimConfig:
    """The optimiser (SGD with momentum, plain as torch's and mmaction2's unless ``nesterov:
    true`` as the Caffe2 code's ``SOLVER.NESTEROV``, or AdamW), its learning-rate
    schedule, the loss's label smoothing and the batch augmentation (kornia: random resized
    crop + flip, flip, or none).

    The schedule is stepped every optimizer step: ``warmup_epochs`` (may be fractional) or
    ``warmup_iters`` optimizer steps (mmdetection's ``LinearLR(begin=0, end=500)``) of linear
    warm-up from ``warmup_factor`` · lr, then ``cosine`` annealing to 0 over the rest,
    ``multistep`` (× ``gamma`` at each epoch of ``milestones``), ``poly`` (mmsegmentation's
    ``PolyLR``: (1 − progress)^``poly_power`` down to ``min_lr``) or ``constant``. ``no_decay``
    keeps groups of parameters out of weight decay: ``norm`` (BatchNorm / LayerNorm weights and
    biases), ``bias`` (every bias) and ``blocks`` (every parameter of the context blocks).
    ``blocks_lr_mult`` scales the learning rate of every context-block parameter (mmcv's
    ``paramwise_cfg=dict(custom_keys={...: dict(lr_mult=...)})``); the schedule scales it alike.
    ``mask_hold_epochs`` holds the context masks of SNL and GC blocks (W_k and its bias; φ, and
    DNL's w_m, of NL and DNL blocks with ``mask_init: zeros``;
    :meth:`ContextBlock.mask_parameters`) at their start for that many epochs (learning rate 0),
    then they follow the schedule: with ``mask_init: zeros`` the blocks pool by averaging while
    the rest of the network learns to use the context (docs/demo.md, "Holding the mask").
    ``mask_lr_mult``, where given, replaces ``blocks_lr_mult`` for those masks: a mask's
    logit w_kᵀx_j sums C weights, each moved by about the learning rate per Adam step, so at
    4 × a few steps can swing the softmax off the items for good (docs/demo.md, "The mask's
    learning rate").
    ``gate_lr_mult``, where given, replaces ``blocks_lr_mult`` for the parameters in front of
    an unnormalised ReLU gate (θ, φ and w_f of NL concatenation,
    :meth:`ContextBlock.gate_parameters`): an Adam step moves every one of them by about the
    learning rate, and a few such steps can put every pair below the ReLU for good
    (docs/demo.md, "The concatenation's gate"); ``gate_hold_epochs`` holds them at their start
    for that many epochs, as ``mask_hold_epochs`` holds the masks. ``release_epochs`` lets a
    held group's learning rate rise linearly from 0 over that many epochs after its hold (its
    own warm-up): released at the schedule's full rate, Adam's first steps moved every weight
    of a mask by the learning rate at once and undid what the network had learned during the
    hold (docs/demo.md, "The release of the hold").
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    augment: str = "standard"
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    warmup_iters: int = 0
    warmup_factor: float = 0.1
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    poly_power: float = 0.9
    min_lr: float = 0.0
    no_decay: tuple[str, ...] = ()
    blocks_lr_mult: float = 1.0
    mask_hold_epochs: float = 0.0
    mask_lr_mult: float | None = None
    gate_lr_mult: float | None = None
    gate_hold_epochs: float = 0.0
    release_epochs: float = 0.0

    def __post_init__(self):
        check_choice("optim.optimizer", self.optimizer, OPTIMIZERS)
        check_choice("optim.augment", self.augment, AUGMENTATIONS)
        check_choice("optim.schedule", self.schedule, SCHEDULES)
        if self.nesterov and (self.optimizer != "sgd" or not self.momentum > 0):
            raise ValueError(
                "optim.nesterov: true needs optim.optimizer: sgd with optim.momentum > 0, got "
                f"optimizer {self.optimizer!r}, momentum {self.momentum}"
            )
        self.milestones = tuple(float(m) for m in self.milestones)
        self.no_decay = (self.no_decay,) if isinstance(self.no_decay, str) else tuple(self.no_decay)
        for group in self.no_decay:
            check_choice("optim.no_decay", group, NO_DECAY)
        if not self.blocks_lr_mult > 0:
            raise ValueError(f"optim.blocks_lr_mult must be > 0, got {self.blocks_lr_mult}")
        for name in ("mask_lr_mult", "gate_lr_mult"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"optim.{name} must be > 0 or null, got {getattr(self, name)}")
        for name in ("mask_hold_epochs", "gate_hold_epochs", "release_epochs"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"optim.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.min_lr <= self.lr or not self.poly_power > 0:
            raise ValueError(
                "optim.min_lr must be in [0, lr] and optim.poly_power > 0, got "
                f"{self.min_lr} (lr {self.lr}) and {self.poly_power}"
            )
        if self.warmup_epochs < 0:
            raise ValueError(f"optim.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.warmup_iters < 0 or (self.warmup_iters and self.warmup_epochs):
            raise ValueError(
                "optim.warmup_iters must be >= 0 and not given with optim.warmup_epochs, got "
                f"{self.warmup_iters} and {self.warmup_epochs}"
            )
        if not 0 < self.warmup_factor <= 1:
            raise ValueError(f"optim.warmup_factor must be in (0, 1], got {self.warmup_factor}")
        if self.schedule == "multistep" and (
            not self.milestones or list(self.milestones) != sorted(set(self.milestones))
        ):
            raise ValueError(
                "optim.schedule=multistep needs optim.milestones: increasing epochs, got "
                f"{list(self.milestones)}"
            )


@dataclass
class RunConfig:
    """A whole config file: ``RunConfig.from_dict(yaml.safe_load(text))``."""

    model: ModelConfig
    seed: int = 0
    out: Path = Path("runs")
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, config: Mapping) -> RunConfig:
        sections = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(config) - set(sections))
        if unknown:
            raise ValueError(f"unknown config sections {unknown}; known: {sorted(sections)}")
        if not isinstance(config.get("model"), Mapping) or "name" not in config["model"]:
            raise ValueError("the config needs model.name (see `nlgc models`)")
        trainer = config.get("trainer") or {}
        if not isinstance(trainer, Mapping):
            raise ValueError(
                f"trainer must be a mapping of lightning.Trainer arguments, got {trainer!r}"
            )
        return cls(
            model=_section(ModelConfig, "model", config["model"]),
            seed=int(config.get("seed", 0)),
            out=Path(config.get("out", "runs")),
            data=_section(DataConfig, "data", config.get("data")),
            optim=_section(OptimConfig, "optim", config.get("optim")),
            trainer=dict(trainer),
        )
