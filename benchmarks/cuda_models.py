"""Networks on the GPU: an NL-I3D-50 training step on the Non-local paper's 32×2 clips, then the
overheads of GC, SE, SNL and NL ResNet-50s against the plain network.

* ``video``: one training step (forward + backward, ``benchmarks/models.py``'s) of
  nl_i3d_resnet50 on 32×224² clips, batch 8, bf16 autocast, fast and reference non-local paths:
  median time and peak memory.
* ``models``: ``benchmarks/models.py``'s named models against resnet50 at batch 32, bf16
  autocast, channels_last: eager and ``torch.compile`` inference and a training step, in paired
  (ABBA) runs whose overhead is the median of the per-pair ratios; peak memory of the step.

    python benchmarks/cuda_models.py --out OUT            # GPU: video_cuda.md, models_cuda.md
    python benchmarks/cuda_models.py --dry-run --out OUT  # CPU, tiny inputs, dynamo's eager backend

The dry run takes the first model only: tracing a ResNet-50 takes seconds on a CPU.
"""

from __future__ import annotations

import torch
from cuda_common import Table, arguments, device_for, free_cache
from models import DEFAULT, inference, training_step

import nlgc
from nlgc.analysis.complexity import median_ms, paired_ms
from nlgc.analysis.memory import peak_memory_bytes
from nlgc.blocks import IMPLS


def video_step(args, device: torch.device, precision) -> None:
    batch, frames, size, repeats = (2, 8, 32, 1) if args.dry_run else (8, 32, 224, 5)
    table = Table(
        args.out,
        "video",
        device,
        [
            f"{args.video_model} training step (forward + backward), batch {batch}, "
            f"{frames}×{size}² clips, bf16 autocast, median of {repeats} "
            "(benchmarks/cuda_models.py)"
        ],
        ["model", "non-local path", "step ms", "clips/s", "peak GB"],
    )
    model = nlgc.create_model(args.video_model).to(device).train()
    x = torch.randn(batch, 3, frames, size, size, device=device)
    for impl in IMPLS:
        nlgc.set_impl(model, impl)
        step = training_step(model, x, precision)
        ms = median_ms(step, device, repeats)
        peak = peak_memory_bytes(step, device)
        table.add(
            [args.video_model, impl, f"{ms:.0f}", f"{1e3 * batch / ms:.1f}", f"{peak / 2**30:.2f}"]
        )
    del model, x
    free_cache(device)


def overheads(args, device: torch.device, precision) -> None:
    batch, size, pairs, backend = (2, 32, 2, "eager") if args.dry_run else (32, 224, 50, "inductor")
    train_pairs = max(2, pairs // 5)

    def build(name):
        model = nlgc.create_model(name).to(device, memory_format=torch.channels_last)
        return model.eval()

    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
    table = Table(
        args.out,
        "models",
        device,
        [
            f"batch {batch}, {size}², bf16 autocast, channels_last; overheads against "
            f"{args.baseline}: median of {pairs} paired ratios ({train_pairs} for the training "
            f"step); compiled: torch.compile, {backend} backend (benchmarks/cuda_models.py)"
        ],
        [
            "model",
            "eager ms (base)",
            "Δ",
            "compiled ms (base)",
            "Δ",
            "train step ms (base)",
            "Δ",
            "step peak GB (base)",
        ],
    )
    baseline = build(args.baseline)
    compiled_baseline = torch.compile(baseline, backend=backend)
    base_peak = step_peak(baseline, x, precision, device)
    for name in args.models[:1] if args.dry_run else args.models:
        model = build(name)
        cells = [name]
        for a, b in (
            (baseline, model),
            (compiled_baseline, torch.compile(model, backend=backend)),
        ):
            base_ms, ms, ratio = paired_ms(
                inference(a, x, precision), inference(b, x, precision), pairs, device
            )
            cells += [f"{ms:.1f} ({base_ms:.1f})", f"{100 * (ratio - 1):+.1f}%"]
        base_ms, ms, ratio = paired_ms(
            training_step(baseline.train(), x, precision),
            training_step(model.train(), x, precision),
            train_pairs,
            device,
            warmup=1,
        )
        baseline.eval()
        peak = step_peak(model, x, precision, device)
        cells += [f"{ms:.0f} ({base_ms:.0f})", f"{100 * (ratio - 1):+.1f}%"]
        table.add([*cells, f"{peak / 2**30:.2f} ({base_peak / 2**30:.2f})"])
        del model
        free_cache(device)


def step_peak(model, x, precision, device) -> int:
    """Peak bytes of one training step (train mode), the model left in eval mode."""
    peak = peak_memory_bytes(training_step(model.train(), x, precision), device)
    model.eval()
    return peak


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--video-model", default="nl_i3d_resnet50")
    parser.add_argument("--models", nargs="+", default=DEFAULT)
    parser.add_argument("--baseline", default="resnet50")
    args = parser.parse_args()
    device = device_for(args.dry_run)

    def precision():
        return torch.autocast(device.type, dtype=torch.bfloat16)

    video_step(args, device, precision)
    overheads(args, device, precision)


if __name__ == "__main__":
    main()
