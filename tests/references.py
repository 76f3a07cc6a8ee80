"""Peers' networks written out from their sources, for comparing nlgc's conversions with:
each builds a network named as its source names it (so its state dict is what the source's
checkpoint holds, derived from the source's structure and not from nlgc's keys) and computes
its forward pass from those tensors alone. mmaction2 (ResNet3d, C2D, NonLocal3d), Caffe2's
video-nonlocal-net (and PySlowFast's renaming of its blobs), timm's byobnet GC networks and
mmdetection's ResNet with mmcv's ContextBlock and NonLocal2d plugins."""

import numpy as np
import torch
import torch.nn.functional as F
from helpers import randomize_network
from torch import nn

# mmaction2


class ConvModule(nn.Module):
    """mmcv's ConvModule as mmaction2 builds it: ``conv`` (no bias when a norm follows) and
    ``bn``; ``norm=False``: a conv with bias and nothing else (its act is not a module here)."""

    def __init__(self, cin, cout, kernel, norm=True, two_d=False):
        super().__init__()
        conv = nn.Conv2d if two_d else nn.Conv3d
        self.conv = conv(cin, cout, kernel, bias=not norm)
        if norm:
            self.bn = (nn.BatchNorm2d if two_d else nn.BatchNorm3d)(cout)


class NonLocal3d(nn.Module):
    """mmcv's ``_NonLocalNd`` (``mmcv/cnn/bricks/non_local.py``) with sub_sample: g, θ, φ as
    ConvModules without norm, g and φ wrapped with a max pool (φ is the pool alone for the
    Gaussian), ``conv_out`` a ConvModule with BN."""

    def __init__(self, channels, mode):
        super().__init__()
        inter = channels // 2
        pool = nn.MaxPool3d((1, 2, 2))
        self.g = nn.Sequential(ConvModule(channels, inter, 1, norm=False), pool)
        if mode != "gaussian":
            self.theta = ConvModule(channels, inter, 1, norm=False)
            self.phi = nn.Sequential(ConvModule(channels, inter, 1, norm=False), pool)
        self.conv_out = ConvModule(inter, channels, 1)


class MMBottleneck3d(nn.Module):
    """mmaction2's ``Bottleneck3d`` (``resnet3d.py``): conv1/conv2/conv3 ConvModules (the
    inflated kernel in conv1 for 3x1x1), a ConvModule downsample, the NL block after it."""

    def __init__(self, inplanes, planes, inflate, downsample, non_local, mode, two_d):
        super().__init__()
        t = 3 if inflate else 1
        kernel = lambda k, time: (k, k) if two_d else (time, k, k)  # noqa: E731
        self.conv1 = ConvModule(inplanes, planes, kernel(1, t), two_d=two_d)
        self.conv2 = ConvModule(planes, planes, kernel(3, 1), two_d=two_d)
        self.conv3 = ConvModule(planes, planes * 4, kernel(1, 1), two_d=two_d)
        if downsample:
            self.downsample = ConvModule(inplanes, planes * 4, kernel(1, 1), two_d=two_d)
        if non_local:
            self.non_local_block = NonLocal3d(planes * 4, mode)


def mmaction2_network(depths, num_classes, inflate=(), non_local=(), mode="", two_d=False):
    """mmaction2's Recognizer3D (``backbone`` = ResNet3d or the C2D class's 2D ResNet,
    ``cls_head.fc_cls``) as modules named as mmaction2 names them, with random weights: its
    state dict is what an mmaction2 checkpoint holds, derived from the source's structure and
    not from nlgc's keys. ``inflate``/``non_local``: (stage, block) pairs."""
    backbone = nn.Module()
    conv1_t = 5 if inflate else 1
    backbone.conv1 = ConvModule(3, 64, (7, 7) if two_d else (conv1_t, 7, 7), two_d=two_d)
    inplanes = 64
    for stage, depth in enumerate(depths, start=1):
        planes = 64 * 2 ** (stage - 1)
        blocks = [
            MMBottleneck3d(
                inplanes if index == 0 else planes * 4,
                planes,
                (stage, index) in inflate,
                index == 0,
                (stage, index) in non_local,
                mode,
                two_d,
            )
            for index in range(depth)
        ]
        setattr(backbone, f"layer{stage}", nn.Sequential(*blocks))
        inplanes = planes * 4
    recognizer = nn.Module()
    recognizer.backbone = backbone
    recognizer.cls_head = nn.Module()
    recognizer.cls_head.fc_cls = nn.Linear(2048, num_classes)
    return randomize_network(recognizer)


I3D_R50_INFLATE = {
    (s, i)
    for s, row in enumerate(((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)), 1)
    for i, v in enumerate(row)
    if v
}


NL5_R50 = {(2, 1), (2, 3), (3, 1), (3, 3), (3, 5)}


def mmaction2_state(network) -> dict:
    return dict(network.state_dict())


def mmaction2_non_local(mm, prefix, x, mode="embedded_gaussian"):
    """mmaction2's NonLocal3d (mmcv ``_NonLocalNd``: sub_sample, use_scale=False) written out."""
    F = torch.nn.functional

    def conv(name, t):
        bias = mm.get(f"{prefix}{name}.conv.bias")
        return F.conv3d(t, mm[f"{prefix}{name}.conv.weight"], bias)

    pool = lambda t: F.max_pool3d(t, (1, 2, 2))  # noqa: E731
    n = x.shape[0]
    g = pool(conv("g.0", x)).flatten(2).permute(0, 2, 1)  # (N, keys, C')
    if mode == "gaussian":  # on the raw input; phi is the pooling alone
        theta, phi = x.flatten(2).permute(0, 2, 1), pool(x).flatten(2)
    else:
        theta = conv("theta", x).flatten(2).permute(0, 2, 1)
        phi = pool(conv("phi.0", x)).flatten(2)
    weight = torch.matmul(theta, phi)
    weight = weight / weight.shape[-1] if mode == "dot_product" else weight.softmax(-1)
    y = torch.matmul(weight, g).permute(0, 2, 1).reshape(n, -1, *x.shape[2:])
    y = conv("conv_out", y)
    stats = ("running_mean", "running_var", "weight", "bias")
    return x + F.batch_norm(y, *(mm[f"{prefix}conv_out.bn.{k}"] for k in stats))


def mmaction2_i3d_logits(mm, x, mode):
    """mmaction2's Recognizer3D (ResNet3d R50/R101 I3D of the i3d_r50 NL configs: conv1 5×7×7
    stride 2, pool1 1×3×3 stride (2, 2, 2) padding (0, 1, 1), pool2 2×1×1; Bottleneck3d of
    ConvModules, stride in the 3×3, NonLocal3d after the block's ReLU; I3DHead) written out
    from ``mmaction/models/backbones/resnet3d.py``, evaluated on an mmaction2 state dict."""
    F = torch.nn.functional

    def conv_bn(prefix, t, stride=1, relu=True):
        weight = mm[f"{prefix}.conv.weight"]
        t = F.conv3d(t, weight, None, stride, tuple(k // 2 for k in weight.shape[2:]))
        stats = ("running_mean", "running_var", "weight", "bias")
        t = F.batch_norm(t, *(mm[f"{prefix}.bn.{k}"] for k in stats))
        return F.relu(t) if relu else t

    x = conv_bn("backbone.conv1", x, (2, 2, 2))
    x = F.max_pool3d(x, (1, 3, 3), (2, 2, 2), (0, 1, 1))
    depths = [
        len({k.split(".")[2] for k in mm if k.startswith(f"backbone.layer{s}.")})
        for s in (1, 2, 3, 4)
    ]
    for stage, blocks in enumerate(depths, start=1):
        for index in range(blocks):
            prefix = f"backbone.layer{stage}.{index}"
            stride = (1, 2, 2) if index == 0 and stage > 1 else 1
            out = conv_bn(f"{prefix}.conv1", x)
            out = conv_bn(f"{prefix}.conv2", out, stride)
            out = conv_bn(f"{prefix}.conv3", out, relu=False)
            if f"{prefix}.downsample.conv.weight" in mm:
                x = conv_bn(f"{prefix}.downsample", x, stride, relu=False)
            x = F.relu(out + x)
            if f"{prefix}.non_local_block.g.0.conv.weight" in mm:
                x = mmaction2_non_local(mm, f"{prefix}.non_local_block.", x, mode)
        if stage == 1:
            x = F.max_pool3d(x, (2, 1, 1), (2, 1, 1))
    return F.linear(x.mean((2, 3, 4)), mm["cls_head.fc_cls.weight"], mm["cls_head.fc_cls.bias"])


def mmaction2_c2d_logits(mm, x):
    """mmaction2's C2D (``mmaction/models/backbones/c2d.py`` on its 2D ``resnet.py``: every
    convolution 2D on the frames, maxpool3d_1 1×3×3 stride (1, 2, 2) unpadded, maxpool3d_2
    2×1×1 after layer1; I3DHead) written out, evaluated on an mmaction2 state dict."""
    F = torch.nn.functional
    n = x.shape[0]
    to_2d = lambda t: t.transpose(1, 2).flatten(0, 1)  # noqa: E731  (N, C, T, H, W) → (N·T, C, H, W)
    to_3d = lambda t: t.unflatten(0, (n, -1)).transpose(1, 2)  # noqa: E731

    def conv_bn(prefix, t, stride=1, relu=True):
        weight = mm[f"{prefix}.conv.weight"]
        t = F.conv2d(t, weight, None, stride, weight.shape[-1] // 2)
        stats = ("running_mean", "running_var", "weight", "bias")
        t = F.batch_norm(t, *(mm[f"{prefix}.bn.{k}"] for k in stats))
        return F.relu(t) if relu else t

    x = to_3d(conv_bn("backbone.conv1", to_2d(x), 2))
    x = to_2d(F.max_pool3d(x, (1, 3, 3), (1, 2, 2)))
    for stage, blocks in enumerate((3, 4, 6, 3), start=1):
        for index in range(blocks):
            prefix = f"backbone.layer{stage}.{index}"
            stride = 2 if index == 0 and stage > 1 else 1
            out = conv_bn(f"{prefix}.conv2", conv_bn(f"{prefix}.conv1", x), stride)
            out = conv_bn(f"{prefix}.conv3", out, relu=False)
            if f"{prefix}.downsample.conv.weight" in mm:
                x = conv_bn(f"{prefix}.downsample", x, stride, relu=False)
            x = F.relu(out + x)
        if stage == 1:
            x = to_2d(F.max_pool3d(to_3d(x), (2, 1, 1), (2, 1, 1)))
    x = to_3d(x)
    return F.linear(x.mean((2, 3, 4)), mm["cls_head.fc_cls.weight"], mm["cls_head.fc_cls.bias"])


# Caffe2 (facebookresearch/video-nonlocal-net) and PySlowFast


def caffe2_blobs(num_classes=400, non_local=True, seed=0, c2d=False):
    """The blobs an official video-nonlocal-net R50 I3D file holds, named as its builders name
    them (``resnet_video_org.py`` / ``resnet_helper.py``: ``res{stage}_{i}_branch2{a,b,c}``,
    ``branch1`` projections, ``_bn_{s,b,rm,riv}``; ``nonlocal_helper.py``:
    ``nonlocal_conv{stage}_{i}_{theta,phi,g,out}`` after blocks 1, 3, 5 of res3/res4;
    ``pred``), with random values: derived from the source's builders, not from our keys.
    ``c2d``: VIDEO_ARC_CHOICE 1 (no temporal kernels: conv1 1×7×7, every 1×1 1×1×1)."""
    rng = np.random.default_rng(seed)
    blobs = {}

    def add(name, *shape):
        blobs[name] = (rng.standard_normal(shape) * 0.05).astype(np.float32)

    def add_bn(prefix, channels):
        blobs[f"{prefix}_s"] = rng.uniform(0.2, 0.4, channels).astype(np.float32)
        blobs[f"{prefix}_b"] = (rng.standard_normal(channels) * 0.05).astype(np.float32)
        blobs[f"{prefix}_rm"] = (rng.standard_normal(channels) * 0.05).astype(np.float32)
        blobs[f"{prefix}_riv"] = rng.uniform(0.5, 1.5, channels).astype(np.float32)

    add("conv1_w", 64, 3, 1 if c2d else 5, 7, 7)
    add_bn("res_conv1_bn", 64)
    use_temp_conv = {2: (1, 1, 1), 3: (1, 0, 1, 0), 4: (1, 0, 1, 0, 1, 0), 5: (0, 1, 0)}
    if c2d:
        use_temp_conv = {stage: (0,) * len(row) for stage, row in use_temp_conv.items()}
    dim_in = 64
    for stage, temporal in use_temp_conv.items():
        inner = 64 * 2 ** (stage - 2)
        for index, temp in enumerate(temporal):
            p = f"res{stage}_{index}"
            add(f"{p}_branch2a_w", inner, dim_in, 1 + 2 * temp, 1, 1)
            add(f"{p}_branch2b_w", inner, inner, 1, 3, 3)
            add(f"{p}_branch2c_w", inner * 4, inner, 1, 1, 1)
            for branch, channels in (("2a", inner), ("2b", inner), ("2c", inner * 4)):
                add_bn(f"{p}_branch{branch}_bn", channels)
            if index == 0:
                add(f"{p}_branch1_w", inner * 4, dim_in, 1, 1, 1)
                add_bn(f"{p}_branch1_bn", inner * 4)
            dim_in = inner * 4
            if non_local and stage in (3, 4) and index % 2 == 1:
                nl = f"nonlocal_conv{stage}_{index}"
                for part in ("theta", "phi", "g"):
                    add(f"{nl}_{part}_w", dim_in // 2, dim_in, 1, 1, 1)
                    add(f"{nl}_{part}_b", dim_in // 2)
                add(f"{nl}_out_w", dim_in, dim_in // 2, 1, 1, 1)
                add(f"{nl}_out_b", dim_in)
                add_bn(f"{nl}_bn", dim_in)
    add("pred_w", num_classes, 2048)
    add("pred_b", num_classes)
    return blobs


def caffe2_logits(b, x, temporal_stride, affine=False):
    """video-nonlocal-net's resnet_video_org (32×2, ``temporal_stride`` 2: conv1 temporal stride
    2, pool1 2×3×3 stride 2) or resnet_video (8×8, 1: conv1 temporal stride 1, pool1 1×3×3
    stride (1, 2, 2)), R50, VIDEO_ARC_CHOICE 2 (I3D), with its
    spacetime_nonlocal (max pool before φ/g, USE_SCALE, softmax, BN, Sum), written out from
    ``lib/models/resnet_video_org.py``, ``resnet_helper.py`` and ``nonlocal_helper.py``. With
    ``affine`` (MODEL.USE_AFFINE, the frozen-BN models): every BN is an AffineNd x·s + b and
    res3's NL blocks are ``add_nonlocal_group`` with group_size 4: the frames cut into
    consecutive groups of 4 (Transpose, Reshape to (B·groups, 4, C, H, W), Transpose), one
    spacetime_nonlocal per group, reshaped back."""
    F = torch.nn.functional
    b = {k: torch.from_numpy(v) for k, v in b.items()}
    eps = 1.0000001e-5  # cfg.MODEL.BN_EPSILON

    def norm(t, bn):
        if affine:  # AffineNd: per channel scale and shift
            shape = (1, -1, 1, 1, 1)
            return t * b[f"{bn}_s"].view(shape) + b[f"{bn}_b"].view(shape)
        return F.batch_norm(t, b[f"{bn}_rm"], b[f"{bn}_riv"], b[f"{bn}_s"], b[f"{bn}_b"], eps=eps)

    def conv_bn(conv, bn, t, stride, pads):
        return norm(F.conv3d(t, b[f"{conv}_w"], None, stride, pads), bn)

    def nonlocal_group(prefix, x, group_size=4):
        batch, channels, frames, height, width = x.shape
        groups = x.transpose(1, 2).reshape(-1, group_size, channels, height, width)
        out = nonlocal_(prefix, groups.transpose(1, 2))  # (B·G, C, 4, H, W)
        out = out.transpose(1, 2).reshape(batch, frames, channels, height, width)
        return out.transpose(1, 2)

    def nonlocal_(prefix, x):
        conv = lambda name, t: F.conv3d(t, b[f"{prefix}_{name}_w"], b[f"{prefix}_{name}_b"])  # noqa: E731
        pooled = F.max_pool3d(x, (1, 2, 2), (1, 2, 2))
        theta, phi, g = (
            conv("theta", x).flatten(2),
            conv("phi", pooled).flatten(2),
            conv("g", pooled).flatten(2),
        )
        affinity = theta.mT @ phi * theta.shape[1] ** -0.5  # (B, N, N_keys)
        y = (g @ affinity.softmax(2).mT).reshape(x.shape[0], -1, *x.shape[2:])
        out = F.conv3d(y, b[f"{prefix}_out_w"], b[f"{prefix}_out_b"])
        return x + norm(out, f"{prefix}_bn")

    t = temporal_stride
    x = F.relu(conv_bn("conv1", "res_conv1_bn", x, (t, 2, 2), (2, 3, 3)))
    x = F.max_pool3d(x, (t, 3, 3), (t, 2, 2))
    for stage, blocks in ((2, 3), (3, 4), (4, 6), (5, 3)):
        for index in range(blocks):
            p = f"res{stage}_{index}"
            s = 2 if index == 0 and stage > 2 else 1
            u = b[f"{p}_branch2a_w"].shape[2] // 2  # use_temp_conv
            out = F.relu(conv_bn(f"{p}_branch2a", f"{p}_branch2a_bn", x, 1, (u, 0, 0)))
            out = F.relu(conv_bn(f"{p}_branch2b", f"{p}_branch2b_bn", out, (1, s, s), (0, 1, 1)))
            out = conv_bn(f"{p}_branch2c", f"{p}_branch2c_bn", out, 1, 0)
            if f"{p}_branch1_w" in b:
                x = conv_bn(f"{p}_branch1", f"{p}_branch1_bn", x, (1, s, s), 0)
            x = F.relu(out + x)
            if stage in (3, 4) and index % 2 == 1:
                grouped = affine and stage == 3
                x = (nonlocal_group if grouped else nonlocal_)(f"nonlocal_conv{stage}_{index}", x)
        if stage == 2:
            x = F.max_pool3d(x, (2, 1, 1), (2, 1, 1))
    return F.linear(x.mean((2, 3, 4)), b["pred_w"], b["pred_b"])  # pool5 over the whole map


# PySlowFast's renaming of Caffe2 blobs (slowfast/utils/c2_model_loading.py,
# get_name_convert_func), the rules a ResNet/NL file needs, in its order
PYSLOWFAST_PAIRS = [
    (r"^nonlocal_conv([0-9]+)_([0-9]+)_(.*)", r"s\1.pathway0_nonlocal\2_\3"),
    (r"^(.*)_nonlocal([0-9]+)_(theta)(.*)", r"\1_nonlocal\2.conv_\3\4"),
    (r"^(.*)_nonlocal([0-9]+)_(g)(.*)", r"\1_nonlocal\2.conv_\3\4"),
    (r"^(.*)_nonlocal([0-9]+)_(phi)(.*)", r"\1_nonlocal\2.conv_\3\4"),
    (r"^(.*)_nonlocal([0-9]+)_(out)(.*)", r"\1_nonlocal\2.conv_\3\4"),
    (r"^(.*)_nonlocal([0-9]+)_(bn)_(.*)", r"\1_nonlocal\2.\3.\4"),
    (r"^res([0-9]+)_([0-9]+)_branch([0-9]+)([a-z])_(.*)", r"s\1.pathway0_res\2.branch\3.\4_\5"),
    (r"^res_conv1_bn_(.*)", r"s1.pathway0_stem.bn.\1"),
    (r"^conv1_(.*)", r"s1.pathway0_stem.conv.\1"),
    (r"^res([0-9]+)_([0-9]+)_branch([0-9]+)_(.*)", r"s\1.pathway0_res\2.branch\3_\4"),
    (r"pred_(.*)", r"head.projection.\1"),
    (r"(.*)bn.b\Z", r"\1bn.bias"),
    (r"(.*)bn.s\Z", r"\1bn.weight"),
    (r"(.*)bn.rm\Z", r"\1bn.running_mean"),
    (r"(.*)bn.riv\Z", r"\1bn.running_var"),
    (r"(.*)[\._]b\Z", r"\1.bias"),
    (r"(.*)[\._]w\Z", r"\1.weight"),
]


# timm


class ConvNormAct(nn.Sequential):
    """timm's ConvNormAct: ``conv`` (no bias) and ``bn`` (its activation holds no tensors)."""

    def __init__(self, cin, cout, kernel=1, stride=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)


class GlobalContextTimm(nn.Module):
    """timm's ``GlobalContext`` ('gca', ``timm/layers/global_context.py``): ``conv_attn`` and a
    ConvMlp ``mlp_add`` (``fc1``, ``norm`` = LayerNorm2d over C/8 channels, ``fc2``)."""

    def __init__(self, channels):
        super().__init__()
        hidden = channels // 8  # make_divisible(C · 1/8, divisor 1)
        self.conv_attn = nn.Conv2d(channels, 1, 1)
        self.mlp_add = nn.Module()
        self.mlp_add.fc1 = nn.Conv2d(channels, hidden, 1)
        self.mlp_add.norm = nn.LayerNorm(hidden, eps=1e-6)
        self.mlp_add.fc2 = nn.Conv2d(hidden, channels, 1)


# timm/models/byobnet.py model_cfgs: ByoBlockCfg(type='bottle', d, c, s, gs, br=0.25) per stage,
# stem_chs=64, stem_type='tiered', stem_pool, act_layer, num_features, attn_layer='gca'. A row:
# depths d and channels c per stage, group size gs (0: no groups), act_layer, stem_pool
# ('maxpool' or none), num_features (0: no final_conv)
BYOBNET_FIELDS = ("d", "c", "gs", "act", "pool", "features")
BYOBNET_CFGS = {
    name: dict(zip(BYOBNET_FIELDS, row, strict=True))
    for name, row in {
        "gc_resnet50t": ((3, 4, 6, 3), (256, 512, 1024, 2048), 0, "relu", False, 0),
        "gc_resnext26ts": ((2, 2, 2, 2), (256, 512, 1024, 2048), 32, "silu", True, 0),
        "gc_resnext50ts": ((3, 4, 6, 3), (256, 512, 1024, 2048), 32, "silu", True, 0),
        "gc_resnet33ts": ((2, 3, 3, 2), (256, 512, 1536, 1536), 0, "silu", False, 1280),
    }.items()
}


# timm's published parameter counts (results/results-imagenet.csv), in millions
TIMM_PARAMS = {
    "gc_resnet50t": 25.90,
    "gc_resnext26ts": 10.48,
    "gc_resnext50ts": 15.67,
    "gc_resnet33ts": 19.88,
}


def timm_byobnet(cfg, num_classes):
    """A timm byobnet GC network (``timm/models/byobnet.py``: tiered stem of three ConvNormAct
    (``Stem``; with ``stem_pool='maxpool'`` a ``pool`` and strides 2-1-1), ``stages.i.j``
    BottleneckBlocks with conv1_1x1, conv2_kxk (groups = mid / gs), attn, conv3_1x1 and a
    conv1x1 ``shortcut``; ``final_conv`` when num_features; ``head.fc``) as modules named as
    timm names them, random weights: its state dict is what a timm checkpoint holds, derived
    from timm's structure, not from our keys."""
    net = nn.Module()
    net.stem = nn.Module()
    net.stem.conv1 = ConvNormAct(3, 24, 3, 2)
    net.stem.conv2 = ConvNormAct(24, 32, 3)
    net.stem.conv3 = ConvNormAct(32, 64, 3, 1 if cfg["pool"] else 2)
    stages, cin = [], 64
    for index, (depth, cout) in enumerate(zip(cfg["d"], cfg["c"], strict=True)):
        blocks = []
        for j in range(depth):
            block, mid = nn.Module(), cout // 4
            stride = 2 if j == 0 and index > 0 else 1
            groups = mid // cfg["gs"] if cfg["gs"] else 1
            block.conv1_1x1 = ConvNormAct(cin, mid)
            block.conv2_kxk = ConvNormAct(mid, mid, 3, stride, groups)
            block.attn = GlobalContextTimm(mid)
            block.conv3_1x1 = ConvNormAct(mid, cout)
            if j == 0:
                block.shortcut = ConvNormAct(cin, cout, 1, stride)
            blocks.append(block)
            cin = cout
        stages.append(nn.Sequential(*blocks))
    net.stages = nn.Sequential(*stages)
    if cfg["features"]:
        net.final_conv = ConvNormAct(cin, cfg["features"])
        cin = cfg["features"]
    net.head = nn.Module()
    net.head.fc = nn.Linear(cin, num_classes)
    return net


def timm_byobnet_logits(t, cfg, x):
    """The byobnet forward written out from ``timm/models/byobnet.py`` (Stem, BottleneckBlock:
    1×1 → k×k (stride, groups) → GlobalContext 'gca' → 1×1, conv1x1 shortcut, activation
    after the add; final_conv; ClassifierHead) and ``timm/layers/global_context.py`` (softmax
    attention pooling, ConvMlp fc1 → LayerNorm2d(ε=1e-6) → ReLU → fc2, added)."""
    F = torch.nn.functional
    act = F.silu if cfg["act"] == "silu" else F.relu

    def conv_norm_act(prefix, x, stride=1, apply_act=True):
        weight = t[f"{prefix}.conv.weight"]
        groups = x.shape[1] // weight.shape[1]
        x = F.conv2d(x, weight, None, stride, weight.shape[-1] // 2, groups=groups)
        stats = [t[f"{prefix}.bn.{k}"] for k in ("running_mean", "running_var", "weight", "bias")]
        x = F.batch_norm(x, *stats)
        return act(x) if apply_act else x

    def global_context(prefix, x):
        attn = F.conv2d(x, t[f"{prefix}.conv_attn.weight"], t[f"{prefix}.conv_attn.bias"])
        attn = attn.flatten(2).softmax(-1)  # (B, 1, HW)
        context = (x.flatten(2) * attn).sum(-1)  # (B, C)

        def w(name):  # a 1×1 conv of the ConvMlp as (weight (out, in), bias)
            return t[f"{prefix}.mlp_add.{name}.weight"].flatten(1), t[
                f"{prefix}.mlp_add.{name}.bias"
            ]

        hidden = F.linear(context, *w("fc1"))
        norm = (t[f"{prefix}.mlp_add.norm.weight"], t[f"{prefix}.mlp_add.norm.bias"])
        hidden = F.relu(F.layer_norm(hidden, hidden.shape[-1:], *norm, eps=1e-6))
        return x + F.linear(hidden, *w("fc2"))[:, :, None, None]

    x = conv_norm_act("stem.conv1", x, 2)
    x = conv_norm_act("stem.conv2", x)
    x = conv_norm_act("stem.conv3", x, 1 if cfg["pool"] else 2)
    if cfg["pool"]:
        x = F.max_pool2d(x, 3, 2, 1)
    for stage, blocks in enumerate(cfg["d"]):
        for index in range(blocks):
            p = f"stages.{stage}.{index}"
            stride = 2 if index == 0 and stage > 0 else 1
            shortcut = x
            if f"{p}.shortcut.conv.weight" in t:
                shortcut = conv_norm_act(f"{p}.shortcut", x, stride, apply_act=False)
            y = conv_norm_act(f"{p}.conv1_1x1", x)
            y = conv_norm_act(f"{p}.conv2_kxk", y, stride)
            y = global_context(f"{p}.attn", y)
            y = conv_norm_act(f"{p}.conv3_1x1", y, apply_act=False)
            x = act(y + shortcut)
    if cfg["features"]:
        x = conv_norm_act("final_conv", x)
    return F.linear(x.mean((2, 3)), t["head.fc.weight"], t["head.fc.bias"])


# mmdetection's ResNet with plugins (mmdet/models/backbones/resnet.py, pytorch style) and
# mmcv's ContextBlock and NonLocal2d (mmcv/cnn/bricks/context_block.py, non_local.py), as a
# forward pass over a detector checkpoint's tensors under mmdetection's names.


def _bn(state, prefix, x):
    s = {k: state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}
    return F.batch_norm(x, s["running_mean"], s["running_var"], s["weight"], s["bias"], False)


def _conv(state, name, x, stride=1, padding=0):
    return F.conv2d(x, state[f"{name}.weight"], state.get(f"{name}.bias"), stride, padding)


def mmcv_context_block(state, prefix, x, pooling="att", fusions=("channel_add",)):
    """ContextBlock.forward: spatial_pool (softmax of conv_mask over positions, or the mean),
    then out = x · sigmoid(channel_mul_conv(context)) and/or + channel_add_conv(context)."""
    b, c, h, w = x.shape
    if pooling == "att":
        mask = _conv(state, f"{prefix}.conv_mask", x).view(b, 1, h * w).softmax(dim=2)
        context = (x.view(b, 1, c, h * w) @ mask.view(b, 1, h * w, 1)).view(b, c, 1, 1)
    else:
        context = x.mean((2, 3), keepdim=True)

    def transform(name):
        hidden = _conv(state, f"{prefix}.{name}.0", context)
        norm = f"{prefix}.{name}.1"
        hidden = F.layer_norm(
            hidden, hidden.shape[1:], state[f"{norm}.weight"], state[f"{norm}.bias"]
        )
        return _conv(state, f"{prefix}.{name}.3", hidden.relu())

    out = x
    if "channel_mul" in fusions:
        out = out * transform("channel_mul_conv").sigmoid()
    if "channel_add" in fusions:
        out = out + transform("channel_add_conv")
    return out


def mmcv_non_local_2d(state, prefix, x, use_scale=True):
    """NonLocal2d.forward, embedded Gaussian, no sub-sampling; conv_out a conv, or with
    ``norm_cfg`` (mmsegmentation's heads) a conv without bias and its BN."""
    n, _, h, w = x.shape
    g = _conv(state, f"{prefix}.g.conv", x)
    inter = g.shape[1]
    g_x = g.view(n, inter, -1).permute(0, 2, 1)
    theta_x = _conv(state, f"{prefix}.theta.conv", x).view(n, inter, -1).permute(0, 2, 1)
    phi_x = _conv(state, f"{prefix}.phi.conv", x).view(n, inter, -1)
    pairwise = theta_x @ phi_x
    if use_scale:
        pairwise = pairwise / theta_x.shape[-1] ** 0.5
    y = (pairwise.softmax(dim=-1) @ g_x).permute(0, 2, 1).reshape(n, inter, h, w)
    out = _conv(state, f"{prefix}.conv_out.conv", y)
    if f"{prefix}.conv_out.bn.weight" in state:
        out = _bn(state, f"{prefix}.conv_out.bn", out)
    return x + out


def mmseg_disentangled_non_local(state, prefix, x, temperature=0.05, use_scale=True):
    """mmsegmentation's DisentangledNonLocal2d.forward (embedded Gaussian): whitened θ and φ,
    logits / √C' / τ, the unary mask's softmax; x + conv_out(pairwise) + conv_out(unary)."""
    n, _, h, w = x.shape
    g_x = _conv(state, f"{prefix}.g.conv", x).view(n, -1, h * w).permute(0, 2, 1)
    inter = g_x.shape[-1]
    theta_x = _conv(state, f"{prefix}.theta.conv", x).view(n, inter, -1).permute(0, 2, 1)
    phi_x = _conv(state, f"{prefix}.phi.conv", x).view(n, inter, -1)
    theta_x = theta_x - theta_x.mean(dim=-2, keepdim=True)
    phi_x = phi_x - phi_x.mean(dim=-1, keepdim=True)
    pairwise = theta_x @ phi_x
    if use_scale:
        pairwise = pairwise / inter**0.5
    pairwise = (pairwise / temperature).softmax(dim=-1)
    y = (pairwise @ g_x).permute(0, 2, 1).reshape(n, inter, h, w)
    unary = _conv(state, f"{prefix}.conv_mask", x).view(n, 1, -1).softmax(dim=-1)
    unary_x = (unary @ g_x).permute(0, 2, 1).reshape(n, inter, 1, 1)

    def conv_out(t):
        return _bn(state, f"{prefix}.conv_out.bn", _conv(state, f"{prefix}.conv_out.conv", t))

    return x + conv_out(y) + conv_out(unary_x)


def mmseg_head(state, prefix, features, in_index, block=None, concat_input=True):
    """mmsegmentation's FCNHead / NLHead / GCHead / DNLHead.forward (dropout off in eval):
    convs[0] → block → the other convs → conv_cat([x, out]) → conv_seg."""

    def conv_module(name, t):
        return _bn(state, f"{name}.bn", _conv(state, f"{name}.conv", t, 1, 1)).relu()

    x = features[in_index]
    out = conv_module(f"{prefix}.convs.0", x)
    if block is not None:
        name, function = block
        out = function(state, f"{prefix}.{name}", out)
    index = 1
    while f"{prefix}.convs.{index}.conv.weight" in state:
        out = conv_module(f"{prefix}.convs.{index}", out)
        index += 1
    if concat_input:
        out = conv_module(f"{prefix}.conv_cat", torch.cat([x, out], 1))
    return _conv(state, f"{prefix}.conv_seg", out)


def mmdet_resnet_features(
    state, x, depths, plugins=(), strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1), v1c=False
):
    """mmdetection's / mmsegmentation's ResNet (style='pytorch', stride in conv2) over
    ``backbone.`` tensors: C2–C5. ``plugins``: (name, position, stages (4 bools),
    function(state, prefix, x)); ``v1c``: ResNetV1c's deep stem (``stem.0``…``stem.7``) and
    ``contract_dilation`` (a dilated stage's first block at half the dilation)."""
    state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    if v1c:
        for conv, bn, stride in (
            ("stem.0", "stem.1", 2),
            ("stem.3", "stem.4", 1),
            ("stem.6", "stem.7", 1),
        ):
            x = _bn(state, bn, _conv(state, conv, x, stride, 1)).relu()
        x = F.max_pool2d(x, 3, 2, 1)
    else:
        x = F.max_pool2d(_bn(state, "bn1", _conv(state, "conv1", x, 2, 3)).relu(), 3, 2, 1)
    features = []
    for stage, depth in enumerate(depths):
        for index in range(depth):
            p = f"layer{stage + 1}.{index}"
            stride = strides[stage] if index == 0 else 1
            dilation = dilations[stage]
            if v1c and index == 0 and dilation > 1:
                dilation //= 2

            def run(position, out, p=p, stage=stage):
                for name, where, stages, function in plugins:
                    if where == position and stages[stage]:
                        out = function(state, f"{p}.{name}", out)
                return out

            identity = x
            out = run("after_conv1", _bn(state, f"{p}.bn1", _conv(state, f"{p}.conv1", x)).relu())
            conv2 = state[f"{p}.conv2.weight"]
            out = F.conv2d(out, conv2, None, stride, dilation, dilation)
            out = _bn(state, f"{p}.bn2", out).relu()
            out = run("after_conv2", out)
            out = run("after_conv3", _bn(state, f"{p}.bn3", _conv(state, f"{p}.conv3", out)))
            if f"{p}.downsample.0.weight" in state:
                identity = _bn(
                    state, f"{p}.downsample.1", _conv(state, f"{p}.downsample.0", x, stride)
                )
            x = (out + identity).relu()
        features.append(x)
    return features


def as_mmsegmentation(state: dict) -> dict:
    """nlgc's tensors of a segmentor under mmsegmentation's names: ResNetV1c's ``stem.N`` and
    mmcv NonLocal2d's ConvModules in the NL head (``conv_out.conv`` has no bias: a BN follows)."""
    stem = {"conv1.0": "stem.0", "conv1.1": "stem.1", "conv1.3": "stem.3", "conv1.4": "stem.4"}
    stem |= {"conv1.6": "stem.6", "bn1": "stem.7"}
    renamed = {}
    for key, value in state.items():
        for ours, theirs in stem.items():
            if key.startswith(f"backbone.{ours}."):
                key = key.replace(f"backbone.{ours}.", f"backbone.{theirs}.")
        if key.startswith("decode_head.nl_block."):
            part, leaf = key.removeprefix("decode_head.nl_block.").split(".")
            if part == "out" and leaf == "bias":
                continue
            module = {"out": "conv_out.conv", "norm": "conv_out.bn"}.get(part, f"{part}.conv")
            key = f"decode_head.nl_block.{module}.{leaf}"
        renamed[key] = value
    return renamed
