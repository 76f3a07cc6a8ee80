"""The whole analysis of one model on some inputs: capture → statistics → pictures → report."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from nlgc.analysis import plots
from nlgc.analysis.capture import BlockRecord, capture
from nlgc.analysis.complexity import ComplexityRow
from nlgc.analysis.inputs import Sample
from nlgc.analysis.queries import QuerySpec, describe
from nlgc.analysis.report import Report, Table
from nlgc.analysis.statistics import QueryIndependence, query_independence, stage_of
from nlgc.common import eval_mode

MOST_NL_FIGURES = 6  # NL blocks drawn on the first input
MOST_INPUT_FIGURES = 3  # inputs drawn for the first NL block and in the context-mask figure


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


DECOMPOSITION_COLUMNS = ["unary share", "pairwise share", "logit std", "pairwise att", "unary att"]


def decomposition_cells(record: BlockRecord) -> list:
    """A block's decomposition as table cells, in the order of DECOMPOSITION_COLUMNS."""
    d = record.decomposition
    if d.unary_share != d.unary_share:  # NaN: a DNL block, its terms apart by design
        return ["separate term", "separate term", "-", d.pairwise_att, d.unary_att]
    return [d.unary_share, d.pairwise_share, d.logit_std, d.pairwise_att, d.unary_att]


def plot_terms(display: torch.Tensor, record: BlockRecord, title: str, path: Path) -> Path:
    """The unary map and the pairwise maps of the record's queries on ``display``."""
    unary, pairwise = record.terms
    return plots.plot_query_maps(
        display,
        record.queries.tolist(),
        pairwise[0],
        (record.spatial, record.key_spatial),
        f"{title}: pairwise term of each query; the unary term (left)",
        path,
        lead=("unary term (every query)", unary[0]),
    )


def decomposition_table(records: dict[str, BlockRecord]) -> Table:
    """The pairwise / unary decomposition of every NL and DNL block that has one."""
    rows = [
        [name, record.kind, *decomposition_cells(record), record.decomposition.samples]
        for name, record in records.items()
        if record.decomposition is not None
    ]
    return Table(
        "Pairwise / unary decomposition (DNL, Yin et al. 2020): shares of the logits' variance "
        "over keys, averaged over queries; att distance of each term's own softmax",
        ["block", "kind", *DECOMPOSITION_COLUMNS, "samples"],
        rows,
    )


def draw_terms(sample: Sample, records: dict[str, BlockRecord], out_dir: Path):
    """Per decomposable block (at most MOST_NL_FIGURES): the unary map and the pairwise maps
    of the queries on the first image, as (caption, png)."""
    figures = []
    chosen = [(n, r) for n, r in records.items() if r.terms is not None][:MOST_NL_FIGURES]
    for index, (name, record) in enumerate(chosen):
        path = out_dir / f"terms_{index:02d}_{name.replace('.', '_')}.png"
        plot_terms(sample.display, record, f"{name} ({record.kind})", path)
        figures.append((f"{name}: unary map and pairwise maps of the queries", path))
    return figures


def complexity_report(rows: list[ComplexityRow], out_dir: Path) -> Report:
    """The cost of model variants: a chart and a table (one row each)."""
    chart = plots.plot_complexity(rows, Path(out_dir) / "complexity.png")
    table = Table(
        "Complexity",
        ["model", "parameters (M)", "GMACs", f"{rows[0].device.upper()} latency (ms)"],
        [[r.name, r.params / 1e6, r.gmacs, r.ms] for r in rows],
    )
    return Report(
        tables=[table],
        figures=[("Complexity of the variants", chart)],
        metrics={"complexity": [r.to_dict() for r in rows]},
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


def analysis_report(
    model: nn.Module, samples: list[Sample], queries: QuerySpec, out_dir: str | Path
) -> Report:
    """Run ``model`` on every sample with all its blocks hooked: GCNet's statistics of every
    block (table and chart), attention heatmaps and context masks (PNGs in ``out_dir``)."""
    if not samples:
        raise ValueError("analyze needs at least one input")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with eval_mode(model), capture(model, queries) as records, torch.no_grad():
        for sample in samples:
            model(sample.tensor.unsqueeze(0))
    stats = query_independence(records)
    tables, figures = [distance_table(stats)], draw(samples, records, stats, out_dir)
    decompositions = {n: r.decomposition for n, r in records.items() if r.decomposition}
    if decompositions:
        tables.append(decomposition_table(records))
        if not samples[0].is_video:
            figures += draw_terms(samples[0], records, out_dir)
    return Report(
        tables=tables,
        figures=figures,
        settings={"queries": describe(queries), "inputs": len(samples)},
        metrics={
            "inputs": [s.name for s in samples],
            "query_independence": [s.to_dict() for s in stats],
            "decomposition": {n: d.to_dict() for n, d in decompositions.items()},
        },
    )


def analyze(
    model: nn.Module,
    samples: list[Sample],
    queries: QuerySpec,
    out_dir: str | Path,
    settings: dict | None = None,
    complexity_rows: list[ComplexityRow] | None = None,
    title: str = "nlgc analysis",
) -> Path:
    """:func:`analysis_report` (+ :func:`complexity_report` of ``complexity_rows``) written as
    ``report.html``, ``metrics.json`` and PNGs into ``out_dir``; returns the page's path."""
    report = Report(title, settings=dict(settings or {})) + analysis_report(
        model, samples, queries, out_dir
    )
    if complexity_rows:
        report += complexity_report(complexity_rows, Path(out_dir))
    return report.write(out_dir)
