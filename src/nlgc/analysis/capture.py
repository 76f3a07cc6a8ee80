"""Record what every context block of a model does at a few query positions.

    with capture(model, queries=QueryGrid(3)) as records:
        model(images)
    records["layer3.4.non_local_block"].attention  # (B, Q, N_keys)

Hooks every context block (``nlgc.blocks.ContextBlock``: NL, SNL, GC, SE, …) of any model (ours,
or a user's network that contains our blocks). Per block and forward call it keeps
the attention rows of the queries (NL: (B, Q, N_keys); SNL/GC/SE: their one context mask (B, N)),
the block's input x at the queries (B, Q, C) and what the block adds there, z − x (B, Q, C): for NL
that is W_z y_i after its norm. Memory is O(Q·N) per block: only the query rows are computed.
Every call also adds GCNet's exact statistics over all positions (``record.distances``, see
:mod:`nlgc.analysis.statistics`), computed without an N×N matrix, and for NL/DNL blocks the
pairwise / unary decomposition (``record.decomposition``, :mod:`nlgc.analysis.decomposition`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

from nlgc.analysis.decomposition import (
    Decomposition,
    decomposable,
    decomposition_of,
    merge,
    term_maps,
)
from nlgc.analysis.queries import QueryGrid, QuerySpec, resolve
from nlgc.analysis.statistics import QueryDistances, accumulate, distances_of
from nlgc.blocks import ContextBlock


@dataclass
class BlockRecord:
    """What one block did over every forward call inside ``capture``."""

    kind: str  # class name
    query_specific: bool  # one attention map per query (NL) or one for all (SNL, GC, SE)
    uniform: bool = False  # the map is 1/N everywhere (average pooling: SE, GC with "avg")
    spatial: tuple[int, ...] = ()  # the block's input grid, (L,), (H, W) or (T, H, W)
    key_spatial: tuple[int, ...] = ()  # the keys' grid (sub-sampled for NL)
    queries: torch.Tensor | None = None  # (Q,) flat indices into ``spatial``
    _attention: list[torch.Tensor] = field(default_factory=list)
    _inputs: list[torch.Tensor] = field(default_factory=list)
    _deltas: list[torch.Tensor] = field(default_factory=list)
    _distances: list[QueryDistances] = field(default_factory=list)
    _decompositions: list[Decomposition] = field(default_factory=list)
    terms: tuple[torch.Tensor, torch.Tensor] | None = None  # first call: unary (B, Nk) and
    # pairwise maps of the queries (B, Q, Nk), for blocks that decompose (NL, DNL)

    @property
    def attention(self) -> torch.Tensor:
        """(B, Q, N_keys) for NL, (B, N) context masks otherwise; all calls concatenated."""
        return torch.cat(self._attention)

    @property
    def inputs(self) -> torch.Tensor:
        """(B, Q, C): the block's input x at the query positions."""
        return torch.cat(self._inputs)

    @property
    def deltas(self) -> torch.Tensor:
        """(B, Q, C): z − x at the query positions, what the block adds there."""
        return torch.cat(self._deltas)

    @property
    def distances(self) -> QueryDistances:
        """GCNet's statistics over all positions, averaged over every recorded sample."""
        return accumulate(self._distances)

    @property
    def decomposition(self) -> Decomposition | None:
        """The pairwise / unary decomposition over every recorded sample (None where the block
        does not decompose: see :mod:`nlgc.analysis.decomposition`)."""
        return merge(self._decompositions) if self._decompositions else None


def context_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """Every context block (NL, SNL, GC, SE, …) of ``model`` by qualified name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, ContextBlock)}


def _at_queries(t: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """(B, C, *S) -> (B, Q, C) at flat positions."""
    return t.flatten(2)[:, :, queries].mT


@contextlib.contextmanager
def capture(model: nn.Module, queries: QuerySpec | None = None):
    """Context manager that hooks every context block of ``model``; yields name → BlockRecord.

    Raises ValueError when the model contains none of nlgc's blocks.
    """
    blocks = context_blocks(model)
    if not blocks:
        raise ValueError(
            f"{type(model).__name__} contains no nlgc context block (NL, SNL, GC, SE, …): "
            "there is nothing to analyse"
        )
    spec = queries or QueryGrid(3)
    records = {
        name: BlockRecord(type(block).__name__, block.query_specific, block.uniform_attention)
        for name, block in blocks.items()
    }

    def hook(name):
        def record(module, args, output):
            x = args[0].detach()
            rec = records[name]
            rec.spatial = tuple(x.shape[2:])
            rec.queries = resolve(spec, rec.spatial).to(x.device)
            with torch.no_grad():
                maps = module.attention_map(x, rec.queries)
            rec.key_spatial = module.key_spatial(rec.spatial)
            rec._attention.append(maps.float().cpu())
            rec._inputs.append(_at_queries(x, rec.queries).float().cpu())
            rec._deltas.append(_at_queries(output.detach() - x, rec.queries).float().cpu())
            with torch.no_grad():
                rec._distances.append(distances_of(module, x, output.detach()))
            if decomposable(module):
                rec._decompositions.append(decomposition_of(module, x))
                if rec.terms is None:
                    rec.terms = tuple(t.float().cpu() for t in term_maps(module, x, rec.queries))

        return record

    handles = [block.register_forward_hook(hook(name)) for name, block in blocks.items()]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()
