"""ResNet/ResNeXt backbones, plans, named configurations."""

import subprocess
import sys

import pytest
import torch
from helpers import randomize, randomize_network
from torch import nn

import nlgc
from nlgc.blocks import GlobalContextBlock, SqueezeExcitation
from nlgc.models import Bottleneck, Insertion, Plan, ResNet

# Parameter counts of the torchvision (timm for ResNeXt-101 32×4d) models with 1000 classes.
PUBLISHED_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x4d": 44_177_704,
}


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "params"), PUBLISHED_PARAMS.items())
def test_backbones_have_the_published_parameter_counts(name, params):
    assert count(nlgc.create_model(name)) == params


def test_resnet50_has_torchvisions_state_dict_layout():
    state = nlgc.create_model("resnet50").state_dict()
    assert len(state) == 320  # 53 convs, 53 BNs × 5 tensors, fc weight and bias
    expected = {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_var": (64,),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.0.downsample.1.weight": (256,),
        "layer2.0.conv2.weight": (128, 128, 3, 3),
        "layer3.5.bn3.num_batches_tracked": (),
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
        "fc.weight": (1000, 2048),
        "fc.bias": (1000,),
    }
    assert {k: tuple(state[k].shape) for k in expected} == expected
    resnext = nlgc.create_model("resnext101_32x4d").state_dict()
    assert resnext["layer1.0.conv2.weight"].shape == (128, 4, 3, 3)  # 32 groups × 4 channels


NAMED = nlgc.list_models(task="classification")


def plain_twin(name, model):
    """The same architecture without context blocks (the registered network built with an
    empty plan), sharing the backbone weights."""
    twin = nlgc.create_model(name, num_classes=model.fc.out_features, plan=nlgc.Plan())
    assert isinstance(twin, ResNet)
    twin.load_state_dict(
        {k: v for k, v in model.state_dict().items() if k in twin.state_dict()}, strict=True
    )
    return twin.eval()


@pytest.mark.parametrize("name", NAMED)
def test_every_named_model_starts_as_its_plain_backbone(name):
    """Context blocks are identities at init, so the output equals the plain ResNet's."""
    model = nlgc.create_model(name, num_classes=10).eval()
    twin = plain_twin(name, model)
    x = torch.randn(2, 3, 64, 64)
    if any(isinstance(m, SqueezeExcitation) for m in model.modules()):
        # x·sigmoid(·) cannot be the identity: the twin gets each SE gate, computed from the SE
        # module's own weights by the formula, on the output of its residual block's last BN.
        pairs = zip(residual_blocks(model), residual_blocks(twin), strict=True)
        for (_, block), (_, twin_block) in pairs:
            twin_block.bn3.register_forward_hook(se_gate(block.se))
        with torch.no_grad():
            torch.testing.assert_close(model(x), twin(x), rtol=1e-5, atol=1e-5)
        return
    with torch.no_grad():
        assert torch.equal(model(x), twin(x))


def residual_blocks(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Bottleneck)]


def se_gate(se: SqueezeExcitation):
    """A forward hook that multiplies a BN's output by the SE gate written out."""

    def hook(module, args, y):
        context = y.mean((2, 3))  # (B, C)
        hidden = torch.relu(context @ se.fc1.weight.flatten(1).T + se.fc1.bias)
        return y * torch.sigmoid(hidden @ se.fc2.weight.flatten(1).T + se.fc2.bias)[..., None, None]

    return hook


def test_named_configurations_place_their_blocks():
    def blocks(model, cls):
        return [n for n, m in model.named_modules() if isinstance(m, cls)]

    gc = blocks(nlgc.create_model("gc_resnet50"), GlobalContextBlock)
    assert len(gc) == 4 + 6 + 3 and gc[0] == "layer2.0.context_block"
    assert all(".context_block" in n for n in gc)
    assert blocks(nlgc.create_model("nl_resnet50"), nlgc.NonLocalBlock) == [
        "layer3.4.non_local_block"
    ]
    assert blocks(nlgc.create_model("nl_resnet101"), nlgc.NonLocalBlock) == [
        "layer3.21.non_local_block"
    ]
    assert blocks(nlgc.create_model("snl_resnet50"), nlgc.SimplifiedNonLocal) == [
        "layer3.4.simplified_non_local"
    ]
    assert len(blocks(nlgc.create_model("se_resnet50"), SqueezeExcitation)) == 16
    r4 = nlgc.create_model("gc_r4_resnet50").layer4[0].context_block
    assert (
        r4.planes == 2048 // 4
        and nlgc.create_model("gc_resnet101").layer4[0].context_block.planes == 128
    )
    # GCNet reports 28.08M parameters for R50 + GC (r16) in c3–c5, SENet 28.09M for SE-R50
    assert count(nlgc.create_model("gc_resnet50")) == 28_078_773
    assert count(nlgc.create_model("se_resnet50")) == 28_088_024


def test_gcnet_ablation_overrides():
    model = nlgc.create_model(
        "gc_resnet50",
        num_classes=7,
        pooling="avg",
        fusion=("mul",),
        ratio=1 / 4,
        layer_norm=False,
        stages=("c4", "c5"),
        position="after_add",
    )
    gcs = [m for m in model.modules() if isinstance(m, GlobalContextBlock)]
    assert len(gcs) == 6 + 3
    assert {(g.pooling, g.fusion, g.ratio, g.layer_norm) for g in gcs} == {
        ("avg", ("mul",), 0.25, False)
    }
    assert model.layer3[0].inserted["after_add"] == ["context_block_after_add"]
    assert model.fc.out_features == 7
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['colour'\].*valid: .*'ratio'"):
        nlgc.create_model("gc_resnet50", colour="red")
    with pytest.raises(ValueError, match="no context blocks"):
        nlgc.create_model("resnet50", ratio=0.5)
    with pytest.raises(ValueError, match="unknown model 'gc_resnet51'"):
        nlgc.create_model("gc_resnet51")


def reference_bottleneck(block, x, position, extra):
    """Bottleneck forward written out, with ``extra`` applied at ``position``."""
    at = lambda p, t: extra(t) if p == position else t  # noqa: E731
    out = at("after_conv1", torch.relu(block.bn1(block.conv1(x))))
    out = at("after_conv2", torch.relu(block.bn2(block.conv2(out))))
    out = at("after_conv3", block.bn3(block.conv3(out)))
    identity = block.downsample(x) if block.downsample is not None else x
    out = at("after_add", out + identity)
    return at("after_block", torch.relu(out))


@pytest.mark.parametrize("position", nlgc.models.POSITIONS)
def test_positions_are_where_they_say(position):
    downsample = nn.Sequential(nn.Conv2d(32, 64, 1, 2, bias=False), nn.BatchNorm2d(64))
    block = Bottleneck(32, 16, stride=2, downsample=downsample)
    se = SqueezeExcitation(block.channels_at(position), 1 / 4)
    block.insert(position, "se", se)
    randomize(block)
    x = torch.randn(2, 32, 9, 9)
    with torch.no_grad():
        expected = reference_bottleneck(block, x, position, se)
        assert torch.allclose(block(x), expected, atol=1e-6)
        assert not torch.allclose(reference_bottleneck(block, x, None, se), expected, atol=1e-3)


def test_basic_block_positions():
    model = ResNet(
        nlgc.models.BasicBlock, (1, 1, 1, 1), plan=Plan((Insertion("gc", position="after_conv3"),))
    )
    assert model.layer2[0].context_block.in_channels == 128
    with pytest.raises(ValueError, match="position for BasicBlock"):
        ResNet(
            nlgc.models.BasicBlock,
            (1, 1, 1, 1),
            plan=Plan((Insertion("gc", position="after_conv2"),)),
        )


def test_index_rules():
    assert Insertion("nl", indices="all").select(4) == [0, 1, 2, 3]
    assert Insertion("nl", indices="every_other").select(6) == [1, 3, 5]
    assert Insertion("nl", indices="before_last").select(6) == [4]
    assert Insertion("nl", indices=(0, -1)).select(3) == [0, 2]
    with pytest.raises(ValueError, match="does not exist"):
        Insertion("nl", indices=(7,)).select(3)
    with pytest.raises(ValueError, match="stages"):
        Insertion("nl", stages=("c6",))
    with pytest.raises(ValueError, match="block"):
        Insertion("attention")


def test_plan_round_trips_through_yaml():
    plan = Plan(
        (
            Insertion(
                "gc", ("c3", "c4", "c5"), options={"ratio": 0.0625, "fusion": ("mul", "add")}
            ),
            Insertion("nl", ("c4",), indices=(1, 3, 5), options={"pairwise": "dot_product"}),
        )
    )
    text = plan.to_yaml()
    assert "context" not in text and "ratio: 0.0625" in text
    again = Plan.from_yaml(text)
    assert again.to_dict() == plan.to_dict()
    model = ResNet(Bottleneck, (3, 4, 6, 3), plan=again)
    assert model.layer4[2].context_block.fusion == ("mul", "add")
    assert model.layer3[5].non_local_block.pairwise == "dot_product"
    with pytest.raises(ValueError, match="unknown plan keys"):
        Plan.from_dict({"insertions": [{"block": "gc", "stage": ["c3"]}]})


def test_features_only_for_detection():
    model = nlgc.create_model("gc_resnet50", features_only=True).eval()
    assert not hasattr(model, "fc")
    assert [(f["stage"], f["channels"], f["stride"]) for f in model.feature_info] == [
        ("c2", 256, 4),
        ("c3", 512, 8),
        ("c4", 1024, 16),
        ("c5", 2048, 32),
    ]
    with torch.no_grad():
        features = model(torch.randn(1, 3, 224, 160))
    assert [tuple(f.shape) for f in features] == [
        (1, 256, 56, 40),
        (1, 512, 28, 20),
        (1, 1024, 14, 10),
        (1, 2048, 7, 5),
    ]
    two = nlgc.create_model("resnet18", features_only=True, out_indices=(2, 3))
    assert [f["channels"] for f in two.feature_info] == [256, 512]
    assert len(two(torch.randn(1, 3, 64, 64))) == 2
    with pytest.raises(ValueError, match="out_indices"):
        nlgc.create_model("resnet18", features_only=True, out_indices=(4,))


def test_complexity_counts_attention_and_softmax():
    """FLOPs of one NL block, from the formula: 1×1 convs, two N×N products, softmax."""
    c, c_inter, n = 64, 32, 14 * 14
    block = nlgc.NonLocalBlock(c)
    convs = 2 * n * (3 * c * c_inter + c_inter * c)
    attention = 2 * (2 * n * n * c_inter)
    fast = nlgc.complexity(block, (1, c, 14, 14))
    assert fast.flops == convs + attention
    nlgc.set_impl(block, "reference")
    assert nlgc.complexity(block, (1, c, 14, 14)).flops == convs + attention + 3 * n * n
    dot = nlgc.NonLocalBlock(c, pairwise="dot_product")
    assert nlgc.complexity(dot, (1, c, 14, 14)).flops == convs + 2 * (2 * n * c_inter * c_inter)


def test_complexity_of_resnet50_and_overheads():
    base = nlgc.create_model("resnet50")
    result = nlgc.complexity(nlgc.create_model("gc_resnet50"), (1, 3, 224, 224), baseline=base)
    assert result.baseline_params == 25_557_032
    assert 4.0 < result.baseline_flops / 2e9 < 4.2  # ResNet-50: 4.1 GMACs at 224×224
    assert 1.0 < result.flops_ratio < 1.01  # GCNet: GC adds ~0.3% FLOPs
    assert 1.09 < result.params_ratio < 1.1
    with pytest.raises(ValueError, match="input_shape must be a tuple"):
        nlgc.complexity(base, "224")
    with pytest.raises(ValueError, match=r"input_shape \(1, 3, 224\) does not fit the model"):
        nlgc.complexity(base, (1, 3, 224))


def outputs_and_input_grads(model, x):
    x = x.detach().clone().requires_grad_()
    logits = model(x)
    weights = torch.randn(
        logits.shape, dtype=logits.dtype, generator=torch.Generator().manual_seed(0)
    )
    params = [p for p in model.parameters()]
    return [logits, *torch.autograd.grad((logits * weights).sum(), [x, *params])]


FUSED_MODELS = {  # Bottleneck and BasicBlock, every fusion
    "gc_resnet50": lambda: nlgc.create_model("gc_resnet50", num_classes=5),
    "se_resnet50": lambda: nlgc.create_model("se_resnet50", num_classes=5),
    "snl_resnet50": lambda: nlgc.create_model("snl_resnet50", num_classes=5),
    "gc_tiny_resnet": lambda: nlgc.create_model("gc_tiny_resnet", num_classes=5),
    "gc_tiny_resnet-mul-add": lambda: nlgc.create_model(
        "gc_tiny_resnet", num_classes=5, fusion=("mul", "add")
    ),
    "se_resnet18": lambda: nlgc.create_model(
        "resnet18", num_classes=5, plan=Plan((Insertion("se", ("c2", "c3", "c4", "c5")),))
    ),
}


@pytest.mark.parametrize("name", FUSED_MODELS)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_fused_residual_blocks_compute_the_reference_network(name, train):
    """The fast blocks with the residual addition folded in give the network of the reference
    blocks (separate fusion, then the addition): logits and every gradient, float64."""
    model = randomize_network(FUSED_MODELS[name]()).double().train(train)
    x = torch.randn(2, 3, 48, 40, dtype=torch.float64)
    fast = outputs_and_input_grads(nlgc.set_impl(model, "fast"), x)
    reference = outputs_and_input_grads(nlgc.set_impl(model, "reference"), x)
    for a, b in zip(fast, reference, strict=True):
        # rounding scales with a tensor's largest terms, not with each element: on an AVX-512
        # CPU one 1e-3 weight gradient of gc_resnet50 (train) differed by 1.4e-11
        scale = float(b.detach().abs().max())
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11 + 1e-9 * scale)


def test_hooks_see_the_blocks_own_output_not_the_fused_sum():
    """With a hook on a block, the residual block runs it on its own, so analysis hooks record
    z, not z + identity."""
    model = randomize_network(nlgc.create_model("gc_resnet50", num_classes=5)).double()
    block = model.layer3[0].context_block
    seen = []
    handle = block.register_forward_hook(lambda m, args, out: seen.append((args[0], out)))
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        hooked = model(x)
        handle.remove()
        torch.testing.assert_close(model(x), hooked, rtol=1e-12, atol=1e-12)
    ((block_input, block_output),) = seen
    torch.testing.assert_close(block_output, block(block_input), rtol=1e-12, atol=1e-12)


def corner_reach(model: nn.Module, corner: int, size: int = 112) -> torch.Tensor:
    """(14, 14) bool: which c3 positions change when noise replaces one corner square of the
    demo's canvas (0: top left, where the first object lies; 1: bottom right)."""
    from nlgc.data.synthetic import OBJECT_EXTENT

    model = randomize_network(model).eval()
    generator = torch.Generator().manual_seed(corner)
    x = torch.rand(1, 3, size, size, generator=generator)
    y = x.clone()
    square = slice(0, OBJECT_EXTENT) if corner == 0 else slice(size - OBJECT_EXTENT, size)
    y[..., square, square] = torch.rand(1, 3, OBJECT_EXTENT, OBJECT_EXTENT, generator=generator)
    with torch.no_grad():
        before, after = model(x)[-1], model(y)[-1]  # (1, 32, 14, 14)
    return ((before - after).abs().amax(1)[0] > 1e-6 * before.abs().max()).bool()


def test_plain_demo_network_never_sees_both_objects():
    plain = nlgc.create_model("demo_resnet", num_classes=2, features_only=True)
    first, second = corner_reach(plain, 0), corner_reach(plain, 1)
    assert first.any() and second.any()
    assert not (first & second).any()  # no position depends on both corners: GAP + fc is additive
    for name in ("nl_demo_resnet", "snl_demo_resnet", "gc_demo_resnet"):
        model = nlgc.create_model(name, num_classes=2, features_only=True)
        both = corner_reach(model, 0) & corner_reach(model, 1)
        assert both.float().mean() > 0.9, name  # all but positions a final ReLU zeroes


def test_networks_with_fewer_stages():
    model = ResNet(Bottleneck, (1, 2), num_classes=3)
    assert list(model.stages()) == ["c2", "c3"] and model.fc.in_features == 512
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(ValueError, match="only the stages"):
        ResNet(Bottleneck, (1, 2), plan=Plan((Insertion("gc", ("c4",)),)))
    with pytest.raises(ValueError, match="1 to 4 stage depths"):
        ResNet(Bottleneck, (1, 1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"subset of \(0, 1\)"):
        ResNet(Bottleneck, (1, 2), features_only=True, out_indices=(3,))


def test_create_model_routes_every_constructor_argument():
    """Options come from the constructors' signatures: the network's own (base_channels), the
    placement fields and only the options of the blocks the plan holds."""
    narrow = nlgc.create_model("resnet50", base_channels=32, num_classes=10)
    assert narrow.conv1.out_channels == 32 and narrow.fc.in_features == 32 * 8 * 4
    assert (
        nlgc.create_model("gc_resnet50", base_channels=32).layer3[0].context_block.in_channels
        == 512
    )
    video = nlgc.create_model("i3d_resnet50", dropout=0.3, stem="mmaction2")
    assert video.dropout.p == 0.3
    with pytest.raises(ValueError, match=r"\['pairwise'\] for model 'gc_resnet50'.*'ratio'"):
        nlgc.create_model("gc_resnet50", pairwise="gaussian")  # an NL option on a GC model
    with pytest.raises(ValueError, match=r"\['colour'\] for model 'resnet50'.*'base_channels'"):
        nlgc.create_model("resnet50", colour="red")
    assert "pairwise" in nlgc.models.option_names("nl_resnet50")
    assert "pairwise" not in nlgc.models.option_names("gc_resnet50")


def test_plans_are_immutable_and_shared_safely():
    import dataclasses

    first = nlgc.create_model("gc_resnet50")
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.plan.insertions = ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.plan.insertions[0].stages = ("c2",)
    with pytest.raises(TypeError):
        first.plan.insertions[0].options["ratio"] = 0.5
    assert Insertion("gc", options={"fusion": ["mul"]}).options["fusion"] == ("mul",)
    second = nlgc.create_model("gc_resnet50")
    assert second.plan == nlgc.models.default_plan("gc_resnet50")
    assert second.layer3[0].context_block.ratio == 1 / 16
    with pytest.raises(ValueError, match=r"unknown option.*'gc'.*valid"):
        Insertion("gc", options={"pairwise": "gaussian"})


def test_the_core_builds_models_without_torchvision():
    """nlgc.blocks and nlgc.models for classification and video need torch and numpy only:
    torchvision is imported where a detector is built, and its absence is one clear error."""
    code = (
        "import sys; sys.modules['torchvision'] = None\n"
        "import torch, nlgc\n"
        "nlgc.create_model('nl_tiny_resnet').eval()(torch.rand(1, 3, 64, 64))\n"
        "assert 'mask_rcnn_gc_resnet50_fpn' in nlgc.list_models(task='detection')\n"
        "try:\n"
        "    nlgc.create_model('mask_rcnn_tiny_resnet_fpn')\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pip install 'nlgc[detection]'" in done.stdout
