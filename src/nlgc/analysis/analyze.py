"""The whole analysis of one model on some inputs: capture → statistics → pictures → report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nlgc.analysis import plots
from nlgc.analysis.capture import BlockRecord, capture
from nlgc.analysis.queries import QuerySpec, describe
from nlgc.analysis.report import Table, write_report
from nlgc.analysis.statistics import QueryIndependence, query_independence, stage_of
from nlgc.common import eval_mode
from nlgc.data.io import normalize

MOST_NL_FIGURES = 6  # NL blocks drawn on the first input
MOST_INPUT_FIGURES = 3  # inputs drawn for the first NL block and in the context-mask figure


@dataclass
class Sample:
    """One input: ``tensor`` as the model takes it, ``display`` in [0, 1] for pictures.

    Images are (3, H, W), clips (3, T, H, W).
    """

    name: str
    tensor: torch.Tensor
    display: torch.Tensor

    @property
    def is_video(self) -> bool:
        return self.tensor.dim() == 4

    @classmethod
    def from_pixels(cls, name: str, pixels: torch.Tensor) -> Sample:
        """A sample from (3, [T,] H, W) uint8 pixels: ImageNet-normalised for the model."""
        display = pixels.float() / 255
        return cls(name, normalize(display), display)


def distance_table(stats: list[QueryIndependence]) -> Table:
    return Table(
        "Query independence (GCNet's avg_dist over all position pairs, its Table 1 columns)",
        ["block", "stage", "kind", "positions", "samples", "input", "output", "att"],
        [
            [
                s.block,
                s.stage,
                s.kind,
                s.distances.positions,
                s.distances.samples,
                s.distances.input,
                s.distances.output,
                s.distances.attention,
            ]
            for s in stats
        ],
    )


def complexity_report_table(rows: list[dict]) -> Table:
    return Table(
        "Complexity",
        ["model", "parameters (M)", "GMACs", "latency (ms)"],
        [[r["name"], r["params"] / 1e6, r["gmacs"], r["ms"]] for r in rows],
    )


def _last_mask_per_stage(records: dict[str, BlockRecord]) -> dict[str, BlockRecord]:
    """The last block of each stage that pools with one learned mask for all queries (SNL, GC
    with attention pooling; a GC model has one in every bottleneck)."""
    chosen = {}
    for name, record in records.items():
        if not record.query_specific and not record.uniform:
            chosen[stage_of(name)] = (name, record)
    return dict(chosen.values())


def draw(samples: list[Sample], records: dict[str, BlockRecord], stats, out_dir: Path):
    """Every figure of the report, as (caption, png path)."""
    figures = []
    non_local = {n: r for n, r in records.items() if r.query_specific}
    first = samples[0]
    for index, (name, record) in enumerate(list(non_local.items())[:MOST_NL_FIGURES]):
        path = out_dir / f"attention_{index:02d}_{name.replace('.', '_')}.png"
        if first.is_video:
            plots.plot_video_query_attention(first.display, record, name, path)
            caption = f"{name}: attention of query 1 over the frames of {first.name}"
        else:
            plots.plot_query_attention(first.display, record, name, path)
            caption = f"{name}: attention maps of the queries on {first.name}"
        figures.append((caption, path))
    if non_local and not first.is_video:
        name, record = next(iter(non_local.items()))
        for sample_index, sample in enumerate(samples[1:MOST_INPUT_FIGURES], start=1):
            path = out_dir / f"attention_input{sample_index:02d}.png"
            plots.plot_query_attention(sample.display, record, name, path, sample=sample_index)
            figures.append((f"{name}: attention maps of the queries on {sample.name}", path))
    masks = _last_mask_per_stage(records)
    if masks:
        path = out_dir / "context_masks.png"
        frames = [
            s.display[:, s.display.shape[1] // 2] if s.is_video else s.display for s in samples
        ]
        plots.plot_context_masks(frames[:MOST_INPUT_FIGURES], masks, path)
        figures.append(("SNL/GC context masks (last block of each stage)", path))
    path = plots.plot_distances(stats, out_dir / "query_independence.png")
    figures.append(("Query independence per block", path))
    return figures


def analyze(
    model: nn.Module,
    samples: list[Sample],
    queries: QuerySpec,
    out_dir: str | Path,
    settings: dict | None = None,
    complexity_rows: list[dict] | None = None,
    title: str = "nlgc analysis",
    extra_tables: list[Table] = (),
    extra_figures: list[tuple[str, Path]] = (),
    extra_metrics: dict | None = None,
) -> Path:
    """Run ``model`` on every sample with all its blocks hooked, and write the report.

    Writes ``report.html``, ``metrics.json`` and the PNGs into ``out_dir``; returns the report.
    ``extra_tables`` and ``extra_figures`` ((caption, png) pairs) go first in the report,
    ``extra_metrics`` into metrics.json.
    """
    if not samples:
        raise ValueError("analyze needs at least one input")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with eval_mode(model), capture(model, queries) as records, torch.no_grad():
        for sample in samples:
            model(sample.tensor.unsqueeze(0))
    stats = query_independence(records)
    figures = [*extra_figures, *draw(samples, records, stats, out_dir)]
    tables = [*extra_tables, distance_table(stats)]
    if complexity_rows:
        figures.append(
            (
                "Complexity of the variants",
                plots.plot_complexity(complexity_rows, out_dir / "complexity.png"),
            )
        )
        tables.append(complexity_report_table(complexity_rows))
    settings = {"queries": describe(queries), "inputs": len(samples), **(settings or {})}
    metrics = {
        "inputs": [s.name for s in samples],
        "query_independence": [s.to_dict() for s in stats],
        "complexity": complexity_rows or [],
        **(extra_metrics or {}),
    }
    return write_report(out_dir, title, settings, tables, figures, metrics)
