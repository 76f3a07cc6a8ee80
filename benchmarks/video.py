"""Peak memory and time of a video model's forward pass, fast NL path against the reference.

python benchmarks/video.py                         # nl_i3d_resnet50, 1×3×32×224×224, CPU
python benchmarks/video.py --model nl10_c2d_resnet50 --frames 8 --size 112
"""

from __future__ import annotations

import argparse
import time

import torch

import nlgc
from nlgc.analysis.memory import peak_memory_bytes
from nlgc.blocks import IMPLS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nl_i3d_resnet50")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()

    model = nlgc.create_model(args.model).to(args.device).eval()
    x = torch.randn(1, 3, args.frames, args.size, args.size, device=args.device)
    print(f"{args.model}, input {tuple(x.shape)}, batch 1, {args.device}, inference mode\n")
    print("| NL path | peak extra memory MB | forward s |")
    print("|---|---|---|")
    for impl in IMPLS:
        nlgc.set_impl(model, impl)
        with torch.inference_mode():
            model(x)  # warm-up
            peak = peak_memory_bytes(lambda: model(x), args.device)
            start = time.perf_counter()
            model(x)
            if args.device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        print(f"| {impl} | {peak / 2**20:.0f} | {seconds:.2f} |", flush=True)

    inputs = {}  # the input each non-local block sees in this forward pass
    hooks = [
        module.register_forward_pre_hook(lambda m, a, name=name: inputs.setdefault(name, a[0]))
        for name, module in model.named_modules()
        if isinstance(module, nlgc.NonLocalBlock)
    ]
    with torch.inference_mode():
        model(x)
    for hook in hooks:
        hook.remove()
    print("\nEach non-local block alone, on the input it sees in that pass:\n")
    print("| block | input | queries × keys | fast MB | reference MB |")
    print("|---|---|---|---|---|")
    for name, block_input in inputs.items():
        block = model.get_submodule(name)
        peaks = []
        for impl in IMPLS:
            block.impl = impl
            with torch.inference_mode():
                peaks.append(peak_memory_bytes(lambda b=block, i=block_input: b(i), args.device))
        queries = block_input[0, 0].numel()
        keys = queries // 4 if block.sub_sample else queries
        print(
            f"| {name} | {tuple(block_input.shape[1:])} | {queries}×{keys} "
            f"| {peaks[0] / 2**20:.1f} | {peaks[1] / 2**20:.1f} |"
        )


if __name__ == "__main__":
    main()
