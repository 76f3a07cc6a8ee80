"""Training many runs reproducibly: a process each, one torch thread each, ``jobs`` at a time.

A sum over one thread has one order, so a run's numbers do not depend on how many run at once,
on the number of cores or on the machine's load; deterministic algorithms and the ISA pins of
:mod:`nlgc.train.numerics` (set by ``nlgc demo`` before torch starts) do the rest.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from tqdm import tqdm

from nlgc.train import numerics, run
from nlgc.train.config import RunConfig

THREADS = 2  # training runs at a time and the analyses' threads
RUN_THREADS = 1  # torch threads of each training run: one order of every sum, on every machine

# (variant label, folder, seed) → the run's config; picklable (runs start in fresh processes)
Configure = Callable[[str, Path, int], RunConfig]


@contextlib.contextmanager
def reproducible(threads: int):
    """Inside the block: torch's intra-op CPU threads pinned to ``threads`` and deterministic
    algorithms on (the demo's trainers ask for them too), without their filling of every new
    tensor with NaN (a check for reads of unwritten memory: 10–17% of a demo step, the same
    numbers); all as before after the block."""
    threads_before = torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    warn_only_before = torch.is_deterministic_algorithms_warn_only_enabled()
    fill_before = torch.utils.deterministic.fill_uninitialized_memory
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.set_num_threads(threads_before)
        torch.use_deterministic_algorithms(deterministic_before, warn_only=warn_only_before)
        torch.utils.deterministic.fill_uninitialized_memory = fill_before


def slug(label: str) -> str:
    """A variant label as a file name: "NL embedded Gaussian" → "nl_embedded_gaussian"."""
    return label.lower().replace(" ", "_")


def run_folder(out: Path, seed: int, label: str) -> Path:
    return out / f"seed{seed}" / slug(label)


def checkpoint_of(out: Path, seed: int, label: str) -> Path:
    return run_folder(out, seed, label) / "checkpoints" / "last.ckpt"


def train_one(configure: Configure, label: str, folder: Path, seed: int) -> dict:
    """Train and test one variant into ``folder`` with RUN_THREADS torch threads; its model's
    name and test metrics."""
    with reproducible(RUN_THREADS), run.without_lightning_info():
        shutil.rmtree(folder, ignore_errors=True)  # an earlier demo's run: trained anew
        config = configure(label, folder, seed)
        run.fit(config, progress=False)
        return {"model": config.model.name, **run.evaluate(config, "test", progress=False)}


def train_all(
    out: Path, seeds: Sequence[int], labels: Sequence[str], configure: Configure, jobs: int
) -> dict[int, dict[str, dict]]:
    """Train and test every variant for every seed into ``out``, ``jobs`` runs at a time in
    processes of their own (one torch thread each, so the numbers do not depend on ``jobs``).
    Returns seed → label → test metrics."""
    results = {seed: {} for seed in seeds}
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = {
            (seed, label): pool.submit(
                train_one, configure, label, run_folder(out, seed, label), seed
            )
            for seed in seeds
            for label in labels
        }
        for (seed, label), future in tqdm(runs.items(), desc="training", unit="model"):
            results[seed][label] = future.result()
    return results


def runner_settings(jobs: int) -> dict:
    """What a report records of the runs' threads, kernels and machine."""
    return {
        "torch threads per training run": RUN_THREADS,
        "training runs at a time": jobs,
        "torch threads of the analyses": torch.get_num_threads(),
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "cpu": numerics.cpu_name(),
        "cpu capability (aten)": torch.backends.cpu.get_cpu_capability(),
        "isa pins": numerics.pins_in_effect(),
        "torch": torch.__version__,
    }
