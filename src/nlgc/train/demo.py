"""`nlgc demo`: the main job on built-in data and the CPU, start to finish.

Trains the demo's two-stage ResNet (receptive field 51 px) and the same network with a
non-local block of each pairwise function, a disentangled NL block, a simplified NL block and a
GC block on the built-in long-range task (two Fashion-MNIST items 54+ px apart: same class or
not; see :mod:`nlgc.data.synthetic` for why the plain network cannot solve it), tests them,
marks and diagnoses every variant that does not beat the plain network by ``MARGIN``, measures
parameters / FLOPs / latency, computes GCNet's Table 1 and the pairwise / unary decomposition on
the trained NL and DNL models, and writes one report (HTML + PNGs + JSON).

Every variant trains in a process of its own with one torch thread and deterministic
algorithms, ``threads`` (default 2) at a time, so one seed gives one table on every machine of a
kind, however many cores it has or how loaded it is; all of it is recorded in the report.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from tqdm import tqdm

from nlgc.analysis import plots
from nlgc.analysis.analyze import (
    DECOMPOSITION_COLUMNS,
    complexity_report,
    decomposition_cells,
    plot_terms,
)
from nlgc.analysis.capture import BlockRecord, capture
from nlgc.analysis.complexity import complexity_table
from nlgc.analysis.inputs import Sample
from nlgc.analysis.queries import QueryGrid
from nlgc.analysis.report import Report, Table
from nlgc.analysis.statistics import GCNET_TABLE1
from nlgc.blocks import PAIRWISE
from nlgc.common import eval_mode, write_text_atomic
from nlgc.data.synthetic import FASHION_MNIST_ENV, OBJECT_EXTENT, fashion_files, fashion_root
from nlgc.models.from_checkpoint import load_model
from nlgc.train import numerics, run
from nlgc.train.config import RunConfig
from nlgc.train.datamodule import DataModule


def nl_label(pairwise: str) -> str:
    """The demo's name of the NL variant with ``pairwise``, e.g. "NL embedded Gaussian"."""
    return f"NL {PAIRWISE[pairwise]}"


# label → (registered model, block options); the four NL rows are GCNet's Table 1 rows
VARIANTS = {
    "baseline": ("demo_resnet", {}),
    **{
        nl_label(p): ("nl_demo_resnet", {"pairwise": p} if p != "embedded_gaussian" else {})
        for p in GCNET_TABLE1
    },
    "DNL": ("dnl_demo_resnet", {}),
    "SNL": ("snl_demo_resnet", {"mask_init": "zeros"}),  # uniform masks, held (RECIPE)
    "GC": ("gc_demo_resnet", {"mask_init": "zeros"}),
}
NL_EMBEDDED = nl_label("embedded_gaussian")
QUICK_VARIANTS = ("baseline", NL_EMBEDDED, "DNL", "GC")  # the papers' story in ≤ 2 minutes
# The training recipe (docs/demo.md has the measurements behind it): AdamW,
# one epoch of linear warm-up, then a cosine per step; no weight decay on norms, biases
# and the context blocks (decay pulled GC's and SNL's transforms back to a constant bias);
# 4 × the learning rate on the context blocks (their W_z starts at 0: a faster way off the
# plateau at chance; it rescued 5 of the 8 failed runs of the 1 × recipe); SNL's and GC's
# context masks start uniform (W_k = 0) and are held for 2 epochs, so that the early gradient,
# which pushes a mask off the items before the network can use them, cannot (it left 3 of the
# 35 runs of the 4 ×, 9-epoch table at chance).
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
}
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
CHANNELS_LAST = True  # the same function; 15–25% less time per step on this project's CPU
THREADS = 2  # training runs at a time and the analyses' threads
RUN_THREADS = 1  # torch threads of each training run: one order of every sum, on every machine
# Five Fashion-MNIST classes of distinct shape (T-shirt/top, trouser, dress, sandal, bag): with all
# ten, telling a shirt from a pullover a canvas apart kept some runs at chance for the whole
# schedule (see docs/demo.md, "Why runs fail")
KINDS = (0, 1, 3, 5, 8)
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


def slug(label: str) -> str:
    return label.lower().replace(" ", "_")


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


def demo_config(
    variant: str, out: Path, seed: int, count, val_count, test_count, epochs, batch_size
) -> RunConfig:
    name, options = VARIANTS[variant]
    return RunConfig.from_dict(
        {
            "seed": seed,
            "out": str(out),
            "model": {"name": name, "overrides": options, "channels_last": CHANNELS_LAST},
            "data": {
                "kind": "synthetic",
                "size": SIZE,
                "kinds": KINDS,
                "batch_size": batch_size,
                "count": count,
                "val_count": val_count,
                "test_count": test_count,
            },
            "optim": dict(RECIPE),
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


def the_block(records: dict[str, BlockRecord]) -> tuple[str, BlockRecord]:
    """The one context block of a demo network."""
    if len(records) != 1:
        raise ValueError(f"a demo network has one context block, got {list(records)}")
    return next(iter(records.items()))


def block_study(model, images: torch.Tensor, display: torch.Tensor, out: Path, label: str):
    """GCNet's statistics and (for NL/DNL) the decomposition of the model's block over
    ``images`` (B, 3, S, S), and the heatmaps of a 3×3 query grid on the first image: its
    attention maps and, where it decomposes, its unary and pairwise maps.

    Returns (block name, record, [(caption, png)])."""
    with eval_mode(model), capture(model, QueryGrid(3)) as records, torch.no_grad():
        model(images)
    name, record = the_block(records)
    figures = []
    if record.query_specific:
        path = plots.plot_query_attention(display, record, name, out / f"heatmap_{slug(label)}.png")
        figures.append((f"{label} ({name}): attention of 9 queries", path))
    if record.terms is not None:
        path = plot_terms(display, record, label, out / f"terms_{slug(label)}.png")
        figures.append((f"{label}: unary map and pairwise maps of 9 queries", path))
    return name, record, figures


def item_share(record: BlockRecord) -> tuple[float, float]:
    """How much of its attention a demo block puts on the two objects: the attention weight, summed
    over images (and queries), on the key cells whose centres lie in the objects' corner squares
    of side OBJECT_EXTENT, over all its weight; and that share under uniform attention (32 of 196
    cells in c3)."""
    height, width = record.key_spatial
    weights = record.attention.reshape(-1, height, width)  # (B or B·Q, H, W)

    def corners(n: int):
        centres = (torch.arange(n) + 0.5) * SIZE / n
        return centres < OBJECT_EXTENT, centres >= SIZE - OBJECT_EXTENT

    (top, bottom), (left, right) = corners(height), corners(width)
    on_items = top[:, None] & left[None] | bottom[:, None] & right[None]  # (H, W)
    share = weights[:, on_items].sum() / weights.sum().clamp_min(1e-30)
    return float(share), float(on_items.float().mean())


def diagnose(model, images: torch.Tensor) -> str:
    """Why a context variant did not beat the plain network, from what its block does on
    ``images``: dead attention, a context that is the same for every image, attention
    collapsed to its unary term, or none of these."""
    with eval_mode(model), capture(model, QueryGrid(3)) as records, torch.no_grad():
        model(images)
    name, record = the_block(records)
    deltas, inputs = record.deltas, record.inputs  # (B, Q, C) at the query grid
    added = float(deltas.norm() / inputs.norm().clamp_min(1e-12))
    across_images = float(deltas.std(0).norm() / deltas.norm().clamp_min(1e-12))
    if record.attention.abs().max() == 0:
        return "every attention weight is 0 (the ReLU of f is dead): the block adds a constant"
    share, uniform = item_share(record)
    on_items = f"{share:.0%} of its attention on the two items' corners, {uniform:.0%} if uniform"
    if across_images < 0.05:
        return (
            f"the block adds {added:.2f}·‖x‖ but nearly the same vector for every image "
            f"(variation across images {across_images:.3f}; {on_items}): its context says "
            "nothing about the items, it acts as a bias"
        )
    decomposition = record.decomposition
    if decomposition is not None and decomposition.unary_share > 0.9:
        return (
            f"attention collapsed to its unary term ({decomposition.unary_share:.0%} of the "
            "logits' variance over keys): every query pools the same positions"
        )
    passing = ""
    if getattr(model.get_submodule(name), "pairwise", None) == "concatenation":
        live = float((record.attention > 0).float().mean())
        passing = f"; {live:.1%} of its (query, key) pairs pass the ReLU of f"
    return (
        f"the block is active (adds {added:.2f}·‖x‖, varying across images by "
        f"{across_images:.2f}; {on_items}{passing}) but the network did not use it within the "
        "schedule"
    )


def table1(studies: dict) -> Table:
    """GCNet's Table 1 layout from ``studies`` (pairwise → block_study's result): one row per
    trained pairwise function, ours beside the paper's."""
    rows = []
    for pairwise, paper in GCNET_TABLE1.items():
        if pairwise not in studies:
            continue
        ours = studies[pairwise][1].distances
        values = [
            v if v == v else "none (all maps 0)" for v in (ours.input, ours.output, ours.attention)
        ]
        rows.append([PAIRWISE[pairwise], *values, *paper])
    return Table(
        "GCNet Table 1 on the trained NL models: avg_dist over all position pairs "
        f"({TABLE1_IMAGES} test images; GCNet's values: arXiv:1904.11492 Table 1, COCO val, "
        "Mask R-CNN R50 + 1 NL)",
        ["pairwise", "input", "output", "att", "GCNet input", "GCNet output", "GCNet att"],
        rows,
    )


def decomposition_rows(studies: dict) -> Table:
    """The pairwise / unary decomposition of every trained NL (bilinear) and DNL block."""
    rows = [
        [label, *decomposition_cells(record), record.distances.attention]
        for label, (_, record, _) in studies.items()
        if record.decomposition is not None
    ]
    return Table(
        "Pairwise / unary decomposition (DNL, Yin et al. 2020) of the trained blocks: shares of "
        "the logits' variance over keys (averaged over queries), att distance of each term's "
        f"own softmax and of the whole map ({TABLE1_IMAGES} test images)",
        ["variant", *DECOMPOSITION_COLUMNS, "att (whole map)"],
        rows,
    )


def seed_table(results: dict, labels: list[str]) -> Table:
    """Test top-1 per seed and variant, and the margins the demo exists to show."""
    rows = []
    for seed, scores in results.items():
        top1 = {label: scores[label]["test/top1"] for label in labels}
        best = max((lab for lab in labels if lab != "baseline"), key=top1.get)
        row = [seed, *(top1[label] for label in labels)]
        row.append(f"{best} {100 * (top1[best] - top1['baseline']):+.1f}")
        if NL_EMBEDDED in labels:
            row.append(f"{100 * (top1[NL_EMBEDDED] - top1['baseline']):+.1f}")
        rows.append(row)
    headers = ["seed", *labels, "best − baseline (pts)"]
    if NL_EMBEDDED in labels:
        headers.append("NL emb. Gauss. − baseline (pts)")
    return Table("Test top-1 per seed (same class in corners 54+ px apart?)", headers, rows)


def mean_std(values: list[float], digits: int, sign: str = "") -> str:
    """ "mean ± std" over seeds, or the single value where there is one seed (no std)."""
    mean = f"{statistics.mean(values):{sign}.{digits}f}"
    return f"{mean} ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else mean


def summary_table(results: dict, labels: list[str]) -> Table:
    """Per variant: mean ± std of test top-1 and of its margin over the baseline across the
    seeds, and on how many seeds it failed (margin < MARGIN)."""
    rows = []
    for label in labels:
        top1 = [scores[label]["test/top1"] for scores in results.values()]
        row = [label, mean_std(top1, 3)]
        if label == "baseline":
            rows.append([*row, "-", "-", "-"])
            continue
        margins = [s[label]["test/top1"] - s["baseline"]["test/top1"] for s in results.values()]
        failed = sum(m < MARGIN for m in margins)
        rows.append(
            [
                *row,
                mean_std([100 * m for m in margins], 1, "+"),
                f"{100 * min(margins):+.1f}",
                f"{failed}/{len(margins)}",
            ]
        )
    return Table(
        f"Mean ± std over seeds {', '.join(map(str, results))} (std over seeds; a variant fails "
        f"a seed when it beats the baseline by less than {100 * MARGIN:.0f} points)",
        ["variant", "test top-1", "− baseline (pts)", "worst − baseline (pts)", "failed seeds"],
        rows,
    )


def failure_table(failures: list[tuple]) -> Table:
    return Table(
        f"Failed runs (less than {100 * MARGIN:.0f} points above the baseline) and their diagnosis",
        ["seed", "variant", "test top-1", "− baseline (pts)", "diagnosis"],
        failures or [["-", "none", "-", "-", "every variant beat the baseline on every seed"]],
    )


def summary_markdown(header: str, table: Table) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) <= 1 else f"{v:.1f}"
        return str(v)

    lines = [
        header,
        "",
        "| " + " | ".join(table.headers) + " |",
        "|" + " --- |" * len(table.headers),
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in table.rows),
    ]
    return "\n".join(lines) + "\n"


def checkpoint_of(out: Path, seed: int, label: str) -> Path:
    return out / f"seed{seed}" / slug(label) / "checkpoints" / "last.ckpt"


def train_variant(label: str, folder: Path, seed: int, settings: dict) -> dict:
    """Train and test one variant into ``folder`` with RUN_THREADS torch threads; its test
    metrics."""
    with reproducible(RUN_THREADS), run.without_lightning_info():
        shutil.rmtree(folder, ignore_errors=True)  # an earlier demo's run: trained anew
        config = demo_config(label, folder, seed, **settings)
        run.fit(config, progress=False)
        return {"model": VARIANTS[label][0], **run.evaluate(config, "test", progress=False)}


def train_all(out: Path, seeds, labels, settings, images: torch.Tensor, jobs: int):
    """Train and test every variant for every seed, ``jobs`` runs at a time in processes of
    their own (one torch thread each, so the numbers do not depend on ``jobs``); diagnose
    every failed run on ``images``. Returns (results: seed → label → test metrics, failures:
    table rows)."""
    results, failures = {seed: {} for seed in seeds}, []
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = {
            (seed, label): pool.submit(
                train_variant, label, out / f"seed{seed}" / slug(label), seed, settings
            )
            for seed in seeds
            for label in labels
        }
        for (seed, label), future in tqdm(runs.items(), desc="training", unit="model"):
            results[seed][label] = future.result()
    for seed in seeds:
        baseline = results[seed]["baseline"]["test/top1"]
        for label in labels[1:]:
            top1 = results[seed][label]["test/top1"]
            if top1 - baseline < MARGIN:
                model = load_model(checkpoint_of(out, seed, label))[0]
                diagnosis = diagnose(model, images[:64])
                failures.append([seed, label, top1, f"{100 * (top1 - baseline):+.1f}", diagnosis])
                results[seed][label]["diagnosis"] = diagnosis
    return results, failures


def demo_test_set(settings: dict, seed: int):
    """The first TABLE1_IMAGES test images (normalised, (B, 3, S, S)), six samples to draw, the
    data's source."""
    data = DataModule(demo_config("baseline", Path("."), seed, **settings).data, seed)
    data.setup("test")
    test_set = data.datasets["test"]
    pixels = torch.stack([test_set[i][0] for i in range(min(TABLE1_IMAGES, len(test_set)))])
    samples = [
        Sample.from_pixels(f"test {i} ({data.classes[test_set[i][1]]})", pixels[i])
        for i in range(6)
    ]
    batch = torch.stack([Sample.from_pixels("", p).tensor for p in pixels])
    return batch, samples, test_set.source


def run_demo(
    out: str | Path = "demo_output",
    quick: bool = False,
    seeds: tuple[int, ...] = (0,),
    threads: int = THREADS,
) -> Path:
    """Train, test, measure and analyse every variant for each seed; return the report's path.

    Trains ``threads`` variants at a time, each in a process of its own with one torch thread
    and deterministic algorithms, so that the numbers are the same for every ``threads``; the
    analyses run with ``threads`` threads. Complexity, GCNet's Table 1, the decomposition and
    the pictures come from the first seed's models. The runs start in fresh interpreters
    (``spawn``): a script that calls this does so under ``if __name__ == "__main__":``.
    """
    with reproducible(threads):
        return _run_demo(Path(out), quick, tuple(seeds), threads)


def context_mask_figure(models: dict, labels: list[str], samples: list[Sample], out: Path):
    """The one-for-all context masks of the ``labels``' blocks on three test images."""
    masks = {}
    with torch.no_grad():
        for label in labels:
            with capture(models[label], QueryGrid(3)) as records:
                models[label](torch.stack([s.tensor for s in samples[:3]]))
            masks[label] = the_block(records)[1]
    frames = [s.display for s in samples[:3]]
    path = plots.plot_context_masks(frames, masks, out / "context_masks.png")
    return "SNL / GC context masks: one map for every query", path


def demo_metrics(data_line: str, results: dict, failures: list, studies: dict) -> dict:
    """Every number of the report for metrics.json."""
    table1_rows = {}
    for pairwise, paper in GCNET_TABLE1.items():
        if nl_label(pairwise) in studies:
            name, record, _ = studies[nl_label(pairwise)]
            table1_rows[pairwise] = {
                "block": name,
                **record.distances.to_dict(),
                "gcnet": dict(zip(("input", "output", "attention"), paper, strict=True)),
            }
    return {
        "data": data_line,
        "variants": {str(seed): scores for seed, scores in results.items()},
        "failures": failures,
        "gcnet_table1": table1_rows,
        "decomposition": {
            label: record.decomposition.to_dict()
            for label, (_, record, _) in studies.items()
            if record.decomposition is not None
        },
    }


def _run_demo(out: Path, quick: bool, seeds: tuple[int, ...], jobs: int) -> Path:
    kind = "quick" if quick else "default"
    settings = SETTINGS[kind]
    labels = list(QUICK_VARIANTS if quick else VARIANTS)
    data_line = announce_data()
    started = time.perf_counter()
    batch, samples, source = demo_test_set(settings, seeds[0])
    results, failures = train_all(out, seeds, labels, settings, batch, jobs)
    models = {label: load_model(checkpoint_of(out, seeds[0], label))[0].eval() for label in labels}
    out.mkdir(parents=True, exist_ok=True)
    studies = {  # label → (block name, BlockRecord, figures)
        label: block_study(models[label], batch, samples[0].display, out, label)
        for label in labels[1:]
    }
    figures = [figure for _, _, found in studies.values() for figure in found]
    one_map = [label for label, (_, r, _) in studies.items() if not r.query_specific]
    if one_map:
        figures.append(context_mask_figure(models, one_map, samples, out))
    by_pairwise = {p: studies[nl_label(p)] for p in GCNET_TABLE1 if nl_label(p) in studies}
    tables = [
        Table("Data", ["objects"], [[data_line]]),
        summary_table(results, labels),
        seed_table(results, labels),
        failure_table(failures),
        table1(by_pairwise),
        decomposition_rows(studies),
    ]
    run_settings = {
        "seeds": list(seeds),
        "kind": kind,
        "variants": {
            label: {"model": VARIANTS[label][0], "options": VARIANTS[label][1]} for label in labels
        },
        "image size": SIZE,
        "fashion-mnist classes": list(KINDS),
        "channels last": CHANNELS_LAST,
        **settings,
        "recipe": RECIPE,
        "torch threads per training run": RUN_THREADS,
        "training runs at a time": jobs,
        "torch threads of the analyses": torch.get_num_threads(),
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "cpu": numerics.cpu_name(),
        "cpu capability (aten)": torch.backends.cpu.get_cpu_capability(),
        "isa pins": numerics.pins_in_effect(),
        "torch": torch.__version__,
        "data": source,
    }
    report = Report(
        f"nlgc demo: context blocks on a long-range task ({source})",
        tables,
        figures,
        run_settings,
        demo_metrics(data_line, results, failures, studies),
    )
    rows = complexity_table(models, (1, 3, SIZE, SIZE), repeats=5)
    page = (report + complexity_report(rows, out)).write(out)
    minutes = (time.perf_counter() - started) / 60
    header = (
        f"nlgc demo ({kind}), seeds {', '.join(map(str, seeds))}, {minutes:.1f} min on "
        f"{os.cpu_count()} CPU cores ({jobs} runs at a time, {RUN_THREADS} torch thread each), "
        f"objects: {source}"
    )
    _, summary, per_seed, failed, gcnet, decomposition = tables
    parts = [
        (header, per_seed),
        ("Mean ± std over the seeds:", summary),
        ("Failed runs:", failed),
        ("GCNet Table 1 (first seed):", gcnet),
        ("Pairwise / unary decomposition (first seed):", decomposition),
    ]
    text = "\n".join(summary_markdown(caption, table) for caption, table in parts)
    print("\n" + text)
    if not data_line.startswith(FASHION):
        announce_data()  # again at the end, where it is seen
    print(f"report: {page}")
    write_text_atomic(out / "summary.md", text)  # for the README's tables
    return page
