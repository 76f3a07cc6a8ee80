"""NonLocalBlock: the paper's formula, fast == reference, attention maps, errors."""

import pytest
import torch
import torch.nn.functional as F
from block_cases import (
    NL_SHAPES,
    PAIRWISE,
    make_non_local,
    non_local_configurations,
    outputs_and_grads,
)
from helpers import (
    LargestTensor,
    assert_autocast_close,
    assert_grads_close,
    randomize,
    relative_error,
)

import nlgc
from nlgc import NonLocalBlock


@pytest.mark.parametrize(
    ("pw", "dim", "sub_sample", "position", "attend"), list(non_local_configurations())
)
def test_fast_equals_reference_float64_with_gradients(pw, dim, sub_sample, position, attend):
    block = make_non_local(pw, dim, sub_sample, position, attend)
    for shape in NL_SHAPES[dim]:
        if sub_sample and min(shape[-2:] if dim > 1 else shape[-1:]) < 2:
            continue
        x = torch.randn(shape, dtype=torch.float64)
        y_fast, grads_fast = outputs_and_grads(block, x, "fast")
        y_ref, grads_ref = outputs_and_grads(block, x, "reference")
        assert relative_error(y_fast, y_ref) < 1e-10
        assert_grads_close(grads_fast, grads_ref, 1e-10)


@pytest.mark.parametrize("pw", PAIRWISE)
def test_fast_equals_reference_float32(pw):
    block = make_non_local(pw, 2, sub_sample=True).float()
    x = torch.randn(2, 6, 30, 31)
    y_ref = make_non_local(pw, 2, sub_sample=True)(x.double())
    assert relative_error(block(x).double(), y_ref) < 1e-5
    block.impl = "reference"
    assert relative_error(block(x).double(), y_ref) < 1e-5


def literal_non_local(block, x):
    """z_i = x_i + BN(W_z · (1/C(x)) Σ_j f(x_i, x_j) g(x_j)), one position at a time (2D)."""

    def conv(layer, t):  # a 1×1 conv applied to feature vectors (.., C)
        return t @ layer.weight.flatten(1).T + layer.bias

    pool = (lambda t: F.max_pool2d(t, 2)) if block.sub_sample else (lambda t: t)
    to_vectors = lambda t: t.flatten(2).mT[0]  # noqa: E731  (1, C, H, W) -> (N, C)
    if block.pool_position == "before":  # pool the input, then embed
        keys = to_vectors(pool(x))
        values = conv(block.g, keys)
        keys = keys if block.pairwise == "gaussian" else conv(block.phi, keys)
    else:  # embed, then pool
        keys = to_vectors(pool(x if block.pairwise == "gaussian" else block.phi(x)))
        values = to_vectors(pool(block.g(x)))
    xs = to_vectors(x)
    queries = xs if block.pairwise == "gaussian" else conv(block.theta, xs)
    ys = []
    for q in queries:
        if block.pairwise in ("gaussian", "embedded_gaussian"):
            f = torch.stack([torch.exp(q @ k) for k in keys])
            c = f.sum()
        elif block.pairwise == "dot_product":
            f = torch.stack([q @ k for k in keys])
            c = len(keys)
        else:
            w_f = block.concat_project.weight.flatten()
            f = torch.stack([torch.relu(w_f @ torch.cat([q, k])) for k in keys])
            c = len(keys)
        ys.append((f[:, None] * values).sum(0) / c)
    wz_y = conv(block.out, torch.stack(ys))  # (N, C)
    bn = block.norm
    z = xs + (wz_y - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    return z.T.reshape(x.shape)


@pytest.mark.parametrize("pw", PAIRWISE)
@pytest.mark.parametrize(
    ("sub_sample", "position"), [(False, "after"), (True, "after"), (True, "before")]
)
def test_block_is_the_papers_formula(pw, sub_sample, position):
    block = make_non_local(pw, 2, sub_sample, position)
    x = torch.randn(1, 6, 5, 4, dtype=torch.float64) * 0.5
    expected = literal_non_local(block, x)
    for impl in ("fast", "reference"):
        block.impl = impl
        assert relative_error(block(x), expected) < 1e-12


def test_pool_position_changes_the_function():
    before, after = (
        make_non_local("embedded_gaussian", 2, True, "before"),
        make_non_local("embedded_gaussian", 2, True),
    )
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    assert relative_error(before(x), after(x)) > 1e-3


@pytest.mark.parametrize("pw", PAIRWISE)
@pytest.mark.parametrize("sub_sample", [False, True])
def test_attend_space_is_a_2d_block_per_frame(pw, sub_sample):
    video = make_non_local(pw, 3, sub_sample, attend="space")
    image = NonLocalBlock(6, 2, pw, inter_channels=3, sub_sample=sub_sample).double().eval()
    for name, p in image.state_dict().items():  # same weights with 2D kernels
        p.copy_(video.state_dict()[name].reshape(p.shape))
    x = torch.randn(2, 6, 3, 6, 5, dtype=torch.float64)
    frames = x.transpose(1, 2).flatten(0, 1)  # (B·T, C, H, W)
    expected = image(frames).unflatten(0, (2, 3)).transpose(1, 2)
    assert relative_error(video(x), expected) < 1e-12


@pytest.mark.parametrize("pw", PAIRWISE)
def test_attend_time_is_a_1d_block_per_location(pw):
    video = make_non_local(pw, 3, attend="time")
    sequence = NonLocalBlock(6, 1, pw, inter_channels=3).double().eval()
    for name, p in sequence.state_dict().items():
        p.copy_(video.state_dict()[name].reshape(p.shape))
    x = torch.randn(2, 6, 4, 3, 5, dtype=torch.float64)
    tracks = x.permute(0, 3, 4, 1, 2).flatten(0, 2)  # (B·H·W, C, T)
    expected = sequence(tracks).unflatten(0, (2, 3, 5)).permute(0, 3, 4, 1, 2)
    assert relative_error(video(x), expected) < 1e-12


@pytest.mark.parametrize("pw", PAIRWISE)
@pytest.mark.parametrize(("sub_sample", "position"), [(False, "after"), (True, "before")])
@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_temporal_group_is_one_block_per_group_of_frames(pw, sub_sample, position, impl):
    """Caffe2's add_nonlocal_group: frames cut into consecutive groups, each attended alone;
    its attention map gives weight 0 outside a query's group and reproduces the output."""
    grouped = make_non_local(pw, 3, sub_sample, position, temporal_group=2, impl=impl)
    whole = make_non_local(pw, 3, sub_sample, position, impl=impl)
    whole.load_state_dict(grouped.state_dict())
    x = torch.randn(2, 6, 6, 4, 5, dtype=torch.float64)
    groups = x.unflatten(2, (3, 2)).transpose(1, 2).flatten(0, 1)  # (B·3, C, 2, H, W)
    expected = whole(groups).unflatten(0, (2, 3)).transpose(1, 2).flatten(2, 3)
    assert relative_error(grouped(x), expected) < 1e-12
    weights = grouped.attention_map(x)  # (B, N, Nk)
    _, _, value = grouped._embed(x)
    y = (weights @ value.flatten(2).mT).mT.unflatten(2, x.shape[2:])
    torch.testing.assert_close(x + grouped.norm(grouped.out(y)), grouped(x), rtol=1e-10, atol=1e-12)
    keys_per_frame = weights.shape[-1] // 6
    assert weights[:, :20, 2 * keys_per_frame :].abs().max() == 0  # frame 0 sees frames 0, 1
    with pytest.raises(ValueError, match="not a multiple of temporal_group=2"):
        grouped(torch.randn(1, 6, 3, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="temporal_group groups frames"):
        NonLocalBlock(6, 2, temporal_group=2)


def test_parameter_count_and_submodules():
    block = NonLocalBlock(1024)
    assert sum(p.numel() for p in block.parameters()) == 2_101_760
    names = {name for name, _ in block.named_children()}
    assert names == {"theta", "phi", "g", "out", "norm"}
    assert "theta" not in dict(NonLocalBlock(8, pairwise="gaussian").named_children())
    concat = NonLocalBlock(8, pairwise="concatenation")
    assert concat.concat_project.weight.shape == (1, 8, 1, 1) and concat.concat_project.bias is None
    assert NonLocalBlock(1, dim=1).inter_channels == 1


@pytest.mark.parametrize("pw", PAIRWISE)
@pytest.mark.parametrize("norm", ["bn", None])
def test_identity_at_initialisation(pw, norm):
    block = NonLocalBlock(8, 3, pw, norm=norm, sub_sample=True)
    x = torch.randn(2, 8, 2, 6, 6)
    assert torch.equal(block(x), x)
    assert torch.equal(block.train()(x), x)
    assert not torch.equal(NonLocalBlock(8, 3, pw, norm=norm, zero_init=False)(x), x)


def test_scale_divides_logits_by_sqrt_inter_channels():
    block = make_non_local("embedded_gaussian", 2, scale=True)
    x = torch.randn(1, 6, 4, 5, dtype=torch.float64)
    theta, phi = block.theta(x).flatten(2).mT, block.phi(x).flatten(2).mT
    expected = torch.softmax(theta @ phi.mT / 3**0.5, -1)
    torch.testing.assert_close(block.attention_map(x), expected)


@pytest.mark.parametrize(
    ("pw", "dim", "sub_sample", "position", "attend"), list(non_local_configurations())
)
def test_attention_map_rows_are_the_weights_used(pw, dim, sub_sample, position, attend):
    """Weights from attention_map reproduce the block's y = weights @ g(x) exactly."""
    block = make_non_local(pw, dim, sub_sample, position, attend)
    x = torch.randn(NL_SHAPES[dim][1], dtype=torch.float64)
    weights = block.attention_map(x)  # (B, N, Nk)
    _, _, value = block._embed(x)
    y = weights @ value.flatten(2).mT  # (B, N, C')
    y = y.mT.unflatten(2, x.shape[2:])
    torch.testing.assert_close(x + block.norm(block.out(y)), block(x), rtol=1e-10, atol=1e-12)
    queries = torch.tensor([0, 5, x[0, 0].numel() - 1])
    torch.testing.assert_close(block.attention_map(x, queries), weights[:, queries])


def test_attention_map_of_few_queries_is_linear_memory():
    block = NonLocalBlock(16, 2, "embedded_gaussian").eval()
    x = torch.randn(1, 16, 60, 60)
    with torch.no_grad(), LargestTensor() as probe:
        maps = block.attention_map(x, torch.tensor([0, 1799, 3599]))
    assert maps.shape == (1, 3, 3600)
    assert probe.largest < 3600 * 3600 / 100


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_gaussian_is_finite_for_large_inputs(impl):
    block = randomize(NonLocalBlock(8, 2, "gaussian", impl=impl))
    x = torch.randn(1, 8, 9, 9) * 50
    logits = x.flatten(2).mT @ x.flatten(2)
    assert torch.isinf(torch.exp(logits)).any()  # a naive exp overflows here
    y = block(x)
    assert torch.isfinite(y).all()
    assert torch.isfinite(block.attention_map(x)).all()
    other = "reference" if impl == "fast" else "fast"
    block.impl = other
    assert relative_error(block(x).double(), y.double()) < 1e-5


@pytest.mark.parametrize("pw", PAIRWISE)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_autocast_is_finite_and_close_to_float32(pw, dtype, impl):
    block = randomize(NonLocalBlock(16, 2, pw, sub_sample=True, impl=impl), std=0.2)
    assert_autocast_close(block, torch.randn(2, 16, 12, 12), dtype)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"pairwise": "softmax"}, ValueError, "pairwise"),
        ({"dim": 4}, ValueError, "dim"),
        ({"attend": "space"}, ValueError, "attend"),
        ({"dim": 3, "attend": "time", "sub_sample": True}, ValueError, "attend='time'"),
        ({"pool_position": "middle"}, ValueError, "pool_position"),
        ({"norm": "ln"}, ValueError, "norm"),
        ({"impl": "cuda"}, ValueError, "impl"),
        ({"pairwise": "dot_product", "scale": True}, ValueError, "scale"),
        ({"inter_channels": 0}, ValueError, "inter_channels"),
        ({"subsample": True}, TypeError, "subsample"),
    ],
)
def test_bad_options_name_the_argument(kwargs, error, words):
    with pytest.raises(error, match=words):
        NonLocalBlock(8, **kwargs)


@pytest.mark.parametrize(
    ("x", "error", "words"),
    [
        (torch.randn(2, 8, 5), ValueError, r"\(B, C, H, W\) for dim=2"),
        (torch.randn(2, 4, 5, 5), ValueError, "8 channels"),
        (torch.ones(2, 8, 5, 5, dtype=torch.long), TypeError, "floating-point"),
        (torch.randn(2, 8, 1, 9), ValueError, "too small for sub_sample"),
        (torch.randn(2, 8, 0, 4), ValueError, "non-empty"),
        ([[1.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs_say_what_was_expected(x, error, words):
    block = NonLocalBlock(8, sub_sample=True)
    with pytest.raises(error, match=words):
        block(x)


def test_bad_queries_are_rejected():
    block = NonLocalBlock(8)
    x = torch.randn(1, 8, 4, 4)
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        block.attention_map(x, torch.tensor([16]))
    with pytest.raises(TypeError, match="LongTensor"):
        block.attention_map(x, [1, 2])
    with pytest.raises(TypeError, match="LongTensor"):
        block.attention_map(x, torch.tensor([1.0]))


def test_paper_initialisation():
    torch.manual_seed(0)
    block = NonLocalBlock(256, 2, "concatenation", init="paper")
    for conv in (block.theta, block.phi, block.g, block.out, block.concat_project):
        assert abs(float(conv.weight.detach().std()) - 0.01) < 0.002  # N(0, 0.01²)
        assert conv.bias is None or not conv.bias.any()
    assert not block.norm.weight.any()  # BN γ = 0: the block starts as the identity
    x = torch.randn(2, 256, 5, 5)
    assert torch.equal(block.eval()(x), x)
    default = NonLocalBlock(256, 2)
    assert float(default.theta.weight.detach().std()) > 0.02  # PyTorch's init differs
    model = nlgc.create_model("nl_resnet50", num_classes=3, init="paper")
    assert model.layer3[4].non_local_block.init == "paper"
    with pytest.raises(ValueError, match="init"):
        NonLocalBlock(8, init="xavier")
