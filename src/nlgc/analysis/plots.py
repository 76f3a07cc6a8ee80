"""Pictures of what the blocks do, with matplotlib (object API, Agg: no display, no global state).

Images are (3, H, W) tensors with values in [0, 1]; clips are (3, T, H, W).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from nlgc.analysis.capture import BlockRecord
from nlgc.analysis.complexity import ComplexityRow
from nlgc.analysis.statistics import QueryIndependence

HEATMAP = "jet"
DPI = 110


def _upsample(
    values: torch.Tensor, spatial: tuple[int, ...], size: tuple[int, int]
) -> torch.Tensor:
    """A flat map over ``spatial`` (h, w) → (H, W) with bilinear interpolation."""
    grid = values.reshape(1, 1, *spatial[-2:]).float()
    return F.interpolate(grid, size=size, mode="bilinear", align_corners=False)[0, 0]


def _query_pixel(flat: int, spatial: tuple[int, ...], size: tuple[int, int]) -> tuple[float, float]:
    """Centre of the grid cell of a flat query index, in image pixels (x, y)."""
    h, w = spatial[-2:]
    row, col = divmod(flat % (h * w), w)
    return (col + 0.5) * size[1] / w, (row + 0.5) * size[0] / h


def _show(ax, image: torch.Tensor) -> None:
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def wrap_name(name: str, width: int = 24) -> str:
    """A module's dotted name in lines of at most ``width`` characters where it can break
    (after a "." or "_"), for titles of narrow columns."""
    lines = [""]
    for part in re.split(r"(?<=[._])", name):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight", format="png")
    return path


def plot_query_attention(
    image: torch.Tensor, record: BlockRecord, name: str, path: Path, sample: int = 0, most: int = 9
) -> Path:
    """GCNet Figure 1: the image with the query points, then each query's attention heatmap
    overlaid on the image (upsampled to image size), one shared colour bar."""
    queries = record.queries[:most].tolist()
    return plot_query_maps(
        image,
        queries,
        record.attention[sample, : len(queries)],
        (record.spatial, record.key_spatial),
        f"{name} ({record.kind}): attention of each query",
        path,
    )


def plot_query_maps(
    image: torch.Tensor,
    queries: list[int],
    maps: torch.Tensor,
    grids: tuple[tuple[int, ...], tuple[int, ...]],
    title: str,
    path: Path,
    lead: tuple[str, torch.Tensor] | None = None,
) -> Path:
    """The image with its query points, then one heatmap per query (``maps`` (Q, N_keys)),
    overlaid on the image; ``grids`` are the queries' and the keys' grids. ``lead`` (a
    title and one (N_keys,) map, e.g. a map shared by every query) goes under the image."""
    spatial, key_spatial = grids
    size = tuple(image.shape[-2:])
    heat = torch.stack([_upsample(m, key_spatial, size) for m in maps])
    columns = min(len(queries), 3) + 1
    rows = max(2 if lead is not None else 1, math.ceil(len(queries) / 3))
    fig = Figure(figsize=(3.2 * columns, 3.0 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    _show(axes[0, 0], image)
    axes[0, 0].set_axis_on()
    axes[0, 0].set_title("input and queries", fontsize=10)
    if lead is not None:
        axes[1, 0].set_axis_on()
        _show(axes[1, 0], image)
        lead_map = _upsample(lead[1], key_spatial, size).numpy()
        axes[1, 0].imshow(lead_map, cmap=HEATMAP, alpha=0.55)
        axes[1, 0].set_title(lead[0], fontsize=10)
    vmax = float(heat.max())
    for number, (flat, h) in enumerate(zip(queries, heat, strict=True)):
        x, y = _query_pixel(flat, spatial, size)
        axes[0, 0].plot(x, y, "o", ms=9, mfc="white", mec="black")
        axes[0, 0].annotate(str(number + 1), (x, y), ha="center", va="center", fontsize=6)
        ax = axes[number // 3, 1 + number % 3]
        ax.set_axis_on()
        _show(ax, image)
        shown = ax.imshow(h.numpy(), cmap=HEATMAP, alpha=0.55, vmin=0, vmax=vmax)
        ax.plot(x, y, "o", ms=9, mfc="white", mec="black")
        ax.set_title(f"query {number + 1}", fontsize=10)
    fig.colorbar(shown, ax=axes[:, 1:].ravel().tolist(), shrink=0.8, label="attention weight")
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def plot_video_query_attention(
    clip: torch.Tensor, record: BlockRecord, name: str, path: Path, sample: int = 0, query: int = 0
) -> Path:
    """NL paper Figure 1: one query's attention over the frames of the clip, its frame marked."""
    size = tuple(clip.shape[-2:])
    key_t = record.key_spatial[0]
    flat = int(record.queries[query])
    query_frame = flat // math.prod(record.spatial[1:]) * key_t // record.spatial[0]
    maps = record.attention[sample, query].reshape(key_t, -1)  # (T', h'·w')
    fig = Figure(figsize=(2.6 * key_t, 2.9), layout="constrained")
    axes = fig.subplots(1, key_t, squeeze=False)[0]
    vmax = float(maps.max())
    for t, ax in enumerate(axes):
        frame = clip[:, min(clip.shape[1] - 1, t * clip.shape[1] // key_t)]
        _show(ax, frame)
        shown = ax.imshow(
            _upsample(maps[t], record.key_spatial, size).numpy(),
            cmap=HEATMAP,
            alpha=0.55,
            vmin=0,
            vmax=vmax,
        )
        ax.set_title(f"frame {t + 1}" + (" (query)" if t == query_frame else ""), fontsize=9)
        if t == query_frame:
            x, y = _query_pixel(flat, record.spatial, size)
            ax.plot(x, y, "o", ms=9, mfc="white", mec="black")
            for spine in ax.spines.values():
                spine.set(edgecolor="red", linewidth=3)
    fig.colorbar(shown, ax=list(axes), shrink=0.8, label="attention weight")
    fig.suptitle(f"{name}: attention of one query over the clip", fontsize=11)
    return _save(fig, path)


def plot_context_masks(
    images: Sequence[torch.Tensor], records: dict[str, BlockRecord], path: Path
) -> Path:
    """SNL/GC context masks overlaid on each image (for clips: the middle frame, the mask summed
    over time): rows are inputs, columns are blocks."""
    names = list(records)
    fig = Figure(figsize=(3.0 * len(names), 2.9 * len(images) + 0.4), layout="constrained")
    axes = fig.subplots(len(images), len(names), squeeze=False)
    for row, image in enumerate(images):
        size = tuple(image.shape[-2:])
        for col, name in enumerate(names):
            record = records[name]
            mask = record.attention[row]
            if len(record.spatial) == 3:  # video: the mask summed over time, on the middle frame
                mask = mask.reshape(record.spatial[0], -1).sum(0)
            ax = axes[row, col]
            _show(ax, image)
            ax.imshow(_upsample(mask, record.spatial, size).numpy(), cmap=HEATMAP, alpha=0.55)
            if row == 0:
                ax.set_title(f"{wrap_name(name)}\n({record.kind})", fontsize=8)
    fig.suptitle("context masks: one map for every query", fontsize=11)
    return _save(fig, path)


def plot_distances(stats: Sequence[QueryIndependence], path: Path) -> Path:
    """GCNet's avg_dist over all positions, per block (by stage): inputs, maps, outputs."""
    labels = [f"{s.stage} {s.block.rsplit('.', 1)[0]}\n{s.kind}" for s in stats]
    series = {
        "input x": [s.distances.input for s in stats],
        "output z − x": [s.distances.output for s in stats],
        "attention maps": [s.distances.attention for s in stats],
    }
    fig = Figure(figsize=(max(6.0, 1.1 * len(stats) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        positions = [p + (i - 1) * width for p in range(len(stats))]
        ax.bar(positions, values, width, label=label)
    ax.set_xticks(
        range(len(stats)),
        labels,
        rotation=45 if len(stats) > 6 else 0,
        fontsize=8,
        ha="right" if len(stats) > 6 else "center",
    )
    ax.set_ylabel("avg_dist = mean (1 − cos)/2 over all position pairs")
    ax.set_ylim(0, max(0.5, max(max(v) for v in series.values()) * 1.1))
    ax.legend(fontsize=8)
    ax.set_title("query independence (GCNet, Table 1): 0 = the same for every query", fontsize=10)
    return _save(fig, path)


def plot_complexity(rows: Sequence[ComplexityRow], path: Path) -> Path:
    """Parameters, FLOPs and latency of model variants (the latency axis names the device)."""
    fig = Figure(figsize=(11, 0.5 * len(rows) + 1.8), layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    names = [r.name for r in rows]
    for ax, (key, label) in zip(
        axes,
        [
            ("params", "parameters (M)"),
            ("gmacs", "GMACs"),
            ("ms", f"{rows[0].device.upper()} latency (ms)"),
        ],
        strict=True,
    ):
        values = [getattr(r, key) / (1e6 if key == "params" else 1) for r in rows]
        ax.barh(names, values, color="tab:blue")
        ax.set_xlabel(label)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.3g}", va="center", fontsize=8)
        ax.margins(x=0.25)
    axes[0].invert_yaxis()
    fig.suptitle("complexity of the model variants", fontsize=11)
    return _save(fig, path)


def plot_confusion(matrix: torch.Tensor, classes: Sequence[str], path: Path) -> Path:
    """A (classes, classes) confusion matrix (rows: true, columns: predicted), each row
    normalised to sum to 1; class names on the axes when there are at most 40."""
    counts = torch.as_tensor(matrix, dtype=torch.float64)
    rows = counts / counts.sum(1, keepdim=True).clamp_min(1)
    side = min(12.0, 3 + 0.25 * len(classes))
    fig = Figure(figsize=(side, side))
    ax = fig.add_subplot()
    image = ax.imshow(rows.numpy(), cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 40:
        ticks = range(len(classes))
        ax.set_xticks(ticks, list(classes), rotation=90, fontsize=7)
        ax.set_yticks(ticks, list(classes), fontsize=7)
    ax.set_title(f"confusion matrix ({int(counts.sum())} test items)")
    return _save(fig, path)


PALETTE = ("#000000", "#d62728", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd")  # class 0, 1, …


def plot_detections(
    images: Sequence[torch.Tensor],
    detections: dict[str, Sequence[dict]],
    classes: Sequence[str],
    path: Path,
) -> Path:
    """Instances drawn on their images: rows are images (3, H, W) in [0, 1], one column per
    entry of ``detections`` (name → one torchvision result per image: ``boxes`` (N, 4) x1y1x2y2,
    ``labels`` (N,), ``scores`` (N,), optional ``masks`` (N, [1,] H, W) in [0, 1]; e.g. the
    ground truth and each variant's detections), each instance's mask tinted, its box outlined
    and named with its score, one colour per class (classes 1–5; 0 is the background)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch, Rectangle

    if not 1 < len(classes) <= len(PALETTE):
        raise ValueError(f"classes: 2 to {len(PALETTE)} names expected, got {len(classes)}")
    names = list(detections)
    fig = Figure(figsize=(1.9 * len(names), 1.9 * len(images) + 0.6), layout="constrained")
    axes = fig.subplots(len(images), len(names), squeeze=False)
    for row, image in enumerate(images):
        for col, name in enumerate(names):
            ax, found = axes[row, col], detections[name][row]
            _show(ax, image)
            columns = (found[key].tolist() for key in ("boxes", "labels", "scores"))
            for i, (box, label, score) in enumerate(zip(*columns, strict=True)):
                colour = PALETTE[label]
                if "masks" in found:
                    mask = found["masks"][i].reshape(image.shape[-2:]).float().numpy() > 0.5
                    ax.imshow(mask, alpha=0.5 * mask, cmap=ListedColormap(["black", colour]))
                x1, y1, x2, y2 = box
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color=colour))
                ax.text(
                    x1, y1, f"{classes[label]} {score:.2f}", color=colour, fontsize=5, va="bottom"
                )
            if row == 0:
                ax.set_title(name, fontsize=8)
    handles = [Patch(color=PALETTE[i], label=n) for i, n in enumerate(classes) if i]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    return _save(fig, path)


def plot_label_maps(
    images: Sequence[torch.Tensor],
    maps: dict[str, torch.Tensor],
    classes: Sequence[str],
    path: Path,
) -> Path:
    """Label maps beside their images: rows are images (3, H, W) in [0, 1], the first column the
    image, then one column per entry of ``maps`` (name → (B, H, W) class ids, e.g. the ground
    truth and each variant's prediction), one colour per class (at most six; legend below)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    if not 0 < len(classes) <= len(PALETTE):
        raise ValueError(f"classes: 1 to {len(PALETTE)} names expected, got {len(classes)}")
    colours = list(PALETTE[: len(classes)])
    cmap = ListedColormap(colours)
    names = list(maps)
    fig = Figure(figsize=(1.9 * (len(names) + 1), 1.9 * len(images) + 0.6), layout="constrained")
    axes = fig.subplots(len(images), len(names) + 1, squeeze=False)
    for row, image in enumerate(images):
        _show(axes[row, 0], image)
        for col, name in enumerate(names, 1):
            ax = axes[row, col]
            ax.imshow(
                maps[name][row].numpy(),
                cmap=cmap,
                vmin=0,
                vmax=len(colours) - 1,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=8)
    axes[0, 0].set_title("image", fontsize=8)
    handles = [Patch(color=c, label=n) for c, n in zip(colours, classes, strict=True)]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(classes), fontsize=8)
    return _save(fig, path)
