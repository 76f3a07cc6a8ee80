"""Segmentation heads at Cityscapes' crop sizes: nlgc's NL and DNL heads against the same head
with its block materialising the N×N matrix, as mmsegmentation's heads do.

python benchmarks/segmentation.py            # CPU table -> benchmarks/results/segmentation_cpu.md
python benchmarks/segmentation.py --heads nonlocal --sizes 512x1024 --repeats 1

A head reads the C5 map of an output-stride-8 ResNet (2,048 channels at 1/8 of the crop:
64 × 128 = 8,192 positions for 512×1024, 97 × 97 = 9,409 for 769×769) and runs mmsegmentation's
structure (3×3 conv to 512 → block → 3×3 conv → concat → 3×3 conv → 1×1 classifier, 19
classes). ``fast``: nlgc's blocks (SDPA / the disentangled block's own path, no N×N);
``materialised``: the same head, its block's ``impl="reference"`` (the N×N weights built, the
formula as it reads). Forward + backward of a batch of 2 (mmsegmentation's per-GPU batch; the
DNL head's BatchNorm on its unary vector needs more than one image), median of ``--repeats``;
peak = memory the pass allocates above the head's weights and its input. The block alone is
timed too: the three 3×3 convolutions of 2,048–2,560 channels dominate a head's time on a CPU.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from nlgc.analysis.complexity import median_ms
from nlgc.analysis.memory import peak_memory_bytes
from nlgc.models.segmentation import DecodeHead

HEADS = {"nonlocal": ("nl", "nl_block"), "dnlnet": ("dnl", "dnl_block")}
SIZES = {"512x1024": (64, 128), "769x769": (97, 97)}  # the C5 map of each crop at stride 8
RESULTS = Path(__file__).parent / "results"


def head(kind: str, impl: str) -> DecodeHead:
    torch.manual_seed(0)
    block, name = HEADS[kind]
    module = DecodeHead(2048, 512, 19, 3, block).train()
    getattr(module, name).impl = impl
    return module


def forward_backward(module, inputs):
    def call():
        module.zero_grad(set_to_none=True)
        module(inputs).sum().backward()

    return call


def rows(kinds: list[str], sizes: list[str], repeats: int, batch: int) -> list[str]:
    lines = []
    for size in sizes:
        height, width = SIZES[size]
        c5 = torch.randn(batch, 2048, height, width, generator=torch.Generator().manual_seed(0))
        for kind in kinds:
            for part in ("head", "block"):
                cells = {}
                for impl in ("fast", "reference"):
                    module = head(kind, impl)
                    if part == "block":
                        module = getattr(module, HEADS[kind][1])
                        inputs = torch.randn(batch, 512, height, width).requires_grad_()
                        call = forward_backward(module, inputs)
                    else:
                        call = forward_backward(module, [None, None, None, c5])
                    cells[impl] = (median_ms(call, "cpu", repeats), peak_memory_bytes(call) / 2**20)
                (fast_ms, fast_mb), (ref_ms, ref_mb) = cells["fast"], cells["reference"]
                n = height * width
                lines.append(
                    f"| {size} | {kind} | {part} | {n:,} | {fast_ms:.0f} | {ref_ms:.0f} | "
                    f"{ref_ms / fast_ms:.2f}× | {fast_mb:.0f} | {ref_mb:.0f} | "
                    f"{ref_mb / fast_mb:.1f}× |"
                )
                print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setting = (
        f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, eager, float32, batch {args.batch}, forward + backward, "
        f"median of {args.repeats}"
    )
    lines = [
        f"Segmentation heads on the C5 map of a crop, {setting}; fast = nlgc's blocks, "
        "materialised = the block's impl='reference' (the N×N weights built, mmsegmentation's "
        "way); peak = memory a pass allocates above weights and input",
        "",
        "| crop | head | part | N | fast ms | materialised ms | speed-up | fast peak MB | "
        "materialised peak MB | memory ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows(args.heads, args.sizes, args.repeats, args.batch),
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "segmentation_cpu.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'segmentation_cpu.md'}")


if __name__ == "__main__":
    main()
