"""What every context block shares, and the registry that makes a block placeable.

A block class derives from :class:`ContextBlock`, which says what the analysis needs to know
(``query_specific``, ``key_spatial``, ``uniform_attention``, ``attention_map``), and registers
itself with :func:`register_block` on the line above the class. Model plans
(:mod:`nlgc.models.plan`) and the analysis (:mod:`nlgc.analysis`) ask only this protocol and
this registry, so a new block is its own file plus one line in ``nlgc/blocks/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

IMPLS = ("fast", "reference")  # every block: one function, two implementations


@dataclass(frozen=True)
class BlockType:
    """A registered block: its class, the attribute name it gets inside a residual block (the
    released checkpoints' names) and the position a plan puts it at by default."""

    cls: type[ContextBlock]
    attribute: str
    default_position: str


BLOCK_TYPES: dict[str, BlockType] = {}  # plan key ("nl", "gc", …) → BlockType


def register_block(key: str, attribute: str, default_position: str):
    """Class decorator: make the block placeable by plans as ``Insertion(key, …)``."""

    def register(cls: type[ContextBlock]) -> type[ContextBlock]:
        if key in BLOCK_TYPES:
            raise ValueError(f"a block type {key!r} is already registered")
        if not issubclass(cls, ContextBlock):
            raise TypeError(f"{cls.__name__} must derive from ContextBlock to be registered")
        BLOCK_TYPES[key] = BlockType(cls, attribute, default_position)
        return cls

    return register


class ContextBlock(nn.Module):
    """Base of every context block: input (B, C, *S) → output of the same shape.

    Subclasses set ``in_channels``, ``dim`` and ``impl`` (one of :data:`IMPLS`) and implement
    :meth:`attention_map`. Class attribute ``query_specific``: True when every query position
    has its own attention map (NL, DNL), False when one map serves all (SNL, GC, SE).
    """

    query_specific: bool = False
    impl: str = "fast"
    in_channels: int
    dim: int

    @property
    def uniform_attention(self) -> bool:
        """True when the map is 1/N everywhere, whatever the input (average pooling)."""
        return False

    def mask_parameters(self) -> list[nn.Parameter]:
        """The parameters of the block's attention mask (W_k and its bias in SNL and GC attention
        pooling; φ, and DNL's w_m, of NL and DNL blocks that start uniform), which
        ``optim.mask_hold_epochs`` holds at their start; none for the other blocks."""
        return []

    def gate_parameters(self) -> list[nn.Parameter]:
        """The parameters in front of an unnormalised ReLU gate (θ, φ and w_f of the
        concatenation's f = ReLU(w_fᵀ[θ(x_i), φ(x_j)])), whose learning rate
        ``optim.gate_lr_mult`` sets; none for the other blocks."""
        return []

    def key_spatial(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """The grid of the keys that :meth:`attention_map` is laid out on, for an input grid
        ``spatial`` ((L,), (H, W) or (T, H, W)): the input's own unless the block pools them."""
        return tuple(spatial)

    def attention_map(self, x: torch.Tensor, queries: torch.Tensor | None = None) -> torch.Tensor:
        """The block's attention weights on input ``x`` for flat query positions ``queries``
        (None: all): (B, Q, N_keys) when ``query_specific``, else the one map (B, N_keys)."""
        raise NotImplementedError
