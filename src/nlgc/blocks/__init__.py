"""Context blocks: non-local (NL), disentangled non-local (DNL), simplified non-local (SNL),
global context (GC), squeeze-excitation (SE).

Every block derives from :class:`ContextBlock` and is registered for model plans in
:data:`BLOCK_TYPES` by the ``register_block`` line above its class; importing a block's module
registers it.
"""

from torch import nn

from nlgc.blocks.base import BLOCK_TYPES, IMPLS, BlockType, ContextBlock, register_block
from nlgc.blocks.context import (
    BroadcastContextBlock,
    GlobalContextBlock,
    SimplifiedNonLocal,
    SqueezeExcitation,
)
from nlgc.blocks.disentangled import DisentangledNonLocal
from nlgc.blocks.non_local import NonLocalBlock
from nlgc.blocks.pairwise import PAIRWISE
from nlgc.checks import check_choice


def set_impl(model: nn.Module, impl: str) -> nn.Module:
    """Switch every context block inside ``model`` to ``"fast"`` or ``"reference"``."""
    check_choice("impl", impl, IMPLS)
    for module in model.modules():
        if isinstance(module, ContextBlock):
            module.impl = impl
    return model


__all__ = [
    "BLOCK_TYPES",
    "IMPLS",
    "PAIRWISE",
    "BlockType",
    "BroadcastContextBlock",
    "ContextBlock",
    "DisentangledNonLocal",
    "GlobalContextBlock",
    "NonLocalBlock",
    "SimplifiedNonLocal",
    "SqueezeExcitation",
    "register_block",
    "set_impl",
]
