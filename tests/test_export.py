"""Every block under torch.compile, torch.export and ONNX (run by onnxruntime)."""

import warnings

import pytest
import torch
from helpers import randomize

from nlgc import GlobalContextBlock, NonLocalBlock, SimplifiedNonLocal, SqueezeExcitation

BLOCKS = {
    "nl_embedded_gaussian": lambda: NonLocalBlock(16, 2, "embedded_gaussian", sub_sample=True),
    "nl_gaussian": lambda: NonLocalBlock(16, 2, "gaussian", sub_sample=True),
    "nl_dot_product": lambda: NonLocalBlock(16, 2, "dot_product", sub_sample=True),
    "nl_concatenation": lambda: NonLocalBlock(16, 2, "concatenation", sub_sample=True),
    "nl_video_space": lambda: NonLocalBlock(16, 3, attend="space", sub_sample=True),
    "snl": lambda: SimplifiedNonLocal(16),
    "gc": lambda: GlobalContextBlock(16, 1 / 4, fusion=("mul", "add")),
    "se": lambda: SqueezeExcitation(16, 1 / 4),
}
pytestmark = pytest.mark.slow


def inputs(name):
    """Two inputs of different spatial sizes (odd and even) for the same block."""
    if name == "nl_video_space":
        return torch.randn(2, 16, 3, 10, 12), torch.randn(2, 16, 4, 7, 9)
    return torch.randn(2, 16, 10, 12), torch.randn(2, 16, 7, 9)


def dynamic_shapes(x):
    return ({d: torch.export.Dim.AUTO for d in range(2, x.dim())},)


@pytest.mark.parametrize("name", BLOCKS)
def test_torch_compile(name):
    block = randomize(BLOCKS[name]())
    compiled = torch.compile(block, dynamic=True)
    for x in inputs(name):
        torch.testing.assert_close(compiled(x), block(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", BLOCKS)
def test_torch_export(name):
    block = randomize(BLOCKS[name]())
    first, second = inputs(name)
    program = torch.export.export(block, (first,), dynamic_shapes=dynamic_shapes(first))
    for x in (first, second):
        torch.testing.assert_close(program.module()(x), block(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", BLOCKS)
def test_onnx_export_runs_in_onnxruntime(name, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    block = randomize(BLOCKS[name]())
    first, second = inputs(name)
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            block, (first,), path, dynamic_shapes=dynamic_shapes(first), verbose=False
        )
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    for x in (first, second):
        (y,) = session.run(None, {feed: x.numpy()})
        torch.testing.assert_close(torch.from_numpy(y), block(x), rtol=1e-4, atol=1e-4)
