"""What the first seed's trained blocks do: their maps, GCNet's Table 1 and the pairwise /
unary decomposition, as one report part."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from nlgc.analysis import plots
from nlgc.analysis.analyze import DECOMPOSITION_COLUMNS, decomposition_cells, plot_terms
from nlgc.analysis.capture import BlockRecord
from nlgc.analysis.diagnosis import block_records, the_block
from nlgc.analysis.report import Report, Table
from nlgc.analysis.statistics import GCNET_TABLE1
from nlgc.blocks import PAIRWISE, ContextBlock
from nlgc.train.demo.experiment import TABLE1_IMAGES, ProbeImages, nl_label
from nlgc.train.demo.runner import slug

Figure = tuple[str, Path]  # (caption, png)


def _blocks(model: nn.Module) -> list[ContextBlock]:
    """The context blocks of ``model``."""
    return [m for m in model.modules() if isinstance(m, ContextBlock)]


@dataclass
class Study:
    """A trained variant's one context block on the probe images: its name, its record, and the
    pictures of it."""

    block: str
    record: BlockRecord
    figures: list[Figure]


def block_study(model: nn.Module, images: ProbeImages, out: Path, label: str) -> Study:
    """GCNet's statistics and (for NL/DNL) the decomposition of the model's block over the
    images, and the heatmaps of a 3×3 query grid on the first image: its attention maps and,
    where it decomposes, its unary and pairwise maps."""
    name, record = the_block(model, images.batch)
    display = images.samples[0].display
    figures = []
    if record.query_specific:
        path = plots.plot_query_attention(display, record, name, out / f"heatmap_{slug(label)}.png")
        figures.append((f"{label} ({name}): attention of 9 queries", path))
    if record.terms is not None:
        path = plot_terms(display, record, label, out / f"terms_{slug(label)}.png")
        figures.append((f"{label}: unary map and pairwise maps of 9 queries", path))
    return Study(name, record, figures)


def context_mask_figures(
    models: dict[str, nn.Module], images: ProbeImages, out: Path
) -> list[Figure]:
    """The one-for-all context masks of the ``models``' blocks on the first three probe images:
    one figure of the variants with one block (a column each), one of every variant with
    several (a column per block)."""
    frames = [s.display for s in images.samples[:3]]
    records = {label: block_records(model, images.batch[:3]) for label, model in models.items()}
    one_block = {label: next(iter(r.values())) for label, r in records.items() if len(r) == 1}
    figures = []
    if one_block:
        path = plots.plot_context_masks(frames, one_block, out / "context_masks.png")
        figures.append(("SNL / GC context masks: one map for every query", path))
    for label, blocks in records.items():
        if len(blocks) > 1:
            path = out / f"context_masks_{slug(label)}.png"
            caption = f"{label}: the context masks of its {len(blocks)} blocks"
            figures.append((caption, plots.plot_context_masks(frames, blocks, path)))
    return figures


def table1(studies: dict[str, Study]) -> Table:
    """GCNet's Table 1 layout: one row per trained NL pairwise function, ours beside the
    paper's."""
    rows = []
    for pairwise, paper in GCNET_TABLE1.items():
        if nl_label(pairwise) not in studies:
            continue
        ours = studies[nl_label(pairwise)].record.distances
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


def decomposition_table(studies: dict[str, Study]) -> Table:
    """The pairwise / unary decomposition of every trained NL (bilinear) and DNL block."""
    rows = [
        [label, *decomposition_cells(study.record), study.record.distances.attention]
        for label, study in studies.items()
        if study.record.decomposition is not None
    ]
    return Table(
        "Pairwise / unary decomposition (DNL, Yin et al. 2020) of the trained blocks: shares of "
        "the logits' variance over keys (averaged over queries), att distance of each term's "
        f"own softmax and of the whole map ({TABLE1_IMAGES} test images)",
        ["variant", *DECOMPOSITION_COLUMNS, "att (whole map)"],
        rows,
    )


def studies_metrics(studies: dict[str, Study]) -> dict:
    """Every number of the two tables for metrics.json."""
    table1_rows = {}
    for pairwise, paper in GCNET_TABLE1.items():
        if nl_label(pairwise) in studies:
            study = studies[nl_label(pairwise)]
            table1_rows[pairwise] = {
                "block": study.block,
                **study.record.distances.to_dict(),
                "gcnet": dict(zip(("input", "output", "attention"), paper, strict=True)),
            }
    return {
        "gcnet_table1": table1_rows,
        "decomposition": {
            label: study.record.decomposition.to_dict()
            for label, study in studies.items()
            if study.record.decomposition is not None
        },
    }


@dataclass
class BlockStudies:
    """The report part of the trained blocks, its two tables by name."""

    table1: Table
    decomposition: Table
    figures: list[Figure]
    metrics: dict

    def report(self) -> Report:
        return Report(
            tables=[self.table1, self.decomposition], figures=self.figures, metrics=self.metrics
        )


def study_blocks(models: dict[str, nn.Module], images: ProbeImages, out: Path) -> BlockStudies:
    """Study the block of each of ``models`` (label → trained context variant) that has one on
    ``images``; draw the masks of every variant whose blocks pool one context for all queries
    (the detectors' all-GC and all-SNL, with a block in every residual block of c3–c5, block by
    block)."""
    blocks = {label: _blocks(model) for label, model in models.items()}
    studies = {
        label: block_study(models[label], images, out, label)
        for label, found in blocks.items()
        if len(found) == 1
    }
    figures = [figure for study in studies.values() for figure in study.figures]
    one_map = {
        label: models[label]
        for label, found in blocks.items()
        if found and not any(block.query_specific for block in found)
    }
    figures += context_mask_figures(one_map, images, out)
    return BlockStudies(
        table1(studies), decomposition_table(studies), figures, studies_metrics(studies)
    )
