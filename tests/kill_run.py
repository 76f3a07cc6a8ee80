"""Run `nlgc fit` on a config and SIGKILL the process at a chosen point (for the resume tests).

python tests/kill_run.py CONFIG POINT N   # die at the N-th (1-based) time POINT is reached

Points: train_batch (after a training step), validation_batch, train_epoch_end,
validation_end (before the epoch's checkpoint), save_checkpoint (while Lightning builds it),
checkpoint_written (its temporary file complete, before the rename), after_checkpoint (the
epoch's checkpoint renamed into place).
"""

import os
import signal
import sys

import lightning as L

import nlgc.common
from nlgc.train import run

POINTS = (
    "train_batch",
    "validation_batch",
    "train_epoch_end",
    "validation_end",
    "save_checkpoint",
    "checkpoint_written",
    "after_checkpoint",
)


class KillAt(L.Callback):
    def __init__(self, point: str, count: int):
        self.point, self.count, self.seen = point, count, 0

    def reached(self, point: str) -> None:
        if point == self.point:
            self.seen += 1
            if self.seen == self.count:
                os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_end(self, *args):
        self.reached("train_batch")

    def on_validation_batch_end(self, *args):
        self.reached("validation_batch")

    def on_train_epoch_end(self, *args):
        self.reached("train_epoch_end")

    def on_validation_end(self, *args):
        self.reached("validation_end")

    def on_save_checkpoint(self, *args):
        self.reached("save_checkpoint")


def main() -> None:
    path, point, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if point not in POINTS:
        raise SystemExit(f"POINT must be one of {POINTS}")
    killer = KillAt(point, count)
    replace = os.replace

    def watched_replace(source, target):  # the atomic write's rename
        if str(target).endswith(".ckpt"):
            killer.reached("checkpoint_written")
            replace(source, target)
            killer.reached("after_checkpoint")
        else:
            replace(source, target)

    nlgc.common.os.replace = watched_replace
    build = run.build

    def build_with_killer(*args, **kwargs):
        module, data, trainer, out = build(*args, **kwargs)
        trainer.callbacks.insert(0, killer)
        return module, data, trainer, out

    run.build = build_with_killer
    run.fit(run.load_config(path), progress=False)


if __name__ == "__main__":
    main()
