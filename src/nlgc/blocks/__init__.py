"""Context blocks: non-local (NL), simplified non-local (SNL), global context (GC), SE."""

from torch import nn

from nlgc.blocks.context import (
    BroadcastContextBlock,
    GlobalContextBlock,
    SimplifiedNonLocal,
    SqueezeExcitation,
)
from nlgc.blocks.non_local import NonLocalBlock

CONTEXT_BLOCKS = (NonLocalBlock, SimplifiedNonLocal, GlobalContextBlock, SqueezeExcitation)


def set_impl(model: nn.Module, impl: str) -> nn.Module:
    """Switch every context block inside ``model`` (NL, SNL, GC, SE) to ``"fast"`` or
    ``"reference"``."""
    if impl not in ("fast", "reference"):
        raise ValueError(f"impl must be one of ('fast', 'reference'), got {impl!r}")
    for module in model.modules():
        if isinstance(module, (NonLocalBlock, BroadcastContextBlock)):
            module.impl = impl
    return model


__all__ = [
    "CONTEXT_BLOCKS",
    "BroadcastContextBlock",
    "GlobalContextBlock",
    "NonLocalBlock",
    "SimplifiedNonLocal",
    "SqueezeExcitation",
    "set_impl",
]
