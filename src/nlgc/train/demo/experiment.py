"""What the demo trains: the task, its variants, the recipe and the sizes of a run; the image
task (same class or not) here, its per-pixel version in :mod:`.segmentation`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from nlgc.analysis.inputs import Sample
from nlgc.analysis.report import Report
from nlgc.analysis.statistics import GCNET_TABLE1
from nlgc.blocks import PAIRWISE
from nlgc.blocks.non_local import UNIFORM_START
from nlgc.data.synthetic import FASHION_MNIST_ENV, fashion_files, fashion_root
from nlgc.train.config import RunConfig
from nlgc.train.datamodule import DataModule
from nlgc.train.demo.tables import Criterion


def nl_label(pairwise: str) -> str:
    """The demo's name of the NL variant with ``pairwise``, e.g. "NL embedded Gaussian"."""
    return f"NL {PAIRWISE[pairwise]}"


# Every block starts acting, not as the identity the papers start from (zero_init: False:
# the BatchNorm after W_z at γ = 1, the last convolution of SNL's and GC's transforms at
# PyTorch's init). The papers insert blocks into ImageNet-trained networks, which an identity
# start leaves as they were; trained from scratch, an identity block passes the trunk no
# gradient through the context, and runs waited at chance until the schedule ended
# (docs/demo.md, "The identity start").
ACTING = {"zero_init": False}
# Attention that a random init may start off the items starts uniform over the keys: SNL's and
# GC's masks (W_k = 0), NL embedded Gaussian's and DNL's keys (φ = 0, and DNL's unary mask; a
# random φ took the attention off the items for good on untuned seed 22: docs/demo.md, "NL's
# and DNL's start") and NL concatenation's pairs (φ = 0 and w_θᵀθ(x_i) = 1: f = 1 for every
# pair; a random start put the items' keys below the ReLU for good on seed 17, the queries on
# seed 23: "The concatenation's start"); the recipe holds them for 2 epochs.
UNIFORM = {"mask_init": "zeros"}


def pairs_start(pairwise: str) -> dict:
    """The demo's NL block options for the start of its pairs: uniform wherever the block
    allows it (embedded Gaussian, concatenation)."""
    return UNIFORM if pairwise in UNIFORM_START else {}


# label → (registered model, block options); the four NL rows are GCNet's Table 1 rows
VARIANTS = {
    "baseline": ("demo_resnet", {}),
    **{
        nl_label(p): ("nl_demo_resnet", {"pairwise": p, **pairs_start(p), **ACTING})
        for p in GCNET_TABLE1
    },
    "DNL": ("dnl_demo_resnet", {**UNIFORM, **ACTING}),
    "SNL": ("snl_demo_resnet", {**UNIFORM, **ACTING}),
    "GC": ("gc_demo_resnet", {**UNIFORM, **ACTING}),
}
NL_EMBEDDED = nl_label("embedded_gaussian")
QUICK_VARIANTS = ("baseline", NL_EMBEDDED, "DNL", "GC")  # the papers' story in ≤ 2 minutes
# The training recipe (docs/demo.md has the measurements behind it): AdamW,
# one epoch of linear warm-up, then a cosine per step; no weight decay on norms, biases
# and the context blocks (decay pulled GC's and SNL's transforms back to a constant bias);
# 4 × the learning rate on the context blocks (chosen while they started as the identity, as a
# faster way off the plateau at chance: it rescued 5 of the 8 failed runs of the 1 × recipe;
# kept with the acting start, which the 20-seed table measured with it); the blocks' masks
# (UNIFORM above) start uniform and are held for 2 epochs, so that the early gradient,
# which pushes a mask off the items before the network can use them, cannot (it left 3 of the
# 35 runs of the 4 ×, 9-epoch table at chance); NL concatenation's gate (θ, φ and w_f, in
# front of its ReLU, which nothing normalises) learns at 1 × the learning rate and is held for
# the same 2 epochs: at 4 × from the first step, Adam put every pair below the ReLU for good on
# 3 of 20 seeds (docs/demo.md, "The concatenation's gate").
RECIPE = {
    "optimizer": "adamw",
    "lr": 0.003,
    "weight_decay": 0.05,
    "augment": "none",
    "schedule": "cosine",
    "warmup_epochs": 1.0,  # 69 of the 621 steps of a default run
    "no_decay": ["norm", "bias", "blocks"],
    "blocks_lr_mult": 4.0,
    "mask_hold_epochs": 2.0,  # 138 of the 621 steps of a default run
    "gate_lr_mult": 1.0,
    "gate_hold_epochs": 2.0,
}
# the image demo's recipe: SNL's and GC's masks learn at 1 × the learning rate, as the gate does
# (at the blocks' 4 ×, Adam's steps swung GC's mask off the items after its release on 1 of 20
# seeds; docs/demo.md, "The mask's learning rate"); the segmentation and detection demos were
# measured with the shared RECIPE (masks at 4 ×)
RECIPE_CLASSIFICATION = {**RECIPE, "mask_lr_mult": 1.0}
SETTINGS = {  # quick: ≤ 2 minutes; default: ≤ 10 minutes on 2 idle CPU cores
    "quick": {"count": 1280, "val_count": 300, "test_count": 500, "epochs": 8, "batch_size": 32},
    "default": {
        "count": 4400,
        "val_count": 500,
        "test_count": 2000,
        "epochs": 9,
        "batch_size": 64,
    },
}
MARGIN = 0.10  # a context variant fails a seed when it beats the baseline by less
CRITERION = Criterion("test/top1", "test top-1", MARGIN)
SEED_TABLE = "Test top-1 per seed (same class in corners 54+ px apart?)"
CHANNELS_LAST = True  # the same function; 15–25% less time per step on this project's CPU
# Five Fashion-MNIST classes of distinct shape (T-shirt/top, trouser, dress, sandal, bag): with all
# ten, telling a shirt from a pullover a canvas apart kept some runs at chance for the whole
# schedule (see docs/demo.md, "Why runs fail")
KINDS = (0, 1, 3, 5, 8)
# the per-pixel and per-object tasks (PartnerPairs): T-shirt/top and trouser top-left, sandal
# and bag bottom-right
PARTNER_KINDS = (0, 1, 5, 8)
SIZE = 112  # objects ≥ 54 px apart: beyond the plain network's 51-px receptive field
TABLE1_IMAGES = 200  # test images GCNet's statistics and the decomposition are averaged over
FASHION = "Fashion-MNIST (Debian dataset-fashion-mnist)"
NO_FASHION = (
    "Fashion-MNIST is not installed ({root} has no idx files): the demo runs on DRAWN SHAPES, an "
    "easier stand-in. For the real data: sudo apt-get install dataset-fashion-mnist (make demo "
    f"does this where it may), or set {FASHION_MNIST_ENV} to a folder of the four idx .gz files"
)


def announce_data() -> str:
    """Which objects the demo uses, in one line; a loud warning on stderr when they are the
    drawn shapes."""
    if fashion_files("test") is not None:
        return f"{FASHION} from {fashion_root()}"
    line = NO_FASHION.format(root=fashion_root())
    print(f"\n{'!' * 100}\nWARNING: {line}\n{'!' * 100}\n", file=sys.stderr)
    return line


def run_config(
    model: tuple[str, dict], out: Path, seed: int, data: dict, epochs: int, recipe: dict
) -> RunConfig:
    """A demo run's config: ``model`` (registered name, options) trained for ``epochs`` on
    ``data`` (its ``data`` section) into ``out`` with ``recipe`` (the ``optim`` section), on
    the CPU, deterministic."""
    name, options = model
    return RunConfig.from_dict(
        {
            "seed": seed,
            "out": str(out),
            "model": {"name": name, "overrides": options, "channels_last": CHANNELS_LAST},
            "data": {"size": SIZE, "kinds": KINDS, **data},
            "optim": dict(recipe),
            "trainer": {
                "max_epochs": epochs,
                "accelerator": "cpu",
                "devices": 1,
                "deterministic": True,
                "log_every_n_steps": 10,
                "enable_model_summary": False,
            },
        }
    )


def first_test_items(experiment: Experiment) -> tuple[Dataset, list]:
    """The test split of the experiment's first seed, as its baseline's config reads it, and
    its first TABLE1_IMAGES items."""
    seed = experiment.seeds[0]
    data = DataModule(experiment.config(experiment.criterion.baseline, Path("."), seed).data, seed)
    data.setup("test")
    test_set = data.datasets["test"]
    return test_set, [test_set[i] for i in range(min(TABLE1_IMAGES, len(test_set)))]


@dataclass(frozen=True)
class DemoTask:
    """What one demo task trains and how it scores the runs.

    Args:
        name: ``nlgc demo --task NAME``.
        variants: label → (registered model, its options); the criterion's baseline among them.
        quick_variants: the labels ``--quick`` trains.
        settings: ``"quick"`` / ``"default"`` → the sizes of a run: ``epochs`` and the data's
            ``count``, ``val_count``, ``test_count`` and ``batch_size``.
        recipe: the optimizer and schedule (``optim``) every variant trains with.
        criterion: the test metric, the baseline and the margin a variant must beat it by.
        seed_title: the title of the per-seed table.
        data: the task's ``data`` section of every run config, but the sizes (``kind`` and its
            options; ``kinds``, the Fashion-MNIST classes, where not the image demo's).
        probe: the experiment → the test images the analyses and pictures look at.
        task_report: (results, the first seed's trained models by label, the probe images, the
            output folder) → the task's own part of the report; None for none.
    """

    name: str
    variants: dict[str, tuple[str, dict]]
    quick_variants: tuple[str, ...]
    settings: dict[str, dict]
    recipe: dict
    criterion: Criterion
    seed_title: str
    data: dict
    probe: Callable[[Experiment], ProbeImages]
    task_report: Callable[..., Report] | None = None

    @property
    def kinds(self) -> tuple[int, ...]:
        """The Fashion-MNIST classes its data draws from."""
        return tuple(self.data.get("kinds", KINDS))


@dataclass(frozen=True)
class Experiment:
    """One demo run's task, variants, seeds and sizes ("quick" or "default")."""

    task: DemoTask
    kind: str
    labels: tuple[str, ...]
    seeds: tuple[int, ...]

    @classmethod
    def of(cls, quick: bool, seeds: tuple[int, ...], task: DemoTask | None = None) -> Experiment:
        """The quick experiment (the task's quick variants) or the default one (every
        variant) of ``task`` (the image task by default)."""
        task = task or CLASSIFICATION
        if quick:
            return cls(task, "quick", task.quick_variants, seeds)
        return cls(task, "default", tuple(task.variants), seeds)

    @property
    def settings(self) -> dict:
        return self.task.settings[self.kind]

    @property
    def criterion(self) -> Criterion:
        return self.task.criterion

    def config(self, label: str, out: Path, seed: int) -> RunConfig:
        """The run config of variant ``label`` and ``seed``, trained into ``out``."""
        sizes = dict(self.settings)
        epochs = sizes.pop("epochs")
        data = {**self.task.data, **sizes}
        return run_config(self.task.variants[label], out, seed, data, epochs, self.task.recipe)

    def report_settings(self) -> dict:
        """What the report records of the experiment."""
        return {
            "task": self.task.name,
            "seeds": list(self.seeds),
            "kind": self.kind,
            "variants": {
                label: {
                    "model": self.task.variants[label][0],
                    "options": self.task.variants[label][1],
                }
                for label in self.labels
            },
            "image size": SIZE,
            "fashion-mnist classes": list(self.task.kinds),
            "channels last": CHANNELS_LAST,
            **self.settings,
            "recipe": self.task.recipe,
        }


@dataclass
class ProbeImages:
    """The test images the analyses look at: the first TABLE1_IMAGES, as the task's networks take
    them (B, 3, S, S); six samples to draw; the objects' source ("fashion-mnist" or "shapes");
    for the segmentation task their label maps (B, S, S), for detection their targets."""

    batch: torch.Tensor
    samples: list[Sample]
    source: str
    masks: torch.Tensor | None = None
    targets: list[dict] | None = None

    @classmethod
    def of(cls, experiment: Experiment) -> ProbeImages:
        """The test images of the experiment's first seed."""
        test_set, items = first_test_items(experiment)
        pixels = torch.stack([image for image, _ in items])
        samples = [
            Sample.from_pixels(f"test {i} ({test_set.classes[label]})", pixels[i])
            for i, (_, label) in enumerate(items[:6])
        ]
        batch = torch.stack([Sample.from_pixels("", p).tensor for p in pixels])
        return cls(batch, samples, test_set.source)


CLASSIFICATION = DemoTask(
    "classification",
    VARIANTS,
    QUICK_VARIANTS,
    SETTINGS,
    RECIPE_CLASSIFICATION,
    CRITERION,
    SEED_TABLE,
    {"kind": "synthetic"},
    ProbeImages.of,
)
