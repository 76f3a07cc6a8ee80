"""Record what every context block of a model does at a few query positions.

    with capture(model, queries=QueryGrid(3)) as records:
        model(images)
    records["layer3.4.non_local_block"].attention  # (B, Q, N_keys)

Hooks every NonLocalBlock, SimplifiedNonLocal, GlobalContextBlock and SqueezeExcitation of any
model (ours, or a user's network that contains our blocks). Per block and forward call it keeps
the attention rows of the queries (NL: (B, Q, N_keys); SNL/GC/SE: their one context mask (B, N)),
the block's input x at the queries (B, Q, C) and what the block adds there, z − x (B, Q, C): for NL
that is W_z y_i after its norm. Memory is O(Q·N) per block: only the query rows are computed.
Every call also adds GCNet's exact statistics over all positions (``record.distances``, see
:mod:`nlgc.analysis.statistics`), computed without an N×N matrix.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

from nlgc.analysis.queries import QueryGrid, QuerySpec, resolve
from nlgc.analysis.statistics import QueryDistances, accumulate, distances_of
from nlgc.blocks import CONTEXT_BLOCKS, NonLocalBlock


@dataclass
class BlockRecord:
    """What one block did over every forward call inside ``capture``."""

    kind: str  # class name
    spatial: tuple[int, ...] = ()  # the block's input grid, (L,), (H, W) or (T, H, W)
    key_spatial: tuple[int, ...] = ()  # the keys' grid (sub-sampled for NL)
    queries: torch.Tensor | None = None  # (Q,) flat indices into ``spatial``
    _attention: list[torch.Tensor] = field(default_factory=list)
    _inputs: list[torch.Tensor] = field(default_factory=list)
    _deltas: list[torch.Tensor] = field(default_factory=list)
    _distances: list[QueryDistances] = field(default_factory=list)

    @property
    def query_specific(self) -> bool:
        """True for NL (one map per query); SNL, GC, SE have one map for all queries."""
        return self.kind == NonLocalBlock.__name__

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


def context_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """Every NL, SNL, GC and SE block of ``model`` by qualified name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, CONTEXT_BLOCKS)}


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
            f"{type(model).__name__} contains no NonLocalBlock, SimplifiedNonLocal, "
            "GlobalContextBlock or SqueezeExcitation: there is nothing to analyse"
        )
    spec = queries or QueryGrid(3)
    records = {name: BlockRecord(type(block).__name__) for name, block in blocks.items()}

    def hook(name):
        def record(module, args, output):
            x = args[0].detach()
            rec = records[name]
            rec.spatial = tuple(x.shape[2:])
            rec.queries = resolve(spec, rec.spatial).to(x.device)
            with torch.no_grad():
                maps = module.attention_map(x, rec.queries)
            rec.key_spatial = _key_spatial(module, rec.spatial)
            rec._attention.append(maps.float().cpu())
            rec._inputs.append(_at_queries(x, rec.queries).float().cpu())
            rec._deltas.append(_at_queries(output.detach() - x, rec.queries).float().cpu())
            with torch.no_grad():
                rec._distances.append(distances_of(module, x, output.detach()))

        return record

    handles = [block.register_forward_hook(hook(name)) for name, block in blocks.items()]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def _key_spatial(module: nn.Module, spatial: tuple[int, ...]) -> tuple[int, ...]:
    """The grid the attention rows are laid out on: sub-sampled by 2 in space for NL."""
    if isinstance(module, NonLocalBlock) and module.sub_sample:
        if len(spatial) == 1:
            return (spatial[0] // 2,)
        return (*spatial[:-2], spatial[-2] // 2, spatial[-1] // 2)
    return spatial
