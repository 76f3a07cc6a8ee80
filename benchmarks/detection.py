"""Detectors at COCO resolution: the context-block Mask R-CNNs against the plain one, and one
NL block at c4 and c3 of an 800×1333 image against the formula that builds its N×N matrix.

python benchmarks/detection.py                  # CPU tables -> benchmarks/results/detection_cpu.md
python benchmarks/detection.py --pairs 3 --models mask_rcnn_gc_r4_resnet50_fpn

Detectors: eager inference of one 800×1333 image (the detector's own resize keeps it), paired
with the plain ``mask_rcnn_resnet50_fpn`` in ABBA order (the ratio is the median of the pairs'
ratios, so a shared machine's drifts cancel), and the peak memory of one pass above what the
model and input hold. NL blocks: the embedded-Gaussian block (no sub-sampling, C' = C/2) on the
c4 (1024 × 50 × 84 = 4,200 positions) and c3 (512 × 100 × 167 = 16,700) maps of that image,
``impl="fast"`` (SDPA, no N×N) against ``impl="reference"`` (the paper's formula, the N×N
weights materialised, as the common ports do), forward and forward + backward.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

import nlgc
from nlgc.analysis.complexity import median_ms, paired_ms
from nlgc.analysis.memory import peak_memory_bytes

DEFAULT = [
    "mask_rcnn_gc_r4_resnet50_fpn",
    "mask_rcnn_nl_resnet50_fpn",
    "mask_rcnn_snl_c3c5_resnet50_fpn",
    "mask_rcnn_dnl_resnet50_fpn",
]
PLAIN = "mask_rcnn_resnet50_fpn"
MAPS = {"c4": (1024, 50, 84), "c3": (512, 100, 167)}  # an 800×1333 image at stride 16 and 8
RESULTS = Path(__file__).parent / "results"


def detector(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return nlgc.create_model(name).eval()


def inference(model: torch.nn.Module, image: torch.Tensor):
    def call():
        with torch.inference_mode():
            model([image])

    return call


def detector_rows(names: list[str], pairs: int) -> list[str]:
    image = torch.rand(3, 800, 1333, generator=torch.Generator().manual_seed(0))
    plain = detector(PLAIN)
    plain_peak = peak_memory_bytes(inference(plain, image)) / 2**20
    rows = []
    for name in names:
        model = detector(name)
        blocks = sum(isinstance(m, nlgc.blocks.ContextBlock) for m in model.modules())
        base_ms, ms, ratio = paired_ms(
            inference(plain, image), inference(model, image), pairs, warmup=1
        )
        peak = peak_memory_bytes(inference(model, image)) / 2**20
        rows.append(
            f"| {name} | {blocks} | {ms:.0f} | {base_ms:.0f} | {ratio:.3f}× | {peak:.0f} | "
            f"{plain_peak:.0f} | {peak / plain_peak:.3f}× |"
        )
        print(rows[-1], flush=True)
    return rows


def block_rows(repeats: int) -> list[str]:
    rows = []
    for stage, (channels, height, width) in MAPS.items():
        x = torch.randn(1, channels, height, width, generator=torch.Generator().manual_seed(0))
        for backward in (False, True):
            cells = {}
            for impl in ("fast", "reference"):
                torch.manual_seed(0)
                block = nlgc.NonLocalBlock(channels, impl=impl, zero_init=False)
                inputs = x.clone().requires_grad_(backward)

                def call(block=block, inputs=inputs, backward=backward):
                    if backward:
                        block(inputs).sum().backward()
                    else:
                        with torch.inference_mode():
                            block(inputs)

                cells[impl] = (median_ms(call, "cpu", repeats), peak_memory_bytes(call) / 2**20)
            (fast_ms, fast_mb), (ref_ms, ref_mb) = cells["fast"], cells["reference"]
            n = height * width
            rows.append(
                f"| {stage} | {channels} | {n:,} | {'fwd+bwd' if backward else 'fwd'} | "
                f"{fast_ms:.0f} | {ref_ms:.0f} | {ref_ms / fast_ms:.2f}× | {fast_mb:.0f} | "
                f"{ref_mb:.0f} | {ref_mb / fast_mb:.1f}× | {n * n * 4 / 2**20:.0f} |"
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setting = (
        f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, eager, float32, batch 1"
    )
    lines = [
        f"Detectors on one 800×1333 image, {setting}; ratios are medians of {args.pairs} ABBA "
        f"pairs against {PLAIN}; peak = memory a pass allocates above model and input",
        "",
        "| detector | blocks | ms | plain ms | time ratio | peak MB | plain peak MB | "
        "memory ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *detector_rows(args.models, args.pairs),
        "",
        f"One embedded-Gaussian NL block on an 800×1333 image's maps, {setting}; fast = SDPA, "
        f"reference = the N×N weights materialised; median of {args.repeats}",
        "",
        "| map | C | N | pass | fast ms | reference ms | speed-up | fast peak MB | "
        "reference peak MB | memory ratio | one N×N float32 MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *block_rows(args.repeats),
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "detection_cpu.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'detection_cpu.md'}")


if __name__ == "__main__":
    main()
