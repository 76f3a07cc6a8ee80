"""The pairwise functions: fast paths equal the references, and never build Nq × Nk."""

import math

import pytest
import torch
from helpers import LargestTensor, assert_grads_close, relative_error

from nlgc.blocks import pairwise

SIZES = [(1, 1), (1, 7), (5, 1), (13, 6), (64, 17), (300, 75), (1031, 257)]


def qkv(nq, nk, cq=5, cv=4, lead=(2, 3), dtype=torch.float64):
    q = torch.randn(*lead, nq, cq, dtype=dtype, requires_grad=True)
    k = torch.randn(*lead, nk, cq, dtype=dtype, requires_grad=True)
    v = torch.randn(*lead, nk, cv, dtype=dtype, requires_grad=True)
    return q, k, v


def assert_same_with_grads(fast, reference, inputs, tol):
    y_fast, y_ref = fast(*inputs), reference(*inputs)
    assert relative_error(y_fast, y_ref) < tol
    cotangent = torch.randn_like(y_ref)
    grads_fast = torch.autograd.grad(y_fast, inputs, cotangent)
    grads_ref = torch.autograd.grad(y_ref, inputs, cotangent)
    assert_grads_close(grads_fast, grads_ref, tol)


@pytest.mark.parametrize(("nq", "nk"), SIZES)
@pytest.mark.parametrize(("cq", "cv"), [(5, 5), (6, 3), (2, 7)])
def test_softmax_attention_matches_reference(nq, nk, cq, cv):
    q, k, v = qkv(nq, nk, cq, cv)
    scale = 0.7
    assert_same_with_grads(
        lambda q, k, v: pairwise.softmax_attention(q, k, v, scale),
        lambda q, k, v: pairwise.softmax_weights(q, k, scale) @ v,
        (q, k, v),
        1e-10,
    )


def test_sdpa_gets_the_strides_of_fresh_tensors(monkeypatch):
    """Keys pooled to one position arrive as (B, 1, 1, C) with strides (C, 1, 1, 1), which
    ``contiguous()`` keeps; CUDA's memory-efficient kernel refused them. SDPA gets fresh strides,
    and the result is still the reference's."""
    seen = []
    sdpa = pairwise.F.scaled_dot_product_attention

    def spy(q, k, v, **options):
        seen.append([(t.shape, t.stride()) for t in (q, k, v)])
        return sdpa(q, k, v, **options)

    monkeypatch.setattr(pairwise.F, "scaled_dot_product_attention", spy)
    q = torch.randn(2, 1, 4, 8, dtype=torch.float64)
    k, v = (torch.randn(2, 8, 1, 1, dtype=torch.float64).permute(0, 2, 3, 1) for _ in "kv")
    assert k.is_contiguous() and k.stride() == (8, 1, 1, 1)
    y = pairwise.softmax_attention(q, k, v, 1.0)
    assert seen == [[(t.shape, torch.empty(t.shape).stride()) for t in (q, k, v)]]
    assert relative_error(y, pairwise.softmax_weights(q, k, 1.0) @ v) < 1e-12


@pytest.mark.parametrize(("nq", "nk"), SIZES)
def test_dot_product_attention_matches_reference(nq, nk):
    assert_same_with_grads(
        pairwise.dot_product_attention,
        lambda q, k, v: pairwise.dot_product_weights(q, k) @ v,
        qkv(nq, nk),
        1e-10,
    )


@pytest.mark.parametrize(("nq", "nk"), SIZES)
def test_concatenation_attention_matches_reference(nq, nk):
    a = torch.randn(2, 3, nq, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, nk, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 3, nk, 4, dtype=torch.float64, requires_grad=True)
    assert_same_with_grads(
        pairwise.concatenation_attention,
        lambda a, b, v: pairwise.concatenation_weights(a, b) @ v,
        (a, b, v),
        1e-10,
    )


def test_concatenation_exact_with_ties_and_all_or_no_keys_active():
    """Integer scores make a_i + b_j = 0 often; thresholds below/above every key are included."""
    a = torch.tensor([[-3.0, -1.0, 0.0, 1.0, 2.0, 10.0, -10.0]], dtype=torch.float64)
    b = torch.tensor([[-2.0, -1.0, 0.0, 1.0, 1.0, 3.0]], dtype=torch.float64)
    v = torch.randn(1, 6, 3, dtype=torch.float64)
    expected = pairwise.concatenation_weights(a, b) @ v
    assert relative_error(pairwise.concatenation_attention(a, b, v), expected) < 1e-14


def test_concatenation_halves_equal_literal_pairs():
    """w_fᵀ[q_i, k_j] split into a_i + b_j gives the same weights as building every pair."""
    q, k, _ = qkv(9, 11, cq=4)
    w_f = torch.randn(8, dtype=torch.float64)
    literal = pairwise.concatenation_weights_reference(q, k, w_f)
    split = pairwise.concatenation_weights(q @ w_f[:4], k @ w_f[4:])
    assert literal.shape == (2, 3, 9, 11)
    assert relative_error(split, literal) < 1e-14


@pytest.mark.parametrize("dtype", [torch.float32])
@pytest.mark.parametrize(("nq", "nk"), [(300, 75), (1031, 257)])
def test_float32_fast_paths_within_1e5(nq, nk, dtype):
    q, k, v = qkv(nq, nk, dtype=dtype)
    a, b = q[..., 0], k[..., 0]
    pairs = [
        (pairwise.softmax_attention(q, k, v, 1.0), pairwise.softmax_weights(q, k, 1.0) @ v),
        (pairwise.dot_product_attention(q, k, v), pairwise.dot_product_weights(q, k) @ v),
        (
            pairwise.concatenation_attention(a, b, v),
            pairwise.concatenation_weights(a.double(), b.double()) @ v.double(),
        ),
    ]
    for fast, reference in pairs:
        assert relative_error(fast.double(), reference.double()) < 1e-5


def test_key_mask_restricts_and_renormalises():
    q, k, _ = qkv(4, 6, lead=(1,))
    mask = torch.tensor([[True] * 3 + [False] * 3] * 2 + [[False] * 3 + [True] * 3] * 2)
    for weights in (
        pairwise.softmax_weights(q, k, 1.0, mask),
        pairwise.dot_product_weights(q, k, mask),
    ):
        assert (weights[:, ~mask] == 0).all()
    softmax = pairwise.softmax_weights(q, k, 1.0, mask)
    torch.testing.assert_close(softmax.sum(-1), torch.ones(1, 4, dtype=torch.float64))
    own = pairwise.softmax_weights(q[:, :2], k[:, :3], 1.0)
    torch.testing.assert_close(softmax[:, :2, :3], own)
    dot = pairwise.dot_product_weights(q, k, mask)
    torch.testing.assert_close(dot[:, 2:, 3:], pairwise.dot_product_weights(q[:, 2:], k[:, 3:]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("cq", "cv"), [(8, 8), (16, 8), (8, 16)])
def test_fast_paths_never_build_the_attention_matrix(dtype, cq, cv):
    """No op, forward or backward, produces a tensor as large as Nq × Nk.

    This catches SDPA's silent fallback to its N×N math kernel (mismatched head sizes or a
    non-contiguous layout), which is why the check runs with unequal q/v widths.
    """
    nq, nk = 2000, 500
    q, k, v = qkv(nq, nk, cq, cv, lead=(1, 1), dtype=dtype)
    a, b = q[..., 0].detach().requires_grad_(), k[..., 0].detach().requires_grad_()
    for name, run in {
        "softmax": lambda: pairwise.softmax_attention(q, k, v, 1.0),
        "dot_product": lambda: pairwise.dot_product_attention(q, k, v),
        "concatenation": lambda: pairwise.concatenation_attention(a, b, v),
    }.items():
        with LargestTensor() as probe:
            run().sum().backward()
        assert probe.largest < nq * nk / 10, (name, probe.largest)
        if name == "softmax":
            assert "aten._scaled_dot_product_flash_attention_for_cpu" in probe.ops
    with LargestTensor() as probe:
        pairwise.softmax_weights(q, k, 1.0)
    assert probe.largest >= nq * nk  # the probe sees a materialised matrix when there is one


def test_softmax_attention_half_precision_is_finite_and_close():
    q, k, v = qkv(257, 64, 8, 8, lead=(2, 1), dtype=torch.float32)
    reference = pairwise.softmax_weights(q, k, 1.0) @ v
    for dtype in (torch.bfloat16, torch.float16):
        y = pairwise.softmax_attention(q.to(dtype), k.to(dtype), v.to(dtype), 1.0)
        assert y.dtype == dtype and torch.isfinite(y).all()
        assert relative_error(y.float(), reference) < 3e-2
        weights = pairwise.softmax_weights(q.to(dtype), k.to(dtype), 1.0)
        assert torch.isfinite(weights).all()


def test_concatenation_half_precision_runs_sums_in_float32():
    a, b = torch.randn(1, 5000), torch.randn(1, 4000)
    v = torch.randn(1, 4000, 8)
    reference = pairwise.concatenation_attention(a.double(), b.double(), v.double())
    y = pairwise.concatenation_attention(a.bfloat16(), b.bfloat16(), v.bfloat16())
    assert y.dtype == torch.bfloat16
    bf16_inputs = pairwise.concatenation_attention(
        a.bfloat16().double(), b.bfloat16().double(), v.bfloat16().double()
    )
    assert relative_error(y.double(), bf16_inputs) < 1e-2  # only the output rounding
    assert relative_error(y.double(), reference) < 5e-2
    assert math.isfinite(float(y.float().abs().max()))
