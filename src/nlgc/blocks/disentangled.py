"""The disentangled non-local block (DNL; Yin et al., "Disentangled Non-Local Neural Networks",
ECCV 2020, arXiv:2006.06668).

Inside the embedded Gaussian's softmax over keys j, θ_iᵀφ_j splits into a whitened pairwise term
(θ_i − μ_θ)ᵀ(φ_j − μ_φ), a unary term μ_θᵀφ_j that is the same for every query, and terms constant
in j. DNL computes the two apart, each with its own softmax, and adds the maps:

    z_i = x_i + BN(W_z Σ_j [softmax_j(s·(θ_i − μ_θ)ᵀ(φ_j − μ_φ)/τ) + softmax_j(w_mᵀx_j + b)] g(x_j))

with μ_θ, μ_φ the means of θ and φ over the positions of each sample, s = C'^-1/2 (``scale``) and
τ the temperature. Where the two sources differ, this block follows:

=====================  ==========================================  ===========================
choice                 official code (DNL-Semantic-Segmentation,   mmsegmentation
                       ``model/seg/ops/nonlocal_block.py``)        (``DisentangledNonLocal2d``)
=====================  ==========================================  ===========================
temperature τ          an argument, default 1.0; configs set it    0.05 (default here)
scale 1/√C'            always                                      ``use_scale=True`` in DNLHead
                                                                   (default here)
unary mask             w_mᵀx_j on the (sub-sampled) key input      w_mᵀx_j on the input
                       (``with_gc``), own softmax                  (no sub-sampling), own softmax
combination            maps' outputs summed, then one W_z (+BN)    W_z and its BN applied to each
                       (``combine="attention"``, default)          term, then summed
                                                                   (``combine="outputs"``)
pairwise gain          a learnable γ (init 0) on the pairwise      none (none here)
                       term
=====================  ==========================================  ===========================

Parameter names are mmsegmentation's (mmcv ``ConvModule`` layout): ``theta.conv``, ``phi.conv``,
``g.conv``, ``conv_out.conv`` (no bias), ``conv_out.bn``, ``conv_mask``, so the block weights of
its DNL checkpoints (``decode_head.dnl_block.*``) load as they are.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from nlgc.blocks import pairwise
from nlgc.blocks.base import IMPLS, ContextBlock, register_block
from nlgc.blocks.nd import batch_norm_nd, conv_nd, max_pool_nd
from nlgc.blocks.non_local import INITS, sub_sampled
from nlgc.checks import check_choice, check_input, check_positive_int, check_queries
from nlgc.common import softmax

COMBINE = ("attention", "outputs")


def centred(t: torch.Tensor) -> torch.Tensor:
    """t − its mean over positions, per sample and channel: (B, N, C) -> (B, N, C)."""
    return t - t.mean(dim=-2, keepdim=True)


@register_block("dnl", attribute="dnl_block", default_position="after_block")
class DisentangledNonLocal(ContextBlock):
    r"""Disentangled non-local block: a whitened pairwise map plus a unary map (module docstring).

    Args:
        in_channels: C.
        dim: 1, 2 or 3 for (B, C, L), (B, C, H, W), (B, C, T, H, W).
        inter_channels: C' of θ, φ and g; default C // 2 (at least 1).
        sub_sample: max-pool the input of φ, g and the unary mask by 2 in space (1×2×2 for
            video), as the official code's ``downsample``; queries are never pooled.
        temperature: τ, dividing the pairwise logits (mmsegmentation's default 0.05).
        scale: multiply the pairwise logits by C'^-1/2 (both sources do).
        combine: ``"attention"`` (sum the two terms' outputs, then W_z and BN once: the paper and
            the official code) or ``"outputs"`` (W_z and BN on each term, then the sum:
            mmsegmentation).
        zero_init: BN γ = β = 0, so the block starts as an exact identity.
        init: ``"paper"`` (default: θ, φ, g, W_z and w_m ~ N(0, 0.01²), biases 0, as both DNL
            sources) or ``"pytorch"`` (PyTorch's default init of the convolutions).
        mask_init: ``None`` (default: as ``init`` says) or ``"zeros"``: φ and the unary mask
            w_m at 0 (weights and biases), so that both terms start uniform for every query
            (as :class:`~nlgc.blocks.non_local.NonLocalBlock`'s ``mask_init``); they are then
            the block's mask, which ``optim.mask_hold_epochs`` holds (:meth:`mask_parameters`).
        impl: ``"fast"`` (SDPA on the centred θ/φ and attention pooling for the unary term: no
            N×N matrix) or ``"reference"`` (the two N×N maps, as the formula reads).

    Shape:
        Input and output: (B, C, *S).

    Examples::

        >>> block = DisentangledNonLocal(64, dim=2)
        >>> block(torch.randn(2, 64, 14, 14)).shape
        torch.Size([2, 64, 14, 14])
    """

    query_specific = True

    def __init__(
        self,
        in_channels: int,
        dim: int = 2,
        inter_channels: int | None = None,
        sub_sample: bool = False,
        temperature: float = 0.05,
        scale: bool = True,
        combine: str = "attention",
        zero_init: bool = True,
        init: str = "paper",
        mask_init: str | None = None,
        impl: str = "fast",
    ):
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.dim = check_choice("dim", dim, (1, 2, 3))
        if inter_channels is None:
            inter_channels = max(1, in_channels // 2)
        self.inter_channels = check_positive_int("inter_channels", inter_channels)
        self.sub_sample = bool(sub_sample)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.scale = bool(scale)
        self.combine = check_choice("combine", combine, COMBINE)
        self.zero_init = bool(zero_init)
        self.init = check_choice("init", init, INITS)
        self.mask_init = (
            None if mask_init is None else check_choice("mask_init", mask_init, ("zeros",))
        )
        self.impl = check_choice("impl", impl, IMPLS)

        conv = conv_nd(dim)
        c, c_inter = in_channels, self.inter_channels
        self.theta = nn.Sequential(OrderedDict(conv=conv(c, c_inter, 1)))
        self.phi = nn.Sequential(OrderedDict(conv=conv(c, c_inter, 1)))
        self.g = nn.Sequential(OrderedDict(conv=conv(c, c_inter, 1)))
        self.conv_out = nn.Sequential(
            OrderedDict(conv=conv(c_inter, c, 1, bias=False), bn=batch_norm_nd(dim)(c))
        )
        self.conv_mask = conv(c, 1, 1)
        if self.sub_sample:
            self.pool = max_pool_nd(dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.modules.conv._ConvNd):
                module.reset_parameters()
                if self.init == "paper":
                    nn.init.normal_(module.weight, std=0.01)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
        for parameter in self.mask_parameters():
            nn.init.zeros_(parameter)
        bn = self.conv_out.bn
        bn.reset_parameters()
        if self.zero_init:
            nn.init.zeros_(bn.weight)
            nn.init.zeros_(bn.bias)

    def mask_parameters(self) -> list[nn.Parameter]:
        """φ's and w_m's weights and biases where both terms start uniform
        (``mask_init="zeros"``)."""
        if self.mask_init != "zeros":
            return []
        return [*self.phi.parameters(), *self.conv_mask.parameters()]

    @property
    def logit_scale(self) -> float:
        """s/τ: what the centred θᵀφ is multiplied by inside the pairwise softmax."""
        return (self.inter_channels**-0.5 if self.scale else 1.0) / self.temperature

    def key_spatial(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        return sub_sampled(spatial) if self.sub_sample else tuple(spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v, unary_logits = self._embed(x)  # (B, N, C'), (B, Nk, C') ×2, (B, Nk)
        unary = softmax(unary_logits).unsqueeze(1)  # (B, 1, Nk)
        if check_choice("impl", self.impl, IMPLS) == "reference":
            pair = pairwise.softmax_weights(q, k, self.logit_scale)  # (B, N, Nk)
            if self.combine == "attention":
                return x + self.conv_out(self._as_map((pair + unary) @ v, x.shape[2:]))
            y_pair = pair @ v  # (B, N, C')
        else:  # SDPA on the centred embeddings; the unary term is one attention-pooled vector
            y_pair = pairwise.softmax_attention(q, k, v, self.logit_scale)  # (B, N, C')
        y_unary = unary @ v  # (B, 1, C'), the same for every query
        if self.combine == "attention":
            return x + self.conv_out(self._as_map(y_pair + y_unary, x.shape[2:]))
        ones = (1,) * self.dim  # mmsegmentation: W_z and BN on the (B, C', 1, …) unary vector
        return (
            x
            + self.conv_out(self._as_map(y_pair, x.shape[2:]))
            + self.conv_out(self._as_map(y_unary, ones))
        )

    def attention_map(self, x: torch.Tensor, queries: torch.Tensor | None = None) -> torch.Tensor:
        """The weights the block sums g over: pairwise + unary map, (B, Q, N_keys); each row
        sums to 2 (one per softmax). :meth:`pairwise_map` and :meth:`unary_map` give the terms."""
        return self.pairwise_map(x, queries) + self.unary_map(x).unsqueeze(1)

    def pairwise_map(self, x: torch.Tensor, queries: torch.Tensor | None = None) -> torch.Tensor:
        """softmax_j(s·(θ_i − μ_θ)ᵀ(φ_j − μ_φ)/τ) for the query rows asked for: (B, Q, N_keys)."""
        q, k, _, _ = self._embed(x)
        queries = check_queries(queries, q.shape[1])
        if queries is not None:
            q = q[:, queries]
        return pairwise.softmax_weights(q, k, self.logit_scale)

    def unary_map(self, x: torch.Tensor) -> torch.Tensor:
        """softmax_j(w_mᵀx_j + b_m) over the keys, the same for every query: (B, N_keys)."""
        return softmax(self._embed(x)[3])

    def _embed(self, x: torch.Tensor):
        """Centred θ (B, N, C'), centred φ (B, Nk, C'), g (B, Nk, C'), unary logits (B, Nk)."""
        check_input(x, self.dim, self.in_channels)
        if self.sub_sample and min(x.shape[-2:] if self.dim > 1 else x.shape[-1:]) < 2:
            raise ValueError(
                f"x is too small for sub_sample=True: pooling by 2 needs a spatial size of at "
                f"least 2, got shape {tuple(x.shape)}"
            )
        source = self.pool(x) if self.sub_sample else x
        flat = lambda t: t.flatten(2).mT  # noqa: E731  (B, C, *S) -> (B, N, C)
        q, k = centred(flat(self.theta(x))), centred(flat(self.phi(source)))
        return q, k, flat(self.g(source)), self.conv_mask(source).flatten(1)

    @staticmethod
    def _as_map(y: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
        """(B, N, C') -> (B, C', *spatial), contiguous for W_z."""
        return y.mT.reshape(y.shape[0], y.shape[2], *spatial).contiguous()

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, dim={self.dim}, inter_channels={self.inter_channels}, "
            f"sub_sample={self.sub_sample}, temperature={self.temperature:g}, "
            f"scale={self.scale}, combine={self.combine!r}, init={self.init!r}, "
            f"mask_init={self.mask_init!r}, impl={self.impl!r}"
        )
