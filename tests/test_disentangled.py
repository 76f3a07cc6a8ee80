"""DisentangledNonLocal: the DNL formula, fast == reference, mmsegmentation's layout, errors."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from block_cases import DNL_SHAPES, make_dnl, outputs_and_grads
from helpers import (
    LargestTensor,
    assert_autocast_close,
    assert_grads_close,
    randomize,
    relative_error,
)

import nlgc
from nlgc.blocks import DisentangledNonLocal
from nlgc.models import Insertion, Plan


@pytest.mark.parametrize(
    ("dim", "sub_sample", "combine", "train"),
    list(itertools.product((1, 2, 3), (False, True), ("attention", "outputs"), (False, True))),
)
def test_fast_equals_reference_float64_with_gradients(dim, sub_sample, combine, train):
    block = make_dnl(dim, sub_sample, combine).train(train)
    for shape in DNL_SHAPES[dim]:
        if sub_sample and min(shape[-2:] if dim > 1 else shape[-1:]) < 2:
            continue
        if train and combine == "outputs" and shape[0] == 1:
            continue  # BN of one (1, C, 1, 1) unary vector has no batch statistics
        x = torch.randn(shape, dtype=torch.float64)
        y_fast, grads_fast = outputs_and_grads(block, x, "fast")
        y_ref, grads_ref = outputs_and_grads(block, x, "reference")
        assert relative_error(y_fast, y_ref) < 1e-10
        assert_grads_close(grads_fast, grads_ref, 1e-10)


def literal_dnl(block, x):
    """The DNL formula one query at a time (2D, eval BN), written from the paper's equation:
    z_i = x_i + BN(W_z Σ_j [softmax_j(s(θ_i − μ_θ)ᵀ(φ_j − μ_φ)/τ) + softmax_j(w_mᵀx_j + b)] g_j)."""

    def conv(layer, t):  # a 1×1 conv applied to feature vectors (N, C)
        out = t @ layer.weight.flatten(1).T
        return out if layer.bias is None else out + layer.bias

    vectors = lambda t: t.flatten(2).mT[0]  # noqa: E731  (1, C, H, W) -> (N, C)
    xs = vectors(x)
    source = vectors(F.max_pool2d(x, 2) if block.sub_sample else x)
    theta = conv(block.theta.conv, xs)
    phi = conv(block.phi.conv, source)
    g = conv(block.g.conv, source)
    theta, phi = theta - theta.mean(0), phi - phi.mean(0)
    s = block.inter_channels**-0.5 if block.scale else 1.0
    unary_logits = torch.stack([conv(block.conv_mask, k[None])[0, 0] for k in source])
    unary = torch.exp(unary_logits) / torch.exp(unary_logits).sum()
    ys = []
    for q in theta:
        e = torch.stack([torch.exp(s * (q @ k) / block.temperature) for k in phi])
        ys.append(((e / e.sum() + unary)[:, None] * g).sum(0))
    bn = block.conv_out.bn
    w_y = conv(block.conv_out.conv, torch.stack(ys))
    z = xs + (w_y - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    return z.T.reshape(x.shape)


@pytest.mark.parametrize("sub_sample", [False, True])
@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_block_is_the_dnl_formula(sub_sample, impl):
    block = make_dnl(2, sub_sample, temperature=0.7, impl=impl)
    x = torch.randn(1, 6, 6, 5, dtype=torch.float64) * 0.5
    assert relative_error(block(x), literal_dnl(block, x)) < 1e-12


def mmseg_dnl(state, x, temperature, use_scale=True):
    """mmsegmentation's DisentangledNonLocal2d.forward (dnl_head.py, on mmcv's NonLocal2d with
    ConvModule g/theta/phi and a conv_out ConvModule with BN), eval mode, written out."""
    n, c = x.shape[:2]
    conv = lambda name, t: F.conv2d(t, state[f"{name}.weight"], state.get(f"{name}.bias"))  # noqa: E731
    g_x = conv("g.conv", x).view(n, -1, x.shape[2] * x.shape[3]).permute(0, 2, 1)
    theta_x = conv("theta.conv", x).view(n, g_x.shape[2], -1).permute(0, 2, 1)
    phi_x = conv("phi.conv", x).view(n, g_x.shape[2], -1)
    theta_x = theta_x - theta_x.mean(dim=-2, keepdim=True)
    phi_x = phi_x - phi_x.mean(dim=-1, keepdim=True)
    weight = torch.matmul(theta_x, phi_x)
    if use_scale:
        weight = weight / theta_x.shape[-1] ** 0.5
    weight = (weight / temperature).softmax(dim=-1)
    y = torch.matmul(weight, g_x).permute(0, 2, 1).reshape(n, -1, *x.shape[2:])
    unary = conv("conv_mask", x).view(n, 1, -1).softmax(dim=-1)
    unary_x = torch.matmul(unary, g_x).permute(0, 2, 1).reshape(n, -1, 1, 1)

    def conv_out(t):
        t = conv("conv_out.conv", t)
        mean, var = state["conv_out.bn.running_mean"], state["conv_out.bn.running_var"]
        scale = state["conv_out.bn.weight"] / torch.sqrt(var + 1e-5)
        return (t - mean.view(1, c, 1, 1)) * scale.view(1, c, 1, 1) + state[
            "conv_out.bn.bias"
        ].view(1, c, 1, 1)

    return x + conv_out(y) + conv_out(unary_x)


def test_mmsegmentation_dnl_weights_load_and_compute_its_function():
    """A state dict in mmsegmentation's layout (decode_head.dnl_block.* of its DNL checkpoints,
    names written from mmcv's ConvModule) loads with strict=True; combine='outputs' then
    computes mmsegmentation's forward, the default combine='attention' the official one."""
    generator = torch.Generator().manual_seed(3)
    c, ci = 8, 4
    shapes = {
        "g.conv.weight": (ci, c, 1, 1),
        "g.conv.bias": (ci,),
        "theta.conv.weight": (ci, c, 1, 1),
        "theta.conv.bias": (ci,),
        "phi.conv.weight": (ci, c, 1, 1),
        "phi.conv.bias": (ci,),
        "conv_out.conv.weight": (c, ci, 1, 1),
        "conv_out.bn.weight": (c,),
        "conv_out.bn.bias": (c,),
        "conv_out.bn.running_mean": (c,),
        "conv_out.bn.running_var": (c,),
        "conv_mask.weight": (1, c, 1, 1),
        "conv_mask.bias": (1,),
    }
    state = {k: torch.randn(s, generator=generator, dtype=torch.float64) for k, s in shapes.items()}
    state["conv_out.bn.running_var"] = state["conv_out.bn.running_var"].abs() + 0.5
    state["conv_out.bn.num_batches_tracked"] = torch.tensor(10)
    x = torch.randn(2, c, 9, 7, generator=generator, dtype=torch.float64)
    expected = mmseg_dnl(state, x, temperature=0.05)
    block = DisentangledNonLocal(c, 2, inter_channels=ci, combine="outputs").double().eval()
    block.load_state_dict(state, strict=True)
    assert relative_error(block(x), expected) < 1e-10
    block.combine = "attention"
    assert relative_error(block(x), expected) > 1e-3  # BN's shift counted once, not twice


def test_starts_as_identity_and_never_builds_n_by_n():
    block = DisentangledNonLocal(16, 2).eval()
    x = torch.randn(2, 16, 30, 30)
    assert torch.equal(block(x), x)
    randomize(block)
    with LargestTensor() as probe, torch.no_grad():
        block(x)
    n = 30 * 30
    assert probe.largest < n * n  # the reference would hold (2, 900, 900)
    block.impl = "reference"
    with LargestTensor() as probe, torch.no_grad():
        block(x)
    assert probe.largest >= 2 * n * n


def test_attention_maps_are_the_two_terms():
    block = make_dnl(2, sub_sample=True)
    x = torch.randn(2, 6, 8, 6, dtype=torch.float64)
    queries = torch.tensor([0, 7, 47])
    pair, unary = block.pairwise_map(x, queries), block.unary_map(x)
    assert pair.shape == (2, 3, 12) and unary.shape == (2, 12)
    assert torch.allclose(pair.sum(-1), torch.ones(2, 3, dtype=torch.float64))
    combined = block.attention_map(x, queries)
    assert torch.allclose(combined, pair + unary[:, None]) and block.key_spatial((8, 6)) == (4, 3)
    # the block's output is W_z/BN of exactly these weights over g
    full = block.attention_map(x)
    g = block.g(F.max_pool2d(x, 2)).flatten(2).mT
    y = (full @ g).mT.reshape(2, 3, 8, 6)
    assert relative_error(block(x), x + block.conv_out(y)) < 1e-12


def test_autocast_and_errors():
    block = DisentangledNonLocal(6, 2, inter_channels=3)
    randomize(block)
    assert_autocast_close(block, torch.randn(2, 6, 9, 9), torch.bfloat16)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        DisentangledNonLocal(6, temperature=0)
    with pytest.raises(ValueError, match="combine must be one of"):
        DisentangledNonLocal(6, combine="sum")
    with pytest.raises(ValueError, match="6 channels"):
        block(torch.randn(1, 5, 4, 4))
    with pytest.raises(ValueError, match="too small for sub_sample"):
        DisentangledNonLocal(6, sub_sample=True)(torch.randn(1, 6, 1, 4))


def test_placeable_by_plans():
    plan = Plan((Insertion("dnl", ("c3",), (0,), options={"temperature": 0.5}),))
    model = nlgc.create_model("tiny_resnet", plan=plan, num_classes=3)
    block = model.layer2[0].dnl_block
    assert isinstance(block, DisentangledNonLocal) and block.temperature == 0.5
    assert nlgc.create_model("dnl_demo_resnet").layer2[0].dnl_block_after_conv1.in_channels == 32
