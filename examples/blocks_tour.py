"""A short tour of the nlgc blocks: sizes, identity at init, exact fast paths, attention maps.

Run with ``make tour`` (creates the virtual environment on first use) or
``python examples/blocks_tour.py``. Takes a few seconds on a laptop CPU.
"""

import time

import torch

from nlgc import GlobalContextBlock, NonLocalBlock, SimplifiedNonLocal, SqueezeExcitation, set_impl
from nlgc.blocks import PAIRWISE


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomize(module: torch.nn.Module) -> torch.nn.Module:
    """Random weights everywhere (the zero-initialised W_z/BN too), evaluation mode."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)
    return module.eval()


def main() -> None:
    torch.manual_seed(0)
    print("Parameters (the papers' settings)")
    for name, block in {
        "NonLocalBlock(1024), BN": NonLocalBlock(1024),
        "SimplifiedNonLocal(1024)": SimplifiedNonLocal(1024),
        "GlobalContextBlock(1024, r=1/16)": GlobalContextBlock(1024, 1 / 16),
        "GlobalContextBlock(2048, r=1/16)": GlobalContextBlock(2048, 1 / 16),
        "SqueezeExcitation(1024, r=1/16)": SqueezeExcitation(1024, 1 / 16),
    }.items():
        print(f"  {name:<34} {count(block):>10,}")

    x = torch.randn(2, 64, 3, 14, 14)  # a (B, C, T, H, W) video feature map
    print("\nIdentity at initialisation (zero-initialised last layer), 3D input", tuple(x.shape))
    for block in (NonLocalBlock(64, dim=3, sub_sample=True), GlobalContextBlock(64, dim=3)):
        print(f"  {type(block).__name__:<20} max |z - x| = {(block(x) - x).abs().max():.1e}")

    print("\nFast path vs reference (float64, random weights, 2D input 64×40×40, forward)")
    image = torch.randn(1, 64, 40, 40, dtype=torch.float64)
    for pairwise in PAIRWISE:
        block = randomize(NonLocalBlock(64, 2, pairwise, sub_sample=True)).double()
        with torch.no_grad():
            start = time.perf_counter()
            fast = block(image)
            fast_ms = 1e3 * (time.perf_counter() - start)
            set_impl(block, "reference")
            start = time.perf_counter()
            reference = block(image)
            ref_ms = 1e3 * (time.perf_counter() - start)
        error = float((fast - reference).norm() / reference.norm())
        print(
            f"  {pairwise:<18} relative error {error:.1e}   "
            f"fast {fast_ms:6.1f} ms   reference {ref_ms:6.1f} ms"
        )

    print("\nAttention maps for 3 query positions (GCNet's question: do they differ?)")
    feature = torch.randn(1, 64, 20, 20)
    queries = torch.tensor([0, 210, 399])
    nl = randomize(NonLocalBlock(64))
    maps = nl.attention_map(feature, queries)[0]  # (3, 400)
    cosine = torch.nn.functional.cosine_similarity(maps[:, None], maps[None, :], dim=-1)
    off_diagonal = 1 - cosine[~torch.eye(3, dtype=torch.bool)]
    print(f"  NonLocalBlock, random weights: mean cosine distance {off_diagonal.mean():.3f}")
    gc_map = randomize(GlobalContextBlock(64)).attention_map(feature)
    print(f"  GlobalContextBlock: one map of shape {tuple(gc_map.shape)} for every query")


if __name__ == "__main__":
    main()
