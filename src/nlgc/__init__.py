"""nlgc: non-local and global-context blocks and networks for PyTorch."""

from nlgc.blocks import (
    GlobalContextBlock,
    NonLocalBlock,
    SimplifiedNonLocal,
    SqueezeExcitation,
    set_impl,
)

__version__ = "0.1.0"

__all__ = [
    "GlobalContextBlock",
    "NonLocalBlock",
    "SimplifiedNonLocal",
    "SqueezeExcitation",
    "__version__",
    "set_impl",
]
