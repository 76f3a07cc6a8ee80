"""NonLocalBlock on the GPU: the reference path, the fast path and the common PyTorch port, time
and peak memory of the forward pass and of forward + backward.

Cases: every pairwise function on one C = 512 map of N = 784 … 50,176 positions (28² … 224²),
and the non-local blocks of nl_i3d_resnet50 on the Non-local paper's 32×2 clips (and on 128
frames), batch 1, in float32 and under bfloat16 autocast. ``port`` is the widely used port's
forward written out literally (AlexHex7/Non-local_pytorch: ``matmul``, softmax, ``matmul``; the
concatenation's ``repeat`` + ``cat``), run on the block's own weights: it builds (B, N, Nk) as
most code does; its float32 output must equal the fast path's (else the script exits 1).
Forward: eval mode, inference mode. Forward + backward: train mode, a random output gradient.
Peak memory: ``torch.cuda.max_memory_allocated`` above what was held before the call. A case
whose materialised matrices would not fit (an estimate) is skipped; an out-of-memory is
reported as such.

    python benchmarks/cuda_blocks.py --out OUT             # GPU: OUT/blocks_cuda.md
    python benchmarks/cuda_blocks.py --dry-run --out OUT   # CPU, tiny shapes: blocks_dryrun.md
"""

from __future__ import annotations

import functools
import math
import sys

import torch
import torch.nn.functional as F
from cuda_common import Table, arguments, autocast, device_for, free_cache
from sdpa_probe import Case, attention_blocks, materialise

from nlgc import NonLocalBlock
from nlgc.analysis.complexity import median_ms
from nlgc.analysis.memory import peak_memory_bytes
from nlgc.blocks import PAIRWISE

PRECISIONS = {"float32": None, "bf16 autocast": torch.bfloat16}
IMPLS = ("reference", "fast", "port")
SIDES, CHANNELS = (28, 56, 112, 224), 512
VIDEO = [Case("nl_i3d_resnet50", (3, frames, 224, 224)) for frames in (32, 128)]
DRY_SIDES, DRY_CHANNELS = (8, 16), 32
DRY_VIDEO = [Case("nl_i3d_resnet50", (3, 32, 32, 32), (("inter_channels", 8),))]


def common_port(block: NonLocalBlock, x: torch.Tensor) -> torch.Tensor:
    """The block's function as the common port writes it (pooling after φ and g, attention
    over all positions), with the (B, N, Nk) matrix and, for the concatenation, the
    (B, 2C', N, Nk) pairs."""
    b, c_inter = x.shape[0], block.inter_channels
    pool = block.pool if block.sub_sample else torch.nn.Identity()
    g_x = pool(block.g(x)).view(b, c_inter, -1).permute(0, 2, 1)
    if block.pairwise == "gaussian":
        theta_x = x.view(b, x.shape[1], -1).permute(0, 2, 1)
        phi_x = pool(x).view(b, x.shape[1], -1)
    else:
        theta_x = block.theta(x).view(b, c_inter, -1).permute(0, 2, 1)
        phi_x = pool(block.phi(x)).view(b, c_inter, -1)
    if block.pairwise == "concatenation":
        n, nk = theta_x.shape[1], phi_x.shape[2]
        theta_x = theta_x.permute(0, 2, 1).view(b, c_inter, n, 1).repeat(1, 1, 1, nk)
        phi_x = phi_x.view(b, c_inter, 1, nk).repeat(1, 1, n, 1)
        w_f = block.concat_project.weight.view(1, 2 * c_inter, 1, 1)
        f = F.relu(F.conv2d(torch.cat([theta_x, phi_x], dim=1), w_f)).view(b, n, nk)
        f_div_c = f / nk
    else:
        f = torch.matmul(theta_x, phi_x)
        f_div_c = F.softmax(f, dim=-1) if "gaussian" in block.pairwise else f / f.shape[-1]
    y = torch.matmul(f_div_c, g_x).permute(0, 2, 1).contiguous()
    return x + block.norm(block.out(y.view(b, c_inter, *x.shape[2:])))


def has_port(block: NonLocalBlock) -> bool:
    """The port pools after the embeddings, attends over all positions and does not scale."""
    plain = block.attend == "spacetime" and block.temporal_group is None and not block.scale
    return plain and (block.pool_position == "after" or not block.sub_sample)


def materialised_bytes(block: NonLocalBlock, shape: tuple[int, ...], backward: bool) -> int:
    """Rough bytes of the reference's and port's (B, N, Nk) matrices (float32), or of the
    concatenation's (B, 2C', N, Nk) pairs: to skip what cannot fit."""
    n, nk = math.prod(shape[2:]), math.prod(block.key_spatial(shape[2:]))
    matrix = shape[0] * n * nk * 4
    if block.pairwise == "concatenation":
        matrix *= 2 * block.inter_channels
    return matrix * (5 if backward else 3)


def as_function(block: NonLocalBlock, impl: str):
    """The block's forward by ``impl``: one of its own paths, or :func:`common_port`."""
    if impl == "port":
        return functools.partial(common_port, block)
    block.impl = impl
    return block


def forward(block, impl, x, dtype):
    fn = as_function(block.eval(), impl)

    def call():
        with torch.inference_mode(), autocast(x.device, dtype):
            fn(x)

    return call


def forward_backward(block, impl, x, dtype):
    fn = as_function(block.train(), impl)
    x = x.detach().requires_grad_()
    grad = torch.randn_like(x)

    def call():
        with autocast(x.device, dtype):
            y = fn(x)
        y.backward(grad)
        block.zero_grad(set_to_none=True)
        x.grad = None

    return call


def measure(make, block, impl, x, dtype, repeats) -> str:
    """``ms / peak MB`` of the call ``make`` builds, or what stopped it."""
    call = make(block, impl, x, dtype)
    try:
        ms = median_ms(call, x.device, repeats)
        peak = peak_memory_bytes(call, x.device)
    except torch.OutOfMemoryError:
        return "out of memory"
    finally:
        free_cache(x.device)
    return f"{ms:.2f} / {peak / 2**20:.0f}"


def cases(dry_run: bool, device: torch.device):
    """(label, block, input shape): every pairwise function on square maps, then the video
    model's non-local blocks."""
    sides, channels = (DRY_SIDES, DRY_CHANNELS) if dry_run else (SIDES, CHANNELS)
    for pairwise in PAIRWISE:
        for side in sides:
            block = NonLocalBlock(channels, 2, pairwise, zero_init=False).to(device)
            yield f"{pairwise}, {side}×{side}", block, (1, channels, side, side)
    for case in DRY_VIDEO if dry_run else VIDEO:
        for names, meta_block, shape in attention_blocks(case):
            label = f"{case} {case.input[1]} frames: {names[0]}"
            yield label, materialise(meta_block, device), shape


def main() -> int:
    parser = arguments(__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--max-gb", type=float, help="skip cases estimated above (default: 80%% of the GPU)"
    )
    args = parser.parse_args()
    device = device_for(args.dry_run)
    repeats = 1 if args.dry_run else args.repeats
    limit = 2**30 * (args.max_gb or 1)
    if device.type == "cuda" and not args.max_gb:
        limit = 0.8 * torch.cuda.get_device_properties(device).total_memory
    table = Table(
        args.out,
        "blocks",
        device,
        [
            f"NonLocalBlock, batch 1, median of {repeats} after a warm-up; cells: ms / peak MB "
            "above what was held (benchmarks/cuda_blocks.py)"
        ],
        ["case", "C", "N × Nk", "precision", "impl", "forward", "forward + backward"],
    )
    mismatches = 0
    for label, block, shape in cases(args.dry_run, device):
        x = torch.randn(shape, device=device)
        nk = math.prod(block.key_spatial(shape[2:]))
        for precision, dtype in PRECISIONS.items():
            for impl in IMPLS if has_port(block) else IMPLS[:2]:
                cells = []
                for make, backward in ((forward, False), (forward_backward, True)):
                    need = materialised_bytes(block, shape, backward)
                    if impl != "fast" and need > limit:
                        cells.append(f"skipped (needs ~{need / 2**30:.0f} GB)")
                    else:
                        cells.append(measure(make, block, impl, x, dtype, repeats))
                n = math.prod(shape[2:])
                table.add([label, shape[1], f"{n} × {nk}", precision, impl, *cells])
        if has_port(block) and materialised_bytes(block, shape, False) <= limit:
            mismatches += port_differs(block, x)
        del block, x
        free_cache(device)
    print(f"\n{mismatches} cases where the port's output differs; written to {table.path}")
    return int(mismatches > 0)


def port_differs(block: NonLocalBlock, x: torch.Tensor) -> bool:
    """Whether the port's float32 output differs from the fast path's by more than 1e-4."""
    block.eval()
    with torch.inference_mode():
        block.impl = "fast"
        expected = block(x)
        error = float((common_port(block, x) - expected).norm() / expected.norm())
    if error > 1e-4:
        print(f"port differs from the fast path: relative error {error:.2e} ({block})")
    return error > 1e-4


if __name__ == "__main__":
    sys.exit(main())
