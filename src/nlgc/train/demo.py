"""`nlgc demo`: the main job on built-in data and the CPU, start to finish.

Trains the demo's two-stage ResNet (receptive field 51 px) and the same network with a
non-local block of each pairwise function, a simplified NL block and a GC block on the built-in
long-range task (two Fashion-MNIST items 54+ px apart: same class or not; see
:mod:`nlgc.data.synthetic` for why the plain network cannot solve it), tests them, measures
parameters / FLOPs / latency, computes GCNet's Table 1 on the four trained NL models, and writes
one report (HTML + PNGs + JSON).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from nlgc.analysis import plots
from nlgc.analysis.analyze import Sample, analyze
from nlgc.analysis.capture import capture
from nlgc.analysis.complexity import complexity_table
from nlgc.analysis.queries import QueryGrid
from nlgc.analysis.report import Table
from nlgc.analysis.statistics import GCNET_TABLE1
from nlgc.blocks import PAIRWISE
from nlgc.common import eval_mode, write_text_atomic
from nlgc.data.synthetic import FASHION_MNIST_ENV, fashion_files, fashion_root
from nlgc.models.from_checkpoint import load_model
from nlgc.train import run
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
    "SNL": ("snl_demo_resnet", {}),
    "GC": ("gc_demo_resnet", {}),
}
NL_EMBEDDED = nl_label("embedded_gaussian")
SETTINGS = {  # quick: ≤ 2 minutes; default: ≤ 10 minutes on 2 CPU cores
    "quick": {"count": 2000, "val_count": 300, "test_count": 500, "epochs": 3},
    "default": {"count": 6000, "val_count": 1000, "test_count": 2000, "epochs": 6},
}
SIZE = 112  # objects ≥ 54 px apart: beyond the plain network's 51-px receptive field
TABLE1_IMAGES = 200  # test images GCNet's statistics are averaged over
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


def demo_config(variant: str, out: Path, seed: int, count, val_count, test_count, epochs) -> dict:
    name, options = VARIANTS[variant]
    return {
        "seed": seed,
        "out": str(out),
        "model": {"name": name, "overrides": options},
        "data": {
            "kind": "synthetic",
            "size": SIZE,
            "batch_size": 64,
            "count": count,
            "val_count": val_count,
            "test_count": test_count,
        },
        "optim": {"optimizer": "adamw", "lr": 0.003, "weight_decay": 0.05, "augment": "none"},
        "trainer": {
            "max_epochs": epochs,
            "accelerator": "cpu",
            "devices": 1,
            "log_every_n_steps": 10,
            "enable_model_summary": False,
        },
    }


def gcnet_study(model, images: torch.Tensor, display: torch.Tensor, path: Path):
    """GCNet's statistics of the model's one NL block over ``images`` (B, 3, S, S) and the
    attention heatmaps of a 3×3 query grid on the first image: (name, QueryDistances, png)."""
    with eval_mode(model), capture(model, QueryGrid(3)) as records, torch.no_grad():
        model(images)
    name, record = next((n, r) for n, r in records.items() if r.query_specific)
    plots.plot_query_attention(display, record, name, path)
    return name, record.distances, path


def table1(studies: dict) -> Table:
    """GCNet's Table 1 layout from ``studies`` (pairwise → gcnet_study's result): one row per
    pairwise function, ours beside the paper's."""
    rows = []
    for pairwise, paper in GCNET_TABLE1.items():
        ours = studies[pairwise][1]
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


def seed_table(results: dict) -> Table:
    """Test top-1 per seed and variant, and the margins the demo exists to show."""
    labels = list(VARIANTS)
    rows = []
    for seed, scores in results.items():
        top1 = {label: scores[label]["test/top1"] for label in labels}
        best = max((lab for lab in labels if lab != "baseline"), key=top1.get)
        rows.append(
            [
                seed,
                *(top1[label] for label in labels),
                f"{best} {100 * (top1[best] - top1['baseline']):+.1f}",
                f"{100 * (top1[NL_EMBEDDED] - top1['baseline']):+.1f}",
            ]
        )
    return Table(
        "Test top-1 per seed (same class in corners 54+ px apart?)",
        ["seed", *labels, "best − baseline (pts)", "NL emb. Gauss. − baseline (pts)"],
        rows,
    )


def summary_markdown(header: str, table: Table) -> str:
    def cell(v):
        return (
            f"{v:.3f}"
            if isinstance(v, float) and abs(v) <= 1
            else (f"{v:.1f}" if isinstance(v, float) else str(v))
        )

    lines = [
        header,
        "",
        "| " + " | ".join(table.headers) + " |",
        "|" + " --- |" * len(table.headers),
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in table.rows),
    ]
    return "\n".join(lines) + "\n"


def run_demo(
    out: str | Path = "demo_output", quick: bool = False, seeds: tuple[int, ...] = (0,)
) -> Path:
    """Train, test, measure and analyse every variant for each seed; return the report's path.

    Complexity, GCNet's Table 1 and the pictures come from the first seed's models.
    """
    out = Path(out)
    kind = "quick" if quick else "default"
    settings = SETTINGS[kind]
    data_line = announce_data()
    started = time.perf_counter()
    results, models = {}, {}
    for seed in seeds:
        results[seed] = {}
        for label in tqdm(VARIANTS, desc=f"seed {seed}", unit="model"):
            config = demo_config(label, out / f"seed{seed}" / slug(label), seed, **settings)
            run.fit(config, progress=True)
            test = run.evaluate(config, "test", progress=False)
            results[seed][label] = {"model": VARIANTS[label][0], **test}
            if seed == seeds[0]:
                path = out / f"seed{seed}" / slug(label) / "checkpoints" / "last.ckpt"
                models[label] = load_model(path)[0].eval()
    data = DataModule(
        RunConfig.from_dict(demo_config("baseline", out, seeds[0], **settings)).data, seeds[0]
    )
    data.setup("test")
    test_set = data.datasets["test"]
    pixels = torch.stack([test_set[i][0] for i in range(min(TABLE1_IMAGES, len(test_set)))])
    samples = [
        Sample.from_pixels(f"test {i} ({data.classes[test_set[i][1]]})", pixels[i])
        for i in range(6)
    ]
    batch = torch.stack([Sample.from_pixels("", p).tensor for p in pixels])
    out.mkdir(parents=True, exist_ok=True)
    studies = {  # pairwise → (block name, QueryDistances, heatmap)
        p: gcnet_study(
            models[nl_label(p)], batch, samples[0].display, out / f"heatmap_{slug(nl_label(p))}.png"
        )
        for p in GCNET_TABLE1
    }
    rows = complexity_table(models, (1, 3, SIZE, SIZE), repeats=5)
    for label, row in zip(VARIANTS, rows, strict=True):
        row["name"] = label
    seeds_table = seed_table(results)
    gcnet = table1(studies)
    tables = [
        Table("Data", ["objects"], [[data_line]]),
        seeds_table,
        gcnet,
        Table(
            "Complexity (first seed's models)",
            ["variant", "model", "parameters (M)", "MMACs", "CPU ms"],
            [
                [r["name"], VARIANTS[r["name"]][0], r["params"] / 1e6, r["gmacs"] * 1e3, r["ms"]]
                for r in rows
            ],
        ),
    ]
    figures = [
        (f"{nl_label(p)} ({name}): attention of 9 queries on {samples[0].name}", path)
        for p, (name, _, path) in studies.items()
    ]
    report = analyze(
        models[NL_EMBEDDED],
        samples,
        QueryGrid(3),
        out,
        settings={
            "seeds": list(seeds),
            "kind": kind,
            "image size": SIZE,
            **settings,
            "data": test_set.source,
        },
        complexity_rows=rows,
        title=f"nlgc demo: context blocks on a long-range task ({test_set.source})",
        extra_tables=tables,
        extra_figures=figures,
        extra_metrics={
            "data": data_line,
            "variants": {str(seed): scores for seed, scores in results.items()},
            "gcnet_table1": {
                pairwise: {
                    "block": studies[pairwise][0],
                    **studies[pairwise][1].to_dict(),
                    "gcnet": dict(zip(("input", "output", "attention"), paper, strict=True)),
                }
                for pairwise, paper in GCNET_TABLE1.items()
            },
        },
    )
    minutes = (time.perf_counter() - started) / 60
    header = (
        f"nlgc demo ({kind}), seeds {', '.join(map(str, seeds))}, {minutes:.1f} min on "
        f"{os.cpu_count()} CPU cores, objects: {test_set.source}"
    )
    text = "\n".join(
        summary_markdown(h, t)
        for h, t in ((header, seeds_table), ("GCNet Table 1 (first seed):", gcnet))
    )
    print("\n" + text)
    if not data_line.startswith(FASHION):
        announce_data()  # again at the end, where it is seen
    print(f"report: {report}")
    write_text_atomic(out / "summary.md", text)  # for the README's tables
    return report
