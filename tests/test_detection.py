"""Detectors: torchvision's own Mask R-CNN / Faster R-CNN on nlgc backbones (names, keys,
outputs, options, frozen norms and stages), and mmdetection's plugin lists."""

import functools
import json
import warnings
from pathlib import Path

import pytest
import torch
from helpers import randomize_network
from references import mmcv_context_block, mmcv_non_local_2d, mmdet_resnet_features
from torch import nn

import nlgc
from nlgc.blocks import ContextBlock
from nlgc.cli import main

detection = pytest.importorskip("torchvision.models.detection")
from torchvision.models import resnet50  # noqa: E402
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor  # noqa: E402
from torchvision.ops import FrozenBatchNorm2d  # noqa: E402

SMALL = {"min_size": 128, "max_size": 192, "box_score_thresh": 0.0}  # every box comes out
IMAGE = [torch.rand(3, 120, 160, generator=torch.Generator().manual_seed(1))]


@functools.cache
def torchvision_mask_rcnn() -> dict:
    """torchvision's maskrcnn_resnet50_fpn (random weights, its BatchNorm build) as a state dict."""
    torch.manual_seed(3)
    model = detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **SMALL)
    return model.state_dict()


def outputs(model: nn.Module) -> dict:
    with torch.no_grad():
        return model.eval()(IMAGE)[0]


def assert_same_detections(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


def test_detector_names_cover_every_four_stage_backbone_and_are_listed(capsys):
    names = nlgc.list_models(task="detection")
    for wanted in (
        "mask_rcnn_resnet50_fpn",
        "mask_rcnn_gc_resnet50_fpn",
        "mask_rcnn_gc_r4_resnet50_fpn",
        "mask_rcnn_nl_resnet50_fpn",
        "mask_rcnn_dnl_resnet50_fpn",
        "mask_rcnn_snl_c3c5_resnet50_fpn",
        "faster_rcnn_resnet101_fpn",
        "mask_rcnn_gc_r4_resnext101_32x4d_fpn",
    ):
        assert wanted in names
    backbones = [
        n
        for n in nlgc.list_models(task="classification")
        if len(nlgc.models.model_spec(n).architecture.defaults["layers"]) == 4
    ]
    demo = [n for n in names if n.endswith("_demo_fpn")]  # the detection demo's five rows
    assert demo == nlgc.list_models("mask_rcnn_*demo_fpn") and len(demo) == 5
    assert len(names) == 2 * len(backbones) + len(demo)
    assert {f"mask_rcnn_{b}_fpn" for b in backbones} <= set(names)
    assert not set(names) & set(nlgc.list_models(task="classification"))
    assert "snl_c3c5_resnet50" in nlgc.list_models(task="classification")
    main(["models", "--task", "detection", "mask_rcnn_gc*"])
    printed = capsys.readouterr().out
    assert "mask_rcnn_gc_r4_resnet50_fpn" in printed and "faster_rcnn" not in printed


def test_resnet50_detector_is_torchvisions_keys_and_outputs():
    model = nlgc.create_model("mask_rcnn_resnet50_fpn", **SMALL)
    assert isinstance(model, detection.MaskRCNN)
    assert model.backbone.out_channels == 256 and hasattr(model.backbone, "fpn")
    features = model.backbone.body(IMAGE[0][None])
    assert list(features) == ["0", "1", "2", "3"]
    assert [f.shape[1] for f in features.values()] == [256, 512, 1024, 2048]
    state = torchvision_mask_rcnn()
    assert list(model.state_dict()) == list(state)  # torchvision's keys, in its order
    model.load_state_dict(state, strict=True)
    reference = detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **SMALL)
    reference.load_state_dict(state)
    assert_same_detections(outputs(model), outputs(reference))


@pytest.mark.parametrize(
    "name, block_key",
    [
        ("mask_rcnn_gc_r4_resnet50_fpn", ".context_block."),
        ("mask_rcnn_nl_resnet50_fpn", ".non_local_block."),
        ("mask_rcnn_snl_c3c5_resnet50_fpn", ".simplified_non_local_after_conv3."),
        ("mask_rcnn_dnl_resnet50_fpn", ".dnl_block."),
    ],
)
def test_context_detectors_load_torchvision_with_only_their_blocks_missing(name, block_key):
    model = nlgc.create_model(name, **SMALL)
    result = model.load_state_dict(torchvision_mask_rcnn(), strict=False)
    assert result.missing_keys and not result.unexpected_keys
    blocks = {k for k, m in model.named_modules() if isinstance(m, ContextBlock)}
    assert {k.rsplit(".", 1)[0] for k in result.missing_keys} <= {
        f"{b}.{sub}".rstrip(".")
        for b in blocks
        for sub, _ in model.get_submodule(b).named_modules()
    }
    assert all(block_key in k for k in result.missing_keys), result.missing_keys[:3]
    plain = nlgc.create_model("mask_rcnn_resnet50_fpn", **SMALL)
    plain.load_state_dict(torchvision_mask_rcnn())
    assert_same_detections(outputs(model), outputs(plain))  # the blocks start as identities


def test_torchvision_options_pass_through_with_torchvision_defaults():
    ours = nlgc.create_model("faster_rcnn_resnet50_fpn", num_classes=3)
    theirs = detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3)
    for get in (
        lambda m: m.transform.min_size,
        lambda m: m.transform.max_size,
        lambda m: m.roi_heads.score_thresh,
        lambda m: m.roi_heads.detections_per_img,
        lambda m: m.rpn._pre_nms_top_n,
        lambda m: m.roi_heads.box_predictor.cls_score.out_features,
    ):
        assert get(ours) == get(theirs)
    assert (
        nlgc.create_model("mask_rcnn_resnet50_fpn").roi_heads.box_predictor.cls_score.out_features
        == 91
    )
    tuned = nlgc.create_model(
        "mask_rcnn_tiny_resnet_fpn", min_size=320, box_detections_per_img=7, box_score_thresh=0.3
    )
    assert tuned.transform.min_size == (320,) and tuned.roi_heads.detections_per_img == 7
    assert tuned.roi_heads.score_thresh == 0.3
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['min_szie'\].*min_size"):
        nlgc.create_model("mask_rcnn_tiny_resnet_fpn", min_szie=320)
    with pytest.raises(ValueError, match="norm must be one of"):
        nlgc.create_model("mask_rcnn_tiny_resnet_fpn", norm="gn")


def test_pretrained_backbone_is_frozen_as_torchvision_freezes_it(tmp_path):
    torch.manual_seed(5)
    classifier = randomize_network(resnet50())
    path = tmp_path / "resnet50.pth"
    torch.save(classifier.state_dict(), path)
    reference_backbone = resnet50(norm_layer=FrozenBatchNorm2d)
    reference_backbone.load_state_dict(classifier.state_dict())
    reference = detection.MaskRCNN(_resnet_fpn_extractor(reference_backbone, 3), 91, **SMALL)
    ours = nlgc.create_model("mask_rcnn_resnet50_fpn", weights_backbone=str(path), **SMALL)
    assert {k: v.requires_grad for k, v in ours.named_parameters()} == {
        k: v.requires_grad for k, v in reference.named_parameters()
    }
    frozen = [m for m in ours.backbone.body.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(frozen) == 53 and not any(
        isinstance(m, nn.BatchNorm2d) for m in ours.backbone.body.modules()
    )
    body = {k: v for k, v in reference.state_dict().items() if k.startswith("backbone.body.")}
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in body.items())
    ours.load_state_dict(reference.state_dict())  # the same FPN and heads
    assert_same_detections(outputs(ours), outputs(reference))


def test_context_blocks_train_inside_frozen_stages_and_keep_their_norms(tmp_path):
    torch.manual_seed(6)
    path = tmp_path / "tiny.pth"
    torch.save(nlgc.create_model("tiny_resnet").state_dict(), path)
    model = nlgc.create_model(
        "mask_rcnn_gc_tiny_resnet_fpn", weights_backbone=str(path), trainable_backbone_layers=0
    )
    body = model.backbone.body
    blocks = [m for m in body.modules() if isinstance(m, ContextBlock)]
    assert len(blocks) == 3
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    for name, parameter in body.named_parameters():
        assert parameter.requires_grad == (id(parameter) in in_blocks), name
    assert all(isinstance(b.channel_add_conv[1], nn.LayerNorm) for b in blocks)
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    assert all(p.requires_grad for p in model.backbone.fpn.parameters())
    nl = nlgc.create_model("mask_rcnn_nl_resnet50_fpn", weights_backbone=None, norm="frozen")
    block = next(m for m in nl.backbone.body.modules() if isinstance(m, ContextBlock))
    assert isinstance(block.norm, nn.BatchNorm2d)  # the NL block's own BN is not frozen
    synced = nlgc.create_model("mask_rcnn_tiny_resnet_fpn", norm="syncbn")
    assert any(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        free = nlgc.create_model("mask_rcnn_tiny_resnet_fpn", trainable_backbone_layers=2)
    assert any("trainable_backbone_layers has no effect" in str(w.message) for w in caught)
    assert all(p.requires_grad for p in free.parameters())  # all 5 train, as torchvision


GC_R4_PLUGIN = dict(
    cfg=dict(type="ContextBlock", ratio=1 / 4),
    stages=(False, True, True, True),
    position="after_conv3",
)
NL_PLUGIN = dict(
    cfg=dict(type="NonLocal2d", reduction=4, use_scale=True, mode="embedded_gaussian"),
    stages=(False, False, True, True),
    position="after_conv2",
)


def as_mmdetection(state: dict) -> dict:
    """nlgc's tensors of a plugin network under mmdetection's names: a detector checkpoint's
    ``backbone.`` (mmcv's NonLocal2d: ConvModules ``g.conv``, ``theta.conv``, ``phi.conv``,
    ``conv_out.conv``)."""
    renamed = {}
    for key, value in state.items():
        if ".nonlocal_block." in key:
            block, rest = key.split(".nonlocal_block.")
            part, leaf = rest.split(".")
            key = f"{block}.nonlocal_block.{ {'out': 'conv_out'}.get(part, part) }.conv.{leaf}"
        renamed[f"backbone.{key}"] = value
    renamed["neck.lateral_convs.0.conv.weight"] = torch.zeros(4, 4, 1, 1)
    return renamed


def test_mmdetection_plugins_build_its_placement_and_function():
    depths = (2, 2, 2, 2)
    build = functools.partial(
        nlgc.create_model,
        "resnet50",
        layers=depths,
        base_channels=8,
        features_only=True,
        plugins=[GC_R4_PLUGIN, NL_PLUGIN],
    )
    model = build()
    names = {k for k, m in model.named_modules() if isinstance(m, ContextBlock)}
    assert names == {
        "layer2.0.context_block",
        "layer2.1.context_block",
        "layer3.0.nonlocal_block",
        "layer3.0.context_block",
        "layer3.1.nonlocal_block",
        "layer3.1.context_block",
        "layer4.0.nonlocal_block",
        "layer4.0.context_block",
        "layer4.1.nonlocal_block",
        "layer4.1.context_block",
    }
    assert model.layer3[0].nonlocal_block.inter_channels == 8  # c4 width 32 // reduction 4
    checkpoint = as_mmdetection(randomize_network(model.double(), std=0.1).state_dict())
    fresh = build().double()
    report = nlgc.load_weights(fresh, checkpoint)  # detected as mmdetection, NL keys renamed
    assert report.ignored == ["neck.lateral_convs.0.conv.weight"]
    plugins = [
        ("nonlocal_block", "after_conv2", NL_PLUGIN["stages"], mmcv_non_local_2d),
        ("context_block", "after_conv3", GC_R4_PLUGIN["stages"], mmcv_context_block),
    ]
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    expected = mmdet_resnet_features(checkpoint, x, depths, plugins)
    with torch.no_grad():
        got = fresh.eval()(x)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_plugins_equal_the_named_configurations_and_refuse_what_nlgc_lacks():
    plugged = nlgc.create_model("resnet50", plugins=[GC_R4_PLUGIN])
    named = nlgc.create_model("gc_r4_resnet50")
    assert plugged.state_dict().keys() == named.state_dict().keys()
    detector = nlgc.create_model("mask_rcnn_resnet50_fpn", plugins=[GC_R4_PLUGIN], **SMALL)
    assert (
        detector.state_dict().keys()
        == nlgc.create_model("mask_rcnn_gc_r4_resnet50_fpn").state_dict().keys()
    )
    with pytest.raises(
        ValueError, match=r"'GeneralizedAttention'; it has \['ContextBlock', 'NonLocal2d'\]"
    ):
        nlgc.create_model(
            "resnet50",
            plugins=[dict(cfg=dict(type="GeneralizedAttention"), position="after_conv2")],
        )
    with pytest.raises(ValueError, match="position must be one of"):
        nlgc.create_model(
            "resnet50",
            plugins=[dict(cfg=dict(type="ContextBlock", ratio=0.25), position="after_add")],
        )
    with pytest.raises(ValueError, match="needs cfg\\['ratio'\\]"):
        nlgc.create_model(
            "resnet50", plugins=[dict(cfg=dict(type="ContextBlock"), position="after_conv3")]
        )
    with pytest.raises(TypeError, match="plugins must be a list of dicts"):
        nlgc.create_model("resnet50", plugins=GC_R4_PLUGIN)


def test_torchvisions_coco_weights_by_name_build_as_torchvision_builds_them(tmp_path, monkeypatch):
    """``mask_rcnn_resnet50_fpn.tv_coco``: torchvision's maskrcnn_resnet50_fpn(weights=COCO_V1)
    (FrozenBatchNorm2d with its eps overwritten to 0, c3–c5 trainable), here with random
    weights placed in the cache under the published file name."""
    from torchvision.models.detection._utils import overwrite_eps

    monkeypatch.setenv("NLGC_HOME", str(tmp_path))
    torch.manual_seed(7)
    reference = detection.MaskRCNN(
        _resnet_fpn_extractor(randomize_network(resnet50(norm_layer=FrozenBatchNorm2d)), 3),
        91,
        **SMALL,
    )
    overwrite_eps(reference, 0.0)
    entry = nlgc.models.weights_entry("mask_rcnn_resnet50_fpn.tv_coco")
    assert entry.sha256_prefix == "bf2d0c1e" and entry.num_classes == 91
    (tmp_path / "checkpoints").mkdir()
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / entry.filename)
    model = nlgc.create_model("mask_rcnn_resnet50_fpn", pretrained="tv_coco", **SMALL)
    assert model.class_names[:3] == ["__background__", "person", "bicycle"]
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and all(m.eps == 0.0 for m in frozen)
    assert {k: v.requires_grad for k, v in model.named_parameters()} == {
        k: v.requires_grad for k, v in reference.named_parameters()
    }
    assert_same_detections(outputs(model), outputs(reference))
    tuned, report = nlgc.load_model("mask_rcnn_resnet50_fpn.tv_coco", num_classes=3)
    assert len(report.replaced) == 6  # the box and mask predictors, re-initialised for 3 classes
    assert tuned.roi_heads.box_predictor.cls_score.out_features == 3


def test_analyze_looks_at_the_blocks_inside_a_detectors_backbone(tmp_path):
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as file:
        photo = tmp_path / "hopper.jpg"
        photo.write_bytes(file.read())
    out = tmp_path / "report"
    arguments = ["--inputs", str(photo), "--out", str(out), "--size", "96", "--queries", "grid:2"]
    code = main(["analyze", "--model", "mask_rcnn_nl_tiny_resnet_fpn", *arguments])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    stats = metrics["query_independence"]
    assert [s["block"] for s in stats] == ["layer2.0.non_local_block"]
    assert 0 < stats[0]["attention"] <= 2  # a fresh NL block's maps differ across queries
    assert stats[0]["output"] is None  # its W_z starts at zero: no output to compare
    assert (out / "attention_00_layer2_0_non_local_block.png").stat().st_size > 1000


def published_rows() -> list[dict]:
    """docs/detection.md's table of GCNet's published rows, as dictionaries."""
    text = (Path(__file__).parent.parent / "docs" / "detection.md").read_text()
    lines = text.split("## GCNet's published rows as configs")[1].split("\n## ")[0].splitlines()
    table = [line for line in lines if line.startswith("| `")]
    keys = ("config", "model", "norm", "box", "mask", "where")
    return [
        dict(zip(keys, (c.strip(" `") for c in r.strip("|").split("|")), strict=True))
        for r in table
    ]


def test_gcnet_published_rows_are_the_configs():
    from nlgc.train.run import load_config

    rows = published_rows()
    folder = Path(__file__).parent.parent / "configs" / "detection"
    assert sorted(r["config"] for r in rows) == sorted(p.name for p in folder.glob("*.yaml"))
    for row in rows:
        config = load_config(folder / row["config"])
        assert config.model.name == row["model"], row["config"]
        overrides = config.model.overrides
        assert set(overrides) <= set(nlgc.models.option_names(row["model"]))
        fixbn = row["norm"] == "fixBN"
        assert (overrides["norm"], config.model.freeze_bn_stats) == (
            ("bn", True) if fixbn else ("syncbn", False)
        )
        assert (
            overrides["weights_backbone"] == "resnet50.tv_in1k"
            and overrides["trainable_backbone_layers"] == 3
        )
        optim, data = config.optim, config.data
        assert (optim.lr, optim.momentum, optim.weight_decay, optim.nesterov) == (
            0.02,
            0.9,
            1e-4,
            False,
        )
        assert (optim.milestones, optim.warmup_iters, optim.warmup_factor) == (
            (8.0, 11.0),
            500,
            0.001,
        )
        assert (data.kind, data.min_size, data.max_size, data.batch_size) == ("coco", 800, 1333, 2)
        assert (
            config.trainer["max_epochs"] == 12 and config.trainer["devices"] * data.batch_size == 16
        )
        published = [float(v) for v in (row["box"], row["mask"]) if v != "-"]
        assert all(30 < v < 45 for v in published)
    by_model = {r["config"]: (r["box"], r["mask"]) for r in rows}
    assert by_model["mask_rcnn_r50_fpn_gc_r4_1x_coco.yaml"] == ("39.9", "36.0")
    mmdet_r4 = nlgc.models.weights_entry("gc_r4_resnet50.mmdet_mask_rcnn_r4_coco")
    assert mmdet_r4.accuracy == "box AP 39.9, mask AP 36.0"  # the zoo's record says the same
