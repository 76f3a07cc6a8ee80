"""NonLocalBlock speed and memory: the reference path (N×N matrix) against the fast default.

Times are medians of forward passes at batch 1 in inference mode, after a warm-up pass. Extra
peak memory is the high-water mark of bytes allocated during one forward pass above what was
held before it (model, input): on CPU from the profiler's allocator events, which see every
buffer a kernel allocates (SDPA's scratch space included), on CUDA from max_memory_allocated.

    python benchmarks/blocks.py                       # CPU table of the issue's cases
    python benchmarks/blocks.py --device cuda         # the same on a GPU
    python benchmarks/blocks.py --sizes 784 3136 --repeats 5
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from nlgc import NonLocalBlock
from nlgc.analysis.memory import peak_memory_bytes
from nlgc.blocks import PAIRWISE

EXTRA_CASES = [("concatenation", 784, 128)]  # the concatenation aim is stated at C = 128


def reference_bytes(pairwise: str, n: int, channels: int) -> int:
    """Rough size of what the reference path materialises, to skip cases that cannot fit."""
    if pairwise == "concatenation":
        return n * n * channels * 4  # the (N, N, 2C') pairs, C' = C / 2, float32
    return 3 * n * n * 4  # logits, weights and a temporary, float32


def measure(pairwise: str, n: int, channels: int, impl: str, device: str, repeats: int) -> dict:
    torch.manual_seed(0)
    side = math.isqrt(n)
    block = NonLocalBlock(channels, 2, pairwise, impl=impl, zero_init=False).to(device).eval()
    x = torch.randn(1, channels, side, n // side, device=device)

    def forward():
        block(x)
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        forward()  # warm-up
        extra = peak_memory_bytes(forward, device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            forward()
            times.append(time.perf_counter() - start)
    return {"ms": 1e3 * statistics.median(times), "extra_mb": extra / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[784, 3136, 12544])
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--max-reference-gb", type=float, default=6.0)
    args = parser.parse_args()

    cases = [(pw, n, args.channels) for pw in PAIRWISE for n in args.sizes] + EXTRA_CASES
    print(
        f"NonLocalBlock forward, batch 1, {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}\n"
    )
    print(
        "| pairwise | N | C | reference ms | fast ms | speed-up | reference extra MB "
        "| fast extra MB | memory ratio |"
    )
    print("|" + "---|" * 9)
    for pairwise, n, channels in cases:
        fast = measure(pairwise, n, channels, "fast", args.device, args.repeats)
        if reference_bytes(pairwise, n, channels) > args.max_reference_gb * 2**30:
            need = reference_bytes(pairwise, n, channels) / 2**30
            row = [f"skipped (needs ~{need:.0f} GB)", f"{fast['ms']:.1f}", "", "", "", ""]
            row[4] = f"{fast['extra_mb']:.1f}"
        else:
            ref = measure(pairwise, n, channels, "reference", args.device, args.repeats)
            row = [
                f"{ref['ms']:.1f}",
                f"{fast['ms']:.1f}",
                f"{ref['ms'] / fast['ms']:.1f}×",
                f"{ref['extra_mb']:.1f}",
                f"{fast['extra_mb']:.1f}",
                f"{ref['extra_mb'] / fast['extra_mb']:.1f}×",
            ]
        print(f"| {pairwise} | {n} | {channels} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
