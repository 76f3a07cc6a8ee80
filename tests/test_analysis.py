"""Analysis: capture, query-independence statistics, pictures, report, `nlgc analyze`."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import LargestTensor, randomize
from torch import nn

import nlgc
from nlgc.analysis.analyze import Sample, analyze
from nlgc.analysis.capture import capture
from nlgc.analysis.complexity import complexity_table
from nlgc.analysis.queries import QueryGrid, QueryPoints, RandomQueries, parse_queries, resolve
from nlgc.analysis.statistics import (
    ATTENTION_BUDGET,
    QueryIndependence,
    accumulate,
    attention_distances,
    cosine_distances,
    query_distances,
    query_independence,
)
from nlgc.blocks import ContextBlock
from nlgc.cli import main
from nlgc.models import Insertion, Plan, without_blocks
from nlgc.models.preprocessing import IMAGENET

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


class UserNet(nn.Module):
    """A user's own network that happens to contain nlgc blocks."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 2, 1)
        self.nl = nlgc.NonLocalBlock(16, sub_sample=True)
        self.gc = nlgc.GlobalContextBlock(16, 1 / 4)
        self.snl = nlgc.SimplifiedNonLocal(16)
        self.se = nlgc.SqueezeExcitation(16, 1 / 4)

    def forward(self, x):
        return self.se(self.snl(self.gc(self.nl(self.stem(x)))))


def normalized(name: str, display: torch.Tensor) -> Sample:
    """A sample of a [0, 1] image or clip, normalised with ImageNet's mean and std."""
    return Sample(name, IMAGENET.normalize(display[None])[0], display)


def test_capture_records_every_block_of_a_user_network():
    net = randomize(UserNet())
    x = torch.randn(2, 3, 24, 20)
    with capture(net, QueryGrid(2)) as records:
        net(x)
        net(x[:1])
    assert list(records) == ["nl", "gc", "snl", "se"]
    nl = records["nl"]
    assert nl.spatial == (12, 10) and nl.key_spatial == (6, 5)
    assert nl.attention.shape == (3, 4, 30) and nl.inputs.shape == (3, 4, 16)
    assert records["gc"].attention.shape == (3, 120) and not records["gc"].query_specific
    with torch.no_grad():
        features = net.stem(x)
        expected_maps = net.nl.attention_map(features, nl.queries)
        expected_deltas = (net.nl(features) - features).flatten(2)[:, :, nl.queries].mT
    torch.testing.assert_close(nl.attention[:2], expected_maps)
    torch.testing.assert_close(nl.deltas[:2], expected_deltas)
    torch.testing.assert_close(nl.inputs[:2], features.flatten(2)[:, :, nl.queries].mT)
    assert not any(m._forward_hooks for m in net.modules())  # hooks removed on exit


def test_capture_needs_blocks():
    with (
        pytest.raises(ValueError, match="contains no nlgc context block"),
        capture(nn.Conv2d(3, 3, 1)),
    ):
        pass


def test_capture_memory_is_linear_in_positions():
    net = nn.Sequential(nlgc.NonLocalBlock(16)).eval()
    x = torch.randn(1, 16, 60, 60)
    with torch.no_grad(), LargestTensor() as probe, capture(net, QueryGrid(2)) as records:
        net(x)
    assert records["0"].attention.shape == (1, 4, 3600)
    assert probe.largest <= ATTENTION_BUDGET < 3600 * 3600 / 40  # rows streamed, never N × N


def test_query_specs_resolve_on_each_grid():
    assert resolve(QueryGrid(2), (4, 4)).tolist() == [5, 7, 13, 15]
    assert resolve(QueryGrid(1), (3, 5, 5)).tolist() == [37]  # middle frame, centre
    assert resolve(QueryPoints(((0.0, 0.99),)), (7,)).tolist() == [6]
    first, second = resolve(RandomQueries(5, seed=3), (9, 9)), resolve(RandomQueries(5, 3), (9, 9))
    assert torch.equal(first, second) and not torch.equal(
        first, resolve(RandomQueries(5, 4), (9, 9))
    )
    assert QueryPoints.from_pixels([(0, 223)], (224, 224)).coordinates[0][1] > 0.99
    with pytest.raises(ValueError, match="outside the input"):
        QueryPoints.from_pixels([(10, 300)], (224, 224))
    assert parse_queries("random:4:7") == RandomQueries(4, 7)
    assert parse_queries("points:0.1,0.2;0.5,0.5").coordinates == ((0.1, 0.2), (0.5, 0.5))
    with pytest.raises(ValueError, match="grid:3"):
        parse_queries("everywhere")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        parse_queries("points:1.5,0.2")


def brute_force_avg_dist(vectors: torch.Tensor) -> torch.Tensor:
    """GCNet's 1/N² Σ_i Σ_j (1 − cos(v_i, v_j))/2 as a double loop, per sample: (B, N, D) → (B,).

    Pairs with a zero vector (cosine undefined) are left out; no pairs left gives NaN."""
    results = []
    for sample in vectors.double():
        total, pairs = 0.0, 0
        for v_i in sample:
            for v_j in sample:
                norms = v_i.norm() * v_j.norm()
                if norms > 0:
                    total += (1 - float(v_i @ v_j / norms)) / 2
                    pairs += 1
        results.append(total / pairs if pairs else float("nan"))
    return torch.tensor(results, dtype=torch.float64)


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 7, 5), (3, 13, 1), (1, 40, 17)])
def test_cosine_distances_equal_the_double_loop(shape):
    vectors = torch.randn(shape, dtype=torch.float64)
    vectors[0, 0] = 0  # a zero vector: left out
    vectors[-1, -2:] = 0
    torch.testing.assert_close(
        cosine_distances(vectors), brute_force_avg_dist(vectors), rtol=0, atol=1e-12, equal_nan=True
    )


def test_cosine_distance_values():
    assert float(cosine_distances(torch.ones(2, 4, 3))[0]) == pytest.approx(0, abs=1e-12)
    # orthogonal: 1/9 · (3 · 0 + 6 · 1/2)
    assert float(cosine_distances(torch.eye(3).unsqueeze(0))[0]) == pytest.approx(1 / 3)
    opposite = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])
    assert float(cosine_distances(opposite)[0]) == pytest.approx(0.5)
    assert float(cosine_distances(torch.tensor([[[0.0, 0.0], [1.0, 0.0]]]))[0]) == 0  # 1 pair
    assert cosine_distances(torch.zeros(1, 3, 2)).isnan().all()  # no vector: no value


def test_a_dead_concatenation_block_has_no_attention_distance():
    block = randomize(nlgc.NonLocalBlock(6, pairwise="concatenation"), std=0.7)
    with torch.no_grad():
        block.concat_project.weight.fill_(1.0)
        block.theta.bias.fill_(-100.0)
        block.phi.bias.fill_(-100.0)  # ReLU(w_fᵀ[θ, φ]) = 0 for every pair
    result = query_distances(block, torch.randn(2, 6, 5, 5))
    assert math.isnan(result.attention) and result.output == pytest.approx(0, abs=1e-12)
    row = QueryIndependence("layer3.0.nl", "nl", "c4", result).to_dict()  # metrics.json's row
    assert row["attention"] is None and json.loads(json.dumps(row, allow_nan=False)) == row


BLOCKS = [
    ("embedded_gaussian", 2, {}, (2, 6, 5, 7)),
    ("gaussian", 2, {"sub_sample": True}, (2, 6, 6, 5)),
    ("dot_product", 1, {}, (3, 4, 11)),
    ("concatenation", 2, {"sub_sample": True}, (1, 6, 4, 6)),
    ("embedded_gaussian", 3, {"attend": "space"}, (2, 4, 3, 4, 5)),
    ("dot_product", 3, {"sub_sample": True}, (1, 4, 2, 4, 4)),
]


@pytest.mark.parametrize(("pairwise", "dim", "options", "shape"), BLOCKS)
def test_query_distances_equal_brute_force_over_all_positions(pairwise, dim, options, shape):
    block = randomize(
        nlgc.NonLocalBlock(shape[1], dim=dim, pairwise=pairwise, **options), std=0.7
    ).double()
    x = torch.randn(shape, dtype=torch.float64)
    result = query_distances(block, x)
    with torch.no_grad():
        z = block(x)
        maps = block.attention_map(x)  # every row, (B, N, N_keys)
    flat = lambda t: t.flatten(2).mT  # noqa: E731
    expected = {
        "input": brute_force_avg_dist(flat(x)).mean(),
        "output": brute_force_avg_dist(flat(z - x)).mean(),
        "attention": brute_force_avg_dist(maps).mean(),
    }
    for key, value in expected.items():
        assert getattr(result, key) == pytest.approx(float(value), abs=1e-12), key
    assert result.positions == x[0, 0].numel() and result.samples == shape[0]
    assert 0 < result.attention < 0.5 and 0 < result.input < 0.5


def test_attention_rows_are_streamed_in_chunks():
    block = randomize(nlgc.NonLocalBlock(8, pairwise="concatenation"), std=0.7).double()
    x = torch.randn(2, 8, 9, 7, dtype=torch.float64)
    whole = attention_distances(block, x, chunk=10_000)
    torch.testing.assert_close(attention_distances(block, x, chunk=5), whole, rtol=0, atol=1e-14)
    with LargestTensor() as largest:
        attention_distances(block, x, chunk=5)
    assert largest.largest <= 2 * 5 * 63 * 2  # never N × N (63 × 63 per sample)


def test_query_independent_blocks_have_attention_distance_zero():
    x = torch.randn(2, 16, 9, 9)
    for block in (nlgc.GlobalContextBlock(16, 1 / 4), nlgc.SimplifiedNonLocal(16)):
        result = query_distances(randomize(block, std=1.0), x)
        assert result.attention == 0 and result.output == pytest.approx(0, abs=1e-6)
        assert result.input > 0.3


def test_accumulate_weights_batches_by_samples():
    block = randomize(nlgc.NonLocalBlock(6), std=0.7).double()
    x = torch.randn(5, 6, 4, 4, dtype=torch.float64)
    parts = [query_distances(block, x[:2]), query_distances(block, x[2:])]
    whole = query_distances(block, x)
    merged = accumulate(parts)
    assert merged.samples == 5
    for key in ("input", "output", "attention"):
        assert getattr(merged, key) == pytest.approx(getattr(whole, key), abs=1e-12)
    with pytest.raises(ValueError, match="block input"):
        query_distances(block, torch.randn(6))


def stats_of(block, x):
    net = nn.Sequential(block).eval()
    with torch.no_grad(), capture(net, QueryGrid(3)) as records:
        net(x)
    return query_independence(records)[0]


def test_zero_theta_makes_every_query_attend_alike():
    block = randomize(nlgc.NonLocalBlock(16), std=1.0)
    with torch.no_grad():
        block.theta.weight.zero_()
        block.theta.bias.fill_(0.3)  # θ(x_i) the same for every i
    result = stats_of(block, torch.randn(2, 16, 12, 12)).distances
    assert result.attention < 1e-12
    assert result.output < 1e-12  # the same y_i everywhere
    assert result.input > 0.2  # while the inputs differ


def test_random_large_weights_are_query_specific():
    block = randomize(nlgc.NonLocalBlock(16), std=2.0)
    result = stats_of(block, torch.randn(2, 16, 12, 12)).distances
    assert result.attention > 0.15 and result.output > 0.05


def test_gc_block_has_one_map_for_all_queries():
    result = stats_of(
        randomize(nlgc.GlobalContextBlock(16, 1 / 4), std=1.0), torch.randn(2, 16, 9, 9)
    )
    assert result.distances.attention == 0 and result.kind == "GlobalContextBlock"


def images(count=2, size=64):
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(3, size, size, generator=generator) for _ in range(count)]


def test_analyze_writes_report_pictures_and_every_number(tmp_path):
    model = randomize(nlgc.create_model("nl_resnet50", num_classes=5), std=0.05).eval()
    samples = [normalized(f"image{i}", d) for i, d in enumerate(images())]
    report = analyze(model, samples, QueryGrid(2), tmp_path, {"model": "nl_resnet50"})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "report.html" in names and "query_independence.png" in names
    assert sum(n.startswith("attention_") for n in names) == 2
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    row = metrics["query_independence"][0]
    assert row["block"] == "layer3.4.non_local_block" and row["samples"] == 2
    page = report.read_text()
    assert f"{row['attention']:.4g}" in page
    assert page.count("<img") == 4 and "data:image/png;base64," in page  # + the terms' maps
    assert (
        "Pairwise / unary decomposition" in page
        and "terms_00_layer3_4_non_local_block.png" in names
    )
    decomposition = metrics["decomposition"]["layer3.4.non_local_block"]
    assert decomposition["unary_share"] + decomposition["pairwise_share"] == pytest.approx(1)
    assert f"{decomposition['unary_share']:.4g}" in page


def test_analyze_video_and_gc_masks(tmp_path):
    model = nlgc.create_model("nl1_c2d_resnet50", num_classes=3).eval()
    clip = torch.rand(3, 8, 64, 64)
    analyze(model, [normalized("clip", clip)], QueryGrid(1), tmp_path)
    assert (tmp_path / "attention_00_layer3_4_non_local_block.png").stat().st_size > 1000
    gc = nlgc.create_model("gc_resnet50", num_classes=3).eval()
    out = tmp_path / "gc"
    analyze(gc, [normalized("a", i) for i in images()], QueryGrid(2), out)
    assert (out / "context_masks.png").exists()
    stats = json.loads((out / "metrics.json").read_text())["query_independence"]
    assert len(stats) == 13 and all(s["attention"] == 0 for s in stats)
    video_gc = nlgc.create_model("gc_c2d_resnet50", num_classes=3).eval()
    analyze(
        video_gc,
        [normalized("clip", clip)],
        QueryGrid(2),
        tmp_path / "video_gc",
    )
    assert (tmp_path / "video_gc" / "context_masks.png").stat().st_size > 1000


def write_images(folder: Path, count=3):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images(count, 96)):
        Image.fromarray((image.permute(1, 2, 0) * 255).byte().numpy()).save(folder / f"im{i}.png")
    return folder


def write_video(path: Path, frames=12):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for t in range(frames):
            array = torch.full((48, 64, 3), 10 * t, dtype=torch.uint8).numpy()
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda d: ["--model", "gc_resnet50", "--inputs", str(d / "empty")], "no images or videos"),
        (lambda d: ["--model", "gc_resnet50", "--inputs", str(d / "broken.png")], "broken.png"),
        (lambda d: ["--model", "resnet18", "--inputs", str(d / "good")], "contains no"),
        (
            lambda d: [
                "--model",
                "gc_resnet50",
                "--inputs",
                str(d / "good"),
                "--queries",
                "pixels:10,500",
            ],
            "outside the input",
        ),
        (lambda d: ["--model", "gc_resnet50", "--inputs", str(d / "missing")], "no such file"),
        (lambda d: ["--model", "c2d_resnet50", "--inputs", str(d / "good")], "video model"),
        (lambda d: ["--inputs", str(d / "good")], "--model"),
    ],
)
def test_analyze_command_explains_bad_input(tmp_path, capsys, setup, words):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    write_images(tmp_path / "good", 1)
    code = main(["analyze", *setup(tmp_path), "--out", str(tmp_path / "out"), "--size", "64"])
    error = capsys.readouterr().err
    assert code == 2 and words in error and "Traceback" not in error


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--size", "-3", "argument --size: must be >= 1, got -3"),
        ("--frames", "0", "argument --frames: must be >= 1, got 0"),
        ("--max-inputs", "two", "argument --max-inputs: must be a whole number"),
        ("--queries", "grid:0", "a query grid needs n >= 1, got 0"),
        ("--queries", "random:-2", "random queries need a count >= 1, got -2"),
        ("--queries", "ring:3", "queries must look like"),
    ],
)
def test_analyze_numbers_are_checked_before_anything_runs(tmp_path, capsys, option, value, words):
    arguments = ["analyze", "--model", "gc_resnet50", "--inputs", str(tmp_path)]
    with pytest.raises(SystemExit) as stop:
        main([*arguments, "--out", str(tmp_path / "out"), option, value])
    error = capsys.readouterr().err
    assert stop.value.code == 2 and words in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_python_dash_m_runs_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "nlgc", "models", "gc_resnet5*"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.split()[0] == "gc_resnet50"


def test_analyze_compares_with_the_checkpoints_own_network_without_blocks(tmp_path):
    """The "without blocks" twin keeps the model's own options (here: no classifier head)."""
    model = nlgc.create_model("gc_resnet50", features_only=True, out_indices=(3,))
    plain = without_blocks(model)
    assert not [m for m in plain.modules() if isinstance(m, ContextBlock)]
    reference = nlgc.create_model("resnet50", features_only=True, out_indices=(3,))
    assert plain.state_dict().keys() == reference.state_dict().keys()
    assert len(model.state_dict()) > len(plain.state_dict())  # the original keeps its blocks
    rows = complexity_table({"gc": model, "plain": plain}, (1, 3, 64, 64), repeats=1)
    assert rows[0].params - rows[1].params == sum(
        p.numel()
        for m in model.modules()
        if isinstance(m, nlgc.GlobalContextBlock)
        for p in m.parameters()
    )


def test_analyze_command_on_a_video_file(tmp_path, capsys):
    video = write_video(tmp_path / "clip.mp4")
    out = str(tmp_path / "out")
    arguments = ["--inputs", str(video), "--out", out, "--size", "64", "--frames", "8"]
    code = main(["analyze", "--model", "nl1_c2d_resnet50", *arguments, "--no-complexity"])
    assert code == 0 and "report:" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["inputs"] == ["clip.mp4"]


def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None and os.environ.get("NLGC_REQUIRE_CHROMIUM"):
        pytest.fail("chromium is required (NLGC_REQUIRE_CHROMIUM is set) but not installed")
    if path is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def test_report_opens_in_headless_chromium(tmp_path):
    browser = chromium()
    inputs = write_images(tmp_path / "images")
    out = tmp_path / "report"
    assert (
        main(
            [
                "analyze",
                "--model",
                "gc_resnet50",
                "--inputs",
                str(inputs),
                "--out",
                str(out),
                "--size",
                "96",
                "--queries",
                "grid:2",
            ]
        )
        == 0
    )
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = (out / "report.html").as_uri()
    dom = subprocess.run(
        [browser, *flags, "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded, "the page's load check did not run"
    assert loaded.group(1) == loaded.group(2) and int(loaded.group(2)) >= 3
    assert dom.count("<table") >= 3 and "Query independence" in dom
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report_screenshot.png"
    subprocess.run(
        [browser, *flags, "--window-size=1200,1800", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000


def test_a_new_block_is_its_own_class_and_one_registration():
    """A block written outside nlgc, registered with one decorator, is placed by plans, switched
    by set_impl, hooked by capture and measured by GCNet's statistics like the built-in ones."""
    from nlgc.blocks import BLOCK_TYPES, register_block, set_impl
    from nlgc.blocks.context import attention_weights, pool_context

    @register_block("test_pool", attribute="test_pool", default_position="after_block")
    class MaxContext(ContextBlock):
        def __init__(self, in_channels, dim=2, impl="fast"):
            super().__init__()
            self.in_channels, self.dim, self.impl = in_channels, dim, impl
            self.mask = nn.Conv2d(in_channels, 1, 1)

        def attention_map(self, x, queries=None):
            return attention_weights(self.mask(x))

        def forward(self, x):
            return x + pool_context(x, self.attention_map(x))

    try:
        plan = Plan((Insertion("test_pool", ("c3",), (0,)),))
        model = nlgc.create_model("tiny_resnet", plan=plan, num_classes=3).eval()
        assert set_impl(model, "reference").layer2[0].test_pool.impl == "reference"
        with capture(model) as records:
            model(torch.randn(2, 3, 32, 32))
        record = records["layer2.0.test_pool"]
        assert record.kind == "MaxContext" and not record.query_specific
        assert record.attention.shape == (2, 16) and record.distances.attention == 0
    finally:
        del BLOCK_TYPES["test_pool"]


def decomposable_block(pairwise="embedded_gaussian", sub_sample=True):
    return randomize(nlgc.NonLocalBlock(6, 2, pairwise, inter_channels=4, sub_sample=sub_sample))


@pytest.mark.parametrize("pairwise", ["embedded_gaussian", "gaussian", "dot_product"])
def test_pairwise_plus_unary_plus_a_constant_are_the_logits(pairwise):
    from nlgc.analysis.decomposition import logit_terms

    block = decomposable_block(pairwise).double()
    x = torch.randn(3, 6, 7, 9, dtype=torch.float64)
    q, k = block.query_key(x)
    p, u, c = logit_terms(q, k)
    assert torch.allclose(p + u[:, None, :] + c[:, :, None], q @ k.mT, atol=1e-12, rtol=0)
    if pairwise != "dot_product":  # inside the softmax the per-query constant cancels
        weights = torch.softmax(block.logit_scale * (p + u[:, None, :]), -1)
        assert torch.allclose(weights, block.attention_map(x), atol=1e-12, rtol=0)


def test_variance_shares_match_the_materialised_terms():
    from nlgc.analysis.decomposition import decompose, logit_terms, variances

    block = decomposable_block().double()
    x = torch.randn(2, 6, 8, 10, dtype=torch.float64) + 0.7  # a shared mean: a real unary part
    q, k = (t.detach() for t in block.query_key(x))
    p, u, _ = logit_terms(q, k)
    var = lambda t: t.var(-1, unbiased=False)  # noqa: E731  over keys
    unary, pairwise, total = variances(q, k)
    assert torch.allclose(unary, var(u), atol=1e-12, rtol=1e-10)
    assert torch.allclose(pairwise, var(p).mean(-1), atol=1e-12, rtol=1e-10)
    assert torch.allclose(total, var(q @ k.mT).mean(-1), atol=1e-12, rtol=1e-10)
    # averaged over queries the covariance of the two terms is exactly zero
    covariance = ((p - p.mean(-1, keepdim=True)) * (u - u.mean(-1, keepdim=True))[:, None]).mean(-1)
    assert float(covariance.mean(-1).abs().max()) < 1e-12
    result = decompose(block, x, chunk=7)
    shares = unary / total
    assert result.unary_share == pytest.approx(float(shares.mean()), abs=1e-12)
    assert result.unary_share + result.pairwise_share == pytest.approx(1.0, abs=1e-12)
    rows = torch.softmax(block.logit_scale * p, -1)
    assert result.pairwise_att == pytest.approx(float(cosine_distances(rows).mean()), abs=1e-12)


def test_decomposition_refuses_what_it_cannot_split():
    from nlgc.analysis.decomposition import decompose

    x = torch.randn(1, 6, 4, 4)
    with pytest.raises(ValueError, match="pairwise='concatenation'"):
        decompose(decomposable_block("concatenation"), x)
    with pytest.raises(ValueError, match="GlobalContextBlock"):
        decompose(nlgc.GlobalContextBlock(6), x)


def test_block_names_wrap_at_dots_and_underscores_for_column_titles():
    from nlgc.analysis.plots import wrap_name

    name = "backbone.body.layer3.1.simplified_non_local_after_conv3"
    lines = wrap_name(name, 24).split("\n")
    assert "".join(lines) == name
    assert lines == ["backbone.body.layer3.1.", "simplified_non_local_", "after_conv3"]
    assert wrap_name("layer3.0.context_block", 24) == "layer3.0.context_block"
    assert wrap_name("x" * 30, 24) == "x" * 30  # no place to break: one line
