"""How much of a non-local block's attention is the same for every query: the pairwise / unary
decomposition of Disentangled Non-Local Neural Networks (Yin et al., ECCV 2020, Section 3).

For a block whose logits are bilinear, ℓ_ij = s·q_iᵀk_j (embedded Gaussian: q = θ(x), k = φ(x);
Gaussian: the raw input; dot product), with μ_q, μ_k the means over query and key positions of
one sample:

    q_iᵀk_j = (q_i − μ_q)ᵀ(k_j − μ_k)  +  μ_qᵀk_j  +  (q_iᵀμ_k − μ_qᵀμ_k)
              pairwise P_ij               unary U_j    per-query constant c_i

so inside a softmax over keys j (where c_i cancels) the attention is softmax_j(s·(P_ij + U_j)).

**The measure.** For each query i, the variance over keys j of its logits splits as
Var_j(P_i·) + Var_j(U) + 2 Cov_j(P_i·, U). Averaged over the queries the covariance is exactly 0
(mean_i P_ij = 0 for every j, because the queries are centred), so

    unary share    = Var_j(U_j) / mean_i Var_j(ℓ_ij / s)
    pairwise share = mean_i Var_j(P_ij) / mean_i Var_j(ℓ_ij / s)

add up to one: the fraction of the logits' variation over keys, averaged over queries, that is
the same for every query, and the fraction that is query-specific. Both come in O(N·C²) from
C × C moment matrices, without the N×N logits. Per sample, then averaged over samples.

Beside it, GCNet's att distance (:mod:`nlgc.analysis.statistics`) of each term's own softmax:
softmax_j(s·P_ij) (streamed rows) and softmax_j(s·U_j), which is 0 by construction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from nlgc.analysis.statistics import streamed_distances
from nlgc.common import eval_mode, softmax

BILINEAR = ("embedded_gaussian", "gaussian", "dot_product")  # logits s·q_iᵀk_j


@dataclass(frozen=True)
class Decomposition:
    """The decomposition of one block's logits, averaged over ``samples`` inputs."""

    unary_share: float
    pairwise_share: float
    logit_std: float  # sqrt(mean_i Var_j(ℓ_ij)), with the block's scale s: how peaked softmaxes are
    pairwise_att: float  # GCNet's avg_dist of the rows softmax_j(s·P_ij)
    unary_att: float  # of softmax_j(s·U_j): one map for every query, 0
    samples: int

    def to_dict(self) -> dict:
        """Plain values for JSON; NaN (no value) becomes None."""
        return {k: None if v != v else v for k, v in asdict(self).items()}


def decomposable(block: nn.Module) -> bool:
    """Whether :func:`decomposition_of` applies: an NL block with bilinear logits over all
    positions, or a DNL block (whose terms are apart by construction)."""
    if hasattr(block, "unary_map"):
        return True
    try:
        check_decomposable(block)
    except ValueError:
        return False
    return True


def decomposition_of(block: nn.Module, x: torch.Tensor) -> Decomposition:
    """:func:`decompose` for NL blocks, :func:`disentangled_terms` for DNL blocks."""
    return disentangled_terms(block, x) if hasattr(block, "unary_map") else decompose(block, x)


def merge(parts: list[Decomposition]) -> Decomposition:
    """Sample-weighted mean of the decompositions of several batches."""
    if not parts:
        raise ValueError("merge needs at least one decomposition")
    samples = sum(p.samples for p in parts)
    mean = lambda name: sum(getattr(p, name) * p.samples for p in parts) / samples  # noqa: E731
    names = ("unary_share", "pairwise_share", "logit_std", "pairwise_att", "unary_att")
    return Decomposition(*(mean(name) for name in names), samples)


def check_decomposable(block: nn.Module) -> None:
    """A ValueError unless ``block`` is an NL block whose logits are s·q_iᵀk_j over all
    positions (embedded Gaussian, Gaussian, dot product; ``attend="spacetime"``)."""
    pairwise = getattr(block, "pairwise", None)
    if not hasattr(block, "query_key") or pairwise not in BILINEAR:
        raise ValueError(
            f"the pairwise/unary decomposition needs a NonLocalBlock with pairwise in {BILINEAR}, "
            f"got {type(block).__name__}" + (f" with pairwise={pairwise!r}" if pairwise else "")
        )
    if block.attend != "spacetime":
        raise ValueError(f"the decomposition needs attend='spacetime', got {block.attend!r}")


def logit_terms(q: torch.Tensor, k: torch.Tensor):
    """The three terms of q_iᵀk_j, materialised (the reference): q (B, N, C), k (B, Nk, C) ->
    pairwise P (B, N, Nk), unary U (B, Nk), per-query constant c (B, N); P + U + c = q kᵀ."""
    mean_q, mean_k = q.mean(1, keepdim=True), k.mean(1, keepdim=True)  # (B, 1, C)
    pairwise = (q - mean_q) @ (k - mean_k).mT
    unary = (mean_q @ k.mT).squeeze(1)
    constant = (q @ mean_k.mT).squeeze(-1) - (mean_q @ mean_k.mT).view(-1, 1)
    return pairwise, unary, constant


def variances(q: torch.Tensor, k: torch.Tensor):
    """Per sample (B,), without an N×N matrix: Var_j(U_j), mean_i Var_j(P_ij) and
    mean_i Var_j(q_iᵀk_j) (variances over keys are population variances, 1/Nk)."""
    q, k = q.double(), k.double()
    centred_q = q - q.mean(1, keepdim=True)  # (B, N, C)
    centred_k = k - k.mean(1, keepdim=True)  # (B, Nk, C)
    key_cov = centred_k.mT @ centred_k / k.shape[1]  # (B, C, C): Cov_j(k_j)
    query_second = q.mT @ q / q.shape[1]  # (B, C, C): mean_i q_i q_iᵀ
    centred_second = centred_q.mT @ centred_q / q.shape[1]  # (B, C, C): Cov_i(q_i)
    mean_q = q.mean(1)  # (B, C)
    unary = torch.einsum("bc,bcd,bd->b", mean_q, key_cov, mean_q)
    pairwise = (centred_second * key_cov).sum((1, 2))  # mean_i c_iᵀ K c_i = tr(Cq K)
    total = (query_second * key_cov).sum((1, 2))  # mean_i q_iᵀ K q_i
    return unary, pairwise, total


def decompose(block: nn.Module, x: torch.Tensor, chunk: int | None = None) -> Decomposition:
    """The decomposition of ``block``'s logits on its input ``x`` (B, C, *S), in eval mode
    without gradients; see the module docstring for the measure."""
    check_decomposable(block)
    with eval_mode(block), torch.no_grad():
        q, k = block.query_key(x)  # (B, N, C), (B, Nk, C)
        scale = block.logit_scale
        unary, pairwise, total = variances(q, k)
        nonzero = total > 0
        unary_share = torch.where(nonzero, unary / total.clamp_min(1e-300), torch.nan)
        pairwise_share = torch.where(nonzero, pairwise / total.clamp_min(1e-300), torch.nan)
        centred_q = q - q.mean(1, keepdim=True)
        centred_k = k - k.mean(1, keepdim=True)

        def rows(queries: torch.Tensor) -> torch.Tensor:
            return softmax(scale * centred_q[:, queries.to(q.device)] @ centred_k.mT)

        pairwise_att = streamed_distances(rows, q.shape[1], k.shape[1], chunk)
    return Decomposition(
        unary_share=float(unary_share.nanmean()),
        pairwise_share=float(pairwise_share.nanmean()),
        logit_std=float(scale * math.sqrt(float(total.mean()))),
        pairwise_att=float(pairwise_att.nanmean()),
        unary_att=0.0,
        samples=x.shape[0],
    )


def disentangled_terms(block: nn.Module, x: torch.Tensor, chunk: int | None = None):
    """A DNL block's two terms are apart by construction: the att distance of its pairwise map
    (streamed rows of ``pairwise_map``) and of its unary map (0); no variance shares (its terms
    have separate softmaxes)."""
    with eval_mode(block), torch.no_grad():
        positions = math.prod(x.shape[2:])
        keys = math.prod(block.key_spatial(tuple(x.shape[2:])))
        distance = streamed_distances(
            lambda queries: block.pairwise_map(x, queries.to(x.device)), positions, keys, chunk
        )
    return Decomposition(math.nan, math.nan, math.nan, float(distance.nanmean()), 0.0, x.shape[0])


def term_maps(block: nn.Module, x: torch.Tensor, queries: torch.Tensor):
    """For pictures: the unary map (B, Nk) and the pairwise maps of the ``queries``
    (B, Q, Nk): softmax_j(s·U_j) and softmax_j(s·P_ij) of an NL block, or a DNL block's own
    ``unary_map`` and ``pairwise_map``."""
    if hasattr(block, "unary_map"):
        with eval_mode(block), torch.no_grad():
            return block.unary_map(x), block.pairwise_map(x, queries)
    check_decomposable(block)
    with eval_mode(block), torch.no_grad():
        q, k = block.query_key(x)
        mean_q = q.mean(1, keepdim=True)
        centred_k = k - k.mean(1, keepdim=True)
        unary = softmax(block.logit_scale * (mean_q @ k.mT).squeeze(1))
        pairwise = softmax(block.logit_scale * (q[:, queries] - mean_q) @ centred_k.mT)
    return unary, pairwise
