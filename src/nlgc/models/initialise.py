"""Start a network from another one's weights: ImageNet 2D checkpoints inflated into C2D/I3D,
or any released backbone into a network with context blocks, for fine-tuning.

The rule for a t×k×k kernel from a k×k one is the one mmaction2 (``ResNet3d._inflate_conv_params``
in ``mmaction/models/backbones/resnet3d.py``: ``unsqueeze(2).expand_as(conv3d) / kernel_t``)
and the official Caffe2 code (``initialize_master_gpu_model_params`` in
``lib/utils/checkpoints.py``: ``np.stack([w] * T, axis=2) / T``) share: the 2D kernel repeated
T times along time and divided by T, so a clip of identical frames gives the 2D network's
response. BN and every tensor of the same shape are copied; context blocks keep their identity
initialisation; a classifier of another size is left at its initialisation (re-created for the
data's classes). The report carries the input convention of the weights (the zoo entry's or the
source's), which training then normalises its batches with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from torch import nn

from nlgc.models.checkpoint import Checkpoint, open_checkpoint
from nlgc.models.preprocessing import Preprocessing
from nlgc.models.weights import block_prefixes, match_state


@dataclass
class InitReport:
    """What :func:`initialise_from` did with every tensor of the model and of the file."""

    checkpoint: str
    source: str
    inflated: list[str] = field(default_factory=list)  # 2D kernel → t×k×k
    copied: list[str] = field(default_factory=list)
    left_at_init: list[str] = field(default_factory=list)  # context blocks, a new classifier
    ignored: list[str] = field(default_factory=list)  # file keys the model has no place for
    preprocessing: Preprocessing | None = None  # the input the weights expect (zoo or source)

    def __str__(self) -> str:
        return (
            f"initialised from {self.checkpoint} ({self.source} layout): "
            f"{len(self.inflated)} inflated, {len(self.copied)} copied, "
            f"{len(self.left_at_init)} left at init, {len(self.ignored)} ignored"
        )

    def as_dict(self) -> dict:
        return asdict(self)  # the preprocessing as a plain dict too


def initialise_from(
    model: nn.Module, checkpoint: str | os.PathLike | Mapping | Checkpoint
) -> InitReport:
    """Load what fits of ``checkpoint`` (a zoo name, URL, file or state dict, in any source's
    layout, or one :func:`~nlgc.models.checkpoint.open_checkpoint` opened) into ``model``,
    inflating 2D kernels where the model has 3D ones.

    Every backbone tensor of the model must come from the file (a missing or mis-shaped one is
    a ValueError listing them, and the model is left unchanged); context blocks, BN counters
    and a classifier of another size stay as initialised.
    """
    opened = open_checkpoint(checkpoint)
    report = InitReport(
        opened.where,
        opened.source_name,
        ignored=list(opened.ignored),
        preprocessing=opened.preprocessing,
    )
    state, where = opened.state, opened.where
    match, blocks = match_state(model, state, inflate=True), block_prefixes(model)
    report.copied, report.inflated = match.copied, match.inflated
    report.left_at_init = match.kept + match.resized
    report.left_at_init += [key for key in match.mismatched if key.startswith(blocks)]
    report.ignored += sorted(match.unexpected)
    problems = [f"{key} {want} ← absent" for key, want in match.missing.items()] + [
        f"{key} {want} ← {got}"
        for key, (got, want) in match.mismatched.items()
        if not key.startswith(blocks)
    ]
    if problems:
        raise ValueError(
            f"{where} cannot initialise this model: {len(problems)} backbone tensors do not "
            f"fit: {', '.join(problems[:8])}{', …' if len(problems) > 8 else ''}"
        )
    model.load_state_dict(match.merged, strict=False)
    return report
