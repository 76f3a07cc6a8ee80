"""`nlgc demo`: the main job on built-in data and the CPU, start to finish.

Trains a tiny ResNet and the same network with a non-local block, a simplified NL block and GC
blocks on the built-in long-range task (two Fashion-MNIST items in opposite corners: same class
or not), tests them, measures parameters / FLOPs / latency, runs the query-independence analysis
on the trained NL model, and writes one report (HTML + PNGs + JSON).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tqdm import tqdm

from nlgc.analysis.analyze import Sample, analyze
from nlgc.analysis.complexity import complexity_table
from nlgc.analysis.queries import QueryGrid
from nlgc.analysis.report import Table
from nlgc.common import write_text_atomic
from nlgc.models.from_checkpoint import load_model
from nlgc.train import run
from nlgc.train.config import RunConfig
from nlgc.train.datamodule import DataModule

VARIANTS = {
    "baseline": "tiny_resnet",
    "NL": "nl_tiny_resnet",
    "SNL": "snl_tiny_resnet",
    "GC": "gc_tiny_resnet",
}
SETTINGS = {  # quick: ≤ 2 minutes; default: ≤ 10 minutes on 2 CPU cores
    "quick": {"count": 2000, "val_count": 500, "test_count": 500, "epochs": 4},
    "default": {"count": 6000, "val_count": 1000, "test_count": 2000, "epochs": 10},
}
SIZE = 96


def demo_config(model: str, out: Path, seed: int, count, val_count, test_count, epochs) -> dict:
    return {
        "seed": seed,
        "out": str(out),
        "model": {"name": model},
        "data": {
            "kind": "synthetic",
            "size": SIZE,
            "batch_size": 64,
            "count": count,
            "val_count": val_count,
            "test_count": test_count,
        },
        "optim": {"optimizer": "adamw", "lr": 0.003, "weight_decay": 0.05, "augment": "flip"},
        "trainer": {
            "max_epochs": epochs,
            "accelerator": "cpu",
            "devices": 1,
            "log_every_n_steps": 10,
            "enable_model_summary": False,
        },
    }


def run_demo(out: str | Path = "demo_output", quick: bool = False, seed: int = 0) -> Path:
    """Train, test, measure and analyse the four variants; return the report's path."""
    out = Path(out)
    settings = SETTINGS["quick" if quick else "default"]
    started = time.perf_counter()
    results, models = {}, {}
    for label, name in tqdm(VARIANTS.items(), desc="variants", unit="model"):
        config = demo_config(name, out / label, seed, **settings)
        run.fit(config, progress=True)
        test = run.evaluate(config, "test", progress=False)
        models[label] = load_model(out / label / "checkpoints" / "last.ckpt")[0].eval()
        results[label] = {"model": name, **test}
    rows = complexity_table(models, (1, 3, SIZE, SIZE), repeats=5)
    summary = [
        [
            label,
            VARIANTS[label],
            results[label]["test/top1"],
            row["params"] / 1e6,
            row["gmacs"] * 1e3,
            row["ms"],
        ]
        for label, row in zip(VARIANTS, rows, strict=True)
    ]
    matrices = [
        [
            label,
            *(
                v
                for row in results[label]["confusion_matrix"]["rows_true_cols_predicted"]
                for v in row
            ),
        ]
        for label in VARIANTS
    ]
    data = DataModule(RunConfig.from_dict(config).data, seed)
    data.setup("test")
    test_set = data.datasets["test"]
    samples = [
        Sample.from_pixels(f"test {i} ({data.classes[test_set[i][1]]})", test_set[i][0])
        for i in range(6)
    ]
    tables = [
        Table(
            "Summary: built-in long-range task (same class in opposite corners?)",
            ["variant", "model", "test top-1", "parameters (M)", "MMACs", "CPU ms"],
            summary,
        ),
        Table(
            "Confusion matrices (rows true, columns predicted: different, same)",
            ["variant", "diff→diff", "diff→same", "same→diff", "same→same"],
            matrices,
        ),
    ]
    for label, row in zip(VARIANTS, rows, strict=True):
        row["name"] = f"{label} ({VARIANTS[label]})"
    report = analyze(
        models["NL"],
        samples,
        QueryGrid(3),
        out,
        settings={
            "seed": seed,
            "quick": quick,
            "image size": SIZE,
            **settings,
            "data": test_set.source,
        },
        complexity_rows=rows,
        title="nlgc demo: NL, SNL and GC on a long-range task",
        extra_tables=tables,
        extra_metrics={"variants": results},
    )
    minutes = (time.perf_counter() - started) / 60
    print(
        f"\n{'variant':<10}{'model':<18}{'test top-1':>11}{'params (M)':>12}{'MMACs':>8}"
        f"{'CPU ms':>8}"
    )
    for row in summary:
        print(f"{row[0]:<10}{row[1]:<18}{row[2]:>11.3f}{row[3]:>12.3f}{row[4]:>8.2f}{row[5]:>8.2f}")
    print(f"\nreport: {report}  ({minutes:.1f} min)")
    kind = "quick" if quick else "default"
    lines = [
        f"nlgc demo ({kind}), seed {seed}, {minutes:.1f} min on {os.cpu_count()} CPU cores, "
        f"objects: {test_set.source}",
        "",
        "| variant | model | test top-1 | params (M) | MMACs | CPU ms |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r[0]} | {r[1]} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.2f} | {r[5]:.2f} |"
            for r in summary
        ),
    ]
    write_text_atomic(out / "summary.md", "\n".join(lines) + "\n")  # for the README's table
    return report
