"""`nlgc fit | validate | test`: a YAML config → Lightning Trainer, model and data.

Config (every section optional but ``model.name``; sections map to the dataclasses of
nlgc.train.config)::

    seed: 0
    out: runs/gc_resnet50                       # checkpoints/, logs (CSV, TensorBoard), eval
    model: {name: gc_resnet50, num_classes: null, overrides: {ratio: 0.0625}}
    data: {kind: images, root: /data/imagenet, size: 224, batch_size: 64, workers: 8}
    optim: {optimizer: sgd, lr: 0.1, weight_decay: 1.0e-4, augment: standard}
    trainer: {max_epochs: 100, accelerator: auto, devices: auto, num_nodes: 1, strategy: auto,
              precision: 32-true, gradient_clip_val: null}

``trainer`` is passed to ``lightning.Trainer`` (DDP: ``strategy: ddp``, ``devices: 8``,
``num_nodes: 2``; launch with torchrun or SLURM's srun). Command-line overrides are dotted:
``trainer.max_epochs=5 optim.lr=0.01 model.overrides.ratio=0.25``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from nlgc.common import write_atomic, write_text_atomic
from nlgc.train.base import METRICS_KEY, TrainingModule
from nlgc.train.checkpoint_io import AtomicCheckpointIO
from nlgc.train.config import RunConfig
from nlgc.train.datamodule import DataModule
from nlgc.train.tasks import task_of

log = logging.getLogger(__name__)


_NOT_RUN_OUTPUT = ("💡 Tip", "GPU available:", "TPU available:", "HPU available:", "IPU available:")


def _not_a_tip(record: logging.LogRecord) -> bool:
    """Lightning's advertisements ("💡 Tip: … try installing litlogger") and its inventory of
    accelerators ("GPU available: False, used: False", "TPU available: …") are not run
    output (the accelerator a run uses is in its config and its log)."""
    return not record.getMessage().startswith(_NOT_RUN_OUTPUT)


@contextlib.contextmanager
def _without_tips():
    """Lightning's tips and accelerator inventory dropped while a Trainer is built and runs
    (not for the process)."""
    tips = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    tips.addFilter(_not_a_tip)
    try:
        yield
    finally:
        tips.removeFilter(_not_a_tip)


@contextlib.contextmanager
def without_lightning_info():
    """Lightning's info lines ("GPU available: …", "Loading `train_dataloader` …": four a run)
    dropped inside the block, for callers that train many runs under one progress bar (the
    demo); its warnings still show."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _lightning_warnings_we_mean(resume: bool = False):
    """Augmentation lives in the LightningModule's on_after_batch_transfer on purpose (it runs
    on the device, after transfer); Lightning warns about that whenever a DataModule is used
    too. A resumed run writes into its own non-empty checkpoint folder on purpose; Lightning
    warns about that too. Lightning's own use of a deprecated torch pytree class and its tips
    are not ours to act on. Silenced for the duration of a run, not for the process."""
    with warnings.catch_warnings(), _without_tips():
        warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        if resume:
            warnings.filterwarnings("ignore", message="Checkpoint directory .* is not empty")
        yield


def read_yaml(text: str, source: str):
    """``yaml.safe_load`` whose errors are one line naming the source and the position: invalid
    YAML, or a tag such as ``!!python/object`` that safe loading refuses to construct."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{source}{where}: not valid YAML for a config: {problem}") from None


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML config safely, apply ``a.b=value`` overrides (values parsed as YAML) and check
    every section: the one RunConfig the run uses from here on."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    config = read_yaml(path.read_text(), str(path)) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a mapping of config sections (model, data, ...)")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like section.key=value")
        target = config
        *parents, last = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        target[last] = read_yaml(value, f"override {item!r}")
    return RunConfig.from_dict(config)


def as_run_config(config: Mapping | RunConfig) -> RunConfig:
    """A RunConfig as it is; a mapping (the YAML's sections) parsed and checked once."""
    return config if isinstance(config, RunConfig) else RunConfig.from_dict(copy.deepcopy(config))


def build(config: Mapping | RunConfig, progress: bool = True):
    """(the task's LightningModule, DataModule, Trainer, out folder) for a config."""
    config = as_run_config(config)
    out = config.out
    L.seed_everything(config.seed, workers=True, verbose=False)
    data = DataModule(config.data, config.seed)
    module = task_of(config).build_module(config, data)
    # one epoch unless the config says; a number of steps alone (max_steps) ends the run
    epochs = {"max_epochs": -1 if config.trainer.get("max_steps", -1) > 0 else 1}
    trainer_options = {**epochs, "deterministic": "warn", **config.trainer}
    checkpoints = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="epoch{epoch:03d}",
        auto_insert_metric_name=False,
        every_n_epochs=1,
        save_top_k=-1,
        save_last=True,
    )
    with _without_tips():
        trainer = L.Trainer(
            default_root_dir=out,
            logger=[CSVLogger(out, name="logs"), TensorBoardLogger(out, name="tensorboard")],
            callbacks=[checkpoints],
            plugins=[AtomicCheckpointIO()],
            enable_progress_bar=progress,
            **trainer_options,
        )
    return module, data, trainer, out


def _initialise(module, checkpoint: str, out: Path, write: bool) -> None:
    """The model's start from ``checkpoint``; what was inflated, copied, left, ignored goes to
    the log and ``out/init_report.json``."""
    report = module.initialise(checkpoint)
    module.normalization = report.preprocessing  # batches normalised as the weights expect
    log.info("%s", report)
    print(report)
    if write:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "init_report.json", json.dumps(report.as_dict(), indent=2))


def fit(config: Mapping | RunConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train; with ``resume`` continue from the newest complete checkpoint in
    ``out/checkpoints`` (from the start if a kill came before the first), else from
    ``model.init_from`` if given. Returns metrics."""
    config = as_run_config(config)
    module, data, trainer, out = build(config, progress)
    folder = out / "checkpoints"
    for stale in folder.glob(".*.tmp"):  # a write that a kill interrupted
        stale.unlink(missing_ok=True)
    if not resume and any(folder.glob("*.ckpt")):
        raise ValueError(
            f"{folder} holds checkpoints of an earlier run: continue it with --resume, or give "
            "another out folder (Lightning would write last-v1.ckpt beside the old last.ckpt, "
            "and validate/test would read the old one)"
        )
    start = latest_checkpoint(folder) if resume else None
    if resume and start is None:
        log.warning("--resume: no complete checkpoint in %s yet: training from the start", folder)
    if start is None and config.model.init_from:
        _initialise(module, config.model.init_from, out, trainer.is_global_zero)
    with _lightning_warnings_we_mean(resume=start is not None):
        trainer.fit(module, datamodule=data, ckpt_path=start)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    newest = latest_checkpoint(folder) if start is not None else None  # only a resumed run
    if trainer.is_global_zero and newest is not None and newest.name != "last.ckpt":
        # resumed from an epoch checkpoint that a kill kept from becoming last.ckpt, with
        # nothing left to train: last.ckpt must still hold the final state
        write_atomic(folder / "last.ckpt", lambda temporary: shutil.copyfile(newest, temporary))
    if not metrics and start is not None:  # nothing trained: the run's metrics as saved
        metrics = dict(torch.load(start, weights_only=True, mmap=True).get(METRICS_KEY, {}))
    metrics["rank_checksums"] = rank_checksums(module, trainer)
    if len({tuple(c) for c in metrics["rank_checksums"]}) > 1:
        log.warning("the ranks' weights differ after training: %s", metrics["rank_checksums"])
    if trainer.is_global_zero:
        write_text_atomic(out / "fit_metrics.json", json.dumps(metrics, indent=2))
    _release_process_group()
    return metrics


def _release_process_group() -> None:
    """End a distributed run's process group once its results are written: a gloo group left
    to the interpreter's exit sometimes aborts the process ("terminate called without an
    active exception") after a successful run."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint in ``folder`` with the most optimizer steps: ``last.ckpt`` normally, an
    ``epochNNN.ckpt`` if a kill came between writing it and updating ``last.ckpt``. Only the
    step counts are read (memory-mapped)."""
    steps = {}
    for path in sorted(Path(folder).glob("*.ckpt")):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        steps[path] = (checkpoint.get("global_step", -1), path.name == "last.ckpt")
    return max(steps, key=steps.get) if steps else None


def rank_checksums(module: TrainingModule, trainer: L.Trainer) -> list[list[float]]:
    """Per rank, the sum and the sum of squares of all weights (float64): equal rows mean the
    ranks of a distributed run ended with the same model."""
    with torch.no_grad():
        values = torch.cat([p.detach().double().flatten() for p in module.parameters()])
        checksum = torch.stack([values.sum(), values.square().sum()])
    gathered = trainer.strategy.all_gather(checksum)
    return gathered.reshape(-1, 2).tolist()


def _weights(out: Path, checkpoint: str | None) -> str | None:
    path = Path(checkpoint) if checkpoint else out / "checkpoints" / "last.ckpt"
    if checkpoint and not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    return str(path) if path.is_file() else None


def evaluate(
    config: Mapping | RunConfig, stage: str, checkpoint: str | None = None, progress=True
) -> dict:
    """``validate`` or ``test`` with the run's last checkpoint (or ``checkpoint``); writes
    ``out/{stage}_metrics.json`` with top-1, top-5 (where there are more than 5 classes), mean
    class accuracy and, for a test, the clip-level ones (``test/clip_*``, whole-video tests),
    the confusion matrix, ``test_per_class.md`` and ``test_confusion.png``."""
    config = as_run_config(config)
    module, data, trainer, out = build(config, progress)
    path = _weights(out, checkpoint)
    if path is None:
        log.warning("no checkpoint found: evaluating the freshly initialised model")
    task = task_of(config)
    if stage == "test" and task.predictions_folder:
        module.predictions_to = out / task.predictions_folder
    run = trainer.validate if stage == "validate" else trainer.test
    with _lightning_warnings_we_mean():
        results = run(module, datamodule=data, ckpt_path=path)[0]
    metrics = {k: float(v) for k, v in results.items()}
    if stage == "test":
        task.test_outputs(module, data, metrics, out if trainer.is_global_zero else None)
    if trainer.is_global_zero:
        write_text_atomic(out / f"{stage}_metrics.json", json.dumps(metrics, indent=2))
    _release_process_group()
    return metrics
