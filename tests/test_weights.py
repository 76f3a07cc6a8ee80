"""load_weights: torchvision/timm ResNet files and mmdetection GCNet checkpoints."""

import collections
import os

import pytest
import torch
from helpers import randomize, randomize_network, relative_max_error
from references import (
    BYOBNET_CFGS,
    TIMM_PARAMS,
    caffe2_blobs,
    timm_byobnet,
    timm_byobnet_logits,
)

import nlgc
from nlgc.models.from_checkpoint import load_model
from nlgc.models.weights import read_state_dict


@pytest.fixture(scope="module")
def resnet50_state():
    """A torchvision-layout ResNet-50 state dict with random values (no num_batches_tracked,
    like torchvision's released files)."""
    model = randomize(nlgc.create_model("resnet50"), std=0.1)
    return {k: v for k, v in model.state_dict().items() if "num_batches_tracked" not in k}


def features(model, x):
    model.eval()
    with torch.no_grad():
        body = torch.nn.Sequential(
            model.conv1, model.bn1, model.relu, model.maxpool, *model.stages().values()
        )
        return body(x)


def test_torchvision_checkpoint_into_gc_model(resnet50_state, tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(resnet50_state, path)
    model = nlgc.create_model("gc_resnet50", num_classes=10)
    report = nlgc.load_weights(model, path)
    assert report.replaced == ["fc.weight", "fc.bias"]
    assert len(report.kept) == 13 * 8 and all("context_block" in k for k in report.kept)
    assert len(report.loaded) == len(resnet50_state) - 2
    assert model.fc.out_features == 10 and "replaced the classifier" in str(report)
    plain = nlgc.create_model("resnet50")
    plain.load_state_dict(resnet50_state, strict=False)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(features(model, x), features(plain, x))  # GC blocks still identities


@pytest.mark.parametrize("wrap", ["state_dict", "module", "safetensors"])
def test_wrapped_and_safetensors_files(resnet50_state, tmp_path, wrap):
    if wrap == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "model.safetensors"
        save_file({k: v.contiguous() for k, v in resnet50_state.items()}, path)
    else:
        path = tmp_path / "wrapped.pth"
        state = resnet50_state
        if wrap == "module":  # DistributedDataParallel's prefix
            state = {f"module.{k}": v for k, v in state.items()}
        torch.save({"state_dict": state, "epoch": 3, "meta": {"note": "x"}}, path)
    model = nlgc.create_model("se_resnet50")
    report = nlgc.load_weights(model, path)
    assert len(report.loaded) == len(resnet50_state)
    assert torch.equal(model.layer4[2].conv3.weight, resnet50_state["layer4.2.conv3.weight"])
    built, report = nlgc.load_model(path, "resnet50")  # the same reading, the file read once
    assert len(report.loaded) == len(resnet50_state)
    assert torch.equal(built.layer4[2].conv3.weight, resnet50_state["layer4.2.conv3.weight"])


def test_mmdetection_gcnet_checkpoint(tmp_path):
    """backbone.-prefixed keys with layerX.Y.context_block.*; neck and heads are ignored."""
    source = randomize(nlgc.create_model("gc_resnet50", features_only=True), std=0.1)
    state = collections.OrderedDict((f"backbone.{k}", v) for k, v in source.state_dict().items())
    state["neck.lateral_convs.0.conv.weight"] = torch.randn(256, 256, 1, 1)
    state["rpn_head.rpn_conv.weight"] = torch.randn(256, 256, 3, 3)
    assert "backbone.layer3.2.context_block.channel_add_conv.1.weight" in state
    path = tmp_path / "mask_rcnn_r50_gcb.pth"
    torch.save({"meta": {"mmdet_version": "2.0"}, "state_dict": state}, path)
    model = nlgc.create_model("gc_resnet50", features_only=True)
    report = nlgc.load_weights(model, path)
    assert report.ignored == ["neck.lateral_convs.0.conv.weight", "rpn_head.rpn_conv.weight"]
    assert not report.kept and not report.replaced
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for ours, theirs in zip(model.eval()(x), source.eval()(x), strict=True):
            assert torch.equal(ours, theirs)
    classifier = nlgc.create_model("gc_resnet50", num_classes=5)
    assert nlgc.load_weights(classifier, path).kept == ["fc.weight", "fc.bias"]


def test_mismatches_list_keys_and_leave_the_model_alone(resnet50_state, tmp_path):
    gc_state = nlgc.create_model("gc_resnet50").state_dict()
    model = nlgc.create_model("resnet50")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"unexpected \(104\): layer2.0.context_block"):
        nlgc.load_weights(model, gc_state)
    small = nlgc.create_model("resnet18").state_dict()
    with pytest.raises(ValueError, match="missing") as error:
        nlgc.load_weights(model, small)
    assert "shape mismatch" in str(error.value) and "layer1.0.conv1.weight (64, 64, 3, 3)" in str(
        error.value
    )
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


class Opaque:
    """An arbitrary Python object: unpickling it could run code, so weights_only refuses."""


def test_unsafe_and_missing_files_are_refused(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "config": Opaque()}, path)
    with pytest.raises(ValueError, match="weights-only"):
        read_state_dict(path)
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        read_state_dict(tmp_path / "nope.pth")


def test_a_file_with_model_metadata_outside_a_lightning_checkpoint_is_not_trusted(tmp_path):
    """Only Lightning checkpoints (hyper_parameters) name their model; a top-level entry of that
    name is not a model description nlgc writes: the file's tensors decide."""
    state = nlgc.create_model("tiny_resnet", num_classes=3).state_dict()
    path = tmp_path / "odd.pt"
    meta = {"name": "gc_tiny_resnet", "num_classes": 3, "overrides": {}}
    torch.save({"nlgc_model": meta, "state_dict": state}, path)
    model, report = load_model(path)
    assert report.model_name == "tiny_resnet" and model.fc.out_features == 3
    model, report = load_model(path, "gc_tiny_resnet")  # named: GC blocks kept at identity
    assert report.model_name == "gc_tiny_resnet" and report.kept
    state["layer1.0.conv1.weight"] = torch.zeros(16, 16, 5, 5)
    with pytest.raises(ValueError, match="does not say which model it holds"):
        load_model(state)  # a state dict that fits nothing


def test_load_model_reads_the_network_from_the_tensors(tmp_path):
    cases = {
        "resnet50": {},
        "se_resnet50": {},
        "gc_r4_resnet50": {"backbone": True},  # an mmdetection GCNet file: backbone. keys
        "resnext50_32x4d": {},
    }
    for name, how in cases.items():
        source = nlgc.create_model(name, num_classes=11)
        state = {f"backbone.{k}" if how else k: v for k, v in source.state_dict().items()}
        if how:
            state = {k: v for k, v in state.items() if not k.startswith("backbone.fc.")}
            state["neck.lateral_convs.0.conv.weight"] = torch.zeros(256, 256, 1, 1)
        model, report = nlgc.load_model(state)
        assert report.model_name == name, (name, report.model_name)
        assert not report.kept or how  # the mmdetection file has no classifier
        assert report.source == ("mmdetection" if how else "torchvision")
        assert model.preprocessing.mean == (0.485, 0.456, 0.406)  # the source's convention


def write_pickle(path, content, protocol=2):
    import pickle

    path.write_bytes(pickle.dumps(content, protocol=protocol))
    return path


def test_caffe2_pkl_blobs_are_read_as_tensors(tmp_path):
    import numpy as np

    from nlgc.models.weights import read_state_dict

    blobs = {
        "res_conv1_bn_s": np.linspace(0.5, 1.5, 64, dtype=np.float32),
        "nonlocal_conv3_1_theta_w": np.random.default_rng(0).normal(size=(512, 1024, 1, 1, 1)),
        "lr": np.array(3),  # an integer blob: not a weight
    }
    for protocol in (2, 4):
        path = write_pickle(tmp_path / f"model{protocol}.pkl", {"blobs": blobs}, protocol)
        state = read_state_dict(path)
        assert set(state) == {"res_conv1_bn_s", "nonlocal_conv3_1_theta_w"}
        for name, tensor in state.items():
            assert torch.equal(tensor, torch.from_numpy(blobs[name]))


def test_caffe2_pkl_with_code_is_refused_and_nothing_runs(tmp_path):
    import pickle

    from nlgc.models.caffe2_pickle import read_caffe2_blobs

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"blobs": {"pred_w": Payload()}}, protocol=2))
    with pytest.raises(ValueError, match=r"evil\.pkl.*system.*nothing was run"):
        read_caffe2_blobs(path)
    assert not marker.exists()
    valid = write_pickle(tmp_path / "ok.pkl", {"blobs": {"pred_w": np_ones()}}).read_bytes()
    (tmp_path / "cut.pkl").write_bytes(valid[: len(valid) // 2])
    with pytest.raises(ValueError, match=r"cut\.pkl"):
        read_caffe2_blobs(tmp_path / "cut.pkl")
    with pytest.raises(ValueError, match=r"list\.pkl.*dict of blobs"):
        read_caffe2_blobs(write_pickle(tmp_path / "list.pkl", [1, 2]))
    with pytest.raises(FileNotFoundError):
        read_caffe2_blobs(tmp_path / "missing.pkl")


def np_ones():
    import numpy as np

    return np.ones((400, 2048), np.float32)


@pytest.mark.parametrize("name", list(BYOBNET_CFGS))
def test_timm_byobnet_state_dict_runs_as_in_timm(tmp_path, name):
    cfg = BYOBNET_CFGS[name]
    timm = dict(randomize_network(timm_byobnet(cfg, 10)).state_dict())
    path = tmp_path / f"{name}.pth"
    torch.save(timm, path)  # timm saves the bare state dict
    model, report = load_model(path)  # found by its tensors
    assert report.model_name == name and report.source == "timm"
    assert not report.kept and not report.replaced and not report.ignored
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        assert relative_max_error(model.eval()(x), timm_byobnet_logits(timm, cfg, x)) <= 1e-5
    params = sum(p.numel() for p in nlgc.create_model(name).parameters()) / 1e6
    assert round(params, 2) == TIMM_PARAMS[name]


def test_timm_gcresnet50t_into_other_networks_is_refused(tmp_path):
    timm = timm_byobnet(BYOBNET_CFGS["gc_resnet50t"], 10).state_dict()
    assert timm["stages.0.0.attn.mlp_add.fc1.weight"].shape == (8, 64, 1, 1)  # C/8 of 64
    path = tmp_path / "gcresnet50t.pth"
    torch.save(timm, path)
    model = nlgc.create_model("gc_resnet50t", num_classes=10)
    assert not nlgc.load_weights(model, path).kept
    assert model.layer1[0].context_block_after_conv2.channel_add_conv[1].eps == 1e-6
    with pytest.raises(ValueError, match=r"gcresnet50t\.pth does not match the model"):
        nlgc.load_weights(nlgc.create_model("gc_resnet50"), path)  # another network


def test_initialise_an_i3d_nl_model_from_imagenet_weights(resnet50_state):
    """mmaction2's pretrained2d / Caffe2's inflation: k×k kernels repeated over t and divided
    by t, BN copied, NL blocks identities, a new classifier for the data's classes."""
    from nlgc.models.initialise import initialise_from

    model = nlgc.create_model("nl_i3d_resnet50", num_classes=7)
    report = initialise_from(model, resnet50_state)
    assert report.source == "torchvision" and "conv1.weight" in report.inflated
    assert report.preprocessing.mean == (0.485, 0.456, 0.406)  # what training normalises with
    conv1 = resnet50_state["conv1.weight"]
    assert torch.equal(model.conv1.weight, conv1.unsqueeze(2).repeat(1, 1, 5, 1, 1) / 5)
    assert torch.equal(model.layer1[0].bn1.running_var, resnet50_state["layer1.0.bn1.running_var"])
    assert report.ignored == [] and "fc.weight" in report.left_at_init
    assert all(
        "non_local_block" in k or k.startswith("fc.") or "num_batches" in k
        for k in report.left_at_init
    )
    assert len(report.inflated) + len(report.copied) == len(resnet50_state) - 2
    x = torch.randn(1, 3, 4, 32, 32)
    block = model.layer2[1].non_local_block
    assert torch.equal(block(x.new_ones(1, 512, 2, 4, 4)), x.new_ones(1, 512, 2, 4, 4))
    with pytest.raises(ValueError, match="backbone tensors do not fit"):
        initialise_from(nlgc.create_model("resnet18"), resnet50_state)


def test_initialise_i3d_from_caffe2_imagenet_blobs():
    """Caffe2's ImageNet ResNet-50 (2D blobs res2_0_branch2a_w, …, pred_w) inflated into the
    Caffe2 I3D network, as TRAIN.PARAMS_FILE does in the official code."""
    from nlgc.models.initialise import initialise_from

    blobs = caffe2_blobs(num_classes=1000, non_local=False, c2d=True)
    image = {k: torch.from_numpy(v[:, :, 0] if v.ndim == 5 else v) for k, v in blobs.items()}
    model = nlgc.create_model("i3d_resnet50", stem="caffe2", num_classes=5)
    report = initialise_from(model, image)
    assert report.source == "caffe2" and "layer1.0.conv1.weight" in report.inflated
    assert report.preprocessing.mean == (114.75,) * 3  # Caffe2's normalisation
    expected = image["res2_0_branch2a_w"].unsqueeze(2).repeat(1, 1, 3, 1, 1) / 3
    assert torch.equal(model.layer1[0].conv1.weight, expected)
