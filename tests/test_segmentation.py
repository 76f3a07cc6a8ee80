"""Segmentation: dilated ResNets (torchvision's and mmsegmentation's), the FCN / NL / GC / DNL
heads and segmentors against mmsegmentation's written out, in float64 with every block active."""

import numpy as np
import pytest
import torch
from helpers import randomize_network
from references import (
    as_mmsegmentation,
    mmcv_context_block,
    mmcv_non_local_2d,
    mmdet_resnet_features,
    mmseg_disentangled_non_local,
    mmseg_head,
)
from torch.nn import functional as F

import nlgc
from nlgc.blocks import ContextBlock

D8 = {"strides": (1, 2, 1, 1), "dilations": (1, 1, 2, 4)}
SMALL = {"layers": (1, 2, 2, 1), "base_channels": 8, "channels": 16}
HEADS = {  # name → the block as mmsegmentation's reference computes it
    "fcn_resnet50_d8": None,
    "nonlocal_resnet50_d8": ("nl_block", mmcv_non_local_2d),
    "gcnet_resnet50_d8": ("gc_block", mmcv_context_block),
    "dnlnet_resnet50_d8": ("dnl_block", mmseg_disentangled_non_local),
}


def test_dilated_resnet_is_torchvisions_replace_stride_with_dilation():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    theirs = randomize_network(
        torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True])
    )
    ours = nlgc.create_model("resnet50", contract_dilation=True, **D8).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(1, 3, 72, 88)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs.eval()(x))
    features = nlgc.create_model("resnet50", features_only=True, contract_dilation=True, **D8)
    assert [f["stride"] for f in features.feature_info] == [4, 8, 8, 8]
    assert [m.dilation for m in (features.layer3[0].conv2, features.layer3[1].conv2)] == [
        (1, 1),
        (2, 2),
    ]
    assert [m.dilation for m in (features.layer4[0].conv2, features.layer4[1].conv2)] == [
        (2, 2),
        (4, 4),
    ]
    with pytest.raises(ValueError, match="dilations must give one positive int per stage"):
        nlgc.create_model("resnet50", dilations=(1, 2))


@pytest.mark.parametrize("name", HEADS)
def test_segmentors_are_mmsegmentations_with_its_checkpoint_layout(name):
    torch.manual_seed(1)
    model = randomize_network(nlgc.create_model(name, num_classes=3, **SMALL).double(), std=0.1)
    if name == "nonlocal_resnet50_d8":  # mmcv's conv_out has no bias (a BN follows)
        model.decode_head.nl_block.out.bias.data.zero_()
    blocks = [m for m in model.modules() if isinstance(m, ContextBlock)]
    assert len(blocks) == (HEADS[name] is not None)
    checkpoint = as_mmsegmentation(model.state_dict())
    fresh = nlgc.create_model(name, num_classes=3, **SMALL).double()
    report = nlgc.load_weights(fresh, checkpoint)  # detected as mmsegmentation, renamed
    assert not report.ignored and not report.kept
    x = torch.rand(2, 3, 64, 80, dtype=torch.float64)
    features = mmdet_resnet_features(checkpoint, x, SMALL["layers"], v1c=True, **D8)
    logits = mmseg_head(checkpoint, "decode_head", features, 3, HEADS[name])
    expected = F.interpolate(logits, x.shape[-2:], mode="bilinear", align_corners=False)
    with torch.no_grad():
        got = fresh.eval()(x)
    assert got.shape == (2, 3, 64, 80)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    auxiliary = mmseg_head(checkpoint, "auxiliary_head", features, 2, concat_input=False)
    fresh.train()
    for m in fresh.modules():  # the training pass without dropout and BN updates
        if isinstance(m, (torch.nn.Dropout2d, torch.nn.BatchNorm2d)):
            m.eval()
    main, aux = fresh(x)
    torch.testing.assert_close(main, expected, rtol=1e-10, atol=1e-10)
    expected_aux = F.interpolate(auxiliary, x.shape[-2:], mode="bilinear", align_corners=False)
    torch.testing.assert_close(aux, expected_aux, rtol=1e-10, atol=1e-10)


def test_segmentor_names_options_and_errors():
    names = nlgc.list_models(task="segmentation")
    heads = ("fcn", "nonlocal", "gcnet", "dnlnet")
    assert names == sorted(
        [f"{head}_resnet{depth}_d8" for head in heads for depth in (50, 101)]
        + [f"{head}_demo_seg" for head in heads]  # the segmentation demo's
    )
    model = nlgc.create_model("gcnet_resnet50_d8", num_classes=150, **SMALL)
    assert model.decode_head.conv_seg.out_channels == 150 and model.auxiliary_head.in_index == 2
    assert model.backbone.conv1[0].out_channels == 4  # the deep stem: base / 2
    nl = nlgc.create_model("nonlocal_resnet50_d8", reduction=4, **SMALL).decode_head.nl_block
    assert nl.inter_channels == 4 and nl.scale and nl.norm_type == "bn"
    dot = nlgc.create_model(
        "nonlocal_resnet50_d8", mode="dot_product", **SMALL
    ).decode_head.nl_block
    assert dot.pairwise == "dot_product" and not dot.scale  # mmcv scales the embedded Gaussian only
    assert nlgc.create_model("fcn_resnet50_d8", auxiliary=False, **SMALL).auxiliary_head is None
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['temperature'\]"):
        nlgc.create_model("nonlocal_resnet50_d8", temperature=0.1)
    with pytest.raises(ValueError, match="fusion_types must be one of"):
        nlgc.create_model("gcnet_resnet50_d8", fusion_types=("channel_max",), **SMALL)


def test_miou_is_dataset_level_intersection_over_union():
    from nlgc.evaluation.segmentation import SegmentationScores

    generator = torch.Generator().manual_seed(0)
    labels = [torch.randint(0, 4, (20, 30), generator=generator) for _ in range(3)]
    predictions = [
        torch.where(torch.rand(y.shape, generator=generator) < 0.7, y, (y + 1) % 4) for y in labels
    ]
    labels[0][:5] = 255  # ignored pixels
    predictions[2][predictions[2] == 3] = 0  # class 3 never predicted in one image
    scores = SegmentationScores(4, ["road", "car", "sky", "tree"])
    for p, y in zip(predictions, labels, strict=True):
        scores.update(p, y)
    got = scores.compute()
    # the confusion matrix of every labelled pixel of the dataset, counted directly
    matrix = torch.zeros(4, 4, dtype=torch.float64)
    for p, y in zip(predictions, labels, strict=True):
        for truth, guess in zip(y.flatten().tolist(), p.flatten().tolist(), strict=True):
            if truth != 255:
                matrix[truth, guess] += 1
    diagonal = matrix.diagonal()
    iou = diagonal / (matrix.sum(0) + matrix.sum(1) - diagonal)
    assert got["aAcc"] == pytest.approx(float(diagonal.sum() / matrix.sum()))
    assert got["mIoU"] == pytest.approx(float(iou.mean()))
    assert got["mAcc"] == pytest.approx(float((diagonal / matrix.sum(1)).mean()))
    assert list(got["IoU"]) == ["road", "car", "sky", "tree"]
    assert got["IoU"]["car"] == pytest.approx(float(iou[1]))
    mean_of_images = []  # not what the papers report: a mean of per-image mIoU differs
    for p, y in zip(predictions, labels, strict=True):
        single = SegmentationScores(4)
        single.update(p, y)
        mean_of_images.append(single.compute()["mIoU"])
    assert abs(sum(mean_of_images) / 3 - got["mIoU"]) > 1e-6
    absent = SegmentationScores(3)
    absent.update(torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 4, dtype=torch.long))
    assert absent.compute()["mIoU"] == 1.0  # classes that never occur are left out
    with pytest.raises(ValueError, match=r"label values \[7\] are neither classes 0–2"):
        absent.update(torch.zeros(2, 2), torch.full((2, 2), 7))
    with pytest.raises(ValueError, match="same shape"):
        absent.update(torch.zeros(2, 2), torch.zeros(2, 3))


def test_an_mmsegmentation_file_loads_by_itself_and_predict_writes_palette_label_maps(tmp_path):
    from dataclasses import replace

    from helpers import photograph
    from PIL import Image

    from nlgc.inference import segment
    from nlgc.models.preprocessing import SEGMENTATION

    torch.manual_seed(0)
    model = randomize_network(nlgc.create_model("dnlnet_resnet50_d8", num_classes=7)).eval()
    path = tmp_path / "dnl_r50-d8.pth"
    torch.save({"meta": {}, "state_dict": as_mmsegmentation(model.state_dict())}, path)
    loaded, report = nlgc.load_model(str(path))  # no name: the source and the network fitted
    assert (report.model_name, report.source) == ("dnlnet_resnet50_d8", "mmsegmentation")
    assert not report.kept and loaded.decode_head.conv_seg.out_channels == 7
    assert loaded.preprocessing == SEGMENTATION  # mmsegmentation's mean / std on 0–255
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model(x), rtol=0, atol=0)
    Image.fromarray(photograph()[100:148, 200:264]).save(tmp_path / "photo.png")
    loaded.preprocessing = replace(SEGMENTATION, input_size=64, resize=48)  # its own size
    (result,) = segment(loaded, [tmp_path / "photo.png"], tmp_path / "out")
    written = Image.open(result.written)
    assert written.mode == "P" and written.size == (64, 48)
    pixels = torch.from_numpy(photograph()[100:148, 200:264].copy()).permute(2, 0, 1)
    with torch.no_grad():
        expected = model(SEGMENTATION.normalize(pixels[None].float() / 255)).argmax(1)[0]
    assert torch.equal(torch.from_numpy(np.asarray(written).astype(np.int64)), expected)
    shares = dict(result.largest)
    assert 0 < sum(shares.values()) <= 1 and max(shares.values()) == pytest.approx(
        float(torch.bincount(expected.flatten()).max()) / expected.numel()
    )


def test_nlgc_analyze_on_a_segmentor_shows_the_heads_attention_table_1_and_dnl_terms(tmp_path):
    import json

    from helpers import photograph
    from PIL import Image

    from nlgc.cli import main

    Image.fromarray(photograph()).save(tmp_path / "photo.png")
    for name in ("nonlocal_resnet50_d8", "dnlnet_resnet50_d8"):
        out = tmp_path / name
        inputs = ["--inputs", str(tmp_path / "photo.png"), "--out", str(out), "--size", "64"]
        queries = ["--queries", "points:0.3,0.5;0.7,0.2", "--no-complexity"]
        code = main(["analyze", "--model", name, *inputs, *queries])
        assert code == 0
        metrics = json.loads((out / "metrics.json").read_text())
        (row,) = metrics["query_independence"]
        block = "decode_head." + ("nl_block" if name.startswith("nonlocal") else "dnl_block")
        assert (row["block"], row["stage"]) == (block, "head")
        assert 0 <= row["attention"] <= 1 and 0 < row["input"] <= 1  # GCNet's Table 1
        assert row["positions"] == 8 * 8  # the C5 map of a 64×64 input at stride 8
        assert set(metrics["decomposition"]) == {block}  # the pairwise / unary terms
        figures = {p.name for p in out.glob("*.png")}
        assert {f"attention_00_{block.replace('.', '_')}.png"} <= figures
        assert f"terms_00_{block.replace('.', '_')}.png" in figures
