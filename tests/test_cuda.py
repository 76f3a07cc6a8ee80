"""On a CUDA device (marker ``cuda``, skipped without one): fast == reference in float64 and
float32, half-precision autocast, every model's training step, Lightning on the GPU, the SDPA
kernels of the models' blocks. Unmarked: the dry run of benchmarks/cuda_all.sh, on the CPU."""

import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from block_cases import (
    DNL_SHAPES,
    FAST_VS_REFERENCE,
    NL_SHAPES,
    ODD_SHAPES,
    PAIRWISE,
    make_dnl,
    make_non_local,
    non_local_configurations,
    outputs_and_grads,
)
from helpers import assert_grads_close, randomize, relative_error
from runs import kinetics_config, kinetics_set, synthetic_config

import nlgc
from nlgc import GlobalContextBlock, NonLocalBlock, SimplifiedNonLocal, SqueezeExcitation
from nlgc.blocks import DisentangledNonLocal

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "benchmarks"))  # the probe lives with the benchmarks that table it
import sdpa_probe  # noqa: E402

DEVICE = torch.device("cuda")
HALF = [torch.bfloat16, torch.float16]


def cuda(test):
    """Mark ``test`` as a ``cuda`` test, skipped where no CUDA device is visible."""
    skip = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    return pytest.mark.cuda(skip(test))


@pytest.fixture
def no_tf32():
    """True float32 matrix products and convolutions (cuDNN's use TF32 by default)."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def assert_fast_equals_reference(block, x, tol):
    """Output and every gradient of the fast path within ``tol`` of the reference path's."""
    y_fast, grads_fast = outputs_and_grads(block, x, "fast")
    y_ref, grads_ref = outputs_and_grads(block, x, "reference")
    assert relative_error(y_fast, y_ref) < tol
    assert_grads_close(grads_fast, grads_ref, tol)


def fits(block, shape) -> bool:
    """Whether ``shape`` suits the block: space to pool, frames that fill its groups."""
    spatial = shape[-2:] if block.dim > 1 else shape[-1:]
    if getattr(block, "sub_sample", False) and min(spatial) < 2:
        return False
    return shape[2] % (getattr(block, "temporal_group", None) or 1) == 0


NON_LOCAL = [(*c, None) for c in non_local_configurations()] + [
    (pw, 3, sub_sample, position, "spacetime", 2)
    for pw in PAIRWISE
    for sub_sample, position in ((False, "after"), (True, "after"), (True, "before"))
]


@cuda
@pytest.mark.parametrize(("pw", "dim", "sub_sample", "position", "attend", "group"), NON_LOCAL)
def test_non_local_fast_equals_reference_float64(pw, dim, sub_sample, position, attend, group):
    block = make_non_local(pw, dim, sub_sample, position, attend, temporal_group=group)
    block.to(DEVICE)
    for shape in filter(lambda s: fits(block, s), NL_SHAPES[dim]):
        x = torch.randn(shape, dtype=torch.float64, device=DEVICE)
        assert_fast_equals_reference(block, x, 1e-10)


@cuda
@pytest.mark.parametrize(
    ("dim", "sub_sample", "combine"),
    list(itertools.product((1, 2, 3), (False, True), ("attention", "outputs"))),
)
def test_dnl_fast_equals_reference_float64(dim, sub_sample, combine):
    block = make_dnl(dim, sub_sample, combine).to(DEVICE)
    for shape in filter(lambda s: fits(block, s), DNL_SHAPES[dim]):
        x = torch.randn(shape, dtype=torch.float64, device=DEVICE)
        assert_fast_equals_reference(block, x, 1e-10)


@cuda
@pytest.mark.parametrize("name", FAST_VS_REFERENCE)
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_snl_gc_se_fast_equal_reference_float64(name, dim):
    block = randomize(FAST_VS_REFERENCE[name](dim)).double().to(DEVICE)
    for shape in ODD_SHAPES[dim]:
        x = torch.randn(shape, dtype=torch.float64, device=DEVICE)
        assert_fast_equals_reference(block, x, 1e-10)


WIDE = {  # widths the fused SDPA kernels take: C = 64, C' = 32
    **{
        pw: lambda dim, pw=pw: NonLocalBlock(64, dim, pw, inter_channels=32, sub_sample=True)
        for pw in PAIRWISE
    },
    "dnl": lambda dim: DisentangledNonLocal(64, dim, inter_channels=32, sub_sample=True),
    "snl": lambda dim: SimplifiedNonLocal(64, dim),
    "gc": lambda dim: GlobalContextBlock(64, 1 / 4, dim=dim),
    "gc-mul-add": lambda dim: GlobalContextBlock(64, 1 / 4, fusion=("mul", "add"), dim=dim),
    "se": lambda dim: SqueezeExcitation(64, 1 / 4, dim),
}
WIDE_SHAPES = {1: (2, 64, 300), 2: (2, 64, 24, 20), 3: (2, 64, 4, 12, 10)}


def wide(name, dim):
    """A wide block with random weights (BN γ, β and the zero-started convs included)."""
    return randomize(WIDE[name](dim), std=0.1).to(DEVICE)


@cuda
@pytest.mark.parametrize("name", WIDE)
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_float32_fast_path_equals_float64_reference(name, dim, no_tf32):
    """Output within 1e-5, every gradient within 1e-4 (on the CPU: 6e-8 and 9e-6)."""
    block = wide(name, dim)
    x = torch.randn(WIDE_SHAPES[dim], device=DEVICE)
    y, grads = outputs_and_grads(block, x, "fast")
    y_ref, grads_ref = outputs_and_grads(block.double(), x.double(), "reference")
    assert relative_error(y.double(), y_ref) < 1e-5
    assert_grads_close([g.double() for g in grads], grads_ref, 1e-4)


@cuda
@pytest.mark.parametrize("name", WIDE)
@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_autocast_is_finite_and_close_to_float32(name, dim, dtype, no_tf32):
    """Under autocast the output, the input's gradient and the parameters' gradients (taken
    together: one parameter's can be 10% off where max-pooling picks another of two close
    values) are finite and within 3% of float32's (on the CPU: 0.2%, 0.5%, 0.5%)."""
    block = wide(name, dim)
    x = torch.randn(WIDE_SHAPES[dim], device=DEVICE)
    y_ref, grads_ref = outputs_and_grads(block, x, "fast")
    with torch.autocast(DEVICE.type, dtype=dtype):
        y, grads = outputs_and_grads(block, x, "fast")
    assert all(torch.isfinite(t).all() for t in (y, *grads))
    assert relative_error(y.float(), y_ref) < 3e-2
    assert relative_error(grads[0].float(), grads_ref[0]) < 3e-2
    assert relative_error(flat(grads[1:]), flat(grads_ref[1:])) < 3e-2


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.float().flatten() for t in tensors])


VIDEO = nlgc.list_models(task="video")
MODELS = [
    name
    for name in nlgc.list_models(task="classification") + VIDEO
    if not any(depth in name for depth in ("101", "152"))
]


@cuda
@pytest.mark.parametrize("name", MODELS)
def test_every_model_trains_a_step_in_bf16(name):
    """A bf16 training step of each classification and video model (deeper variants add no
    new path): finite loss and gradients; then eval logits of the right shape."""
    with torch.device(DEVICE):
        model = nlgc.create_model(name, num_classes=10)
    if name in VIDEO:  # 32 frames: grouped blocks need res3 frames in groups of 4
        x = torch.randn(2, 3, 32, 32, 32, device=DEVICE)
    else:
        model = model.to(memory_format=torch.channels_last)
        x = torch.randn(2, 3, 64, 64, device=DEVICE).to(memory_format=torch.channels_last)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x), torch.tensor([0, 1], device=DEVICE))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad(), torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        assert model.eval()(x).shape == (2, 10)


@cuda
def test_image_training_with_accelerator_gpu(tmp_path):
    from nlgc.train import run

    config = synthetic_config(
        tmp_path / "run",
        trainer__accelerator="gpu",
        trainer__precision="bf16-mixed",
        trainer__max_epochs=1,
    )
    assert math.isfinite(float(run.fit(config, progress=False)["train/loss"]))


@cuda
def test_video_training_with_accelerator_gpu(tmp_path):
    """In float32: on these 8×32² clips the fresh network's gradients reach 1e7 in layer1
    (train-mode BN over a few values), where CPU bf16 autocast gives NaN weight gradients;
    the bf16 step, on 32-frame clips, is the test above."""
    from nlgc.train import run

    settings = kinetics_config(kinetics_set(tmp_path / "kinetics"), tmp_path / "run")
    settings["trainer"].update(accelerator="gpu")
    assert math.isfinite(float(run.fit(settings, progress=False)["train/loss"]))


@cuda
@pytest.mark.parametrize("dtype", sdpa_probe.DTYPES)
@pytest.mark.parametrize("case", sdpa_probe.CASES, ids=str)
def test_sdpa_runs_fused_kernels_and_makes_no_n_by_n_tensor(case, dtype):
    """Each SDPA block of the models, in each dtype: a fused kernel forward and backward, no
    op output of Nq·Nk elements and a peak below one Nq×Nk matrix (on a grown input)."""
    rows = sdpa_probe.probe(case, dtype, DEVICE, sdpa_probe.RATIO)
    assert rows, f"{case} has no block that calls SDPA"
    for row in rows:
        assert row.decisive and not row.failures, row.cells()


@pytest.mark.slow
def test_cuda_all_dry_run_writes_its_tables(tmp_path):
    """``benchmarks/cuda_all.sh --dry-run``: the script a lent GPU runs, on the CPU with tiny
    shapes; its tables go to the folder given, marked as a dry run."""
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "cuda_all.sh"), "--dry-run", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for name in ("sdpa", "blocks", "video", "models"):
        table = (tmp_path / f"{name}_dryrun.md").read_text()
        rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
        assert table.startswith("**DRY RUN**") and rows, name
    summary = (tmp_path / "summary.md").read_text()
    assert all(f"| {step} | ok |" in summary for step in ("tests", "sdpa", "blocks", "models"))
    assert not list((ROOT / "benchmarks" / "results").glob("*dryrun*"))
