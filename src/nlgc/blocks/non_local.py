"""The non-local block (Wang, Girshick, Gupta, He, CVPR 2018) for sequences, images and video."""

from __future__ import annotations

import math

import torch
from torch import nn

from nlgc.blocks.base import IMPLS, ContextBlock, register_block
from nlgc.blocks.nd import batch_norm_nd, conv_nd, max_pool_nd
from nlgc.blocks.pairwise import FUNCTIONS, PAIRWISE, PairwiseFunction
from nlgc.checks import check_choice, check_input, check_positive_int, check_queries

ATTEND = ("spacetime", "space", "time")
INITS = ("pytorch", "paper")
# the pairwise functions whose weights φ = 0 makes uniform over the keys (``mask_init="zeros"``)
UNIFORM_START = ("embedded_gaussian", "concatenation")


def sub_sampled(spatial: tuple[int, ...]) -> tuple[int, ...]:
    """The grid after :func:`~nlgc.blocks.nd.max_pool_nd`: space halved (floor), time kept."""
    if len(spatial) == 1:
        return (spatial[0] // 2,)
    return (*spatial[:-2], spatial[-2] // 2, spatial[-1] // 2)


def group_positions(t: torch.Tensor, attend: str, frames: int | None = None) -> torch.Tensor:
    """(B, C, *S) -> (B, G, n, C): the G groups of n positions that attend to each other
    (``frames``: spacetime within consecutive groups of that many frames)."""
    if frames is not None:  # (B, C, T, H, W) -> (B, T/frames, frames·H·W, C)
        return t.unflatten(2, (-1, frames)).flatten(3).permute(0, 2, 3, 1)
    if attend == "space":  # every frame on its own: (B, T, H·W, C)
        return t.flatten(3).permute(0, 2, 3, 1)
    if attend == "time":  # every location across frames: (B, H·W, T, C)
        return t.flatten(3).permute(0, 3, 2, 1)
    return t.flatten(2).mT.unsqueeze(1)  # all positions: (B, 1, N, C)


def ungroup_positions(
    y: torch.Tensor, attend: str, spatial: torch.Size, frames: int | None = None
) -> torch.Tensor:
    """Inverse of group_positions: (B, G, n, C) -> (B, C, *spatial), contiguous.

    The copy is O(N·C) and gives W_z a plain layout (it also keeps inductor's dynamic-shape
    stride ordering, which fails on the permuted view, out of trouble).
    """
    if frames is not None:
        y = y.permute(0, 3, 1, 2).unflatten(3, (frames, *spatial[1:])).flatten(2, 3)
    elif attend == "space":
        y = y.permute(0, 3, 1, 2).unflatten(3, spatial[1:])
    elif attend == "time":
        y = y.permute(0, 3, 2, 1).unflatten(3, spatial[1:])
    else:
        y = y.squeeze(1).mT.unflatten(2, spatial)
    return y.contiguous()


@register_block("nl", attribute="non_local_block", default_position="after_block")
class NonLocalBlock(ContextBlock):
    r"""Non-local block: ``z = x + norm(W_z y)``, ``y_i = (1/C(x)) Σ_j f(x_i, x_j) g(x_j)``.

    Args:
        in_channels: C, the channels of the input.
        dim: 1 for sequences (B, C, L), 2 for images (B, C, H, W), 3 for video (B, C, T, H, W).
        pairwise: ``"embedded_gaussian"`` (default, f = exp(θ(x_i)ᵀφ(x_j)), softmax),
            ``"gaussian"`` (f = exp(x_iᵀx_j) on the raw input, no θ/φ, softmax),
            ``"dot_product"`` (f = θ(x_i)ᵀφ(x_j), C(x) = number of keys) or
            ``"concatenation"`` (f = ReLU(w_fᵀ[θ(x_i), φ(x_j)]), C(x) = number of keys).
        inter_channels: C', the embedding width of θ, φ and g; default C // ``reduction``.
        reduction: C / C' where ``inter_channels`` is not given (at least 1 channel); 2 in the
            paper, mmcv's ``NonLocal2d(reduction=…)``.
        sub_sample: max-pool the keys and values by 2 in space (1×2×2 for video); θ is never
            pooled.
        pool_position: ``"after"`` pools after the φ/g convolutions (paper figure, most PyTorch
            ports); ``"before"`` pools the input before them (the official Caffe2 code, needed to
            reproduce its released weights).
        attend: for video, ``"spacetime"`` (default), ``"space"`` (within each frame) or
            ``"time"`` (across frames at the same location), the paper's Table 2d.
        temporal_group: for video with ``attend="spacetime"``, attend only within consecutive
            groups of this many frames (T must be a multiple): the official Caffe2 code's
            ``add_nonlocal_group`` (``lib/models/nonlocal_helper.py``), used with 4 frames in
            res3 of its "affine" 32×4 and 128×1 models. None (default): all frames.
        norm: ``"bn"`` puts BatchNorm after W_z (paper); ``None`` uses W_z alone.
        zero_init: start as an exact identity: BN γ = β = 0 with ``norm="bn"`` (paper), else
            W_z = 0.
        init: ``"pytorch"`` (default: PyTorch's init of the 1×1 convolutions) or ``"paper"``
            (θ, φ, g, W_z and w_f weights ~ N(0, 0.01²), biases 0, as the official Caffe2 code's
            GaussianFill(std=0.01): for training from scratch the way the paper did).
        scale: multiply θᵀφ by C'^-1/2 (embedded Gaussian only). The official code does, the
            paper does not; default off.
        mask_init: ``None`` (default: φ as ``init`` says) or ``"zeros"`` (embedded Gaussian
            and concatenation): φ's weight and bias 0, so that every query's attention starts
            uniform over the keys (the average of g: SNL's and GC's uniform mask,
            ``mask_init="zeros"``). The concatenation also starts θ's weight at 0 and its bias
            so that w_θᵀθ(x_i) = 1: f = 1 for every pair, so no key and no query starts below
            the ReLU, where a pair sends no gradient back and stays for good; φ is then
            the block's mask, which ``optim.mask_hold_epochs`` holds (:meth:`mask_parameters`;
            the concatenation's φ is also its gate's, ``optim.gate_hold_epochs``).
        impl: ``"fast"`` (default, never builds the N×N matrix where the math does not need it)
            or ``"reference"`` (materialises it and reads like the paper). Same function.

    Submodules: ``theta``, ``phi`` (absent for Gaussian), ``g``, ``out`` (W_z), ``norm``
    (BatchNorm or Identity), ``concat_project`` (w_f, concatenation only, 2C'→1, no bias),
    ``pool`` (sub-sampling only, no parameters). All convolutions are 1×1(×1) with bias.

    Shape:
        - Input: (B, C, L), (B, C, H, W) or (B, C, T, H, W) for dim 1, 2, 3.
        - Output: same shape as the input.

    Examples::

        >>> block = NonLocalBlock(64, dim=2, pairwise="embedded_gaussian", sub_sample=True)
        >>> block(torch.randn(2, 64, 14, 14)).shape
        torch.Size([2, 64, 14, 14])
        >>> block.attention_map(torch.randn(2, 64, 14, 14), torch.tensor([0, 97])).shape
        torch.Size([2, 2, 49])
    """

    query_specific = True

    def __init__(
        self,
        in_channels: int,
        dim: int = 2,
        pairwise: str = "embedded_gaussian",
        inter_channels: int | None = None,
        reduction: int = 2,
        sub_sample: bool = False,
        pool_position: str = "after",
        attend: str = "spacetime",
        temporal_group: int | None = None,
        norm: str | None = "bn",
        zero_init: bool = True,
        init: str = "pytorch",
        scale: bool = False,
        mask_init: str | None = None,
        impl: str = "fast",
    ):
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.dim = check_choice("dim", dim, (1, 2, 3))
        self.pairwise = check_choice("pairwise", pairwise, PAIRWISE)
        if inter_channels is None:
            inter_channels = max(1, in_channels // check_positive_int("reduction", reduction))
        self.inter_channels = check_positive_int("inter_channels", inter_channels)
        self.sub_sample = bool(sub_sample)
        self.pool_position = check_choice("pool_position", pool_position, ("after", "before"))
        self.attend = check_choice("attend", attend, ATTEND if dim == 3 else ("spacetime",))
        if self.attend == "time" and self.sub_sample:
            raise ValueError(
                "sub_sample=True pools space, but attend='time' attends only across frames at "
                "one location; use sub_sample=False with attend='time'"
            )
        if temporal_group is not None:
            check_positive_int("temporal_group", temporal_group)
            if dim != 3 or self.attend != "spacetime":
                raise ValueError(
                    "temporal_group groups frames: it needs dim=3 and attend='spacetime', got "
                    f"dim={dim}, attend={attend!r}"
                )
        self.temporal_group = temporal_group
        self.norm_type = check_choice("norm", norm, ("bn", None))
        self.zero_init = bool(zero_init)
        self.init = check_choice("init", init, INITS)
        if scale and pairwise != "embedded_gaussian":
            raise ValueError(
                f"scale=True applies to pairwise='embedded_gaussian', got {pairwise!r}"
            )
        self.scale = bool(scale)
        if mask_init is not None:
            check_choice("mask_init", mask_init, ("zeros",))
            if pairwise not in UNIFORM_START:
                raise ValueError(
                    "mask_init='zeros' starts the attention over keys uniform: it applies to "
                    f"pairwise='embedded_gaussian' or 'concatenation', got {pairwise!r}"
                )
        self.mask_init = mask_init
        self.impl = check_choice("impl", impl, IMPLS)

        conv = conv_nd(dim)
        c, c_inter = in_channels, self.inter_channels
        if self.function.embedded:
            self.theta = conv(c, c_inter, 1)
            self.phi = conv(c, c_inter, 1)
        self.g = conv(c, c_inter, 1)
        if self.function.projected:
            self.concat_project = conv(2 * c_inter, 1, 1, bias=False)
        self.out = conv(c_inter, c, 1)
        self.norm = batch_norm_nd(dim)(c) if norm == "bn" else nn.Identity()
        if self.sub_sample:
            self.pool = max_pool_nd(dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``init``'s values for θ, φ, g, W_z, w_f; φ = 0 for ``mask_init="zeros"`` (and the
        concatenation's θ so that f = 1); then the identity start of ``zero_init``."""
        for module in self.children():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if self.init == "paper" and isinstance(module, nn.modules.conv._ConvNd):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for parameter in self.mask_parameters():
            nn.init.zeros_(parameter)
        if self.mask_init == "zeros" and self.function.projected:
            self._start_every_query_at_one()
        if self.zero_init:
            last = self.norm if self.norm_type == "bn" else self.out
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    @torch.no_grad()
    def _start_every_query_at_one(self) -> None:
        """Concatenation with φ = 0: θ's weight 0 and its bias w_θ/‖w_θ‖², so that the query's
        part a_i = w_θᵀθ(x_i) = 1 and f = ReLU(a_i + 0) = 1 for every pair: no query starts
        below the ReLU, where it would send no gradient back."""
        w_theta = self.concat_project.weight.flatten()[: self.inter_channels]
        nn.init.zeros_(self.theta.weight)
        self.theta.bias.copy_(w_theta / w_theta.square().sum())

    def mask_parameters(self) -> list[nn.Parameter]:
        """φ's weight and bias where the attention starts uniform (``mask_init="zeros"``)."""
        return list(self.phi.parameters()) if self.mask_init == "zeros" else []

    def gate_parameters(self) -> list[nn.Parameter]:
        if not self.function.projected:
            return []
        return [*self.theta.parameters(), *self.phi.parameters(), self.concat_project.weight]

    @property
    def function(self) -> PairwiseFunction:
        """The pairwise function, looked up by name (the module holds no callables)."""
        return FUNCTIONS[self.pairwise]

    @property
    def logit_scale(self) -> float:
        """s in the logits s·q_iᵀk_j (C'^-1/2 with ``scale``, else 1)."""
        return self.inter_channels**-0.5 if self.scale else 1.0

    def query_key(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The vectors the pairwise function compares: θ(x) (B, N, Cq) and φ(x) (B, Nk, Cq),
        keys sub-sampled as configured; raw x for the Gaussian. For the Gaussian, embedded
        Gaussian and dot product the logits are ``logit_scale`` · q kᵀ."""
        self._check(x)
        query, key, _ = self._embed(x)
        return query.flatten(2).mT, key.flatten(2).mT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        query, key, value = self._embed(x)  # (B, Cq, *S), (B, Cq, *S'), (B, C', *S')
        frames = self.temporal_group
        q, k, v = (group_positions(t, self.attend, frames) for t in (query, key, value))
        y = self._reference(q, k, v) if self.impl == "reference" else self._fast(q, k, v)
        y = ungroup_positions(y, self.attend, x.shape[2:], frames)  # (B, C', *S)
        return x + self.norm(self.out(y))

    def attention_map(self, x: torch.Tensor, queries: torch.Tensor | None = None) -> torch.Tensor:
        """The weights f(x_i, x_j)/C(x) the block uses, for the query positions asked for.

        Args:
            x: the block's input.
            queries: flat indices into the input positions (row-major over L, H·W or T·H·W), or
                None for all. Memory is O(Q·N_keys): only the requested rows are computed.

        Returns:
            (B, Q, N_keys) over the flattened (sub-sampled) key positions. With ``attend`` space
            or time (or ``temporal_group``), keys outside a query's frame, location (or group
            of frames) have weight 0.
        """
        q, k = self.query_key(x)  # (B, N, Cq), (B, Nk, Cq)
        num_positions = q.shape[1]
        queries = check_queries(queries, num_positions)
        if queries is None:
            queries = torch.arange(num_positions, device=x.device)
        q = q[:, queries]  # (B, Q, Cq)
        key_mask = self._key_mask(queries, x.shape[2:], self.key_spatial(x.shape[2:]))
        return self.function.weights(q, k, self.logit_scale, self._w_f(), key_mask)

    def key_spatial(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """Keys are max-pooled by 2 in space with ``sub_sample`` (never in time)."""
        return sub_sampled(spatial) if self.sub_sample else tuple(spatial)

    def _check(self, x: torch.Tensor) -> None:
        check_input(x, self.dim, self.in_channels)
        if self.sub_sample and min(x.shape[-2:] if self.dim > 1 else x.shape[-1:]) < 2:
            raise ValueError(
                f"x is too small for sub_sample=True: pooling by 2 needs a spatial size of at "
                f"least 2, got shape {tuple(x.shape)}"
            )
        if self.temporal_group is not None and x.shape[2] % self.temporal_group:
            raise ValueError(
                f"x has {x.shape[2]} frames, not a multiple of temporal_group={self.temporal_group}"
            )
        check_choice("impl", self.impl, IMPLS)

    def _embed(self, x: torch.Tensor):
        """θ(x), φ(x), g(x) as feature maps; keys and values sub-sampled as configured."""
        pool_first = self.sub_sample and self.pool_position == "before"
        source = self.pool(x) if pool_first else x
        if not self.function.embedded:  # the Gaussian: f acts on the raw input
            query, key = x, source
        else:
            query, key = self.theta(x), self.phi(source)
        value = self.g(source)
        if self.sub_sample and not pool_first:
            key, value = self.pool(key), self.pool(value)
        return query, key, value

    def _w_f(self) -> torch.Tensor | None:
        """The concatenation's projection w_f as a (2·C',) vector; None for the others."""
        return self.concat_project.weight.flatten() if self.function.projected else None

    def _reference(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """y = (f / C(x)) · g with the full (Nq, Nk) matrix, as written in the paper."""
        return self.function.reference(q, k, self.logit_scale, self._w_f()) @ v

    def _fast(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The same y without an (Nq, Nk) matrix (see nlgc.blocks.pairwise)."""
        return self.function.attention(q, k, v, self.logit_scale, self._w_f())

    def _key_mask(self, queries, query_spatial, key_spatial) -> torch.Tensor | None:
        """(Q, Nk) bool: which keys each query attends to; None when it attends to all."""
        if self.attend == "spacetime" and self.temporal_group is None:
            return None
        keys = torch.arange(math.prod(key_spatial), device=queries.device)
        if self.temporal_group is not None:  # same group of frames
            group_q = queries // (self.temporal_group * math.prod(query_spatial[1:]))
            group_k = keys // (self.temporal_group * math.prod(key_spatial[1:]))
            return group_q[:, None] == group_k[None, :]
        if self.attend == "space":  # same frame
            frame_q = queries // math.prod(query_spatial[1:])
            frame_k = keys // math.prod(key_spatial[1:])
            return frame_q[:, None] == frame_k[None, :]
        locations = math.prod(query_spatial[1:])  # time: same location (keys are not pooled)
        return (queries % locations)[:, None] == (keys % locations)[None, :]

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, dim={self.dim}, pairwise={self.pairwise!r}, "
            f"inter_channels={self.inter_channels}, sub_sample={self.sub_sample}, "
            f"pool_position={self.pool_position!r}, attend={self.attend!r}, "
            f"temporal_group={self.temporal_group}, "
            f"norm={self.norm_type!r}, init={self.init!r}, scale={self.scale}, "
            f"mask_init={self.mask_init!r}, impl={self.impl!r}"
        )
