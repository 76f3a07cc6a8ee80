"""The recipe's tables: optimizers, schedules (mmdetection's 1x: 500 linear warm-up iterations,
steps at epochs 8 and 11) and augmentations, each looked up by its config name."""

import pytest
import torch

from nlgc.train.config import OptimConfig
from nlgc.train.recipes import AUGMENTATIONS, OPTIMIZERS, SCHEDULES, augmentation, lr_factor


def test_mmdetection_1x_schedule_with_warmup_iterations():
    hp = OptimConfig(
        lr=0.02,
        schedule="multistep",
        milestones=(8, 11),
        warmup_iters=500,
        warmup_factor=0.001,
    )
    per_epoch, total = 1000.0, 12000.0
    # mmengine LinearLR(start_factor=0.001, begin=0, end=500): start + (1 − start) · step / end
    assert lr_factor(0, per_epoch, total, hp) == pytest.approx(0.001)
    assert lr_factor(250, per_epoch, total, hp) == pytest.approx(0.001 + 0.999 * 0.5)
    assert lr_factor(500, per_epoch, total, hp) == 1.0
    assert lr_factor(7999, per_epoch, total, hp) == 1.0
    assert lr_factor(8000, per_epoch, total, hp) == pytest.approx(0.1)
    assert lr_factor(11000, per_epoch, total, hp) == pytest.approx(0.01)
    with pytest.raises(ValueError, match=r"not given with optim\.warmup_epochs"):
        OptimConfig(warmup_iters=500, warmup_epochs=1)


def test_poly_schedule_is_mmengines_poly_lr():
    """mmsegmentation's PolyLR(eta_min=1e-4, power=0.9, begin=0, end=total): mmengine's chained
    form lr ← (lr − eta_min)(1 − 1 / (total_iters − step + 1))^power + eta_min, written out."""
    hp = OptimConfig(lr=0.01, schedule="poly", poly_power=0.9, min_lr=1e-4)
    total, total_iters = 50, 49  # mmengine: total_iters = end − begin − 1
    lr, expected = 0.01, [0.01]
    for step in range(1, total):
        lr = (lr - 1e-4) * (1 - 1 / (total_iters - step + 1)) ** 0.9 + 1e-4
        expected.append(lr)
    got = [0.01 * lr_factor(step, 10.0, total, hp) for step in range(total)]
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert got[-1] == pytest.approx(1e-4)
    with pytest.raises(ValueError, match=r"optim.min_lr must be in \[0, lr\]"):
        OptimConfig(lr=0.01, min_lr=0.1)


def test_every_config_name_is_a_table_entry():
    model = torch.nn.Linear(3, 2)
    groups = [{"params": list(model.parameters())}]
    sgd = OPTIMIZERS["sgd"](groups, OptimConfig(momentum=0.9, nesterov=True))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    plain = OPTIMIZERS["sgd"]([{"params": list(model.parameters())}], OptimConfig(momentum=0))
    assert plain.defaults["momentum"] == 0 and not plain.defaults["nesterov"]
    assert isinstance(
        OPTIMIZERS["adamw"](groups, OptimConfig(optimizer="adamw")), torch.optim.AdamW
    )
    with pytest.raises(
        ValueError, match=r"nesterov: true needs optim\.optimizer: sgd with optim\.momentum > 0"
    ):
        OptimConfig(momentum=0, nesterov=True)
    with pytest.raises(
        ValueError,
        match=r"optim.schedule must be one of \('cosine', 'multistep', 'poly', 'constant'\)",
    ):
        OptimConfig(schedule="linear")
    assert set(SCHEDULES) == {"cosine", "multistep", "poly", "constant"}
    assert augmentation("none", video=False) is None
    assert [type(m).__name__ for m in augmentation("standard", video=False).children()] == [
        "RandomResizedCrop",
        "RandomHorizontalFlip",
    ]
    assert len(AUGMENTATIONS["flip"]) == 1
