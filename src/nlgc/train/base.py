"""What every nlgc LightningModule shares: seeded steps, the optimizer and its schedule with
the recipe's parameter groups, and what goes into checkpoints beside the weights."""

from __future__ import annotations

import functools
import logging
import math

import lightning as L
import torch
from torch import nn

from nlgc.blocks import ContextBlock
from nlgc.models.initialise import InitReport, initialise_from
from nlgc.train.config import OptimConfig
from nlgc.train.recipes import OPTIMIZERS, held_lr_factor

METRICS_KEY = "nlgc_metrics"  # in checkpoints: the trainer's callback metrics when it was saved
THREADS_KEY = "nlgc_cpu_threads"  # in checkpoints: torch's intra-op CPU threads of the run

log = logging.getLogger(__name__)


class TrainingModule(L.LightningModule):
    """A LightningModule of one task: subclasses set ``self.model`` (the network the optimizer
    trains), ``self.optim`` (:class:`~nlgc.train.config.OptimConfig`), ``self.seed`` and
    ``self.freeze_bn_stats``.

    Every training step draws from seeds made of (seed, step, rank), so a run resumed from a
    checkpoint repeats an uninterrupted one exactly.
    """

    model: nn.Module
    optim: OptimConfig
    seed: int
    freeze_bn_stats: bool = False

    def train(self, mode: bool = True):
        """With ``model.freeze_bn_stats`` every BatchNorm keeps its running statistics during
        training (mmaction2's and mmdetection's ``norm_eval=True``; its scale and shift still
        learn)."""
        super().train(mode)
        if mode and self.freeze_bn_stats:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def initialise(self, checkpoint: str) -> InitReport:
        """``model.init_from``: the network started from ``checkpoint``'s weights
        (:func:`~nlgc.models.initialise.initialise_from`)."""
        return initialise_from(self.model, checkpoint)

    def _step_seed(self) -> int:
        """A seed from (seed, optimizer step, rank), all restored when a run resumes."""
        return (self.seed * 1_000_003 + self.global_step) * 64 + self.global_rank

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        torch.manual_seed(self._step_seed() + 1)  # dropout and any other randomness of a step

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The metrics so far go with the weights: a run resumed from its final checkpoint
        (nothing left to train) still reports what the uninterrupted run reported."""
        metrics = self.trainer.callback_metrics.items()
        checkpoint[METRICS_KEY] = {k: float(v) for k, v in metrics}
        checkpoint[THREADS_KEY] = torch.get_num_threads()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """CPU kernels split their sums by thread: a CPU run continued with another thread
        count than the one that wrote the checkpoint differs by rounding from one that kept it."""
        saved, now = checkpoint.get(THREADS_KEY), torch.get_num_threads()
        on_cpu = self.trainer.strategy.root_device.type == "cpu"
        if on_cpu and saved is not None and saved != now:
            log.warning(
                "the checkpoint was written with %d CPU threads, this run has %d: it continues "
                "with rounding-level differences from an uninterrupted run "
                "(set OMP_NUM_THREADS=%d to match)",
                saved,
                now,
                saved,
            )

    def configure_optimizers(self):
        hp = self.optim
        groups = parameter_groups(self.model, hp)
        optimizer = OPTIMIZERS[hp.optimizer](groups, hp)
        trainer = self.trainer
        total, epochs = trainer.estimated_stepping_batches, trainer.max_epochs
        if not math.isfinite(total):
            raise ValueError(
                "the learning-rate schedule needs trainer.max_epochs or trainer.max_steps (a "
                "positive number of epochs or optimizer steps)"
            )
        if trainer.max_steps > 0:  # iterations (mmsegmentation's 80k): epochs as the data has
            batches = trainer.num_training_batches / trainer.accumulate_grad_batches
            steps_per_epoch = max(1.0, batches)
        else:
            steps_per_epoch = max(1.0, total / epochs)

        factors = [
            functools.partial(
                held_lr_factor,
                steps_per_epoch=steps_per_epoch,
                total_steps=total,
                hp=hp,
                hold_epochs=g["hold_epochs"],
            )
            for g in groups
        ]
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "interval": "step"},
        }


NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


def parameter_groups(model: nn.Module, hp: OptimConfig) -> list[dict]:
    """The optimizer's parameter groups, one per (weight decay, learning rate, hold): the
    ``hp.no_decay`` names (``norm``, ``bias``, ``blocks``; see OptimConfig) get weight decay 0,
    the rest ``hp.weight_decay``; context-block parameters get ``hp.blocks_lr_mult`` · lr, the
    masks' (:meth:`ContextBlock.mask_parameters`) ``hp.mask_lr_mult`` · lr and the gates'
    (:meth:`ContextBlock.gate_parameters`) ``hp.gate_lr_mult`` · lr where given; the
    groups carry ``hold_epochs``: ``hp.mask_hold_epochs`` for the context masks,
    ``hp.gate_hold_epochs`` for the gates, 0 for the rest."""
    blocks = [m for m in model.modules() if isinstance(m, ContextBlock)]
    in_blocks = {id(p) for m in blocks for p in m.parameters()}
    masks = {id(p) for m in blocks for p in m.mask_parameters()}
    gates = {id(p) for m in blocks for p in m.gate_parameters()}
    mask_lr_mult, gate_lr_mult = (
        hp.blocks_lr_mult if mult is None else mult for mult in (hp.mask_lr_mult, hp.gate_lr_mult)
    )
    groups: dict[tuple[float, float, float], list[nn.Parameter]] = {}
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            in_block = id(parameter) in in_blocks
            exempt = (
                ("norm" in hp.no_decay and isinstance(module, NORMS))
                or ("bias" in hp.no_decay and name == "bias")
                or ("blocks" in hp.no_decay and in_block)
            )
            if id(parameter) in gates:
                lr_mult, hold = gate_lr_mult, hp.gate_hold_epochs
            elif id(parameter) in masks:
                lr_mult, hold = mask_lr_mult, hp.mask_hold_epochs
            else:
                lr_mult, hold = (hp.blocks_lr_mult if in_block else 1.0), 0.0
            key = (0.0 if exempt else hp.weight_decay, lr_mult, hold)
            groups.setdefault(key, []).append(parameter)
    return [
        {"params": params, "weight_decay": decay, "lr": hp.lr * mult, "hold_epochs": hold}
        for (decay, mult, hold), params in groups.items()
    ]
