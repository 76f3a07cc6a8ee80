"""Released checkpoints nlgc can run, by name: one record per file, with everything about it.

Every entry was read from its source's README, metafile or pretrained config (named in
``protocol`` or its source module). A name is ``<nlgc model>.<tag>`` (timm's convention):
``nlgc.create_model("nl_i3d_resnet50", pretrained="mmaction2_eg_32x2_k400")`` or
``nlgc.load_model("nl_i3d_resnet50.mmaction2_eg_32x2_k400")``. Adding released weights is one
row of :data:`ZOO`.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from nlgc.models.download import NO_HASH, OPENMMLAB, TORCH_HUB, HashRule, fetch, fetch_url
from nlgc.models.label_sets import SIZES, class_names
from nlgc.models.preprocessing import SEGMENTATION, Preprocessing
from nlgc.models.sources import (
    WeightsSource,
    caffe2,
    mmaction2,
    mmdetection,
    mmsegmentation,
    timm,
    torchvision,
)


@dataclass(frozen=True)
class ZooEntry:
    """One released checkpoint: where it is, how to read it, what it expects and reports.

    Args:
        model, tag: the nlgc network it builds and the weights' tag; the name is both.
        url: the file's address exactly as its source publishes it.
        source: the weights source (:mod:`nlgc.models.sources`) whose layout the file is in;
            loading converts with it (no detection).
        hash: how its file name carries its SHA-256 (:class:`~nlgc.models.download.HashRule`).
        accuracy, protocol: what the source reports and how it measured it.
        preprocessing: the input the weights expect: its transforms (resize, crop, normalise,
            clip sampling) are what ``predict``, ``analyze`` and training from these weights use.
        options: ``create_model`` overrides that build the source's network (its stem, NL
            pooling and scale, …): with them the network is built before the file is read.
        classes: the label set (:mod:`nlgc.models.label_sets`): ``"imagenet1k"``,
            ``"kinetics400"``, ``"coco91"`` (torchvision's detectors: COCO's category ids,
            ``N/A`` in the gaps), ``"cityscapes"``, ``"ade20k"`` (segmentors, with their
            palettes) or ``""`` (a detector's backbone).
        hf_hub: the Hugging Face repository that also holds the weights (timm), if any.
        license: as the source states it ("" where it states none).
    """

    model: str
    tag: str
    url: str
    source: WeightsSource
    hash: HashRule
    accuracy: str
    protocol: str
    preprocessing: Preprocessing
    options: dict = field(default_factory=dict)
    classes: str = ""
    hf_hub: str = ""
    license: str = ""

    @property
    def name(self) -> str:
        return f"{self.model}.{self.tag}"

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str | None:
        """The hex prefix of the file's SHA-256 its name carries, None without one."""
        return self.hash.prefix(self.filename)

    @property
    def num_classes(self) -> int | None:
        return SIZES.get(self.classes)

    def class_names(self) -> list[str] | None:
        """The names of the classifier's outputs, in order, where the source publishes them."""
        return class_names(self.classes) if self.classes else None


_TV = "https://download.pytorch.org/models/"
_TIMM = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-attn-weights/"
_MMDET = "https://download.openmmlab.com/mmdetection/v2.0/gcnet/"
_GCNET = "https://open-mmlab.s3.ap-northeast-2.amazonaws.com/mmdetection/models/gcnet/"
_MMACTION = "https://download.openmmlab.com/mmaction/v1.0/recognition/"
_CAFFE2 = "https://dl.fbaipublicfiles.com/video-nonlocal/"
_SLOWFAST = "https://dl.fbaipublicfiles.com/pyslowfast/model_zoo/kinetics400/"
_IN1K = "ImageNet-1k val"
_COCO = "COCO val2017, Mask R-CNN R50-FPN 1x (GCNet README / mmdetection configs/gcnet)"
_K400_TEST = "Kinetics-400 val, 10 clips × 3 crops"


def _torchvision(tag: str, file: str, accuracy: str, weights: str, resize: int) -> ZooEntry:
    return ZooEntry(
        "resnet50",
        tag,
        _TV + file,
        torchvision.SOURCE,
        TORCH_HUB,
        accuracy,
        f"{_IN1K}, resize {resize}, centre crop 224 (torchvision ResNet50_Weights.{weights})",
        replace(torchvision.SOURCE.preprocessing, resize=resize),
        classes="imagenet1k",
        license="BSD-3-Clause",
    )


def _torchvision_detector(model: str, file: str, accuracy: str, weights: str) -> ZooEntry:
    """torchvision's COCO detectors: built as ``*_resnet50_fpn(weights=…COCO_V1)`` builds them
    (FrozenBatchNorm2d with eps 0, its ``overwrite_eps``; c3–c5 trainable)."""
    return ZooEntry(
        model,
        "tv_coco",
        _TV + file,
        torchvision.SOURCE,
        TORCH_HUB,
        accuracy,
        f"COCO val2017, 800–1333 px, pycocotools (torchvision {weights}.COCO_V1)",
        torchvision.SOURCE.preprocessing,  # mean/std; the detector resizes and normalises
        options={"trained": True, "frozen_eps": 0.0},
        classes="coco91",
        license="BSD-3-Clause",
    )


def _timm(model: str, timm_name: str, file: str, top1: str, top5: str) -> ZooEntry:
    tag = timm_name.split(".", 1)[1]
    return ZooEntry(
        model,
        tag,
        _TIMM + file,
        timm.SOURCE,
        TORCH_HUB,
        f"top-1 {top1}, top-5 {top5}",
        f"{_IN1K} at 256 px, crop_pct 0.9, bicubic (timm results-imagenet.csv)",
        timm.SOURCE.preprocessing,
        classes="imagenet1k",
        hf_hub=f"timm/{timm_name}",
        license="apache-2.0",
    )


def _detector(model: str, tag: str, url: str, accuracy: str) -> ZooEntry:
    """A GCNet / mmdetection Mask R-CNN: nlgc builds its backbone (``features_only``)."""
    return ZooEntry(
        model,
        tag,
        url,
        mmdetection.SOURCE,
        OPENMMLAB,
        accuracy,
        _COCO,
        mmdetection.SOURCE.preprocessing,
        options={"features_only": True},
        license="Apache-2.0",
    )


def _mmaction2(
    model, tag, path, top1, top5, clip=(32, 2), test_size=256, two_d=False, **options
) -> ZooEntry:
    """``test_size``: the test's short side and crop (the C2D config tests 224 three crops of a
    224 short side); ``two_d``: mmaction2's C2D class (2D convolutions, its own stem)."""
    length, interval = clip
    test = replace(
        mmaction2.SOURCE.preprocessing,
        clip_len=length,
        frame_interval=interval,
        resize=test_size,
        input_size=test_size,
    )
    stem = {"stem": "mmaction2_c2d", "stem_temporal_stride": 1} if two_d else {"stem": "mmaction2"}
    return ZooEntry(
        model,
        tag,
        _MMACTION + path,
        mmaction2.SOURCE,
        OPENMMLAB,
        f"top-1 {top1}, top-5 {top5}",
        f"{_K400_TEST} (mmaction2 metafile.yml)",
        test,
        options={**stem, **options},
        classes="kinetics400",
        license="Apache-2.0",
    )


def _caffe2(
    model, tag, file, top1, top5, clip, stride, non_local, url=_CAFFE2, note=""
) -> ZooEntry:
    """``stride``: the stem's temporal stride,
    2 in the 32×2, 32×4 and 128×1 models (``resnet_video_org.py``), 1 in the 8×8 ones
    (``resnet_video.py``); ``non_local``: its NL blocks pool before φ/g and scale by 1/√C'."""
    length, interval = clip
    block_options = {"pool_position": "before", "scale": True} if non_local else {}
    return ZooEntry(
        model,
        tag,
        url + file,
        caffe2.SOURCE,
        NO_HASH,
        f"top-1 {top1}, top-5 {top5}",
        f"{_K400_TEST} of 256 px, fully convolutional ({note or 'video-nonlocal-net README'})",
        replace(caffe2.SOURCE.preprocessing, clip_len=length, frame_interval=interval),
        options={"stem": "caffe2", "stem_temporal_stride": stride, **block_options},
        classes="kinetics400",
        license="CC-BY-NC-4.0" if url == _CAFFE2 else "Apache-2.0",
    )


_MMSEG = "https://download.openmmlab.com/mmsegmentation/v0.5/"
# mmsegmentation's test Resize: Cityscapes (2048, 1024), ADE20K (2048, 512), keep ratio, whole
_SEG_TEST = {
    "cityscapes": SEGMENTATION,
    "ade20k": replace(SEGMENTATION, input_size=2048, resize=512),
}
_SEG_PROTOCOL = {
    "cityscapes": "Cityscapes val, whole 2048×1024 image, single scale",
    "ade20k": "ADE20K val, whole image resized into 2048×512, single scale",
}


def _mmseg(model: str, config: str, stamp: str, dataset: str, miou: str, ms: str = "") -> ZooEntry:
    """An mmsegmentation segmentor: ``config`` its file name (``nonlocal_r50-d8_512x1024_80k_
    cityscapes``), ``stamp`` the date, time and hash of its file; ``miou`` single-scale and
    ``ms`` multi-scale + flip mIoU as its metafile reports them."""
    folder = {"nonlocal": "nonlocal_net", "gcnet": "gcnet", "dnl": "dnlnet"}[config.split("_")[0]]
    crop, iterations = config.split("_")[-3:-1]  # 512x1024, 80k
    accuracy = f"mIoU {miou}" + (f", ms+flip {ms}" if ms else "")
    return ZooEntry(
        model,
        f"mmseg_{dataset}_{crop}_{iterations}",
        f"{_MMSEG}{folder}/{config}/{config}_{stamp}.pth",
        mmsegmentation.SOURCE,
        OPENMMLAB,
        accuracy,
        f"{_SEG_PROTOCOL[dataset]} (mmsegmentation configs/{folder}/metafile.yaml)",
        _SEG_TEST[dataset],
        classes=dataset,
        license="Apache-2.0",
    )


ZOO: tuple[ZooEntry, ...] = (
    _torchvision(
        "tv_in1k", "resnet50-0676ba61.pth", "top-1 76.130, top-5 92.862", "IMAGENET1K_V1", 256
    ),
    _torchvision(
        "tv2_in1k", "resnet50-11ad3fa6.pth", "top-1 80.858, top-5 95.434", "IMAGENET1K_V2", 232
    ),
    _torchvision_detector(
        "mask_rcnn_resnet50_fpn",
        "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
        "box AP 37.9, mask AP 34.6",
        "MaskRCNN_ResNet50_FPN_Weights",
    ),
    _torchvision_detector(
        "faster_rcnn_resnet50_fpn",
        "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
        "box AP 37.0",
        "FasterRCNN_ResNet50_FPN_Weights",
    ),
    _timm(
        "gc_resnet50t", "gcresnet50t.ra2_in1k", "gcresnet50t_256-96374d1c.pth", "80.944", "95.458"
    ),
    _timm(
        "gc_resnext26ts",
        "gcresnext26ts.ch_in1k",
        "gcresnext26ts_256-e414378b.pth",
        "77.810",
        "93.816",
    ),
    _timm(
        "gc_resnext50ts",
        "gcresnext50ts.ch_in1k",
        "gcresnext50ts_256-3e0f515e.pth",
        "80.608",
        "95.180",
    ),
    _timm(
        "gc_resnet33ts",
        "gcresnet33ts.ra2_in1k",
        "gcresnet33ts_256-0e0cd345.pth",
        "80.072",
        "94.986",
    ),
    _detector(
        "gc_resnet50",
        "gcnet_mask_rcnn_r16_coco",
        _GCNET + "mask_rcnn_r16_gcb_c3-c5_r50_fpn_1x_20190602-c550c707.pth",
        "box AP 38.5, mask AP 35.1 (fixBN backbone)",
    ),
    _detector(
        "gc_r4_resnet50",
        "gcnet_mask_rcnn_r4_coco",
        _GCNET + "mask_rcnn_r4_gcb_c3-c5_r50_fpn_1x_20190602-18ae2dfd.pth",
        "box AP 38.9, mask AP 35.5 (fixBN backbone)",
    ),
    _detector(
        "gc_resnet50",
        "mmdet_mask_rcnn_r16_coco",
        _MMDET + "mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco/"
        "mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco_20200515_211915-187da160.pth",
        "box AP 39.7, mask AP 35.9",
    ),
    _detector(
        "gc_r4_resnet50",
        "mmdet_mask_rcnn_r4_coco",
        _MMDET + "mask_rcnn_r50_fpn_r4_gcb_c3-c5_1x_coco/"
        "mask_rcnn_r50_fpn_r4_gcb_c3-c5_1x_coco_20200204-17235656.pth",
        "box AP 39.9, mask AP 36.0",
    ),
    _mmaction2(
        "c2d_resnet50",
        "mmaction2_8x8_k400",
        "c2d/c2d_r50-in1k-pre_8xb32-8x8x1-100e_kinetics400-rgb/"
        "c2d_r50-in1k-pre_8xb32-8x8x1-100e_kinetics400-rgb_20221027-3ca304fa.pth",
        "73.89",
        "91.21",
        clip=(8, 8),
        test_size=224,
        two_d=True,
    ),
    _mmaction2(
        "i3d_resnet50",
        "mmaction2_32x2_k400",
        "i3d/i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb/"
        "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb_20220812-e213c223.pth",
        "73.47",
        "91.27",
    ),
    _mmaction2(
        "nl_i3d_resnet50",
        "mmaction2_eg_32x2_k400",
        "i3d/i3d_imagenet-pretrained-r50-nl-embedded-gaussian_8xb8-32x2x1-100e_kinetics400-rgb/"
        "i3d_imagenet-pretrained-r50-nl-embedded-gaussian_8xb8-32x2x1-100e_kinetics400-rgb"
        "_20220812-afd8f562.pth",
        "74.73",
        "91.80",
    ),
    _mmaction2(
        "nl_i3d_resnet50",
        "mmaction2_dot_32x2_k400",
        "i3d/i3d_imagenet-pretrained-r50-nl-dot-product_8xb8-32x2x1-100e_kinetics400-rgb/"
        "i3d_imagenet-pretrained-r50-nl-dot-product_8xb8-32x2x1-100e_kinetics400-rgb"
        "_20220812-8e1f2148.pth",
        "74.80",
        "92.07",
        pairwise="dot_product",
    ),
    _mmaction2(
        "nl_i3d_resnet50",
        "mmaction2_gauss_32x2_k400",
        "i3d/i3d_imagenet-pretrained-r50-nl-gaussian_8xb8-32x2x1-100e_kinetics400-rgb/"
        "i3d_imagenet-pretrained-r50-nl-gaussian_8xb8-32x2x1-100e_kinetics400-rgb"
        "_20220812-0c5cbf5a.pth",
        "73.97",
        "91.33",
        pairwise="gaussian",
    ),
    *(
        _caffe2(f"{net}_resnet50", f"caffe2_{tag}_k400", file, top1, top5, clip, stride, nl)
        for net, tag, file, top1, top5, clip, stride, nl in (
            # model, tag, file, top-1, top-5, (frames, interval), stem stride, NL blocks
            (
                "c2d",
                "32x2",
                "c2d_baseline_32x2_IN_pretrain_400k.pkl",
                "72.0",
                "90.0",
                (32, 2),
                2,
                False,
            ),
            (
                "nl_c2d",
                "32x2",
                "c2d_nonlocal_32x2_IN_pretrain_400k.pkl",
                "73.9",
                "91.0",
                (32, 2),
                2,
                True,
            ),
            (
                "i3d",
                "32x2",
                "i3d_baseline_32x2_IN_pretrain_400k.pkl",
                "73.6",
                "90.8",
                (32, 2),
                2,
                False,
            ),
            (
                "nl_i3d",
                "32x2",
                "i3d_nonlocal_32x2_IN_pretrain_400k.pkl",
                "74.9",
                "91.6",
                (32, 2),
                2,
                True,
            ),
            (
                "c2d",
                "8x8",
                "c2d_baseline_8x8_IN_pretrain_400k.pkl",
                "71.9",
                "90.0",
                (8, 8),
                1,
                False,
            ),
            (
                "nl_c2d",
                "8x8",
                "c2d_nonlocal_8x8_IN_pretrain_400k.pkl",
                "74.4",
                "91.4",
                (8, 8),
                1,
                True,
            ),
            (
                "i3d",
                "8x8",
                "i3d_baseline_8x8_IN_pretrain_400k.pkl",
                "73.4",
                "90.9",
                (8, 8),
                1,
                False,
            ),
            (
                "nl_i3d",
                "8x8",
                "i3d_nonlocal_8x8_IN_pretrain_400k.pkl",
                "74.7",
                "91.6",
                (8, 8),
                1,
                True,
            ),
            (
                "i3d",
                "affine_32x4",
                "i3d_baseline_32x4_I3D_pretrain_400k.pkl",
                "75.5",
                "92.0",
                (32, 4),
                2,
                False,
            ),
            (
                "nl_grouped_i3d",
                "affine_32x4",
                "i3d_nonlocal_32x4_I3D_pretrain_400k.pkl",
                "76.5",
                "92.6",
                (32, 4),
                2,
                True,
            ),
            (
                "i3d",
                "affine_128x1",
                "i3d_baseline_128x1_I3D_pretrain_400k.pkl",
                "75.2",
                "92.0",
                (128, 1),
                2,
                False,
            ),
            (
                "nl_grouped_i3d",
                "affine_128x1",
                "i3d_nonlocal_128x1_I3D_pretrain_400k.pkl",
                "76.5",
                "92.7",
                (128, 1),
                2,
                True,
            ),
        )
    ),
    _caffe2(
        "i3d_resnet50",
        "pyslowfast_8x8_k400",
        "I3D_8x8_R50.pkl",
        "73.5",
        "90.8",
        (8, 8),
        stride=1,
        non_local=False,
        url=_SLOWFAST,
        note="PySlowFast MODEL_ZOO.md, Caffe2-format file",
    ),
    _caffe2(
        "nl_i3d_resnet50",
        "pyslowfast_8x8_k400",
        "I3D_NLN_8x8_R50.pkl",
        "74.0",
        "91.1",
        (8, 8),
        stride=1,
        non_local=True,
        url=_SLOWFAST,
        note="PySlowFast MODEL_ZOO.md, Caffe2-format file",
    ),
    # mmsegmentation: NL / GC / DNL R-50-D8 and R-101-D8, Cityscapes 512×1024 80k (4×2 images
    # a batch) and ADE20K 512×512 160k (4×4)
    _mmseg(
        "nonlocal_resnet50_d8",
        "nonlocal_r50-d8_512x1024_80k_cityscapes",
        "20200607_193518-d6839fae",
        "cityscapes",
        "78.01",
    ),
    _mmseg(
        "nonlocal_resnet101_d8",
        "nonlocal_r101-d8_512x1024_80k_cityscapes",
        "20200607_183411-32700183",
        "cityscapes",
        "78.93",
    ),
    _mmseg(
        "nonlocal_resnet50_d8",
        "nonlocal_r50-d8_512x512_160k_ade20k",
        "20200616_005410-baef45e3",
        "ade20k",
        "42.03",
        "43.04",
    ),
    _mmseg(
        "nonlocal_resnet101_d8",
        "nonlocal_r101-d8_512x512_160k_ade20k",
        "20210827_221502-7881aa1a",
        "ade20k",
        "44.63",
        "45.79",
    ),
    _mmseg(
        "gcnet_resnet50_d8",
        "gcnet_r50-d8_512x1024_80k_cityscapes",
        "20200618_074450-ef8f069b",
        "cityscapes",
        "78.48",
        "80.01",
    ),
    _mmseg(
        "gcnet_resnet101_d8",
        "gcnet_r101-d8_512x1024_80k_cityscapes",
        "20200618_074450-778ebf69",
        "cityscapes",
        "79.03",
        "79.84",
    ),
    _mmseg(
        "gcnet_resnet50_d8",
        "gcnet_r50-d8_512x512_160k_ade20k",
        "20200615_224122-d95f3e1f",
        "ade20k",
        "42.37",
        "43.52",
    ),
    _mmseg(
        "gcnet_resnet101_d8",
        "gcnet_r101-d8_512x512_160k_ade20k",
        "20200615_225406-615528d7",
        "ade20k",
        "43.69",
        "45.21",
    ),
    _mmseg(
        "dnlnet_resnet50_d8",
        "dnl_r50-d8_512x1024_80k_cityscapes",
        "20200904_233629-58b2f778",
        "cityscapes",
        "79.33",
    ),
    _mmseg(
        "dnlnet_resnet101_d8",
        "dnl_r101-d8_512x1024_80k_cityscapes",
        "20200904_233629-758e2dd4",
        "cityscapes",
        "80.41",
    ),
    _mmseg(
        "dnlnet_resnet50_d8",
        "dnl_r50-d8_512x512_160k_ade20k",
        "20200826_183350-37837798",
        "ade20k",
        "41.87",
        "43.01",
    ),
    _mmseg(
        "dnlnet_resnet101_d8",
        "dnl_r101-d8_512x512_160k_ade20k",
        "20200826_183350-ed522c61",
        "ade20k",
        "44.25",
        "45.78",
    ),
)
_BY_NAME = {entry.name: entry for entry in ZOO}


def list_weights(pattern: str = "*") -> list[str]:
    """Zoo names matching a shell-style pattern, e.g. ``list_weights("nl_i3d*")``."""
    return [name for name in _BY_NAME if fnmatch.fnmatch(name, pattern)]


def weights_entry(name: str) -> ZooEntry:
    """The zoo entry called ``name`` (``<model>.<tag>``)."""
    if name not in _BY_NAME:
        model = name.split(".", 1)[0]
        close = [n for n in _BY_NAME if n.startswith(model + ".")] or list(_BY_NAME)[:6]
        raise ValueError(f"no released weights named {name!r}; e.g. {close} (nlgc weights list)")
    return _BY_NAME[name]


def default_entry(model: str, tag: str | bool = True) -> ZooEntry:
    """The entry ``create_model(model, pretrained=tag)`` means: the named tag, or with ``True``
    the model's first entry in :data:`ZOO`."""
    if isinstance(tag, str):
        return weights_entry(f"{model}.{tag}")
    for entry in ZOO:
        if entry.model == model:
            return entry
    raise ValueError(
        f"no released weights for model {model!r}; models with weights: "
        f"{sorted({e.model for e in ZOO})}"
    )


def resolve_checkpoint(
    checkpoint: str | os.PathLike | Mapping,
) -> tuple[Path | str | os.PathLike | Mapping, ZooEntry | None]:
    """(a local file or the state dict itself, its zoo entry or None) for a zoo name (its file
    fetched once), a URL (downloaded into the cache once), a path or a state dict."""
    if isinstance(checkpoint, str) and checkpoint in _BY_NAME:
        entry = _BY_NAME[checkpoint]
        return fetch(entry), entry
    if isinstance(checkpoint, str) and re.match(r"https?://", checkpoint):
        return fetch_url(checkpoint), None
    return checkpoint, None
