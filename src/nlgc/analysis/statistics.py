"""GCNet's query-independence study (its Table 1): are the attention maps of different queries
the same?

For every block, the average cosine distance (1 − cos) over all pairs of query positions of
(a) the block inputs x_i, (b) the attention maps and (c) the block outputs z_i − x_i (W_z y_i for
NL). A small distance for the maps, while the inputs differ, means the block computes about the
same context for every query, which a query-independent block (SNL, GC) gets at a fraction of the
cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from nlgc.analysis.capture import BlockRecord


def mean_pairwise_cosine_distance(vectors: torch.Tensor) -> float:
    """Mean of 1 − cos(v_i, v_j) over all pairs i < j of the Q vectors of every sample.

    vectors: (B, Q, D). Zero vectors count as distance 0 to each other and 1 to others.
    """
    if vectors.shape[1] < 2:
        return 0.0
    unit = F.normalize(vectors.double(), dim=-1)
    cosine = (unit @ unit.mT).clamp(-1, 1)  # (B, Q, Q)
    both_zero = (vectors.norm(dim=-1) == 0).unsqueeze(-1) & (vectors.norm(dim=-1) == 0).unsqueeze(
        -2
    )
    cosine = cosine.masked_fill(both_zero, 1.0)
    upper = torch.triu(torch.ones_like(cosine[0], dtype=torch.bool), diagonal=1)
    return float((1 - cosine[:, upper]).mean())


@dataclass
class QueryIndependence:
    """Average cosine distances between query positions for one block."""

    block: str
    kind: str
    stage: str
    queries: int
    samples: int
    input_distance: float
    attention_distance: float
    output_distance: float

    def to_dict(self) -> dict:
        return asdict(self)


def stage_of(name: str) -> str:
    """``layer3.4.non_local_block`` → ``c4`` (ResNet layers 1…4 are stages c2…c5)."""
    for part in name.split("."):
        if part.startswith("layer") and part[5:].isdigit():
            return f"c{int(part[5:]) + 1}"
    return "-"


def query_independence(records: dict[str, BlockRecord]) -> list[QueryIndependence]:
    """The three distances for every recorded block, in model order.

    Blocks with one context mask for all queries (SNL, GC, SE) have attention distance 0 by
    construction; their maps are repeated per query to measure it like the others.
    """
    results = []
    for name, record in records.items():
        if not record._attention:
            continue
        maps = record.attention
        if not record.query_specific:
            maps = maps.unsqueeze(1).expand(-1, len(record.queries), -1)
        results.append(
            QueryIndependence(
                block=name,
                kind=record.kind,
                stage=stage_of(name),
                queries=len(record.queries),
                samples=maps.shape[0],
                input_distance=mean_pairwise_cosine_distance(record.inputs),
                attention_distance=mean_pairwise_cosine_distance(maps),
                output_distance=mean_pairwise_cosine_distance(record.deltas),
            )
        )
    return results
