"""The block tests' cases: constructors with random weights, input shapes, the valid option
combinations and the fast/reference runner of NonLocalBlock, DisentangledNonLocal and the
context blocks; test_non_local, test_disentangled and test_context run them on the CPU,
test_cuda on a GPU."""

import itertools

import torch
from helpers import randomize

from nlgc import GlobalContextBlock, NonLocalBlock, SimplifiedNonLocal, SqueezeExcitation
from nlgc.blocks import DisentangledNonLocal

PAIRWISE = ["embedded_gaussian", "gaussian", "dot_product", "concatenation"]
NL_SHAPES = {
    1: [(2, 6, 1), (3, 6, 13), (1, 6, 700)],
    2: [(2, 6, 1, 1), (2, 6, 7, 5), (1, 6, 37, 41)],
    3: [(2, 6, 1, 2, 2), (2, 6, 3, 5, 4), (1, 6, 4, 14, 15)],
}
DNL_SHAPES = {
    1: [(2, 6, 1), (3, 6, 13), (1, 6, 300)],
    2: [(2, 6, 1, 1), (2, 6, 7, 5), (1, 6, 23, 29)],
    3: [(2, 6, 1, 2, 2), (2, 6, 3, 5, 4), (1, 6, 4, 10, 11)],
}


def non_local_configurations():
    """Every pairwise × dim × sub-sampling × pooling position × attend mode that is valid."""
    for pw, dim, sub_sample, position in itertools.product(
        PAIRWISE, (1, 2, 3), (False, True), ("after", "before")
    ):
        if position == "before" and not sub_sample:
            continue
        for attend in ("spacetime", "space", "time") if dim == 3 else ("spacetime",):
            if not (attend == "time" and sub_sample):
                yield pw, dim, sub_sample, position, attend


def make_non_local(pw, dim, sub_sample=False, position="after", attend="spacetime", **kwargs):
    block = NonLocalBlock(
        6,
        dim,
        pw,
        inter_channels=3,
        sub_sample=sub_sample,
        pool_position=position,
        attend=attend,
        **kwargs,
    )
    return randomize(block).double()


def make_dnl(dim, sub_sample=False, combine="attention", **kwargs):
    block = DisentangledNonLocal(
        6, dim, inter_channels=3, sub_sample=sub_sample, combine=combine, **kwargs
    )
    return randomize(block).double()


def outputs_and_grads(block, x, impl):
    """The block's output under ``impl`` and the gradients of input and parameters."""
    block.impl = impl
    x = x.detach().requires_grad_()
    y = block(x)
    grads = torch.autograd.grad(y, [x, *block.parameters()], torch.ones_like(y) + y.detach())
    return y, grads


FAST_VS_REFERENCE = {  # the context blocks, by dim
    "snl": lambda dim: SimplifiedNonLocal(8, dim),
    "gc": lambda dim: GlobalContextBlock(8, 1 / 4, dim=dim),
    "gc-mul-add-avg": lambda dim: GlobalContextBlock(8, 1 / 4, "avg", ("mul", "add"), dim=dim),
    "gc-mul-no-ln": lambda dim: GlobalContextBlock(
        8, 1 / 4, fusion="mul", layer_norm=False, dim=dim
    ),
    "se": lambda dim: SqueezeExcitation(8, 1 / 4, dim),
}
ODD_SHAPES = {  # tiny, odd and larger maps per dim
    1: [(1, 8, 1), (3, 8, 13), (2, 8, 200)],
    2: [(1, 8, 1, 1), (3, 8, 5, 7), (2, 8, 33, 29)],
    3: [(1, 8, 1, 1, 1), (2, 8, 3, 5, 7), (1, 8, 4, 16, 15)],
}
