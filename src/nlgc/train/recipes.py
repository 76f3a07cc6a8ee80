"""The training recipe's choices as tables: optimizers, learning-rate schedules and batch
augmentations, each looked up by its config name (``optim.optimizer``, ``optim.schedule``,
``optim.augment``). Adding one is one entry."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from kornia import augmentation as K


def _sgd(groups: list[dict], hp) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov)


def _adamw(groups: list[dict], hp) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=hp.lr)


# optim.optimizer → (parameter groups, OptimConfig) → optimizer
OPTIMIZERS: dict[str, Callable[[list[dict], object], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adamw": _adamw,
}


def _cosine(step: float, steps_per_epoch: float, total_steps: float, warmup: float, hp) -> float:
    progress = min(1.0, (step - warmup) / max(1.0, total_steps - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress))


def _multistep(step: float, steps_per_epoch: float, total_steps: float, warmup: float, hp):
    epoch = step / steps_per_epoch
    return hp.gamma ** sum(epoch >= milestone for milestone in hp.milestones)


def _poly(step: float, steps_per_epoch: float, total_steps: float, warmup: float, hp) -> float:
    """mmengine's ``PolyLR``: (1 − progress)^``poly_power`` from lr down to ``min_lr``, which
    the last step reaches (its ``total_iters = end − begin − 1``)."""
    progress = min(1.0, (step - warmup) / max(1.0, total_steps - warmup - 1))
    floor = hp.min_lr / hp.lr
    return (1 - floor) * (1 - progress) ** hp.poly_power + floor


def _constant(step: float, steps_per_epoch: float, total_steps: float, warmup: float, hp):
    return 1.0


# optim.schedule → the learning rate after warm-up, as a multiple of optim.lr, at a step:
# (step, steps per epoch, total steps, warm-up steps, OptimConfig) → factor
SCHEDULES: dict[str, Callable[..., float]] = {
    "cosine": _cosine,
    "multistep": _multistep,
    "poly": _poly,
    "constant": _constant,
}


def lr_factor(step: int, steps_per_epoch: float, total_steps: float, hp) -> float:
    """The learning rate at optimizer ``step`` as a multiple of ``hp.lr``: linear warm-up over
    ``hp.warmup_epochs`` (or ``hp.warmup_iters`` steps), then ``hp.schedule``'s factor
    (:data:`SCHEDULES`)."""
    warmup = hp.warmup_iters or hp.warmup_epochs * steps_per_epoch
    if step < warmup:
        return hp.warmup_factor + (1 - hp.warmup_factor) * step / warmup
    return SCHEDULES[hp.schedule](step, steps_per_epoch, total_steps, warmup, hp)


def held_lr_factor(
    step: int, steps_per_epoch: float, total_steps: float, hp, hold_epochs: float
) -> float:
    """:func:`lr_factor` for a parameter group held for its first ``hold_epochs`` (0 until
    then), after which it rises linearly from 0 over ``hp.release_epochs`` (its own warm-up,
    none for a group that was not held)."""
    held = hold_epochs * steps_per_epoch
    if step < held:
        return 0.0
    release = hp.release_epochs * steps_per_epoch
    ramp = min(1.0, (step - held + 1) / release) if hold_epochs and release else 1.0
    return ramp * lr_factor(step, steps_per_epoch, total_steps, hp)


def _random_resized_crop() -> K.RandomResizedCrop:
    return K.RandomResizedCrop((224, 224), scale=(0.25, 1.0))  # its size is set per batch


# optim.augment → the kornia layers of the batch augmentation, in order
AUGMENTATIONS: dict[str, tuple[Callable[[], torch.nn.Module], ...]] = {
    "none": (),
    "flip": (K.RandomHorizontalFlip,),
    "standard": (_random_resized_crop, K.RandomHorizontalFlip),
}


def augmentation(name: str, video: bool) -> torch.nn.Module | None:
    """``name``'s layers as one kornia container (frames of a clip augmented alike), or None."""
    layers = [make() for make in AUGMENTATIONS[name]]
    if not layers:
        return None
    if video:
        return K.VideoSequential(*layers, data_format="BCTHW", same_on_frame=True)
    return K.AugmentationSequential(*layers)
