"""Named image models: parameters, FLOPs, eager and compiled latency, training-step time, and
each one's overhead against the plain ResNet measured in the same run.

python benchmarks/models.py                           # CPU table -> benchmarks/results/
python benchmarks/models.py --models gc_resnet50 --pairs 60 --no-compile
python benchmarks/models.py --device cuda             # bf16 autocast, channels_last, batch 32

Overheads are paired: the plain network and the variant run alternately (ABBA), and the overhead
is the median of the per-pair time ratios, so the drifts of a shared machine cancel.
Columns: eager inference latency at each batch size, ``torch.compile`` (inductor) latency at the
first batch size, and one training step (forward + backward, batch ``--train-batch``).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
from pathlib import Path

import torch

import nlgc
from nlgc.analysis.complexity import paired_ms

DEFAULT = ["gc_resnet50", "se_resnet50", "snl_resnet50", "nl_resnet50", "gc_resnet50_r4"]
RESULTS = Path(__file__).parent / "results"


def inference(model, x, precision):
    def call():
        with torch.inference_mode(), precision():
            model(x)

    return call


def training_step(model, x, precision):
    labels = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)

    def call():
        with precision():
            loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        model.zero_grad(set_to_none=True)

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT)
    parser.add_argument("--baseline", default="resnet50")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--train-batch", type=int, default=None)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--train-pairs", type=int, default=8)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    batches = args.batches or ([32] if cuda else [1, 8])
    train_batch = args.train_batch or (32 if cuda else 8)
    layout = torch.channels_last if cuda else torch.contiguous_format

    def precision():
        if cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def build(name):
        return nlgc.create_model(name).to(args.device, memory_format=layout)

    def batch(size):
        return torch.randn(size, 3, args.size, args.size, device=args.device).to(
            memory_format=layout
        )

    baseline = build(args.baseline).eval()
    compiled_baseline = None if args.no_compile else torch.compile(baseline)
    base = nlgc.complexity(baseline, (1, 3, args.size, args.size))
    where = (
        f"{torch.cuda.get_device_name()}, bf16 autocast, channels_last"
        if cuda
        else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    header = [
        f"{where}, torch {torch.__version__}, {args.size}², overheads against {args.baseline} "
        f"(median of {args.pairs} paired ratios; training: {args.train_pairs} pairs)",
        "",
        "| model | params M | Δ params | GMACs | Δ FLOPs | "
        + " | ".join(f"eager b{b} ms | Δ" for b in batches)
        + ("" if args.no_compile else f" | compiled b{batches[0]} ms | Δ")
        + f" | train step b{train_batch} ms | Δ |",
    ]
    columns = 5 + 2 * len(batches) + (0 if args.no_compile else 2) + 2
    header.append("|" + "---|" * columns)
    print("\n".join(header), flush=True)
    rows = []
    for name in args.models:
        model = build(name).eval()
        result = nlgc.complexity(model, (1, 3, args.size, args.size))
        cells = [
            name,
            f"{result.params / 1e6:.2f}",
            f"{100 * (result.params / base.params - 1):+.1f}%",
            f"{result.gmacs:.2f}",
            f"{100 * (result.flops / base.flops - 1):+.1f}%",
        ]
        for size in batches:
            x = batch(size)
            a, b, ratio = paired_ms(
                inference(baseline, x, precision), inference(model, x, precision), args.pairs,
                args.device,
            )  # fmt: skip
            cells += [f"{b:.1f} (base {a:.1f})", f"{100 * (ratio - 1):+.1f}%"]
        if not args.no_compile:
            x = batch(batches[0])
            a, b, ratio = paired_ms(
                inference(compiled_baseline, x, precision),
                inference(torch.compile(model), x, precision),
                args.pairs,
                args.device,
            )
            cells += [f"{b:.1f} (base {a:.1f})", f"{100 * (ratio - 1):+.1f}%"]
        x = batch(train_batch)
        baseline.train()
        model.train()
        a, b, ratio = paired_ms(
            training_step(baseline, x, precision), training_step(model, x, precision),
            args.train_pairs, args.device, warmup=1,
        )  # fmt: skip
        baseline.eval()
        cells += [f"{b:.0f} (base {a:.0f})", f"{100 * (ratio - 1):+.1f}%"]
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    out = RESULTS / f"models_{args.device}.md"
    out.write_text("\n".join(header + rows) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
