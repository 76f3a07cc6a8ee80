"""`nlgc demo`: the main job on built-in data and the CPU, start to finish (``task``
``"classification"``, the default, described here; ``"segmentation"``: the same task per pixel
with mmsegmentation's heads, :mod:`.segmentation`).

Trains the demo's two-stage ResNet (receptive field 51 px) and the same network with a
non-local block of each pairwise function, a disentangled NL block, a simplified NL block and a
GC block on the built-in long-range task (two Fashion-MNIST items 54+ px apart: same class or
not; see :mod:`nlgc.data.synthetic` for why the plain network cannot solve it), tests them,
marks and diagnoses every variant that does not beat the plain network by ``MARGIN``, measures
parameters / FLOPs / latency, computes GCNet's Table 1 and the pairwise / unary decomposition on
the trained NL and DNL models, and writes one report (HTML + PNGs + JSON), ``summary.md`` (its
tables) and ``overview.md`` (the mean ± std table and the failed runs).

Every variant trains in a process of its own with one torch thread and deterministic
algorithms, ``threads`` (default 2) at a time, so one seed gives one table on every machine of a
kind, however many cores it has or how loaded it is; all of it is recorded in the report.

The parts: :mod:`.experiment` (what is trained), :mod:`.segmentation` (the per-pixel task),
:mod:`.runner` (the runs' processes and torch state), :mod:`.tables` (scores over seeds),
:mod:`.studies` (the trained blocks) and :mod:`nlgc.analysis.diagnosis` (why a run failed).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from nlgc.analysis.analyze import complexity_report
from nlgc.analysis.complexity import complexity_table
from nlgc.analysis.diagnosis import diagnose
from nlgc.analysis.report import Report, Table
from nlgc.common import write_text_atomic
from nlgc.data.synthetic import OBJECT_EXTENT
from nlgc.models.from_checkpoint import load_model
from nlgc.train.demo.detection import DETECTION_TASK
from nlgc.train.demo.experiment import (
    CLASSIFICATION,
    FASHION,
    NL_EMBEDDED,
    SIZE,
    Experiment,
    ProbeImages,
    announce_data,
)
from nlgc.train.demo.runner import (
    RUN_THREADS,
    THREADS,
    checkpoint_of,
    reproducible,
    runner_settings,
    train_all,
)
from nlgc.train.demo.segmentation import SEGMENTATION_TASK
from nlgc.train.demo.studies import study_blocks
from nlgc.train.demo.tables import (
    Results,
    failure_rows,
    failure_table,
    overview,
    seed_table,
    summary_table,
)

DIAGNOSED_IMAGES = 64  # probe images a failed run's diagnosis looks at
TASKS = {task.name: task for task in (CLASSIFICATION, DETECTION_TASK, SEGMENTATION_TASK)}  # --task


def run_demo(
    out: str | Path = "demo_output",
    quick: bool = False,
    seeds: tuple[int, ...] = (0,),
    threads: int = THREADS,
    task: str = "classification",
) -> Path:
    """Train, test, measure and analyse every variant of ``task`` (:data:`TASKS`) for each
    seed; return the report's path.

    Trains ``threads`` variants at a time, each in a process of its own with one torch thread
    and deterministic algorithms, so that the numbers are the same for every ``threads``; the
    analyses run with ``threads`` threads. Complexity, GCNet's Table 1, the decomposition and
    the pictures come from the first seed's models. The runs start in fresh interpreters
    (``spawn``): a script that calls this does so under ``if __name__ == "__main__":``.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    with reproducible(threads):
        return _run_demo(Path(out), Experiment.of(quick, tuple(seeds), TASKS[task]), threads)


def diagnose_failures(
    out: Path, experiment: Experiment, results: Results, images: ProbeImages
) -> None:
    """Add to each failed run's results why it failed."""
    for seed, label in experiment.criterion.failed(results, experiment.labels):
        model = load_model(checkpoint_of(out, seed, label))[0]
        diagnosis = diagnose(model, images.batch[:DIAGNOSED_IMAGES], OBJECT_EXTENT)
        results[seed][label]["diagnosis"] = diagnosis


def _run_demo(out: Path, experiment: Experiment, jobs: int) -> Path:
    labels, first, task = experiment.labels, experiment.seeds[0], experiment.task
    criterion = task.criterion
    data_line = announce_data()
    started = time.perf_counter()
    images = task.probe(experiment)
    results = train_all(out, experiment.seeds, labels, experiment.config, jobs)
    diagnose_failures(out, experiment, results, images)
    failures = failure_rows(results, labels, criterion)
    models = {label: load_model(checkpoint_of(out, first, label))[0].eval() for label in labels}
    out.mkdir(parents=True, exist_ok=True)
    variants = {label: m for label, m in models.items() if label != criterion.baseline}
    blocks = study_blocks(variants, images, out)
    gains = {NL_EMBEDDED: "NL emb. Gauss."}
    per_seed = seed_table(results, labels, criterion, task.seed_title, gains)
    summary, failed = summary_table(results, labels, criterion), failure_table(failures, criterion)
    report = Report(
        f"nlgc demo ({task.name}): context blocks on a long-range task ({images.source})",
        [Table("Data", ["objects"], [[data_line]]), summary, per_seed, failed],
        settings={
            **experiment.report_settings(),
            **runner_settings(jobs),
            "data": images.source,
        },
        metrics={
            "data": data_line,
            "variants": {str(seed): scores for seed, scores in results.items()},
            "failures": failures,
        },
    )
    if task.task_report is not None:
        report = report + task.task_report(results, models, images, out)
    rows = complexity_table(models, (1, 3, SIZE, SIZE), repeats=5)
    page = (report + blocks.report() + complexity_report(rows, out)).write(out)
    minutes = (time.perf_counter() - started) / 60
    header = (
        f"nlgc demo{'' if task is CLASSIFICATION else f' --task {task.name}'} "
        f"({experiment.kind}), seeds {', '.join(map(str, experiment.seeds))}, "
        f"{minutes:.1f} min on {os.cpu_count()} CPU cores ({jobs} runs at a time, "
        f"{RUN_THREADS} torch thread each), objects: {images.source}"
    )
    text = "\n".join(
        [
            per_seed.markdown(header),
            summary.markdown("Mean ± std over the seeds:"),
            failed.markdown("Failed runs:"),
            blocks.table1.markdown("GCNet Table 1 (first seed):"),
            blocks.decomposition.markdown("Pairwise / unary decomposition (first seed):"),
        ]
    )
    print("\n" + text)
    if not data_line.startswith(FASHION):
        announce_data()  # again at the end, where it is seen
    print(f"report: {page}")
    write_text_atomic(out / "summary.md", text)  # for docs/demo.md's tables
    write_text_atomic(out / "overview.md", overview(results, labels, criterion, header))  # README
    return page
