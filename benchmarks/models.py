"""Named image models: parameters, FLOPs and CPU latency, and the overhead of each variant.

python benchmarks/models.py                  # 224×224, batch 1, the issue's table
python benchmarks/models.py --models gc_resnet50 nl_resnet50 --repeats 10
"""

from __future__ import annotations

import argparse

import torch

import nlgc
from nlgc.analysis.complexity import latency_ms

DEFAULT = [
    "resnet50", "gc_resnet50", "gc_resnet50_r4", "nl_resnet50", "snl_resnet50", "se_resnet50",
    "resnet101", "gc_resnet101", "resnext101_32x4d", "gc_resnext101_32x4d",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", default="resnet50")
    args = parser.parse_args()

    shape = (1, 3, args.size, args.size)
    baseline = nlgc.create_model(args.baseline).eval()
    base = nlgc.complexity(baseline, shape)
    base_ms = latency_ms(baseline, shape, args.repeats)
    print(f"batch 1, {args.size}×{args.size}, CPU, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}; overheads relative to {args.baseline}\n")  # fmt: skip
    print("| model | params (M) | GMACs | CPU ms | Δ params | Δ FLOPs | Δ latency |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        model = nlgc.create_model(name).eval()
        result = nlgc.complexity(model, shape)
        ms = base_ms if name == args.baseline else latency_ms(model, shape, args.repeats)
        print(
            f"| {name} | {result.params / 1e6:.2f} | {result.gmacs:.2f} | {ms:.0f} "
            f"| {100 * (result.params / base.params - 1):+.1f}% "
            f"| {100 * (result.flops / base.flops - 1):+.1f}% | {100 * (ms / base_ms - 1):+.1f}% |",
            flush=True,
        )


if __name__ == "__main__":
    main()
