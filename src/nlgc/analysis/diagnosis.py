"""Why a trained network's context blocks did not help: what each block does on test images.

Made for networks on images whose two items lie in opposite corner squares (the demo's task,
:mod:`nlgc.data.synthetic`).
"""

from __future__ import annotations

import torch
from torch import nn

from nlgc.analysis.capture import BlockRecord, capture
from nlgc.analysis.queries import QueryGrid
from nlgc.common import eval_mode


def block_records(model: nn.Module, images: torch.Tensor) -> dict[str, BlockRecord]:
    """The record of each of ``model``'s context blocks on ``images`` (3×3 query grid), by
    name."""
    with eval_mode(model), capture(model, QueryGrid(3)) as records, torch.no_grad():
        model(images)
    return dict(records)


def the_block(model: nn.Module, images: torch.Tensor) -> tuple[str, BlockRecord]:
    """The name and record of ``model``'s one context block on ``images`` (3×3 query grid)."""
    records = block_records(model, images)
    if len(records) != 1:
        raise ValueError(f"expected a network with one context block, got {list(records)}")
    return next(iter(records.items()))


def item_share(record: BlockRecord, size: int, extent: int) -> tuple[float, float]:
    """How much of its attention a block puts on the two items of a ``size``-px canvas: the
    attention weight, summed over images (and queries), on the key cells whose centres lie in
    the items' corner squares of side ``extent``, over all its weight; and that share under
    uniform attention (32 of 196 cells in the demo's c3)."""
    height, width = record.key_spatial
    weights = record.attention.reshape(-1, height, width)  # (B or B·Q, H, W)

    def corners(n: int):
        centres = (torch.arange(n) + 0.5) * size / n
        return centres < extent, centres >= size - extent

    (top, bottom), (left, right) = corners(height), corners(width)
    on_items = top[:, None] & left[None] | bottom[:, None] & right[None]  # (H, W)
    share = weights[:, on_items].sum() / weights.sum().clamp_min(1e-30)
    return float(share), float(on_items.float().mean())


def diagnose(model: nn.Module, images: torch.Tensor, extent: int) -> str:
    """Why a context variant did not beat the plain network, from what its blocks do on
    ``images`` (B, 3, S, S) with items in corner squares of side ``extent``: for each block
    (named where there are several), dead attention, a context that is the same for every
    image, attention collapsed to its unary term, or none of these."""
    records = block_records(model, images)
    found = {
        name: _diagnosis(model, name, r, images.shape[-1], extent) for name, r in records.items()
    }
    if len(found) == 1:
        return next(iter(found.values()))
    return "; ".join(f"{name}: {text}" for name, text in found.items())


def _diagnosis(model: nn.Module, name: str, record: BlockRecord, size: int, extent: int) -> str:
    """What one block does, in one sentence (see :func:`diagnose`)."""
    deltas, inputs = record.deltas, record.inputs  # (B, Q, C) at the query grid
    added = float(deltas.norm() / inputs.norm().clamp_min(1e-12))
    across_images = float(deltas.std(0).norm() / deltas.norm().clamp_min(1e-12))
    if record.attention.abs().max() == 0:
        return "every attention weight is 0 (the ReLU of f is dead): the block adds a constant"
    share, uniform = item_share(record, size, extent)
    on_items = f"{share:.0%} of its attention on the two items' corners, {uniform:.0%} if uniform"
    if across_images < 0.05:
        return (
            f"the block adds {added:.2f}·‖x‖ but nearly the same vector for every image "
            f"(variation across images {across_images:.3f}; {on_items}): its context says "
            "nothing about the items, it acts as a bias"
        )
    decomposition = record.decomposition
    if decomposition is not None and decomposition.unary_share > 0.9:
        return (
            f"attention collapsed to its unary term ({decomposition.unary_share:.0%} of the "
            "logits' variance over keys): every query pools the same positions"
        )
    passing = ""
    if getattr(model.get_submodule(name), "pairwise", None) == "concatenation":
        live = float((record.attention > 0).float().mean())
        passing = f"; {live:.1%} of its (query, key) pairs pass the ReLU of f"
    return (
        f"the block is active (adds {added:.2f}·‖x‖, varying across images by "
        f"{across_images:.2f}; {on_items}{passing}) but the network did not use it within the "
        "schedule"
    )
