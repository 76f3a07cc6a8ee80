"""The pairwise functions of the non-local block, y_i = (1/C(x)) Σ_j f(x_i, x_j) g(x_j).

Every function works on flattened positions with any leading batch dimensions:
queries ``q`` (..., Nq, Cq), keys ``k`` (..., Nk, Cq), values ``v`` (..., Nk, Cv).

Each pairwise function comes in two forms that compute the same y:

* ``*_weights`` gives the normalised matrix f/C(x) of shape (..., Nq, Nk). The reference path is
  ``weights @ v``, which reads like the paper; ``attention_map`` uses the weights for a few
  queries only.
* ``*_attention`` gives y (..., Nq, Cv) without materialising Nq × Nk where the math allows:

  ============================  ===================================  ============================
  pairwise                      f(x_i, x_j), C(x)                    fast path
  ============================  ===================================  ============================
  gaussian / embedded gaussian  exp(s·q_iᵀk_j), Σ_j f (softmax)      SDPA (flash kernel, O(N·C))
  dot product                   q_iᵀk_j, Nk                          q (kᵀv) / Nk, O(N·C²)
  concatenation                 ReLU(w_fᵀ[q_i, k_j]), Nk             sort + suffix sums,
                                                                     O(N log N + N·C)
  ============================  ===================================  ============================

Half-precision inputs are normalised in float32 (softmax, suffix sums) and cast back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nlgc.common import HALF, softmax


def _normalise_by_count(f: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """f / C(x) with C(x) the number of keys each query sees (all keys when no mask)."""
    if key_mask is None:
        return f / f.shape[-1]
    return f.masked_fill(~key_mask, 0) / key_mask.sum(-1, keepdim=True)


def softmax_weights(
    q: torch.Tensor, k: torch.Tensor, scale: float, key_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Gaussian / embedded Gaussian: softmax_j(scale · q_iᵀk_j), shape (..., Nq, Nk).

    ``key_mask`` (bool, broadcastable to (..., Nq, Nk)) restricts each query to its keys.
    """
    logits = (q @ k.mT) * scale
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask, float("-inf"))
    return softmax(logits)


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float):
    """softmax_weights(q, k, scale) @ v through scaled_dot_product_attention: (..., Nq, Cv).

    PyTorch's memory-efficient (flash) kernels need 4-D inputs with a contiguous last dimension
    and the same head size for q, k and v; otherwise SDPA silently runs its N×N math kernel.
    3-D inputs get a head dimension; the smaller head size is zero-padded (which changes no dot
    product) and the padding sliced off.
    """
    if q.dim() == 3:  # (B, N, C): one head
        return softmax_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale).squeeze(1)
    head, value_head = q.shape[-1], v.shape[-1]
    if value_head < head:
        v = F.pad(v, (0, head - value_head))
    elif head < value_head:
        q, k = F.pad(q, (0, value_head - head)), F.pad(k, (0, value_head - head))
    y = F.scaled_dot_product_attention(dense(q), dense(k), dense(v), scale=scale)
    return y[..., :value_head]


def dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` with the strides of a fresh contiguous tensor. ``contiguous()`` leaves any stride on
    a size-1 dimension, and CUDA's memory-efficient SDPA kernel checks the alignment of every
    stride: keys pooled to one position, (B, 1, 1, C) with strides (C, 1, 1, 1), stopped it with
    "cutlassF: no kernel found to launch" (an H200, float32)."""
    t = t.contiguous()
    strides, step = [], 1
    for size in reversed(t.shape):
        strides.append(step)
        step *= size
    if t.stride() == tuple(reversed(strides)):
        return t
    return t.clone(memory_format=torch.contiguous_format)


def dot_product_weights(
    q: torch.Tensor, k: torch.Tensor, key_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Dot product: q_iᵀk_j / Nk, shape (..., Nq, Nk)."""
    return _normalise_by_count(q @ k.mT, key_mask)


def dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(q kᵀ / Nk) v computed as q (kᵀ v) / Nk: O(N·Cq·Cv), no Nq × Nk matrix."""
    return q @ ((k.mT @ v) / k.shape[-2])


def concatenation_weights_reference(
    q: torch.Tensor, k: torch.Tensor, w_f: torch.Tensor
) -> torch.Tensor:
    """Concatenation, literally: ReLU(w_fᵀ [q_i, k_j]) / Nk, building every pair (..., Nq, Nk, 2C).

    ``w_f`` has shape (2C,): the first C entries weigh q, the last C weigh k.
    """
    nq, nk = q.shape[-2], k.shape[-2]
    pairs = torch.cat(
        [
            q.unsqueeze(-2).expand(*q.shape[:-1], nk, q.shape[-1]),
            k.unsqueeze(-3).expand(*k.shape[:-2], nq, nk, k.shape[-1]),
        ],
        dim=-1,
    )  # (..., Nq, Nk, 2C)
    return F.relu(pairs @ w_f) / nk


def concatenation_weights(
    a: torch.Tensor, b: torch.Tensor, key_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Concatenation from the two halves of w_f: ReLU(a_i + b_j) / Nk, shape (..., Nq, Nk).

    a = q · w_f[:C] (..., Nq) and b = k · w_f[C:] (..., Nk), since w_fᵀ[q_i, k_j] = a_i + b_j.
    """
    return _normalise_by_count(F.relu(a.unsqueeze(-1) + b.unsqueeze(-2)), key_mask)


def _suffix_sum(x: torch.Tensor) -> torch.Tensor:
    """S[k] = Σ_{j >= k} x[j] along dim -2, with S[N] = 0: (..., N, C) -> (..., N + 1, C)."""
    return F.pad(x.flip(-2).cumsum(-2).flip(-2), (0, 0, 0, 1))


def _count_at_most(sorted_keys: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """For each threshold t_i, the number of keys <= t_i: (..., Nk), (..., Nq) -> (..., Nq).

    One argsort of keys and thresholds together (searchsorted has no ONNX export). Where a key
    equals a threshold its ReLU term is exactly zero, so the order among ties does not matter.
    """
    n_keys = sorted_keys.shape[-1]
    order = torch.cat([sorted_keys, thresholds], dim=-1).argsort(dim=-1)
    keys_so_far = (order < n_keys).long().cumsum(-1)  # keys at or before each sorted slot
    counts = torch.empty_like(keys_so_far).scatter(-1, order, keys_so_far)
    return counts[..., n_keys:]


def concatenation_attention(a: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """y_i = (1/Nk) Σ_j ReLU(a_i + b_j) v_j exactly, in O(N log N + N·C) memory and time.

    ReLU(a_i + b_j) is non-zero only where b_j > -a_i. With the keys sorted by b, those keys are
    a suffix, so y_i = (a_i · Σ_suffix v + Σ_suffix b·v) / Nk, read from two suffix-sum tables.
    a: (..., Nq), b: (..., Nk), v: (..., Nk, C) -> (..., Nq, C).
    """
    out_dtype, lead = v.dtype, a.shape[:-1]
    if out_dtype in HALF:
        a, b, v = a.float(), b.float(), v.float()
    # one batch dimension: inductor's dynamic shapes trip over sort outputs with size-1 dims
    a, b, v = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]), v.reshape(-1, *v.shape[-2:])
    n_keys = b.shape[-1]
    b_sorted, order = b.sort(dim=-1)
    by_b = order.unsqueeze(-1).expand_as(v)
    v_tail = _suffix_sum(v.gather(-2, by_b))  # (..., Nk + 1, C)
    bv_tail = _suffix_sum((b.unsqueeze(-1) * v).gather(-2, by_b))  # (..., Nk + 1, C)
    first = _count_at_most(b_sorted, -a)  # first sorted key with b_j > -a_i, (..., Nq)
    index = first.unsqueeze(-1).expand(*first.shape, v.shape[-1])
    y = (a.unsqueeze(-1) * v_tail.gather(-2, index) + bv_tail.gather(-2, index)) / n_keys
    return y.reshape(*lead, *y.shape[-2:]).to(out_dtype)


def _halves(q: torch.Tensor, k: torch.Tensor, w_f: torch.Tensor):
    """Concatenation: a = q·w_f[:Cq] (..., Nq) and b = k·w_f[Cq:] (..., Nk)."""
    return q @ w_f[: q.shape[-1]], k @ w_f[q.shape[-1] :]


@dataclass(frozen=True)
class PairwiseFunction:
    """One pairwise function f, as the block calls it. Every callable takes the logit
    ``scale`` s and the concatenation's ``w_f`` (2·Cq,) and ignores what it does not use.

    Args:
        title: its name in the paper.
        embedded: θ and φ embed the queries and keys (False: f acts on the raw input).
        projected: it has the concatenation's projection w_f.
        reference: (q, k, scale, w_f) → f/C(x) (..., Nq, Nk), the paper's formula.
        weights: (q, k, scale, w_f, key_mask) → the same for chosen queries, restricted to
            each query's keys (``attention_map``).
        attention: (q, k, v, scale, w_f) → y (..., Nq, Cv) without an Nq × Nk matrix.
    """

    title: str
    embedded: bool
    projected: bool
    reference: Callable[..., torch.Tensor]
    weights: Callable[..., torch.Tensor]
    attention: Callable[..., torch.Tensor]


def _softmax_function(title: str, embedded: bool) -> PairwiseFunction:
    return PairwiseFunction(
        title,
        embedded,
        projected=False,
        reference=lambda q, k, scale, w_f: softmax_weights(q, k, scale),
        weights=lambda q, k, scale, w_f, key_mask: softmax_weights(q, k, scale, key_mask),
        attention=lambda q, k, v, scale, w_f: softmax_attention(q, k, v, scale),
    )


# The four pairwise functions f of the Non-local paper (Section 3.2), by option value
FUNCTIONS = {
    "embedded_gaussian": _softmax_function("embedded Gaussian", embedded=True),
    "gaussian": _softmax_function("Gaussian", embedded=False),
    "dot_product": PairwiseFunction(
        "dot product",
        embedded=True,
        projected=False,
        reference=lambda q, k, scale, w_f: dot_product_weights(q, k),
        weights=lambda q, k, scale, w_f, key_mask: dot_product_weights(q, k, key_mask),
        attention=lambda q, k, v, scale, w_f: dot_product_attention(q, k, v),
    ),
    "concatenation": PairwiseFunction(
        "concatenation",
        embedded=True,
        projected=True,
        reference=lambda q, k, scale, w_f: concatenation_weights_reference(q, k, w_f),
        weights=lambda q, k, scale, w_f, key_mask: concatenation_weights(
            *_halves(q, k, w_f), key_mask
        ),
        attention=lambda q, k, v, scale, w_f: concatenation_attention(*_halves(q, k, w_f), v),
    ),
}
PAIRWISE = {name: function.title for name, function in FUNCTIONS.items()}  # option → title
