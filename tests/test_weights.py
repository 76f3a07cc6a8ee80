"""load_weights: torchvision/timm ResNet files and mmdetection GCNet checkpoints."""

import collections
import os

import pytest
import torch
from conftest import randomize

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
    name is not a model description nlgc writes, and the file is treated as a plain state dict."""
    state = nlgc.create_model("tiny_resnet", num_classes=3).state_dict()
    path = tmp_path / "odd.pt"
    meta = {"name": "tiny_resnet", "num_classes": 3, "overrides": {}}
    torch.save({"nlgc_model": meta, "state_dict": state}, path)
    with pytest.raises(ValueError, match="does not say which model it holds"):
        load_model(path)
    model, name = load_model(path, "tiny_resnet")
    assert name == "tiny_resnet" and model.fc.out_features == 3


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
