"""Named image models: parameters, FLOPs, eager and compiled latency, training-step time, and
each one's overhead against the plain ResNet measured in the same run.

python benchmarks/models.py                           # CPU table -> benchmarks/results/
python benchmarks/models.py --models gc_resnet50 --pairs 60 --no-compile
python benchmarks/models.py --device cuda             # bf16 autocast, channels_last, batch 32

Overheads are paired: the plain network and the variant run alternately (ABBA), and the overhead
is the median of the per-pair time ratios, so the drifts of a shared machine cancel.
Columns: eager inference latency at each batch size, ``torch.compile`` (inductor) latency at the
first batch size, one training step (forward + backward, batch ``--train-batch``), and the
memory floor: the MB that the context blocks' extra passes over feature maps move at the largest
batch, and the time they take at this machine's ``a + b`` bandwidth, as a share of the plain
network's latency (what no eager implementation of the blocks gets under).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from pathlib import Path

import torch

import nlgc
from nlgc.analysis.complexity import paired_ms
from nlgc.blocks import BroadcastContextBlock
from nlgc.models.plan import InsertionPoints

DEFAULT = ["gc_resnet50", "se_resnet50", "snl_resnet50", "nl_resnet50", "gc_r4_resnet50"]
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


def extra_map_passes(block: BroadcastContextBlock, fused: bool) -> int:
    """Full passes over its input map that a block's fast path adds to the plain network:
    reads for the context (2 for attention pooling, 1 for a mean) and a read + write for each
    broadcast term that is not folded into the residual addition (a scale folds, ``addcmul``)."""
    reads = 2 if hasattr(block, "conv_mask") else 1  # attention pooling has a mask
    probe = torch.zeros(1, block.in_channels, *[1] * block.dim, device=block_device(block))
    with torch.inference_mode():
        scale, shift = block._terms(probe)
    return reads + 2 * (shift is not None) + 2 * (scale is not None and not fused)


def block_device(block: torch.nn.Module) -> torch.device:
    return next(block.parameters()).device


def memory_floor(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(MB the context blocks' extra passes move, ms those bytes take at the copy bandwidth
    measured here): the time no eager implementation of these blocks gets under."""
    fused = set()
    for module in model.modules():
        if isinstance(module, InsertionPoints) and module.inserted.get("after_conv3"):
            fused.add(getattr(module, module.inserted["after_conv3"][-1]))
    sizes = {}
    hooks = [
        m.register_forward_hook(lambda m, args, out: sizes.__setitem__(m, args[0].nbytes))
        for m in model.modules()
        if isinstance(m, BroadcastContextBlock)
    ]
    with torch.inference_mode():
        model(x)
    for hook in hooks:
        hook.remove()
    moved = sum(extra_map_passes(m, m in fused) * size for m, size in sizes.items())
    return moved / 1e6, 1e3 * moved / copy_bandwidth(x.device)


def copy_bandwidth(device) -> float:
    """Bytes per second of ``c = a + b`` on 64 MB tensors (two reads and one write)."""
    a, b = (torch.randn(16 * 2**20, device=device) for _ in range(2))
    c = torch.empty_like(a)
    seconds = []
    for _ in range(10):
        start = time.perf_counter()
        torch.add(a, b, out=c)
        if c.is_cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return 3 * a.nbytes / sorted(seconds)[len(seconds) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT)
    parser.add_argument("--baseline", default="resnet50")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--train-batch", type=int, default=None)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--pairs", type=int, default=100)
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
        + f" | train step b{train_batch} ms | Δ | extra map MB b{batches[-1]} | floor |",
    ]
    columns = 5 + 2 * len(batches) + (0 if args.no_compile else 2) + 4
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
                inference(baseline, x, precision),
                inference(model, x, precision),
                args.pairs,
                args.device,
            )
            cells += [f"{b:.1f} (base {a:.1f})", f"{100 * (ratio - 1):+.1f}%"]
            base_ms = a  # of the last (largest) batch, for the memory floor
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
            training_step(baseline, x, precision),
            training_step(model, x, precision),
            args.train_pairs,
            args.device,
            warmup=1,
        )
        baseline.eval()
        cells += [f"{b:.0f} (base {a:.0f})", f"{100 * (ratio - 1):+.1f}%"]
        moved, floor_ms = memory_floor(model, batch(batches[-1]))
        cells += [f"{moved:.0f}", f"+{100 * floor_ms / base_ms:.1f}%"]
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    out = RESULTS / f"models_{args.device}.md"
    out.write_text("\n".join(header + rows) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
