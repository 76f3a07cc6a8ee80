"""Query-independent context blocks of GCNet (Cao et al., 2019): SNL, GC and SE.

All three follow one pipeline, context modeling → transform → fusion:

==========  =============================  ========================================  ============
block       context modeling               transform                                 fusion
==========  =============================  ========================================  ============
SNL         attention pooling              W_v (1×1)                                 add
GC          attention (or average) pooling W_v1 → LayerNorm → ReLU → W_v2, ratio r    add and/or
                                                                                     mul (sigmoid)
SE          average pooling                FC → ReLU → FC → sigmoid                  mul
==========  =============================  ========================================  ============

The context is one vector per sample, (B, C, 1, …), broadcast back over every position.

Each block has two implementations of one function (``impl``): ``"reference"`` applies the
paper's 1×1 convolutions to the feature map and to the (B, C, 1, …) context, as written;
``"fast"`` (default) computes the attention logits and the pooled context as two matrix products
over the flattened map, runs the transform as linear layers on (B, C) vectors (the same
parameters, viewed as matrices) and fuses the result back in one pass (``torch.addcmul``). Inside
a residual block, :meth:`forward_residual` also folds the residual addition into that pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nlgc.blocks.base import IMPLS, ContextBlock, register_block
from nlgc.blocks.nd import conv_nd
from nlgc.checks import (
    check_choice,
    check_input,
    check_positive_int,
    check_queries,
    check_ratio,
)
from nlgc.common import softmax

FUSIONS = ("mul", "add")  # the order they apply in: multiply first, then add
POOLINGS = ("att", "avg")


def attention_weights(mask_logits: torch.Tensor) -> torch.Tensor:
    """Softmax over positions of a (B, 1, *S) logit map -> (B, N), in float32 for half inputs."""
    return softmax(mask_logits.flatten(1))


def pool_context(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_j w_j x_j per sample: x (B, C, *S), weights (B, N) -> context (B, C, 1, …)."""
    context = x.flatten(2) @ weights.unsqueeze(-1).to(x.dtype)  # (B, C, 1)
    return context.view(*x.shape[:2], *([1] * (x.dim() - 2)))


def attention_pool(x: torch.Tensor, mask: nn.Module) -> torch.Tensor:
    """Σ_j softmax_j(W_k x_j + b) x_j as two batched matrix-vector products: x (B, C, *S) ->
    (B, C). ``mask`` is the C→1 1×1 convolution (W_k, b)."""
    flat = x.flatten(2)  # (B, C, N)
    query = mask.weight.view(1, 1, -1).expand(x.shape[0], 1, -1).to(x.dtype)  # (B, 1, C)
    if mask.bias is None:
        logits = torch.bmm(query, flat)  # (B, 1, N)
    else:  # the bias shifts every logit alike; it is kept so that it has a gradient
        logits = torch.baddbmm(mask.bias.view(1, 1, 1).to(x.dtype), query, flat)
    weights = attention_weights(logits)  # (B, N)
    return torch.bmm(weights.unsqueeze(1), flat.mT).squeeze(1)  # (B, C)


def linear_1x1(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A 1×1 convolution applied to (B, C) vectors as the linear layer it is: (B, C_out)."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


def fuse(
    x: torch.Tensor,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """x · scale + shift (+ residual) with (B, C) ``scale``/``shift`` broadcast over positions,
    in as few passes over the map as eager PyTorch allows (one with a scale: ``addcmul``)."""
    shape = (*x.shape[:2], *([1] * (x.dim() - 2)))  # (B, C, 1, …)
    if scale is not None and residual is not None:
        out = torch.addcmul(residual, x, scale.view(shape))
    elif scale is not None:
        out = x * scale.view(shape)
    elif residual is not None:
        out = x + residual
    else:
        return x if shift is None else x + shift.view(shape)
    return out if shift is None else out.add_(shift.view(shape))  # out is new: safe in place


def _uniform_weights(x: torch.Tensor) -> torch.Tensor:
    """Average pooling as a context mask: 1/N at every position, (B, N)."""
    n = x[0, 0].numel()
    return x.new_full((x.shape[0], n), 1.0 / n)


MASK_INITS = ("kaiming", "zeros")  # W_k at the start: mmcv's, or 0 (a uniform mask)


def init_mask(mask: nn.Module, how: str) -> None:
    """W_k of a context mask: Kaiming (fan-in) as mmcv's ContextBlock initialises it, or 0, so
    that the mask starts uniform (average pooling) with no sign of its own; the bias 0."""
    if how == "kaiming":
        nn.init.kaiming_normal_(mask.weight, mode="fan_in", nonlinearity="relu")
    else:
        nn.init.zeros_(mask.weight)
    nn.init.zeros_(mask.bias)


class BroadcastContextBlock(ContextBlock):
    """What SNL, GC and SE share: one context per sample, transformed into a (B, C) scale
    and/or shift that is broadcast over every position: z = x · scale + shift.

    Subclasses give ``_terms(x) -> (scale, shift)`` (each (B, C) or None; the fast path) and
    ``_reference(x) -> z`` (the paper's formula with convolutions).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_residual(x)

    def mask_parameters(self) -> list[nn.Parameter]:
        mask = getattr(self, "conv_mask", None)
        return [] if mask is None else list(mask.parameters())

    def forward_residual(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z (+ ``residual``): inside a residual block, the residual addition folded into the
        fusion pass (one pass over the map instead of two)."""
        check_input(x, self.dim, self.in_channels)
        if residual is not None and residual.shape != x.shape:
            raise ValueError(
                f"residual must have the shape of x {tuple(x.shape)}, got {tuple(residual.shape)}"
            )
        if check_choice("impl", self.impl, IMPLS) == "reference":
            z = self._reference(x)
            return z if residual is None else z + residual
        return fuse(x, *self._terms(x), residual=residual)

    def _terms(self, x: torch.Tensor):
        raise NotImplementedError

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@register_block("snl", attribute="simplified_non_local", default_position="after_block")
class SimplifiedNonLocal(BroadcastContextBlock):
    """GCNet's simplified non-local block (SNL): z_i = x_i + W_v Σ_j softmax_j(W_k x_j) x_j.

    The attention map is the same for every query, so it costs O(N·C) instead of O(N²·C).

    Args:
        in_channels: C.
        dim: 1, 2 or 3 for (B, C, L), (B, C, H, W), (B, C, T, H, W).
        zero_init: zero W_v so the block starts as an exact identity.
        impl: ``"fast"`` (matrix products, linear transform, fused add) or ``"reference"``.
        mask_init: W_k at the start, ``"kaiming"`` (mmcv's) or ``"zeros"`` (a uniform mask).

    Submodules: ``conv_mask`` (W_k, C→1 with bias), ``transform`` (W_v, C→C with bias).

    Shape:
        Input and output: (B, C, *S).
    """

    def __init__(
        self,
        in_channels: int,
        dim: int = 2,
        zero_init: bool = True,
        impl: str = "fast",
        mask_init: str = "kaiming",
    ):
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.dim = check_choice("dim", dim, (1, 2, 3))
        self.zero_init = bool(zero_init)
        self.impl = check_choice("impl", impl, IMPLS)
        self.mask_init = check_choice("mask_init", mask_init, MASK_INITS)
        conv = conv_nd(dim)
        self.conv_mask = conv(in_channels, 1, 1)
        self.transform = conv(in_channels, in_channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """W_k as ``mask_init`` says (:func:`init_mask`), PyTorch's default for W_v, then
        W_v = 0 with ``zero_init``."""
        init_mask(self.conv_mask, self.mask_init)
        self.transform.reset_parameters()
        if self.zero_init:
            nn.init.zeros_(self.transform.weight)
            nn.init.zeros_(self.transform.bias)

    def attention_map(self, x: torch.Tensor, queries: torch.Tensor | None = None) -> torch.Tensor:
        """The context mask softmax_j(W_k x_j), (B, N): one map serves every query."""
        check_input(x, self.dim, self.in_channels)
        check_queries(queries, x[0, 0].numel())
        return attention_weights(self.conv_mask(x))

    def _terms(self, x: torch.Tensor):
        context = attention_pool(x, self.conv_mask)  # (B, C)
        return None, linear_1x1(self.transform, context)  # shift (B, C)

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        context = pool_context(x, attention_weights(self.conv_mask(x)))  # (B, C, 1, …)
        return x + self.transform(context)  # broadcast add


@register_block("gc", attribute="context_block", default_position="after_conv3")
class GlobalContextBlock(BroadcastContextBlock):
    """Global Context (GC) block of GCNet: pooled context → bottleneck transform → fusion.

    ``context = Σ_j softmax_j(W_k x_j) x_j`` (or the mean with ``pooling="avg"``), then
    ``t = W_v2 ReLU(LN(W_v1 context))`` with a bottleneck of int(C·ratio) channels; ``"add"``
    fusion gives z = x + t, ``"mul"`` gives z = x · sigmoid(t), and both multiply first, then add.
    With ``zero_init`` (default) the last conv of each transform starts at zero, so add fusion
    is an identity at init (mul fusion then scales by sigmoid(0) = 1/2).

    Args:
        in_channels: C.
        ratio: bottleneck ratio r, the transform has int(C·r) (at least 1) hidden channels.
        pooling: ``"att"`` (attention pooling, default) or ``"avg"`` (global average).
        fusion: ``("add",)`` (default), ``("mul",)`` or ``("mul", "add")``; a single string is
            accepted too.
        layer_norm: LayerNorm over [C', 1, …] in the transform (the paper); False drops it.
        dim: 1, 2 or 3 for (B, C, L), (B, C, H, W), (B, C, T, H, W).
        impl: ``"fast"`` (matrix products, linear transform, fused fusion) or ``"reference"``.
        layer_norm_eps: the LayerNorm's ε: 1e-5 (PyTorch, mmcv) or 1e-6 (timm's
            ``GlobalContext``).
        mask_init: W_k at the start (``pooling="att"``), ``"kaiming"`` (mmcv's) or ``"zeros"``
            (a uniform mask: average pooling until W_k moves).
        zero_init: zero the last conv of each transform (mmcv's ``last_zero_init``); False keeps
            PyTorch's init there, so the block acts from the first step.

    The state-dict keys are those of the official GCNet / mmcv ``ContextBlock``: ``conv_mask``,
    ``channel_add_conv.0/.1/.3``, ``channel_mul_conv.0/.1/.3`` (``.1`` is the LayerNorm; without it
    an Identity keeps the indices), so released GCNet checkpoints load without renaming.

    Shape:
        Input and output: (B, C, *S).

    Examples::

        >>> gc = GlobalContextBlock(256, ratio=1 / 16)
        >>> gc(torch.randn(2, 256, 28, 28)).shape
        torch.Size([2, 256, 28, 28])
    """

    def __init__(
        self,
        in_channels: int,
        ratio: float = 1 / 16,
        pooling: str = "att",
        fusion: tuple[str, ...] | str = ("add",),
        layer_norm: bool = True,
        dim: int = 2,
        impl: str = "fast",
        layer_norm_eps: float = 1e-5,
        mask_init: str = "kaiming",
        zero_init: bool = True,
    ):
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.zero_init = bool(zero_init)
        self.ratio = check_ratio("ratio", ratio)
        self.layer_norm_eps = check_ratio("layer_norm_eps", layer_norm_eps)
        self.planes = max(1, int(in_channels * ratio))
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        fusion = (fusion,) if isinstance(fusion, str) else tuple(fusion)
        if not fusion or len(set(fusion)) != len(fusion):
            raise ValueError(f"fusion must name 'add', 'mul' or both once each, got {fusion!r}")
        for name in fusion:
            check_choice("fusion", name, FUSIONS)
        self.fusion = tuple(name for name in FUSIONS if name in fusion)
        self.layer_norm = bool(layer_norm)
        self.dim = check_choice("dim", dim, (1, 2, 3))
        self.impl = check_choice("impl", impl, IMPLS)
        self.mask_init = check_choice("mask_init", mask_init, MASK_INITS)

        if pooling == "att":
            self.conv_mask = conv_nd(dim)(in_channels, 1, 1)
        if "add" in self.fusion:
            self.channel_add_conv = self._transform()
        if "mul" in self.fusion:
            self.channel_mul_conv = self._transform()
        self.reset_parameters()

    def _transform(self) -> nn.Sequential:
        conv = conv_nd(self.dim)
        norm_shape = [self.planes] + [1] * self.dim
        return nn.Sequential(
            conv(self.in_channels, self.planes, 1),
            nn.LayerNorm(norm_shape, self.layer_norm_eps) if self.layer_norm else nn.Identity(),
            nn.ReLU(inplace=True),
            conv(self.planes, self.in_channels, 1),
        )

    def reset_parameters(self) -> None:
        """W_k as ``mask_init`` says (:func:`init_mask`), PyTorch defaults elsewhere, last
        convs zero with ``zero_init``."""
        if self.pooling == "att":
            init_mask(self.conv_mask, self.mask_init)
        for transform in (getattr(self, f"channel_{f}_conv") for f in self.fusion):
            for layer in transform:
                if hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()
            if self.zero_init:
                nn.init.zeros_(transform[-1].weight)
                nn.init.zeros_(transform[-1].bias)

    @property
    def uniform_attention(self) -> bool:
        return self.pooling == "avg"

    def attention_map(self, x: torch.Tensor, queries: torch.Tensor | None = None) -> torch.Tensor:
        """The context mask (B, N): softmax_j(W_k x_j), or 1/N for average pooling."""
        check_input(x, self.dim, self.in_channels)
        check_queries(queries, x[0, 0].numel())
        if self.pooling == "avg":
            return _uniform_weights(x)
        return attention_weights(self.conv_mask(x))

    def _terms(self, x: torch.Tensor):
        if self.pooling == "att":
            context = attention_pool(x, self.conv_mask)  # (B, C)
        else:
            context = x.flatten(2).mean(-1)  # (B, C)
        scale = shift = None
        if "mul" in self.fusion:
            scale = torch.sigmoid(self._transform_vector(self.channel_mul_conv, context))
        if "add" in self.fusion:
            shift = self._transform_vector(self.channel_add_conv, context)
        return scale, shift

    def _transform_vector(self, transform: nn.Sequential, context: torch.Tensor) -> torch.Tensor:
        """W_v2 ReLU(LN(W_v1 c)) on (B, C) vectors with the Sequential's own parameters."""
        hidden = linear_1x1(transform[0], context)  # (B, C')
        norm = transform[1]
        if isinstance(norm, nn.LayerNorm):  # over [C', 1, …]: the same as over C'
            weight, bias = norm.weight.flatten(), norm.bias.flatten()
            hidden = F.layer_norm(hidden, hidden.shape[-1:], weight, bias, norm.eps)
        return linear_1x1(transform[3], torch.relu(hidden))  # (B, C)

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling == "att":
            context = pool_context(x, attention_weights(self.conv_mask(x)))  # (B, C, 1, …)
        else:
            context = x.mean(dim=tuple(range(2, x.dim())), keepdim=True)  # (B, C, 1, …)
        out = x
        if "mul" in self.fusion:
            out = out * torch.sigmoid(self.channel_mul_conv(context))
        if "add" in self.fusion:
            out = out + self.channel_add_conv(context)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, ratio={self.ratio:g}, pooling={self.pooling!r}, "
            f"fusion={self.fusion}, layer_norm={self.layer_norm}, dim={self.dim}, "
            f"impl={self.impl!r}, mask_init={self.mask_init!r}, zero_init={self.zero_init}"
        )


@register_block("se", attribute="se", default_position="after_conv3")
class SqueezeExcitation(BroadcastContextBlock):
    """Squeeze-and-Excitation: x · sigmoid(FC(ReLU(FC(mean x)))), FCs as 1×1 convs.

    Args:
        in_channels: C.
        ratio: the hidden layer has int(C·ratio) (at least 1) channels; default 1/16.
        dim: 1, 2 or 3 for (B, C, L), (B, C, H, W), (B, C, T, H, W).
        impl: ``"fast"`` (linear layers on (B, C), fused multiply) or ``"reference"``.

    Submodules: ``fc1`` (C→C·r), ``fc2`` (C·r→C), both with bias (timm's SE layout).

    Shape:
        Input and output: (B, C, *S).
    """

    uniform_attention = True  # SE pools by averaging

    def __init__(self, in_channels: int, ratio: float = 1 / 16, dim: int = 2, impl: str = "fast"):
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        check_ratio("ratio", ratio)
        self.dim = check_choice("dim", dim, (1, 2, 3))
        self.impl = check_choice("impl", impl, IMPLS)
        hidden = max(1, int(in_channels * ratio))
        conv = conv_nd(dim)
        self.fc1 = conv(in_channels, hidden, 1)
        self.fc2 = conv(hidden, in_channels, 1)

    def attention_map(self, x: torch.Tensor, queries: torch.Tensor | None = None) -> torch.Tensor:
        """SE pools by averaging: the context mask is 1/N everywhere, (B, N)."""
        check_input(x, self.dim, self.in_channels)
        check_queries(queries, x[0, 0].numel())
        return _uniform_weights(x)

    def _terms(self, x: torch.Tensor):
        context = x.flatten(2).mean(-1)  # (B, C)
        hidden = torch.relu(linear_1x1(self.fc1, context))
        return torch.sigmoid(linear_1x1(self.fc2, hidden)), None  # scale (B, C)

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        context = x.mean(dim=tuple(range(2, x.dim())), keepdim=True)  # (B, C, 1, …)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(context))))
