"""SNL, GC and SE: the GCNet formulas, mmcv's state-dict layout, identity at init, errors."""

import pytest
import torch
from block_cases import FAST_VS_REFERENCE, ODD_SHAPES
from helpers import assert_autocast_close, randomize, relative_error
from torch import nn

from nlgc import (
    DisentangledNonLocal,
    GlobalContextBlock,
    NonLocalBlock,
    SimplifiedNonLocal,
    SqueezeExcitation,
)

SHAPES = {1: (2, 8, 11), 2: (2, 8, 5, 7), 3: (2, 8, 3, 4, 5)}


def transform(seq: nn.Sequential, context: torch.Tensor) -> torch.Tensor:
    """W_v2 ReLU(LN(W_v1 c)) on a (B, C) context, written out with plain matrices."""
    hidden = context @ seq[0].weight.flatten(1).T + seq[0].bias  # (B, C')
    if isinstance(seq[1], nn.LayerNorm):
        mean, var = hidden.mean(-1, keepdim=True), hidden.var(-1, unbiased=False, keepdim=True)
        ln = seq[1]
        hidden = (hidden - mean) / torch.sqrt(
            var + ln.eps
        ) * ln.weight.flatten() + ln.bias.flatten()
    return torch.relu(hidden) @ seq[3].weight.flatten(1).T + seq[3].bias  # (B, C)


def attention_pool(conv_mask, x):
    """Σ_j softmax_j(W_k x_j) x_j on (B, N, C) position vectors -> (B, C)."""
    logits = x @ conv_mask.weight.flatten() + conv_mask.bias  # (B, N)
    return (torch.softmax(logits, -1).unsqueeze(-1) * x).sum(1)


def broadcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.view(*t.shape, *([1] * (x.dim() - 2)))


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("pooling", ["att", "avg"])
@pytest.mark.parametrize("fusion", [("add",), ("mul",), ("mul", "add"), ("add", "mul")])
@pytest.mark.parametrize("layer_norm", [True, False])
def test_global_context_block_formula(dim, pooling, fusion, layer_norm):
    block = randomize(GlobalContextBlock(8, 1 / 4, pooling, fusion, layer_norm, dim)).double()
    x = torch.randn(SHAPES[dim], dtype=torch.float64)
    vectors = x.flatten(2).mT  # (B, N, C)
    context = attention_pool(block.conv_mask, vectors) if pooling == "att" else vectors.mean(1)
    expected = x
    if "mul" in fusion:  # multiply first, then add
        expected = expected * torch.sigmoid(
            broadcast(transform(block.channel_mul_conv, context), x)
        )
    if "add" in fusion:
        expected = expected + broadcast(transform(block.channel_add_conv, context), x)
    assert relative_error(block(x), expected) < 1e-12
    mask = block.attention_map(x)
    assert mask.shape == (2, x[0, 0].numel())
    torch.testing.assert_close(mask.sum(-1), torch.ones(2, dtype=torch.float64))


def test_global_context_parameter_counts_and_mmcv_keys():
    assert sum(p.numel() for p in GlobalContextBlock(1024, 1 / 16).parameters()) == 133_313
    assert sum(p.numel() for p in GlobalContextBlock(2048, 1 / 16).parameters()) == 528_769
    block = GlobalContextBlock(64, 1 / 4, fusion=("mul", "add"))
    # the official GCNet / mmcv ContextBlock(64, 1/4, 'att', ('channel_add', 'channel_mul')):
    mmcv_shapes = {
        "conv_mask.weight": (1, 64, 1, 1),
        "conv_mask.bias": (1,),
        **{
            f"channel_{kind}_conv.{key}": shape
            for kind in ("add", "mul")
            for key, shape in {
                "0.weight": (16, 64, 1, 1),
                "0.bias": (16,),
                "1.weight": (16, 1, 1),
                "1.bias": (16, 1, 1),
                "3.weight": (64, 16, 1, 1),
                "3.bias": (64,),
            }.items()
        },
    }
    assert {k: tuple(v.shape) for k, v in block.state_dict().items()} == mmcv_shapes
    no_ln = GlobalContextBlock(64, 1 / 4, layer_norm=False).state_dict()
    assert set(no_ln) == {"conv_mask.weight", "conv_mask.bias"} | {
        f"channel_add_conv.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")
    }
    assert "conv_mask.weight" not in GlobalContextBlock(64, pooling="avg").state_dict()


def test_released_checkpoint_layout_loads_strictly():
    """A state dict saved under mmcv names loads with strict=True and gives the same output."""
    source = randomize(GlobalContextBlock(32, 1 / 4, fusion=("mul", "add")))
    state = {k: v.clone() for k, v in source.state_dict().items()}
    target = GlobalContextBlock(32, 1 / 4, fusion=("add", "mul")).eval()
    target.load_state_dict(state, strict=True)
    x = torch.randn(2, 32, 6, 6)
    torch.testing.assert_close(target(x), source(x))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_identity_at_initialisation(dim):
    x = torch.randn(SHAPES[dim])
    assert torch.equal(GlobalContextBlock(8, 1 / 4, dim=dim)(x), x)
    assert torch.equal(GlobalContextBlock(8, 1 / 4, pooling="avg", dim=dim)(x), x)
    assert torch.equal(SimplifiedNonLocal(8, dim=dim)(x), x)
    assert torch.allclose(GlobalContextBlock(8, 1 / 4, fusion="mul", dim=dim)(x), x * 0.5)
    # zero_init=False: the transforms keep PyTorch's init and act from the first step
    for block in (
        GlobalContextBlock(8, 1 / 4, dim=dim, zero_init=False),
        SimplifiedNonLocal(8, dim=dim, zero_init=False),
    ):
        assert not torch.allclose(block(x), x)
    last = GlobalContextBlock(8, 1 / 4, fusion=("mul", "add"), zero_init=False)
    assert all(
        conv[-1].weight.abs().sum() > 0 for conv in (last.channel_add_conv, last.channel_mul_conv)
    )


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_simplified_non_local_formula(dim):
    block = randomize(SimplifiedNonLocal(8, dim)).double()
    x = torch.randn(SHAPES[dim], dtype=torch.float64)
    context = attention_pool(block.conv_mask, x.flatten(2).mT)  # (B, C)
    w_v = block.transform
    expected = x + broadcast(context @ w_v.weight.flatten(1).T + w_v.bias, x)
    assert relative_error(block(x), expected) < 1e-12
    logits = x.flatten(2).mT @ block.conv_mask.weight.flatten() + block.conv_mask.bias
    torch.testing.assert_close(block.attention_map(x), torch.softmax(logits, -1))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_squeeze_excitation_formula(dim):
    block = randomize(SqueezeExcitation(32, 1 / 16, dim)).double()
    x = torch.randn(2, 32, *SHAPES[dim][2:], dtype=torch.float64)
    s = x.flatten(2).mean(-1)
    hidden = torch.relu(s @ block.fc1.weight.flatten(1).T + block.fc1.bias)
    gate = torch.sigmoid(hidden @ block.fc2.weight.flatten(1).T + block.fc2.bias)
    assert relative_error(block(x), x * broadcast(gate, x)) < 1e-12
    assert block.fc1.out_channels == 2
    n = x[0, 0].numel()
    torch.testing.assert_close(block.attention_map(x), torch.full((2, n), 1 / n).double())


@pytest.mark.parametrize(
    "make",
    [
        lambda: SimplifiedNonLocal(8),
        lambda: GlobalContextBlock(8, 1 / 4),
        lambda: SqueezeExcitation(8),
    ],
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_is_finite_and_close(make, dtype):
    block = randomize(make(), std=0.3)
    assert_autocast_close(block, torch.randn(2, 8, 9, 9), dtype)


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda: GlobalContextBlock(8, ratio=0), ValueError, "ratio"),
        (lambda: GlobalContextBlock(8, ratio=2), ValueError, "ratio"),
        (lambda: GlobalContextBlock(8, pooling="max"), ValueError, "pooling"),
        (lambda: GlobalContextBlock(8, fusion=("channel_add",)), ValueError, "fusion"),
        (lambda: GlobalContextBlock(8, fusion=("add", "add")), ValueError, "fusion"),
        (lambda: GlobalContextBlock(8, fusion=()), ValueError, "fusion"),
        (lambda: GlobalContextBlock(8.0), TypeError, "in_channels"),
        (lambda: SimplifiedNonLocal(8, dim=0), ValueError, "dim"),
        (lambda: SqueezeExcitation(8, ratio="1/16"), ValueError, "ratio"),
        (lambda: SqueezeExcitation(8, reduction=16), TypeError, "reduction"),
    ],
)
def test_bad_options_name_the_argument(make, error, words):
    with pytest.raises(error, match=words):
        make()


@pytest.mark.parametrize(
    "block", [SimplifiedNonLocal(8), GlobalContextBlock(8), SqueezeExcitation(8)]
)
def test_bad_inputs_say_what_was_expected(block):
    with pytest.raises(ValueError, match="8 channels"):
        block(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        block(torch.randn(1, 8, 4))
    with pytest.raises(TypeError, match="floating-point"):
        block(torch.zeros(1, 8, 4, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="queries"):
        block.attention_map(torch.randn(1, 8, 4, 4), torch.tensor([99]))


def outputs_and_grads(block, x, residual, impl):
    """z (or z + residual) and the gradients of a random projection of it."""
    block.impl = impl
    inputs = [t.detach().clone().requires_grad_() for t in (x, residual) if t is not None]
    z = block.forward_residual(*inputs)
    weights = torch.randn(z.shape, dtype=z.dtype, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((z * weights).sum(), [*inputs, *block.parameters()])
    return [z, *grads]


@pytest.mark.parametrize("name", FAST_VS_REFERENCE)
@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("fused", [False, True], ids=["alone", "fused-residual"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_fast_path_equals_reference_float64_with_gradients(name, dim, fused, train):
    block = randomize(FAST_VS_REFERENCE[name](dim), std=0.5).double().train(train)
    for shape in ODD_SHAPES[dim]:
        x = torch.randn(shape, dtype=torch.float64)
        residual = torch.randn(shape, dtype=torch.float64) if fused else None
        fast = outputs_and_grads(block, x, residual, "fast")
        reference = outputs_and_grads(block, x, residual, "reference")
        for a, b in zip(fast, reference, strict=True):  # (the mask bias's gradient is 0:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)  # softmax ignores shifts)
    if fused:  # the fused form is the block's output plus the residual
        torch.testing.assert_close(block.forward_residual(x, residual), block(x) + residual)


def test_fused_residual_checks_its_shape():
    block = GlobalContextBlock(8, 1 / 4)
    with pytest.raises(ValueError, match="residual must have the shape of x"):
        block.forward_residual(torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 5))
    with pytest.raises(ValueError, match="impl must be one of"):
        GlobalContextBlock(8, impl="quick")


@pytest.mark.parametrize("block_type", [GlobalContextBlock, SimplifiedNonLocal])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_a_zero_initialised_mask_starts_as_average_pooling_and_is_the_blocks_mask(block_type, dim):
    torch.manual_seed(0)
    kaiming, zeros = block_type(6, dim=dim), block_type(6, dim=dim, mask_init="zeros")
    x = torch.randn(2, 6, *(5, 4, 3)[:dim])
    uniform = torch.full((2, x[0, 0].numel()), 1 / x[0, 0].numel())
    assert torch.equal(zeros.attention_map(x), uniform)
    assert not torch.allclose(kaiming.attention_map(x), uniform)
    assert torch.equal(zeros(x), x)  # still the identity at the start
    for block in (kaiming, zeros):
        held = block.mask_parameters()
        assert len(held) == 2 and all(
            p is q for p, q in zip(held, block.conv_mask.parameters(), strict=True)
        )
    with pytest.raises(ValueError, match="mask_init"):
        block_type(6, dim=dim, mask_init="normal")


def test_blocks_without_a_mask_have_no_mask_parameters():
    assert GlobalContextBlock(8, pooling="avg").mask_parameters() == []
    assert SqueezeExcitation(8).mask_parameters() == []


def _uniform_nl(dim: int, impl: str):
    return NonLocalBlock(6, dim=dim, mask_init="zeros", zero_init=False, impl=impl)


def _uniform_dnl(dim: int, impl: str):
    return DisentangledNonLocal(6, dim=dim, mask_init="zeros", zero_init=False, impl=impl)


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("make", [_uniform_nl, _uniform_dnl], ids=["nl", "dnl"])
def test_a_uniform_start_makes_non_local_attention_one_average_for_every_query(make, dim, impl):
    """mask_init="zeros": every query's weights are 1/N (DNL: 1/N from each of its two
    softmaxes), the block adds one vector to every position (the average of g through W_z),
    θ has no gradient until the held mask (φ; DNL: φ and w_m) moves, and the mask has one."""
    torch.manual_seed(0)
    block = make(dim, impl).double().train()
    x = torch.randn(3, 6, *(5, 4, 3)[:dim], dtype=torch.float64)
    n = x[0, 0].numel()
    terms = 2 if isinstance(block, DisentangledNonLocal) else 1
    maps = block.attention_map(x)
    assert maps.shape == (3, n, n)
    torch.testing.assert_close(maps, torch.full_like(maps, terms / n), rtol=0, atol=1e-15)
    added = (block(x) - x).flatten(2)  # (B, C, N)
    assert added.std(-1).max() < 1e-12 < added.abs().max()  # one vector per image, not zero
    (block(x) * torch.randn_like(x)).sum().backward()
    held = block.mask_parameters()
    mask = [*block.phi.parameters()]
    if terms == 2:
        mask += [*block.conv_mask.parameters()]
    assert [id(p) for p in held] == [id(p) for p in mask]
    assert all(torch.equal(p, torch.zeros_like(p)) for p in held)
    assert all(p.grad.abs().max() > 0 for p in held if p.dim() > 1)  # the mask can learn …
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in block.theta.parameters())


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_a_uniform_start_gives_the_concatenation_one_weight_for_every_pair(dim, impl):
    """mask_init="zeros" on the concatenation: φ = 0 and w_θᵀθ(x_i) = 1, so f(x_i, x_j) = 1
    for every pair (no query or key starts below the ReLU) and the weights are 1/N; φ is the
    held mask and, with θ and w_f, the gate, and every part of it has a gradient."""
    torch.manual_seed(0)
    block = NonLocalBlock(
        6, dim=dim, pairwise="concatenation", mask_init="zeros", zero_init=False, impl=impl
    ).double()
    x = torch.randn(3, 6, *(5, 4, 3)[:dim], dtype=torch.float64)
    n = x[0, 0].numel()
    maps = block.attention_map(x)  # (B, N queries, N keys); a_i = 1 up to float32's init
    torch.testing.assert_close(maps, torch.full_like(maps, 1 / n), rtol=1e-6, atol=0)
    added = (block(x) - x).flatten(2)  # (B, C, N): the average of g, the same at every position
    assert added.std(-1).max() < 1e-12 < added.abs().max()
    assert [id(p) for p in block.mask_parameters()] == [id(p) for p in block.phi.parameters()]
    assert {id(p) for p in block.phi.parameters()} <= {id(p) for p in block.gate_parameters()}
    (block(x) * torch.randn_like(x)).sum().backward()
    assert all(p.grad.abs().max() > 0 for p in block.gate_parameters())
    for init in ("pytorch", "paper"):  # the start does not depend on the scale of w_f
        other = NonLocalBlock(6, dim=dim, pairwise="concatenation", mask_init="zeros", init=init)
        other = other.double()
        torch.testing.assert_close(other.attention_map(x), maps, rtol=1e-6, atol=0)


def test_only_a_uniform_start_gives_non_local_blocks_a_mask():
    assert NonLocalBlock(8).mask_parameters() == []
    assert DisentangledNonLocal(8).mask_parameters() == []
    with pytest.raises(ValueError, match=r"mask_init='zeros' .* got 'dot_product'"):
        NonLocalBlock(8, pairwise="dot_product", mask_init="zeros")
    for block in (NonLocalBlock, DisentangledNonLocal):
        with pytest.raises(ValueError, match="mask_init must be one of"):
            block(8, mask_init="kaiming")
