"""nlgc: non-local and global-context blocks and networks for PyTorch."""

from nlgc.analysis import Complexity, complexity
from nlgc.blocks import (
    DisentangledNonLocal,
    GlobalContextBlock,
    NonLocalBlock,
    SimplifiedNonLocal,
    SqueezeExcitation,
    set_impl,
)
from nlgc.evaluation import fully_convolutional_scores
from nlgc.models import (
    Insertion,
    Plan,
    create_model,
    inflate_weights,
    list_models,
    load_model,
    load_weights,
)

__version__ = "0.1.0"

__all__ = [
    "Complexity",
    "DisentangledNonLocal",
    "GlobalContextBlock",
    "Insertion",
    "NonLocalBlock",
    "Plan",
    "SimplifiedNonLocal",
    "SqueezeExcitation",
    "__version__",
    "complexity",
    "create_model",
    "fully_convolutional_scores",
    "inflate_weights",
    "list_models",
    "load_model",
    "load_weights",
    "set_impl",
]
