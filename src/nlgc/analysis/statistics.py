"""GCNet's query-independence statistics (Cao et al., "GCNet: Non-local Networks Meet
Squeeze-Excitation Networks and Beyond", arXiv:1904.11492, Section 3.2 and Table 1).

GCNet measures how alike the vectors v_i of the N positions of a block's input are with

    avg_dist = 1/N² Σ_i Σ_j dist(v_i, v_j),   dist(v_i, v_j) = (1 − cos(v_i, v_j)) / 2,

over all ordered pairs of positions (i = j included), for three kinds of vectors: the block's
input x_i ("input"), its output before fusion z_i − x_i ("output") and the attention map of
query i, the row ω_i = f(x_i, ·)/C(x) over the keys ("att"). A small "att" distance while the
inputs differ means the block computes about the same context for every query: what a
query-independent block (SNL, GC) computes at a fraction of the cost.

With unit vectors u_i = v_i/‖v_i‖, 1/N² Σ_i Σ_j cos(v_i, v_j) = ‖ū‖² for ū = 1/N Σ_i u_i, so
avg_dist = (1 − ‖ū‖²)/2 needs O(N·D) work and no N×N matrix; the N attention rows are streamed
in chunks (memory O(chunk · N_keys)). The cosine of a zero vector is undefined: pairs with one
are left out (M nonzero vectors: M² pairs, ū = 1/M Σ u_i), and a sample with none has no value
(NaN; e.g. a concatenation block whose ReLU is dead everywhere has all-zero attention maps).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nlgc.common import eval_mode

ATTENTION_BUDGET = 1 << 18  # attention weights per sample computed at once (1 MiB in float32)
# GCNet (arXiv:1904.11492v1), Table 1: Mask R-CNN R50 with one NL block in c4, on COCO val.
GCNET_TABLE1 = {
    "gaussian": (0.397, 0.062, 0.177),
    "embedded_gaussian": (0.402, 0.012, 0.020),
    "dot_product": (0.405, 0.020, 0.015),
    "concatenation": (0.393, 0.003, 0.004),
}


def unit_sum(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, D) → the sums over positions of v_i/‖v_i‖ (B, D) and of nonzero vectors (B,),
    in float64."""
    vectors = vectors.double()
    nonzero = vectors.ne(0).any(-1)
    return F.normalize(vectors, dim=-1).sum(1), nonzero.sum(1).double()


def average_distance(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """GCNet's avg_dist of each sample from ``unit_sum``'s (B, D) and (B,): NaN where count = 0."""
    mean = total / count.unsqueeze(-1)
    return ((1 - mean.square().sum(-1)) / 2).clamp(min=0)


def cosine_distances(vectors: torch.Tensor) -> torch.Tensor:
    """GCNet's avg_dist over all pairs of the N vectors of each sample: (B, N, D) → (B,)."""
    return average_distance(*unit_sum(vectors))


def streamed_distances(rows, positions: int, keys: int, chunk: int | None = None):
    """avg_dist of N attention rows computed a chunk of queries at a time: ``rows(queries)``
    gives the (B, q, N_keys) rows of the flat query indices ``queries``; (B,) in float64.
    Memory: ``chunk`` rows per sample (default: as many as fit ``ATTENTION_BUDGET``)."""
    chunk = chunk or max(1, ATTENTION_BUDGET // max(1, keys))
    total, count = 0, 0
    for start in range(0, positions, chunk):
        queries = torch.arange(start, min(start + chunk, positions))
        rows_total, rows_count = unit_sum(rows(queries))
        total, count = total + rows_total, count + rows_count
    return average_distance(total, count)


def attention_distances(block: nn.Module, x: torch.Tensor, chunk: int | None = None):
    """avg_dist of the attention maps of all N query positions of ``x``: (B,) in float64.

    Rows come from the block's ``attention_map``, streamed (:func:`streamed_distances`).
    Blocks with one map for every query (SNL, GC, SE) have distance 0 by construction.
    """
    if not block.query_specific:
        return torch.zeros(x.shape[0], dtype=torch.float64)
    positions = math.prod(x.shape[2:])
    keys = math.prod(block.key_spatial(tuple(x.shape[2:])))

    def rows(queries: torch.Tensor) -> torch.Tensor:
        return block.attention_map(x, queries.to(x.device))

    return streamed_distances(rows, positions, keys, chunk)


@dataclass(frozen=True)
class QueryDistances:
    """GCNet's three avg_dist values for one block, averaged over the samples (NaN where no
    sample had a nonzero vector)."""

    input: float
    output: float
    attention: float
    positions: int
    samples: int

    def to_dict(self) -> dict:
        """Plain values for JSON; NaN (no value) becomes None."""
        return {k: None if v != v else v for k, v in asdict(self).items()}


def distances_of(block: nn.Module, x: torch.Tensor, output: torch.Tensor) -> QueryDistances:
    """The statistics from a block's input x (B, C, *S) and its output z (same shape)."""
    flat = lambda t: t.flatten(2).mT  # noqa: E731  (B, C, *S) → (B, N, C)
    return QueryDistances(
        input=float(cosine_distances(flat(x)).nanmean()),
        output=float(cosine_distances(flat(output - x)).nanmean()),
        attention=float(attention_distances(block, x).nanmean()),
        positions=math.prod(x.shape[2:]),
        samples=x.shape[0],
    )


def query_distances(block: nn.Module, x: torch.Tensor) -> QueryDistances:
    """GCNet's Table 1 statistics of ``block`` on its input ``x`` (B, C, [T,] H, W).

    For every sample: avg_dist = 1/N² Σ_i Σ_j (1 − cos(v_i, v_j))/2 over all N positions
    (GCNet, arXiv:1904.11492, Section 3.2), for v_i = x_i ("input"), z_i − x_i ("output") and
    the attention map of query i ("attention"); then the mean over the B samples. The block
    runs in eval mode without gradients; no N×N matrix is made.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 3:
        raise ValueError(
            f"x must be a block input (B, C, *spatial), got {getattr(x, 'shape', type(x))}"
        )
    with eval_mode(block), torch.no_grad():
        return distances_of(block, x, block(x))


def accumulate(parts: list[QueryDistances]) -> QueryDistances:
    """Sample-weighted mean of the statistics of several batches."""
    if not parts:
        raise ValueError("accumulate needs at least one batch of statistics")
    samples = sum(p.samples for p in parts)
    mean = lambda field: sum(getattr(p, field) * p.samples for p in parts) / samples  # noqa: E731
    return QueryDistances(
        mean("input"), mean("output"), mean("attention"), parts[0].positions, samples
    )


@dataclass
class QueryIndependence:
    """GCNet's statistics for one block of a model."""

    block: str
    kind: str
    stage: str
    distances: QueryDistances

    def to_dict(self) -> dict:
        return {
            "block": self.block,
            "kind": self.kind,
            "stage": self.stage,
            **self.distances.to_dict(),
        }


def stage_of(name: str) -> str:
    """``layer3.4.non_local_block`` → ``c4`` (ResNet layers 1…4 are stages c2…c5); a
    segmentor's ``decode_head.nl_block`` → ``head``."""
    for part in name.split("."):
        if part.startswith("layer") and part[5:].isdigit():
            return f"c{int(part[5:]) + 1}"
    return "head" if name.startswith("decode_head.") else "-"


def query_independence(records: dict) -> list[QueryIndependence]:
    """The statistics of every block recorded by ``nlgc.analysis.capture.capture``, in order."""
    return [
        QueryIndependence(name, record.kind, stage_of(name), record.distances)
        for name, record in records.items()
        if record._distances
    ]
