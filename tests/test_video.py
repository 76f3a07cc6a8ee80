"""C2D / I3D video ResNets: Table 1 shapes, inflation, NL placement, Table 2e sizes, weights."""

import numpy as np
import pytest
import torch
from helpers import randomize, randomize_network, relative_max_error
from references import (
    I3D_R50_INFLATE,
    NL5_R50,
    PYSLOWFAST_PAIRS,
    NonLocal3d,
    caffe2_blobs,
    caffe2_logits,
    mmaction2_c2d_logits,
    mmaction2_i3d_logits,
    mmaction2_network,
    mmaction2_non_local,
    mmaction2_state,
)
from torch import nn

import nlgc
from nlgc.analysis.complexity import count_flops
from nlgc.models import VideoResNet
from nlgc.models.sources import caffe2, mmaction2
from nlgc.models.weights import match_state

VIDEO = nlgc.list_models(task="video")


def feature_shapes(model, x):
    with torch.no_grad():
        return [tuple(f.shape[2:]) for f in model.eval()(x)]


def test_c2d_table1_stage_shapes_32_and_8_frames():
    table1 = [(8, 56, 56), (4, 28, 28), (4, 14, 14), (4, 7, 7)]
    c2d = nlgc.create_model("c2d_resnet50", features_only=True)
    with torch.no_grad():
        stem = c2d.relu(c2d.bn1(c2d.conv1(torch.randn(1, 3, 32, 224, 224))))
    assert stem.shape[2:] == (16, 112, 112)  # conv1
    assert c2d.maxpool(stem).shape[2:] == (8, 56, 56)  # pool1
    assert feature_shapes(c2d, torch.randn(1, 3, 32, 224, 224)) == table1
    eight = nlgc.create_model("c2d_resnet50", features_only=True, stem_temporal_stride=1)
    assert feature_shapes(eight, torch.randn(1, 3, 8, 224, 224)) == table1
    assert all(m.kernel_size[0] == 1 for m in c2d.modules() if isinstance(m, nn.Conv3d))


def test_i3d_inflation_pattern():
    def inflated(model, conv):
        return [
            [int(getattr(b, conv).kernel_size[0] == 3) for b in layer]
            for layer in model.stages().values()
        ]

    i3d = nlgc.create_model("i3d_resnet50")
    pattern = [[1, 1, 1], [1, 0, 1, 0], [1, 0, 1, 0, 1, 0], [0, 1, 0]]
    assert inflated(i3d, "conv1") == pattern
    assert inflated(i3d, "conv2") == [[0] * len(p) for p in pattern]
    assert i3d.conv1.kernel_size == (5, 7, 7)
    i3d333 = nlgc.create_model("i3d3x3x3_resnet50")
    assert inflated(i3d333, "conv2") == pattern and i3d333.layer2[0].conv2.kernel_size == (3, 3, 3)
    r101 = inflated(nlgc.create_model("i3d_resnet101"), "conv1")
    assert r101[2] == [1 - i % 2 for i in range(23)]
    assert feature_shapes(
        nlgc.create_model("i3d_resnet50", features_only=True), torch.randn(1, 3, 32, 112, 112)
    ) == [(8, 28, 28), (4, 14, 14), (4, 7, 7), (4, 4, 4)]


def test_non_local_placement():
    def where(name):
        return [
            n
            for n, m in nlgc.create_model(name).named_modules()
            if isinstance(m, nlgc.NonLocalBlock)
        ]

    assert where("nl_c2d_resnet50") == [
        f"layer{s}.{i}.non_local_block" for s, i in [(2, 1), (2, 3), (3, 1), (3, 3), (3, 5)]
    ]
    assert where("nl_i3d_resnet101")[2:] == [f"layer3.{i}.non_local_block" for i in (6, 13, 20)]
    assert where("nl1_c2d_resnet50") == ["layer3.4.non_local_block"]
    assert len(where("nl10_c2d_resnet50")) == 10
    block = nlgc.create_model("nl_i3d_resnet50").layer2[1].non_local_block
    assert (block.dim, block.sub_sample, block.pool_position, block.scale) == (
        3,
        True,
        "after",
        False,
    )
    gc = [
        m
        for m in nlgc.create_model("gc_c2d_resnet50").modules()
        if isinstance(m, nlgc.GlobalContextBlock)
    ]
    assert len(gc) == 13 and all(g.dim == 3 for g in gc)
    space = nlgc.create_model("nl_c2d_resnet50", attend="space", pairwise="dot_product")
    assert space.layer3[1].non_local_block.attend == "space"


def params(name, with_bn):
    model = nlgc.create_model(name)
    bn = sum(
        p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm3d) for p in m.parameters()
    )
    return sum(p.numel() for p in model.parameters()) - (0 if with_bn else bn)


def test_table_2e_sizes_within_5_percent():
    """R101, 400 classes: C2D 43.2M parameters (BN affine parameters excluded, which is the
    convention that matches), I3D 3×3×3 1.5×, I3D 3×1×1 1.2×, NL C2D 5-block 1.2×."""
    c2d = params("c2d_resnet101", with_bn=False)
    assert abs(c2d / 43.2e6 - 1) < 0.005
    for name, ratio in [
        ("i3d3x3x3_resnet101", 1.5),
        ("i3d_resnet101", 1.2),
        ("nl_c2d_resnet101", 1.2),
    ]:
        assert abs(params(name, with_bn=False) / c2d / ratio - 1) < 0.05, name


def test_table_2e_flops_within_5_percent():
    gmacs = count_flops(nlgc.create_model("c2d_resnet101"), (1, 3, 32, 224, 224)) / 2e9
    assert abs(gmacs / 34.2 - 1) < 0.05


@pytest.mark.parametrize(
    "name", ["nl_c2d_resnet50", "nl_i3d_resnet50", "gc_c2d_resnet50", "nl10_c2d_resnet50"]
)
def test_blocks_start_as_identities(name):
    model = nlgc.create_model(name).eval()
    plain = VideoResNet(
        (3, 4, 6, 3), model.inflate if any(map(any, model.inflate)) else None, model.inflate_style
    ).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k in plain.state_dict()})
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))


def test_inflated_c2d_sees_a_still_clip_as_the_2d_network_sees_its_frame():
    image_model = randomize_network(nlgc.create_model("resnet50", features_only=True)).double()
    video_model = nlgc.create_model("c2d_resnet50", features_only=True).double().eval()
    report = nlgc.inflate_weights(video_model, image_model.state_dict())
    assert len(report.loaded) == len(image_model.state_dict())
    frame = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    clip = frame.unsqueeze(2).expand(-1, -1, 8, -1, -1)  # 8 identical frames
    with torch.no_grad():
        for f2d, f3d in zip(image_model(frame), video_model(clip), strict=True):
            per_frame = f3d.unbind(2)
            for f in per_frame:
                torch.testing.assert_close(f, f2d, rtol=1e-10, atol=1e-10)


def test_inflation_divides_repeated_kernels_by_t():
    video = nn.Sequential(nn.Conv3d(4, 8, 3, bias=False), nn.BatchNorm3d(8))
    weight, scale = torch.randn(8, 4, 3, 3), torch.randn(8)
    state = {"0.weight": weight, "1.weight": scale, "1.bias": torch.zeros(8)}
    state |= {f"1.{key}": torch.ones(8) for key in ("running_mean", "running_var")}
    match = match_state(video, state, inflate=True)
    inflated = match.merged["0.weight"]
    assert inflated.shape == (8, 4, 3, 3, 3) and match.inflated == ["0.weight"]
    torch.testing.assert_close(inflated.sum(2), weight)
    assert torch.equal(inflated[:, :, 0], weight / 3)
    assert torch.equal(match.merged["1.weight"], scale) and "1.weight" in match.copied
    assert match.kept == ["1.num_batches_tracked"] and not match.missing  # old files lack it
    # without inflation the 2D kernel is a shape mismatch, and a 2D kernel of other channels is
    # one either way
    assert match_state(video, state).mismatched == {"0.weight": ((8, 4, 3, 3), (8, 4, 3, 3, 3))}
    state["0.weight"] = torch.randn(8, 5, 3, 3)
    assert list(match_state(video, state, inflate=True).mismatched) == ["0.weight"]


def test_mmaction2_resnet101_i3d_runs_as_in_mmaction2(tmp_path):
    inflate = {(1, 0), (1, 1), (1, 2), (2, 0), (2, 2), (4, 1)} | {(3, i) for i in range(0, 23, 2)}
    mm = mmaction2_state(mmaction2_network((3, 4, 23, 3), 3, inflate))
    path = tmp_path / "i3d_r101.pth"
    torch.save({"state_dict": mm}, path)
    model, report = nlgc.load_model(path)
    assert report.model_name == "i3d_resnet101" and report.options["stem"] == "mmaction2"
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        expected = mmaction2_i3d_logits(mm, x, "embedded_gaussian")
        assert relative_max_error(model.eval()(x), expected) <= 1e-5


@pytest.mark.parametrize("mode", ["embedded_gaussian", "dot_product", "gaussian"])
def test_mmaction2_checkpoint_runs_as_in_mmaction2(tmp_path, mode):
    options = {} if mode == "embedded_gaussian" else {"pairwise": mode}
    network = mmaction2_network((3, 4, 6, 3), 7, I3D_R50_INFLATE, NL5_R50, mode)
    mm = mmaction2_state(network)  # random weights in mmaction2's own module layout
    assert "backbone.layer2.1.non_local_block.g.0.conv.weight" in mm
    assert "backbone.layer2.1.non_local_block.conv_out.bn.running_var" in mm
    path = tmp_path / f"i3d_imagenet-pretrained-r50-nl-{mode}.pth"
    torch.save({"meta": {"mmaction2_version": "1.2.0"}, "state_dict": mm}, path)
    x = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        expected = mmaction2_i3d_logits(mm, x, mode)
        for stem, same in (("mmaction2", True), ("paper", False)):
            model = nlgc.create_model("nl_i3d_resnet50", num_classes=7, stem=stem, **options)
            report = nlgc.load_weights(model.eval(), path)
            assert not report.kept and not report.replaced and not report.ignored
            error = relative_max_error(model(x), expected)
            assert (error <= 1e-5) if same else (error > 1e-3), (stem, error)
        if mode == "gaussian":  # no θ, φ: the file tells the network (with mmaction2's stem)
            model, report = nlgc.load_model(path)
        else:  # embedded Gaussian and dot product have the same tensors: the file cannot tell
            with pytest.raises(ValueError, match=r"pairwise='dot_product'.*pairwise="):
                nlgc.load_model(path)
            model, report = nlgc.load_model(path, pairwise=mode)
        assert report.model_name == "nl_i3d_resnet50" and report.options["stem"] == "mmaction2"
        assert relative_max_error(model.eval()(x), expected) <= 1e-5
    with pytest.raises(ValueError, match="stem"):
        nlgc.create_model("i3d_resnet50", stem="caffe3")


def test_mmaction2_non_local_semantics_match():
    source = randomize(NonLocal3d(16, "embedded_gaussian"))
    mm = {f"backbone.layer1.0.non_local_block.{k}": v for k, v in source.state_dict().items()}
    prefix = "layer1.0.non_local_block."
    converted = {k.removeprefix(prefix): v for k, v in mmaction2.convert(mm).items()}
    block = nlgc.NonLocalBlock(16, 3, sub_sample=True).eval()
    block.load_state_dict(converted, strict=True)
    x = torch.randn(2, 16, 4, 6, 8)
    expected = mmaction2_non_local(mm, "backbone.layer1.0.non_local_block.", x)
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


class MeanOfView(nn.Module):
    """A 'classifier' whose logits record the view it saw: mean, first frame value, first pixel."""

    def forward(self, x):
        return torch.stack([x.mean((1, 2, 3, 4)), x[:, 0, 0, 0, 0], x[:, 0, -1, -1, -1]], -1)


def test_fully_convolutional_scores_average_clips_and_crops():
    video = torch.arange(40, dtype=torch.float32).view(1, 40, 1, 1).expand(3, 40, 30, 40).clone()
    scores = nlgc.fully_convolutional_scores(
        MeanOfView(), video, clip_len=8, frame_interval=2, num_clips=3, num_crops=3, short_side=24
    )
    # clips start at 0, 12, 24 (span 16 of 40 frames); every crop of a clip sees the same values
    expected = []
    for start in (0, 12, 24):
        frames = torch.arange(start, start + 16, 2, dtype=torch.float32)
        view = torch.stack([frames.mean(), frames[0], frames[-1]]).softmax(-1)
        expected += [view] * 3
    torch.testing.assert_close(scores, torch.stack(expected).mean(0))
    short = nlgc.fully_convolutional_scores(MeanOfView(), video[:, :5], clip_len=8, num_clips=2)
    assert torch.isfinite(short).all()  # a video shorter than a clip loops
    model = nlgc.create_model("nl_c2d_resnet50", num_classes=5)
    probabilities = nlgc.fully_convolutional_scores(
        model, torch.randn(3, 20, 40, 60), clip_len=8, num_clips=2, short_side=32
    )
    assert probabilities.shape == (5,) and abs(float(probabilities.sum()) - 1) < 1e-5
    with pytest.raises(ValueError, match=r"\(C, T, H, W\)"):
        nlgc.fully_convolutional_scores(model, torch.randn(20, 40, 60))
    with pytest.raises(ValueError, match="num_crops"):
        nlgc.fully_convolutional_scores(model, torch.randn(3, 20, 40, 60), num_crops=2)


EXPORTED = [
    "c2d_resnet50",
    "i3d_resnet50",
    "i3d3x3x3_resnet50",
    "nl_i3d_resnet50",
    "gc_c2d_resnet50",
    "nl10_c2d_resnet50",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPORTED)
def test_compile_and_export(name):
    model = nlgc.create_model(name, num_classes=10).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), expected, rtol=1e-4, atol=1e-4)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_inductor_compile_nl_i3d():
    model = randomize_network(nlgc.create_model("nl_i3d_resnet50", num_classes=10)).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        expected = model(x)
        assert expected.abs().max() > 1e-2  # a comparison of real numbers, not of zeros
        torch.testing.assert_close(torch.compile(model)(x), expected, rtol=1e-3, atol=1e-3)


def test_every_video_model_builds_and_runs():
    x = torch.randn(1, 3, 4, 32, 32)
    for name in VIDEO:
        model = nlgc.create_model(name, num_classes=3).eval()
        clip = torch.randn(1, 3, 32, 32, 32) if "grouped" in name else x  # 8 frames in res3
        with torch.no_grad():
            assert model(clip).shape == (1, 3), name


@pytest.mark.parametrize(("clip", "temporal_stride"), [("32x2", 2), ("8x8", 1)])
def test_official_caffe2_pkl_runs_as_in_caffe2(tmp_path, clip, temporal_stride):
    import pickle

    blobs = caffe2_blobs(num_classes=5)
    blobs.update(lr=np.array(0.01, np.float32), res2_0_branch2a_w_momentum=np.zeros(3, np.float32))
    path = tmp_path / f"i3d_nonlocal_{clip}_IN_pretrain_400k.pkl"
    path.write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    with pytest.raises(ValueError, match=r"stem_temporal_stride=2.*stem_temporal_stride=1"):
        nlgc.load_model(path)  # the 32×2 and 8×8 networks have the same tensors
    model, report = nlgc.load_model(path, stem_temporal_stride=temporal_stride)
    assert report.model_name == "nl_i3d_resnet50" and model.stem == "caffe2"
    assert model.fc.out_features == 5 and "into nl_i3d_resnet50" in str(report)
    block = model.layer3[5].non_local_block
    assert block.pool_position == "before" and block.scale
    x = torch.randn(2, 3, 8 * temporal_stride, 64, 64)
    with torch.no_grad():
        expected = caffe2_logits(blobs, x, temporal_stride)
        error = relative_max_error(model.eval()(x), expected)
        assert error <= 1e-5
        paper = nlgc.create_model(
            "nl_i3d_resnet50", num_classes=5, pool_position="before", scale=True
        )
        nlgc.load_weights(paper.eval(), path)
        assert relative_max_error(paper(x), expected) > 1e-3  # the other stem
    assert model.maxpool(torch.zeros(1, 1, 4, 32, 32)).shape[-2:] == (15, 15)  # unpadded pool1


def test_caffe2_affine_bn_becomes_batch_norm_computing_x_s_plus_b():

    s, b = torch.rand(64) + 0.5, torch.randn(64)
    state = caffe2.convert(
        {"conv1_w": torch.zeros(64, 3, 5, 7, 7), "res_conv1_bn_s": s, "res_conv1_bn_b": b}
    )
    bn = torch.nn.BatchNorm3d(64).eval()
    bn.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("bn1.")}, strict=False)
    x = torch.randn(2, 64, 1, 2, 2)
    torch.testing.assert_close(bn(x), x * s.view(1, -1, 1, 1, 1) + b.view(1, -1, 1, 1, 1))


def test_caffe2_files_that_fit_no_network_are_refused(tmp_path):
    import pickle

    blobs = caffe2_blobs(non_local=False)
    del blobs["res4_5_branch2a_w"]  # a ResNet with 5 res4 blocks: none of ours
    path = tmp_path / "odd.pkl"
    path.write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    with pytest.raises(ValueError, match=r"odd\.pkl .*fit no registered model"):
        nlgc.load_model(path)
    blobs = caffe2_blobs(non_local=False)
    blobs["res3_0_branch2b_w"] = blobs["res3_0_branch2b_w"][:, :, :, :2]  # a wrong shape
    path.write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    with pytest.raises(ValueError, match=r"layer2\.0\.conv2\.weight"):
        nlgc.load_model(path, "i3d_resnet50")  # named: the shapes that do not fit are listed


def test_caffe2_affine_non_local_file_runs_as_in_caffe2(tmp_path):
    """The 'affine' 32×4 NL model: frozen BN as affine blobs, res3 NL within groups of 4."""
    import pickle

    blobs = caffe2_blobs(num_classes=5)
    blobs = {k: v for k, v in blobs.items() if not k.endswith(("_rm", "_riv"))}
    for name in [k for k in blobs if k.startswith("nonlocal") and k.endswith(("out_w", "bn_s"))]:
        blobs[name] = blobs[name] * 10  # NL outputs that weigh in the logits
    path = tmp_path / "i3d_nonlocal_32x4_I3D_pretrain_400k.pkl"
    path.write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    model, report = nlgc.load_model(path, stem_temporal_stride=1)
    assert report.model_name == "nl_grouped_i3d_resnet50" and report.source == "caffe2"
    assert model.layer2[1].non_local_block.temporal_group == 4
    assert model.layer3[1].non_local_block.temporal_group is None
    x = torch.randn(1, 3, 32, 48, 48)
    with torch.no_grad():
        expected = caffe2_logits(blobs, x, 1, affine=True)
        assert relative_max_error(model.eval()(x), expected) <= 1e-5
        ungrouped, _ = nlgc.load_model(path, "nl_i3d_resnet50", stem_temporal_stride=1)
        assert relative_max_error(ungrouped.eval()(x), expected) > 1e-3  # the groups matter


def test_mmaction2_c2d_checkpoint_runs_as_in_mmaction2(tmp_path):
    mm = mmaction2_state(mmaction2_network((3, 4, 6, 3), 6, two_d=True))  # the C2D class
    assert mm["backbone.conv1.conv.weight"].shape == (64, 3, 7, 7)
    path = tmp_path / "c2d_r50-in1k-pre_8xb32-8x8x1-100e_kinetics400-rgb.pth"
    torch.save({"state_dict": mm}, path)
    model, report = nlgc.load_model(path)
    assert report.model_name == "c2d_resnet50" and report.options["stem"] == "mmaction2_c2d"
    x = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        expected = mmaction2_c2d_logits(mm, x)
        assert relative_max_error(model.eval()(x), expected) <= 1e-5
    with pytest.raises(ValueError, match="stem_temporal_stride=1"):
        nlgc.create_model("c2d_resnet50", stem="mmaction2_c2d")


def test_pyslowfast_pyth_runs_as_the_caffe2_network(tmp_path):
    """A PySlowFast checkpoint ({"model_state": …}, its names made from the Caffe2 blobs by
    PySlowFast's own rules) builds the Caffe2 8×8 network and computes its logits."""
    import re

    blobs = caffe2_blobs(num_classes=6)
    state = {}
    for name, value in blobs.items():
        for pattern, replacement in PYSLOWFAST_PAIRS:
            name = re.sub(pattern, replacement, name)
        state[name] = torch.from_numpy(value)
    assert "s3.pathway0_nonlocal1.conv_theta.weight" in state
    assert "s2.pathway0_res0.branch2.a_bn.running_var" in state
    assert "head.projection.weight" in state
    path = tmp_path / "I3D_NLN_8x8_R50.pyth"
    torch.save({"model_state": state, "epoch": 196}, path)
    model, report = nlgc.load_model(path, stem_temporal_stride=1)
    assert report.source == "pyslowfast" and report.model_name == "nl_i3d_resnet50"
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        assert relative_max_error(model.eval()(x), caffe2_logits(blobs, x, 1)) <= 1e-5
